package intake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/bitcoind"
	"github.com/cryptoassets/cryptoassets-operator/internal/broadcast"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/wallettest"
)

var (
	pg   *pgtest.Server
	node *btctest.Node
)

func TestMain(m *testing.M) {
	os.Exit(testassets.Main(m, testassets.Postgres(&pg), testassets.Bitcoin(&node)))
}

type fixture struct {
	pool    *pgxpool.Pool
	ledger  *ledger.Ledger
	backend *bitcoind.Client
	intake  *Intake
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	_, pool := ledgertest.DB(t, pg)
	l, err := ledger.Open(ctx, pool, ledger.Options{
		Asset: "btc", Coin: "bitcoin", Network: "simnet", Confirmations: 3, MaxTrackedConfirmations: 6,
		ValidateAddress: func(a string) error { return coin.ValidateAddress("bitcoin", "simnet", a) },
		EventTargets:    []string{"app"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := wallettest.Backend(t, node, "")
	return &fixture{pool: pool, ledger: l, backend: b, intake: New(l, b, testr.New(t))}
}

// walletAddress is a new address of the wallet, which the ledger does not know.
func (f *fixture) walletAddress(t *testing.T) string {
	t.Helper()
	addr, err := f.backend.NewAddress(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func (f *fixture) receivingAddress(t *testing.T, account int64) string {
	t.Helper()
	addr := f.walletAddress(t)
	if _, err := f.ledger.AddReceivingAddress(context.Background(), account, addr, ""); err != nil {
		t.Fatal(err)
	}
	return addr
}

func (f *fixture) balance(t *testing.T, id int64) ledger.Amount {
	t.Helper()
	a, err := f.ledger.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

func (f *fixture) check(t *testing.T) {
	t.Helper()
	v, err := ledger.Check(context.Background(), f.pool)
	if err != nil || len(v) > 0 {
		t.Fatalf("ledger check: %v %v", v, err)
	}
}

func TestNotificationsAndCatchUp(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	if _, err := f.intake.CatchUp(ctx); err != nil { // start-up catch-up on an empty ledger
		t.Fatal(err)
	}
	alice, _ := f.ledger.CreateAccount(ctx, "alice")
	addr := f.receivingAddress(t, alice.ID)

	txid := node.MustPay(t, addr, 50_000_000)
	r, err := f.intake.Notify(ctx, txid)
	if err != nil || r.Booked != 1 || f.balance(t, alice.ID) != 0 {
		t.Fatalf("first notification: %+v %v", r, err)
	}
	for range 3 { // bitcoind calls walletnotify more than once; repeats change nothing
		if r, err := f.intake.Notify(ctx, txid); err != nil || r.Booked+r.Updated+r.Credited != 0 {
			t.Fatalf("repeated notification: %+v %v", r, err)
		}
	}
	if r, err := f.intake.Notify(ctx, strings.Repeat("ee", 32)); err != nil || r.Seen != 0 {
		t.Errorf("forged txid: %+v %v", r, err)
	}

	node.MustMine(t, 2)
	if r, err := f.intake.CatchUp(ctx); err != nil || r.Credited != 0 || f.balance(t, alice.ID) != 0 {
		t.Fatalf("2 confirmations: %+v %v", r, err)
	}
	node.MustMine(t, 1)
	if r, err := f.intake.CatchUp(ctx); err != nil || r.Credited != 1 || f.balance(t, alice.ID) != 50_000_000 {
		t.Fatalf("3 confirmations: %+v %v balance %d", r, err, f.balance(t, alice.ID))
	}

	// Sent while no notification arrived: the catch-up alone finds and credits it.
	missed := node.MustPay(t, addr, 7_000_000)
	node.MustMine(t, 3)
	r, err = f.intake.CatchUp(ctx)
	if err != nil || r.Booked != 1 || r.Credited != 1 || f.balance(t, alice.ID) != 57_000_000 {
		t.Fatalf("missed transaction %s: %+v %v", missed, r, err)
	}

	// Payments to addresses the ledger did not hand out are not deposits.
	stranger, err := node.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	strangerTx := node.MustPay(t, stranger.EncodeAddress(), 1_000_000)
	node.MustMine(t, 1)
	if _, err := f.intake.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM network_transactions WHERE txid = $1`, strangerTx).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("a payment to an unknown address left %d rows", rows)
	}

	// A second catch-up with no new blocks changes nothing; the cursor is at the tip.
	if r, err := f.intake.CatchUp(ctx); err != nil || r.Booked+r.Updated+r.Credited+r.Uncredited != 0 {
		t.Errorf("idle catch-up: %+v %v", r, err)
	}
	cur, ok, err := f.ledger.Cursor(ctx)
	tip, _ := f.backend.Tip(ctx)
	if err != nil || !ok || cur.Hash != tip.Hash {
		t.Errorf("cursor %+v, tip %+v", cur, tip)
	}
	// Confirmations are followed to the horizon (6), then the deposit is final.
	node.MustMine(t, 5)
	if _, err := f.intake.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	open, err := f.ledger.OpenDeposits(ctx)
	if err != nil || len(open) != 0 {
		t.Errorf("deposits still followed past the horizon: %+v %v", open, err)
	}
	f.check(t)

	// Every change became one event: incoming, 2, 3 (credited), then up to 6, for both deposits.
	var events int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events`).Scan(&events); err != nil || events < 6 {
		t.Errorf("%d events in the outbox", events)
	}
}

// TestForcedExternalSendToOwnAddress is the original library's scenario: a send to one of our own
// receiving addresses, forced out to the network, is broadcast, comes back as a deposit, and is
// credited to the receiving account once; the fee goes to the fee account.
func TestForcedExternalSendToOwnAddress(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	alice, _ := f.ledger.CreateAccount(ctx, "alice")
	bob, _ := f.ledger.CreateAccount(ctx, "bob")
	fund := f.receivingAddress(t, alice.ID)
	node.MustPay(t, fund, 200_000_000)
	node.MustMine(t, 3)
	if _, err := f.intake.CatchUp(ctx); err != nil || f.balance(t, alice.ID) != 200_000_000 {
		t.Fatalf("funding alice: %v, balance %d", err, f.balance(t, alice.ID))
	}
	bobAddr := f.receivingAddress(t, bob.ID)

	out, err := f.ledger.SendExternal(ctx, alice.ID, bobAddr, 60_000_000, "", true)
	if err != nil || out.Kind != "outgoing" {
		t.Fatalf("forced external send: %+v %v", out, err)
	}
	b := broadcast.New(f.ledger, f.backend, time.Minute, testr.New(t))
	r, err := b.Pass(ctx)
	if err != nil || !r.Sent {
		t.Fatalf("broadcast: %+v %v", r, err)
	}
	// The wallet sees the payment to bob's address as a receive: a deposit, booked and credited once.
	for range 3 {
		if _, err := f.intake.Notify(ctx, r.TxID); err != nil {
			t.Fatal(err)
		}
	}
	node.MustMine(t, 3)
	for range 2 {
		if _, err := f.intake.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.balance(t, bob.ID); got != 60_000_000 {
		t.Errorf("bob %d, want 60000000 credited once", got)
	}
	if got := f.balance(t, alice.ID); got != 140_000_000 {
		t.Errorf("alice %d, want 140000000", got)
	}
	fees, _ := f.ledger.Account(ctx, f.ledger.FeeAccountID())
	if fees.Balance >= 0 {
		t.Errorf("fee account %d, want negative (the network fee)", fees.Balance)
	}
	var deposits, broadcasts int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE kind = 'deposit'), count(*) FILTER (WHERE kind = 'broadcast') FROM network_transactions WHERE txid = $1`, r.TxID).Scan(&deposits, &broadcasts); err != nil || deposits != 1 || broadcasts != 1 {
		t.Errorf("txid %s is booked as %d deposits and %d broadcasts, want one of each (%v)", r.TxID, deposits, broadcasts, err)
	}
	if tx, _ := f.ledger.Transaction(ctx, out.ID); tx.State != "confirmed" {
		t.Errorf("the send is %s, want confirmed", tx.State)
	}
	f.check(t)
}

func TestRescanFindsWhatNotificationsMissed(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	if _, err := f.intake.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	alice, _ := f.ledger.CreateAccount(ctx, "alice")
	addr := f.receivingAddress(t, alice.ID)
	// Paid and confirmed while nothing told the helper: no notification, no catch-up.
	node.MustPay(t, addr, 30_000_000)
	node.MustMine(t, 3)
	if b := f.balance(t, alice.ID); b != 0 {
		t.Fatalf("balance before the rescan: %v", b)
	}

	var seen []RescanProgress
	r, err := f.intake.Rescan(ctx, 0, func(p RescanProgress) { seen = append(seen, p) })
	if err != nil {
		t.Fatal(err)
	}
	if r.TxFound != 1 || r.TxBooked != 1 || r.Credited != 1 || f.balance(t, alice.ID) != 30_000_000 {
		t.Fatalf("rescan: %+v, balance %v", r, f.balance(t, alice.ID))
	}
	// One payment is one batch (how the blocks are cut into batches: backend.TestScanInWindows).
	if len(seen) == 0 {
		t.Fatalf("no progress reported for %d blocks", r.Total)
	}
	for i, p := range seen {
		if p.Unit != "blocks" || p.Total != r.Tip.Height+1 || (i > 0 && p.Done <= seen[i-1].Done) {
			t.Fatalf("progress step %d: %+v (tip %d)", i, p, r.Tip.Height)
		}
	}
	if last := seen[len(seen)-1]; last.Done != last.Total {
		t.Fatalf("last progress %+v does not reach the total", last)
	}

	// Twice is the same as once.
	r, err = f.intake.Rescan(ctx, 0, nil)
	if err != nil || r.TxFound != 1 || r.TxBooked != 0 || r.Credited != 0 || f.balance(t, alice.ID) != 30_000_000 {
		t.Fatalf("second rescan: %+v %v, balance %v", r, err, f.balance(t, alice.ID))
	}
	// From a height above the deposit's block it is not read at all.
	tip, err := f.backend.Tip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := f.intake.Rescan(ctx, tip.Height, nil); err != nil || r.TxFound != 0 || r.Total != 1 {
		t.Fatalf("rescan of the tip only: %+v %v", r, err)
	}
	if _, err := f.intake.Rescan(ctx, tip.Height+10, nil); !errors.Is(err, backend.ErrRejected) || !strings.Contains(err.Error(), "above the tip") {
		t.Fatalf("rescan above the tip: %v", err)
	}
	f.check(t)
}

// brokenListing is the real wallet with its listsinceblock failing on every call, as btcwallet's
// does after some double spends; recentToo breaks the fallback listing as well.
type brokenListing struct {
	*bitcoind.Client
	recentToo bool
}

func (b brokenListing) Since(context.Context, string) ([]backend.Transaction, backend.Tip, error) {
	return nil, backend.Tip{}, fmt.Errorf("listsinceblock: %w: missing transaction %s for block 120 (code -4)", backend.ErrRejected, strings.Repeat("ab", 32))
}

func (b brokenListing) Recent(ctx context.Context, downTo int64) ([]backend.Transaction, backend.Tip, error) {
	if b.recentToo {
		return nil, backend.Tip{}, fmt.Errorf("listtransactions: %w: broken too", backend.ErrRejected)
	}
	return b.Client.Recent(ctx, downTo)
}

func TestABrokenListingDoesNotFreezeCredits(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	alice, _ := f.ledger.CreateAccount(ctx, "alice")
	addr := f.receivingAddress(t, alice.ID)

	// Only the fallback listing can find a payment nobody announced.
	in := New(f.ledger, brokenListing{Client: f.backend}, testr.New(t))
	missed := node.MustPay(t, addr, 40_000_000)
	node.MustMine(t, 3)
	r, err := in.CatchUp(ctx)
	if err != nil || r.Booked != 1 || r.Credited != 1 || f.balance(t, alice.ID) != 40_000_000 {
		t.Fatalf("catch-up through the fallback listing: %+v %v, balance %d (missed %s)", r, err, f.balance(t, alice.ID), missed)
	}

	// With no listing at all, a deposit the ledger already follows is still credited: the
	// re-check does not wait for a listing that succeeds, and the failure is reported.
	in = New(f.ledger, brokenListing{Client: f.backend, recentToo: true}, testr.New(t))
	announced := node.MustPay(t, addr, 5_000_000)
	if r, err := in.Notify(ctx, announced); err != nil || r.Booked != 1 {
		t.Fatalf("notification: %+v %v", r, err)
	}
	node.MustMine(t, 3)
	r, err = in.CatchUp(ctx)
	if err == nil || !strings.Contains(err.Error(), "missing transaction") || !strings.Contains(err.Error(), "broken too") {
		t.Fatalf("catch-up with no listing should say both listings failed: %v", err)
	}
	if r.Credited != 1 || f.balance(t, alice.ID) != 45_000_000 {
		t.Fatalf("re-check without a listing: %+v, balance %d", r, f.balance(t, alice.ID))
	}
	f.check(t)
}

// countingLookups is the real wallet, counting the transactions the intake looks up one by one.
type countingLookups struct {
	*bitcoind.Client
	looked map[string]int
}

func (c countingLookups) Transaction(ctx context.Context, txid string) (backend.Transaction, error) {
	c.looked[txid]++
	return c.Client.Transaction(ctx, txid)
}

// TestCatchUpDoesNotLookUpWhatItJustListedMined: the re-check that ends a catch-up skips the
// transactions the listing has just booked as mined (one paid call each on some backends), and
// still looks up those listed unmined and those the listing did not carry.
func TestCatchUpDoesNotLookUpWhatItJustListedMined(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	if _, err := f.intake.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	alice, _ := f.ledger.CreateAccount(ctx, "alice")
	addr := f.receivingAddress(t, alice.ID)
	c := countingLookups{Client: f.backend, looked: map[string]int{}}
	in := New(f.ledger, c, testr.New(t))

	announced := node.MustPay(t, addr, 1_000_000) // booked by its notification, then mined before the catch-up
	if r, err := in.Notify(ctx, announced); err != nil || r.Booked != 1 {
		t.Fatalf("notification: %+v %v", r, err)
	}
	mined := node.MustPay(t, addr, 2_000_000)
	node.MustMine(t, 1)
	unmined := node.MustPay(t, addr, 4_000_000)
	clear(c.looked)
	r, err := in.CatchUp(ctx)
	if err != nil || r.Booked != 2 || r.Updated != 1 {
		t.Fatalf("catch-up: %+v %v", r, err)
	}
	if c.looked[announced] != 0 || c.looked[mined] != 0 || c.looked[unmined] != 1 {
		t.Errorf("lookups announced %d, mined %d, unmined %d; want 0, 0, 1", c.looked[announced], c.looked[mined], c.looked[unmined])
	}

	// Two blocks on, the first two have three confirmations and are credited; the third, mined in
	// the first of those blocks, is credited one block later.
	node.MustMine(t, 2)
	clear(c.looked)
	r, err = in.CatchUp(ctx)
	if err != nil || r.Credited != 2 || f.balance(t, alice.ID) != 3_000_000 {
		t.Fatalf("3 confirmations: %+v %v, balance %d", r, err, f.balance(t, alice.ID))
	}
	// The listing from the cursor carried only the third; the first two, mined below the cursor,
	// are followed by lookups.
	if c.looked[announced] != 1 || c.looked[mined] != 1 || c.looked[unmined] != 0 {
		t.Errorf("lookups announced %d, mined %d, unmined %d; want 1, 1, 0", c.looked[announced], c.looked[mined], c.looked[unmined])
	}
	node.MustMine(t, 1)
	r, err = in.CatchUp(ctx)
	if err != nil || r.Credited != 1 || f.balance(t, alice.ID) != 7_000_000 {
		t.Fatalf("the third at 3 confirmations: %+v %v, balance %d", r, err, f.balance(t, alice.ID))
	}
	f.check(t)
}

// TestAuditFindsWhatIsWrongOnAnyPage: the chain audit, walking the history one network
// transaction per page, checks every credited deposit and every broadcast: on a ledger of four
// credited deposits (one paying two of our addresses at once) with one booked amount altered on
// the last page, and two broadcasts of which the backend knows one, it names exactly the altered
// output and the unknown broadcast, as it does reading everything at once.
func TestAuditFindsWhatIsWrongOnAnyPage(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	if _, err := f.intake.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	alice, err := f.ledger.CreateAccount(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var txids []string
	for i := range 3 {
		txids = append(txids, node.MustPay(t, f.receivingAddress(t, alice.ID), int64(1_000_000*(i+1))))
	}
	both, err := f.backend.SendMany(ctx, map[string]ledger.Amount{
		f.receivingAddress(t, alice.ID): 4_000_000, f.receivingAddress(t, alice.ID): 5_000_000})
	if err != nil {
		t.Fatal(err)
	}
	txids = append(txids, both)
	node.MustMine(t, 3)
	if r, err := f.intake.CatchUp(ctx); err != nil || r.Credited != 5 {
		t.Fatalf("catch-up: %+v %v", r, err)
	}
	var asset int64
	if err := f.pool.QueryRow(ctx, `SELECT asset_id FROM network_transactions WHERE txid = $1`, txids[0]).Scan(&asset); err != nil {
		t.Fatal(err)
	}
	ghost := strings.Repeat("ab", 32)
	if _, err := f.pool.Exec(ctx, `UPDATE transactions SET amount = amount + 1 WHERE network_transaction_id =
			(SELECT id FROM network_transactions WHERE txid = $1 AND kind = 'deposit') AND amount = 5000000`, both); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `INSERT INTO network_transactions (asset_id, kind, txid, confirmations)
			VALUES ($1, 'broadcast', $2, 6), ($1, 'broadcast', $3, 6)`, asset, txids[1], ghost); err != nil {
		t.Fatal(err)
	}
	for _, pageSize := range []int{1, 0} {
		v, err := f.intake.audit(ctx, pageSize)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 2 || !strings.Contains(v[0].Detail, both) || !strings.Contains(v[0].Detail, "booked as 5000001") ||
			!strings.Contains(v[1].Detail, "broadcast "+ghost+" is not known") {
			t.Errorf("pages of %d: %+v", pageSize, v)
		}
	}
}

// TestMinedNowHoldsOnlyWhatTheRecheckCouldList: what a pass remembers to leave out of its
// re-check is the transactions paying us mined below the tracking horizon, the only ones the
// ledger can still have open after booking them; a rescan of years of history remembers the last
// few blocks' deposits, not every one.
func TestMinedNowHoldsOnlyWhatTheRecheckCouldList(t *testing.T) {
	txs := []backend.Transaction{
		{TxID: "mined", Confirmations: 1},
		{TxID: "below the horizon", Confirmations: 5},
		{TxID: "at the horizon", Confirmations: 6},
		{TxID: "deep", Confirmations: 40_000},
		{TxID: "unmined", Confirmations: 0},
		{TxID: "double-spent", Confirmations: -1, Conflicted: true},
		{TxID: "not ours", Confirmations: 3},
	}
	mined := minedNow{}
	mined.add(txs, []bool{true, true, true, true, true, true, false}, 6)
	if got := strings.Join(slices.Sorted(maps.Keys(mined)), ", "); got != "below the horizon, mined" {
		t.Errorf("remembered %s, want only the two mined below the horizon", got)
	}
}

// TestFirstCatchUpWithNoAddressStartsAtTheTip: a new ledger with no receiving address starts its
// cursor at the tip without listing the wallet's history, of which it could book nothing, and
// books what is paid to an address it hands out afterwards. A new ledger that already has an
// address (a restored database) reads the whole history and books the payment made before.
func TestFirstCatchUpWithNoAddressStartsAtTheTip(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	counter, url := btctest.CountingProxy(t, node.WalletURL())
	counted := New(f.ledger, wallettest.Backend(t, node, url), testr.New(t))
	node.MustPay(t, f.walletAddress(t), 1_000_000) // history the ledger has no part in
	node.MustMine(t, 1)
	if r, err := counted.CatchUp(ctx); err != nil || r.Seen != 0 {
		t.Fatalf("first catch-up: %+v %v", r, err)
	}
	if n := counter.Count("listsinceblock"); n != 0 {
		t.Errorf("the first catch-up of a ledger with no address listed the history %d times", n)
	}
	cur, ok, err := f.ledger.Cursor(ctx)
	tip, _ := f.backend.Tip(ctx)
	if err != nil || !ok || cur != (ledger.Cursor{Height: tip.Height, Hash: tip.Hash}) {
		t.Fatalf("cursor %+v %v %v, want the tip %+v", cur, ok, err, tip)
	}
	alice, err := f.ledger.CreateAccount(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	node.MustPay(t, f.receivingAddress(t, alice.ID), 2_000_000)
	node.MustMine(t, 3)
	if r, err := counted.CatchUp(ctx); err != nil || r.Booked != 1 || r.Credited != 1 || f.balance(t, alice.ID) != 2_000_000 {
		t.Fatalf("catch-up after the first address was paid: %+v %v, balance %d", r, err, f.balance(t, alice.ID))
	}

	restored := setup(t)
	bob, err := restored.ledger.CreateAccount(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	node.MustPay(t, restored.receivingAddress(t, bob.ID), 3_000_000)
	node.MustMine(t, 3)
	if r, err := restored.intake.CatchUp(ctx); err != nil || r.Credited != 1 || restored.balance(t, bob.ID) != 3_000_000 {
		t.Fatalf("first catch-up of a ledger with an address: %+v %v, balance %d", r, err, restored.balance(t, bob.ID))
	}
}

// TestIdleCatchUpWritesNothing: a catch-up that finds the tip where the cursor is leaves the
// cursor's row as it was (the same row version, not the same values written again), and one
// after a new block moves it to that block.
func TestIdleCatchUpWritesNothing(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	version := func() string {
		t.Helper()
		var xmin string
		if err := f.pool.QueryRow(ctx, `SELECT xmin::text FROM cursors`).Scan(&xmin); err != nil {
			t.Fatal(err)
		}
		return xmin
	}
	if _, err := f.intake.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	first := version()
	for i := range 3 {
		if _, err := f.intake.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if v := version(); v != first {
			t.Fatalf("idle catch-up %d rewrote the cursor (row version %s, was %s)", i, v, first)
		}
	}
	node.MustMine(t, 1)
	if _, err := f.intake.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	cur, ok, err := f.ledger.Cursor(ctx)
	tip, _ := f.backend.Tip(ctx)
	if err != nil || !ok || cur != (ledger.Cursor{Height: tip.Height, Hash: tip.Hash}) {
		t.Fatalf("cursor %+v %v %v after a new block, want the tip %+v", cur, ok, err, tip)
	}
	if version() == first {
		t.Fatal("the cursor's row was not written when the tip moved")
	}
}
