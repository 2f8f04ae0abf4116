package bench

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/intake"
)

// BenchmarkIdleCatchUp measures what an idle helper's poll costs once its ledger is old: a
// catch-up that finds nothing new, on a ledger holding BENCH_HISTORY (default 200000) past
// deposits, all past the tracking horizon, next to the same catch-up on a ledger with no
// history, in the same run against the same wallet. The two take turns for BENCH_IDLE_ROUNDS
// (default 31) rounds and the medians are compared: a poll should cost the same however many
// deposits the asset has taken. Before network_transactions_followed it was 9.3x (23 ms against
// 2.5 at 200,000). The goal (1.5x) leaves room for the noise of a 2 ms figure and for what an old
// ledger still adds, about 0.3 ms: the listing of open deposits executes in 15 us on both, but
// on the old one the server plans it anew for each call (a generic plan looks dear on a big
// table), which BENCH_PG_PROFILE_DIR shows as its planning time.
func BenchmarkIdleCatchUp(b *testing.B) {
	history := envInt(b, "BENCH_HISTORY", 200_000)
	rounds := envInt(b, "BENCH_IDLE_ROUNDS", 31)
	srv := startPG(b)
	_, backend := startNode(b)
	ctx := context.Background()

	fresh, _ := openLedger(b, srv)
	old, oldPool := openLedger(b, srv)
	acct := accountWith(b, old, "shop", "old-address")
	took, err := timeIt(func() error { return addHistory(ctx, oldPool, acct.ID, history) })
	if err != nil {
		b.Fatalf("adding %d past deposits: %v", history, err)
	}
	b.Logf("%d past deposits added in %s", history, took.Round(time.Millisecond))

	intakes := [2]*intake.Intake{intake.New(fresh, backend, logr.Discard()), intake.New(old, backend, logr.Discard())}
	for _, in := range intakes { // the cursors to the tip: from here on, nothing is new
		if _, err := in.CatchUp(ctx); err != nil {
			b.Fatal(err)
		}
	}
	var tooks [len(intakes)][]time.Duration
	for round := range rounds {
		for k := range intakes {
			i := (k + round) % len(intakes) // each goes first in every other round
			in := intakes[i]
			var r intake.Result
			d, err := timeIt(func() (err error) { r, err = in.CatchUp(ctx); return err })
			if err != nil || r.Booked != 0 {
				b.Fatalf("idle catch-up: %+v %v", r, err)
			}
			tooks[i] = append(tooks[i], d)
		}
	}
	none, long := median(tooks[0]), median(tooks[1])
	b.ReportMetric(float64(long.Microseconds())/1000, "history-catchup-ms")
	b.ReportMetric(float64(none.Microseconds())/1000, "fresh-catchup-ms")
	b.ReportMetric(long.Seconds()/none.Seconds(), "ratio")
	b.Logf("an idle catch-up with %d past deposits %s (median of %d: %s); with none %s (%s); ratio %.2f",
		history, long.Round(time.Microsecond), rounds, roundMs(tooks[1]), none.Round(time.Microsecond), roundMs(tooks[0]), long.Seconds()/none.Seconds())
}

// addHistory books n past deposits to account acct, each in a network transaction of its own
// that is past the tracking horizon, as a ledger that has taken payments for years holds them:
// in bulk, straight into the tables.
func addHistory(ctx context.Context, pool *pgxpool.Pool, acct int64, n int) error {
	_, err := pool.Exec(ctx, `WITH a AS (SELECT ad.asset_id, ad.wallet_id, ad.id FROM addresses ad WHERE ad.account_id = $1),
		nt AS (INSERT INTO network_transactions (asset_id, kind, txid, confirmations, block_hash, block_height)
			SELECT a.asset_id, 'deposit', lpad(to_hex(g), 64, '0'), $3, 'old-block', g FROM a, generate_series(1, $2::int) g
			RETURNING id, asset_id)
		INSERT INTO transactions (asset_id, wallet_id, kind, state, credited, receiving_account_id, address_id, amount, network_transaction_id, output_index)
		SELECT nt.asset_id, a.wallet_id, 'deposit', 'credited', true, $1, a.id, 1000, nt.id, 0 FROM nt, a`,
		acct, n, config.DefaultMaxTracked)
	if err != nil {
		return err
	}
	// The balances hold what the deposits credited, so the ledger stays one that balances.
	if _, err := pool.Exec(ctx, `UPDATE accounts SET balance = balance + $2 WHERE id = $1`, acct, int64(n)*1000); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `UPDATE wallets SET balance = balance + $2 WHERE id = (SELECT wallet_id FROM accounts WHERE id = $1)`, acct, int64(n)*1000); err != nil {
		return err
	}
	// What autovacuum would have done by now for a table this old.
	_, err = pool.Exec(ctx, "ANALYZE")
	return err
}
