package bench

import (
	"context"
	"crypto/rand"
	"os"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2/base58"
	"github.com/go-logr/logr"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/bitcoind"
	"github.com/cryptoassets/cryptoassets-operator/internal/broadcast"
	"github.com/cryptoassets/cryptoassets-operator/internal/intake"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/wallettest"
)

func startNode(b *testing.B) (*btctest.Node, *bitcoind.Client) {
	n, err := btctest.Start()
	if err != nil {
		if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
			b.Fatal(err)
		}
		b.Skip(err)
	}
	b.Cleanup(n.Stop)
	return n, wallettest.Backend(b, n, "")
}

// externalAddress is a valid simnet P2PKH address nobody holds. Addresses starting "Sb1" are
// skipped: btcwallet (btcutil.DecodeAddress) takes them for bech32 and refuses to pay them, a
// simnet-only collision (no other network's base58 addresses can start with its bech32 prefix).
func externalAddress(b *testing.B) string {
	h := make([]byte, 20)
	for {
		if _, err := rand.Read(h); err != nil {
			b.Fatal(err)
		}
		if a := base58.CheckEncode(h, 0x3f); !btctest.Sb1(a) {
			return a
		}
	}
}

func timeIt(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// BenchmarkBroadcast queues BENCH_SENDS (default 5000) sends to distinct addresses and measures
// the time until the broadcaster has sent them all (in transactions of at most 1000 outputs),
// next to the bare sendmany calls for the same number of outputs in the same run.
func BenchmarkBroadcast(b *testing.B) {
	n := envInt(b, "BENCH_SENDS", 5000)
	srv := startPG(b)
	node, backend := startNode(b)
	ctx := context.Background()
	l, _ := openLedger(b, srv)
	acct, err := l.CreateAccount(ctx, "payouts")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := l.AddReceivingAddress(ctx, acct.ID, "funding", ""); err != nil {
		b.Fatal(err)
	}
	if _, err := l.RecordDeposit(ctx, ledger.Observation{TxID: "ff", Address: "funding", Amount: 100 * 1e8, Confirmations: 1}); err != nil {
		b.Fatal(err)
	}

	// Bare: the same number of outputs, sent straight to the wallet in batches of 1000.
	bare, err := timeIt(func() error {
		for left := n; left > 0; left -= ledger.MaxBroadcastSends {
			outputs := map[string]ledger.Amount{}
			for range min(left, ledger.MaxBroadcastSends) {
				outputs[externalAddress(b)] = 10_000
			}
			_, err := backend.SendMany(ctx, outputs)
			for attempt := 1; btctest.IsSb1Quirk(err) && attempt < 5; attempt++ {
				_, err = backend.SendMany(ctx, outputs) // a refused change address paid nothing
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("bare sendmany: %v", err)
	}
	if _, err := node.Mine(1); err != nil { // confirm the change so the next round can spend it
		b.Fatal(err)
	}

	for range n {
		if _, err := l.SendExternal(ctx, acct.ID, externalAddress(b), 10_000, "", false); err != nil {
			b.Fatal(err)
		}
	}
	bc := broadcast.New(l, backend, time.Minute, logr.Discard())
	var r broadcast.Result
	took, err := timeIt(func() (err error) { r, err = bc.Run(ctx); return err })
	if err != nil || r.Sends != n {
		b.Fatalf("broadcast: %+v %v", r, err)
	}
	b.ReportMetric(took.Seconds(), "broadcast-s")
	b.ReportMetric(bare.Seconds(), "bare-sendmany-s")
	b.ReportMetric(took.Seconds()/bare.Seconds(), "ratio")
	b.Logf("%d queued sends broadcast in %s; bare sendmany of as many outputs %s; ratio %.2f",
		n, took.Round(time.Millisecond), bare.Round(time.Millisecond), took.Seconds()/bare.Seconds())
}

// BenchmarkIntake pays BENCH_DEPOSITS (default 1000) helper addresses in a few sendmany
// transactions and measures the catch-up that books and credits them all, next to the bare
// backend calls that catch-up has to make (listsinceblock, gettransaction per transaction).
func BenchmarkIntake(b *testing.B) {
	n := envInt(b, "BENCH_DEPOSITS", 1000)
	srv := startPG(b)
	node, backend := startNode(b)
	ctx := context.Background()
	l, _ := openLedger(b, srv)
	in := intake.New(l, backend, logr.Discard())
	if _, err := in.CatchUp(ctx); err != nil { // the cursor: where the benchmark's deposits start
		b.Fatal(err)
	}
	cursor, _, err := l.Cursor(ctx)
	if err != nil {
		b.Fatal(err)
	}
	acct, err := l.CreateAccount(ctx, "shop")
	if err != nil {
		b.Fatal(err)
	}
	var batches []map[string]ledger.Amount
	for i := range n {
		addr, err := backend.NewAddress(ctx, "")
		for err == nil && btctest.Sb1(addr) {
			// btcwallet cannot pay its own simnet addresses that start "Sb1"; draw another.
			addr, err = backend.NewAddress(ctx, "")
		}
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.AddReceivingAddress(ctx, acct.ID, addr, ""); err != nil {
			b.Fatal(err)
		}
		if i%250 == 0 {
			batches = append(batches, map[string]ledger.Amount{})
		}
		batches[len(batches)-1][addr] = 100_000
	}
	var txids []string
	for _, outputs := range batches {
		txid, err := backend.SendMany(ctx, outputs)
		for attempt := 1; btctest.IsSb1Quirk(err) && attempt < 5; attempt++ {
			txid, err = backend.SendMany(ctx, outputs) // a refused change address paid nothing
		}
		if err != nil {
			b.Fatal(err)
		}
		txids = append(txids, txid)
	}
	if _, err := node.Mine(1); err != nil { // one confirmation: booked and credited in one pass
		b.Fatal(err)
	}

	bare, err := timeIt(func() error {
		if _, _, err := backend.Since(ctx, cursor.Hash); err != nil {
			return err
		}
		for _, id := range txids {
			if _, err := backend.Transaction(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var r intake.Result
	took, err := timeIt(func() (err error) { r, err = in.CatchUp(ctx); return err })
	if err != nil || r.Booked != n || r.Credited != n {
		b.Fatalf("catch-up: %+v %v", r, err)
	}
	a, _ := l.Account(ctx, acct.ID)
	if a.Balance != ledger.Amount(n)*100_000 {
		b.Fatalf("account holds %d, want %d", a.Balance, n*100_000)
	}
	b.ReportMetric(float64(n)/took.Seconds(), "deposits/s")
	b.ReportMetric(took.Seconds(), "catchup-s")
	b.ReportMetric(bare.Seconds(), "bare-rpc-s")
	b.ReportMetric(took.Seconds()/bare.Seconds(), "ratio")
	b.Logf("%d deposits in %d transactions booked and credited in %s (%.0f/s); the bare backend calls take %s; ratio %.2f",
		n, len(txids), took.Round(time.Millisecond), float64(n)/took.Seconds(), bare.Round(time.Millisecond), took.Seconds()/bare.Seconds())
}

// BenchmarkRescan builds a simnet chain of at least BENCH_RESCAN_BLOCKS (default 2000) blocks
// holding BENCH_RESCAN_TXS (default 500) wallet transactions to the asset's addresses, spread
// over it, none of them notified. It then rescans from height 0 into the ledger, and again (which
// must book nothing), next to the bare backend calls a rescan makes (tip, listsinceblock) in the
// same run.
func BenchmarkRescan(b *testing.B) {
	blocks := int64(envInt(b, "BENCH_RESCAN_BLOCKS", 2000))
	txs := envInt(b, "BENCH_RESCAN_TXS", 500)
	srv := startPG(b)
	node, be := startNode(b)
	ctx := context.Background()
	l, _ := openLedger(b, srv)
	in := intake.New(l, be, logr.Discard())
	acct, err := l.CreateAccount(ctx, "shop")
	if err != nil {
		b.Fatal(err)
	}
	tip, err := be.Tip(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// Spread the payments over the chain: a few blocks after each.
	every := max(1, uint32((blocks-tip.Height)/int64(txs)))
	for range txs {
		addr, err := be.NewAddress(ctx, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.AddReceivingAddress(ctx, acct.ID, addr, ""); err != nil {
			b.Fatal(err)
		}
		if _, err := node.Pay(addr, 100_000); err != nil {
			b.Fatal(err)
		}
		if _, err := node.Mine(every); err != nil {
			b.Fatal(err)
		}
	}
	for tip.Height < blocks {
		if _, err := node.Mine(uint32(min(500, blocks-tip.Height+1))); err != nil {
			b.Fatal(err)
		}
		if tip, err = be.Tip(ctx); err != nil {
			b.Fatal(err)
		}
	}

	walletTxs := 0
	bare, err := timeIt(func() error {
		_, err := be.Scan(ctx, 0, func(batch backend.ScanBatch) error { walletTxs += len(batch.Transactions); return nil })
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	var first, second intake.RescanResult
	took, err := timeIt(func() (err error) { first, err = in.Rescan(ctx, 0, nil); return err })
	if err != nil || first.TxFound != txs || first.TxBooked != txs || first.Credited != txs {
		b.Fatalf("first rescan: %+v %v", first, err)
	}
	again, err := timeIt(func() (err error) { second, err = in.Rescan(ctx, 0, nil); return err })
	if err != nil || second.TxFound != txs || second.TxBooked != 0 || second.Credited != 0 {
		b.Fatalf("second rescan: %+v %v", second, err)
	}
	a, _ := l.Account(ctx, acct.ID)
	if a.Balance != ledger.Amount(txs)*100_000 {
		b.Fatalf("account holds %d, want %d", a.Balance, txs*100_000)
	}
	scanned := float64(first.Total)
	b.ReportMetric(scanned/took.Seconds(), "blocks/s")
	b.ReportMetric(scanned/again.Seconds(), "blocks/s-again")
	b.ReportMetric(bare.Seconds(), "bare-rpc-s")
	b.ReportMetric(took.Seconds()/bare.Seconds(), "ratio")
	b.ReportMetric(again.Seconds()/bare.Seconds(), "ratio-again")
	b.Logf("rescan of %d blocks (%d wallet transactions, %d paying the asset): %s (%.0f blocks/s), booking all %d; again: %s (%.0f blocks/s), booking none; the bare backend calls take %s; ratios %.2f and %.2f",
		first.Total, walletTxs, first.TxFound, took.Round(time.Millisecond), scanned/took.Seconds(), first.TxBooked,
		again.Round(time.Millisecond), scanned/again.Seconds(), bare.Round(time.Millisecond), took.Seconds()/bare.Seconds(), again.Seconds()/bare.Seconds())
}
