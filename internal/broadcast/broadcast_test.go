package broadcast

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/bitcoind"
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
	alice   int64
}

func newBackend(t *testing.T, url string) *bitcoind.Client {
	t.Helper()
	return wallettest.Backend(t, node, url)
}

// setup opens a ledger whose account alice holds `funds`, booked from a synthetic confirmed
// deposit: the ledger's balance is what it pays from; the node's wallet has coins to spare.
func setup(t *testing.T, funds ledger.Amount) *fixture {
	t.Helper()
	ctx := context.Background()
	_, pool := ledgertest.DB(t, pg)
	l, err := ledger.Open(ctx, pool, ledger.Options{
		Asset: "btc", Coin: "bitcoin", Network: "simnet", Confirmations: 2, MaxTrackedConfirmations: 4,
		ValidateAddress: func(a string) error { return coin.ValidateAddress("bitcoin", "simnet", a) },
		EventTargets:    []string{"app"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{pool: pool, ledger: l, backend: newBackend(t, node.WalletURL())}
	alice, err := l.CreateAccount(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	f.alice = alice.ID
	addr := f.address(t)
	if _, err := l.AddReceivingAddress(ctx, alice.ID, addr, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RecordDeposit(ctx, ledger.Observation{TxID: fmt.Sprintf("%064x", time.Now().UnixNano()), Address: addr, Amount: funds, Confirmations: 4}); err != nil {
		t.Fatal(err)
	}
	return f
}

// address is a fresh address of the node's wallet: "external" to the ledger.
func (f *fixture) address(t *testing.T) string {
	t.Helper()
	a, err := f.backend.NewAddress(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *fixture) send(t *testing.T, to string, amount ledger.Amount) ledger.Transaction {
	t.Helper()
	tx, err := f.ledger.SendExternal(context.Background(), f.alice, to, amount, "", true)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func (f *fixture) check(t *testing.T) {
	t.Helper()
	if v, err := ledger.Check(context.Background(), f.pool); err != nil || len(v) > 0 {
		t.Fatalf("ledger check: %v %v", v, err)
	}
}

// walletSends counts the wallet's sends paying exactly outputs: the wallet's own truth about how
// often a payment went out.
func (f *fixture) walletSends(t *testing.T, outputs map[string]ledger.Amount) []string {
	t.Helper()
	sends, err := f.backend.RecentSends(context.Background(), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range sends {
		if pays(s.Outputs, outputs) {
			ids = append(ids, s.TxID)
		}
	}
	return ids
}

func TestBroadcastBatchesPendingSends(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 10*ledger.Amount(1e8))
	b := New(f.ledger, f.backend, time.Minute, testr.New(t))
	if r, err := b.Pass(ctx); err != nil || r.Sent {
		t.Fatalf("nothing pending: %+v %v", r, err)
	}
	x, y := f.address(t), f.address(t)
	sends := []ledger.Transaction{f.send(t, x, 100_000_000), f.send(t, x, 50_000_000), f.send(t, y, 200_000_000)}

	r, err := b.Pass(ctx)
	if err != nil || !r.Sent || r.Sends != 3 {
		t.Fatalf("broadcast: %+v %v", r, err)
	}
	want := map[string]ledger.Amount{x: 150_000_000, y: 200_000_000}
	if got := f.walletSends(t, want); len(got) != 1 || got[0] != r.TxID {
		t.Fatalf("wallet sends paying %v: %v, want exactly [%s]", want, got, r.TxID)
	}
	for _, s := range sends {
		tx, err := f.ledger.Transaction(ctx, s.ID)
		if err != nil || tx.State != "broadcasted" || tx.TxID != r.TxID {
			t.Errorf("send %d: %+v %v", s.ID, tx, err)
		}
	}
	fees, err := f.ledger.Account(ctx, f.ledger.FeeAccountID())
	if err != nil || fees.Balance >= 0 {
		t.Errorf("fee not booked: %+v %v", fees, err)
	}
	if r, err := b.Pass(ctx); err != nil || r.Sent || r.Reconciled {
		t.Errorf("second pass: %+v %v", r, err)
	}
	// Confirmations are followed; at the threshold (2) the sends are confirmed.
	node.MustMine(t, 2)
	if _, err := b.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if tx, _ := f.ledger.Transaction(ctx, sends[0].ID); tx.State != "confirmed" || tx.Confirmations != 2 {
		t.Errorf("after 2 blocks: %+v", tx)
	}
	if a, _ := f.ledger.Account(ctx, f.alice); a.Balance != 10*1e8-350_000_000 {
		t.Errorf("alice %d", a.Balance)
	}
	f.check(t)
}

// Past the confirmation that confirms them, each new block up to the tracking horizon is
// reported for every send, and the sends' rows are not written again: their state did not change.
func TestConfirmationsAfterTheThresholdAreReportedWithoutRewritingTheSends(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 10*ledger.Amount(1e8))
	b := New(f.ledger, f.backend, time.Minute, testr.New(t))
	sends := []ledger.Transaction{f.send(t, f.address(t), 100_000), f.send(t, f.address(t), 200_000)}
	if r, err := b.Pass(ctx); err != nil || r.Sends != 2 {
		t.Fatalf("broadcast: %+v %v", r, err)
	}
	// reported lists, per send, the state and confirmations of its events in order; versions
	// the row versions of the sends (xmin changes whenever a row is written).
	reported := func() map[int64][]string {
		rows, err := f.pool.Query(ctx, `SELECT (payload->>'transaction_id')::bigint, payload->>'state' || ' ' || (payload->>'confirmations')
			FROM outbox_events WHERE name = 'txupdate' AND payload->>'kind' = 'outgoing' ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[int64][]string{}
		for rows.Next() {
			var id int64
			var ev string
			if err := rows.Scan(&id, &ev); err != nil {
				t.Fatal(err)
			}
			out[id] = append(out[id], ev)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	versions := func() string {
		var v string
		if err := f.pool.QueryRow(ctx, `SELECT string_agg(xmin::text, ',' ORDER BY id) FROM transactions WHERE id = ANY($1)`,
			[]int64{sends[0].ID, sends[1].ID}).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for blocks := 1; blocks <= 2; blocks++ { // 2 confirm (setup's threshold)
		node.MustMine(t, 1)
		if _, err := b.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	confirmed := versions()
	for blocks := 3; blocks <= 6; blocks++ { // followed to 4 (setup's horizon), then no more
		node.MustMine(t, 1)
		if _, err := b.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"broadcasted 0", "broadcasted 1", "confirmed 2", "confirmed 3", "confirmed 4"}
	for id, got := range reported() {
		if !slices.Equal(got, want) {
			t.Errorf("send %d reported %q, want %q", id, got, want)
		}
	}
	if v := versions(); v != confirmed {
		t.Errorf("the sends were written again after they were confirmed: row versions %s, then %s", confirmed, v)
	}
	for _, s := range sends {
		if tx, err := f.ledger.Transaction(ctx, s.ID); err != nil || tx.State != "confirmed" || tx.Confirmations != 4 {
			t.Errorf("send %d: %+v %v", s.ID, tx, err)
		}
	}
	f.check(t)
}

// broadcastedEvents reads the txupdate events that report sends as broadcasted: by send, the
// txids they name, and the txids in event order with repeats in a row dropped (the order the
// broadcasts were reported in).
func (f *fixture) broadcastedEvents(t *testing.T) (bySend map[int64][]string, inOrder []string) {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT (payload->>'transaction_id')::bigint, payload->>'txid' FROM outbox_events
		WHERE name = 'txupdate' AND payload->>'kind' = 'outgoing' AND payload->>'state' = 'broadcasted' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	bySend = map[int64][]string{}
	for rows.Next() {
		var id int64
		var txid string
		if err := rows.Scan(&id, &txid); err != nil {
			t.Fatal(err)
		}
		bySend[id] = append(bySend[id], txid)
		if len(inOrder) == 0 || inOrder[len(inOrder)-1] != txid {
			inOrder = append(inOrder, txid)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return bySend, inOrder
}

// A queue longer than one broadcast goes out in several. Each broadcast's sends are recorded
// while the next one is paid: every send still ends broadcasted once, with one event naming its
// transaction, the events in the order the broadcasts were paid, and one fee per broadcast.
func TestALongQueueGoesOutInSeveralBroadcasts(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 10*ledger.Amount(1e8))
	payees := make([]string, 40)
	for i := range payees {
		payees[i] = f.address(t)
	}
	n := 2*ledger.MaxBroadcastSends + 7
	sends := make([]ledger.Transaction, n)
	for i := range sends {
		sends[i] = f.send(t, payees[i%len(payees)], 10_000)
	}

	r, err := New(f.ledger, f.backend, time.Minute, testr.New(t)).Run(ctx)
	if err != nil || !r.Sent || r.Sends != n {
		t.Fatalf("run: %+v %v", r, err)
	}
	events, seen := f.broadcastedEvents(t)
	txids := map[string]int{}
	var order []string
	for _, s := range sends {
		tx, err := f.ledger.Transaction(ctx, s.ID)
		if err != nil || tx.State != "broadcasted" || tx.TxID == "" {
			t.Fatalf("send %d: %+v %v", s.ID, tx, err)
		}
		if got := events[s.ID]; len(got) != 1 || got[0] != tx.TxID {
			t.Fatalf("send %d paid by %s: broadcasted events naming %v, want one", s.ID, tx.TxID, got)
		}
		if txids[tx.TxID]++; txids[tx.TxID] == 1 {
			order = append(order, tx.TxID)
		}
	}
	if len(txids) != 3 || txids[order[0]] != ledger.MaxBroadcastSends || txids[order[2]] != 7 {
		t.Fatalf("sends per network transaction: %v, want %d, %d and 7", txids, ledger.MaxBroadcastSends, ledger.MaxBroadcastSends)
	}
	// Events in the order paid: every event of the first broadcast before any of the second.
	if !slices.Equal(seen, order) {
		t.Fatalf("broadcasted events ran through %v, want %v", seen, order)
	}
	var fees int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE kind = 'network_fee'`).Scan(&fees); err != nil || fees != 3 {
		t.Errorf("%d fees booked (%v), want 3", fees, err)
	}
	f.check(t)
}

// A helper that stops after the payment is on record (MarkPaid) and before its sends are: the
// next run records them, once, and pays nothing again.
func TestPaidBroadcastIsRecordedAfterARestart(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 5*ledger.Amount(1e8))
	x := f.address(t)
	s := f.send(t, x, 77_000_000)
	bc, err := f.ledger.OpenBroadcast(ctx)
	if err != nil || bc == nil {
		t.Fatal(bc, err)
	}
	txid, err := f.backend.SendMany(ctx, bc.Outputs)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ledger.MarkPaid(ctx, bc.ID, txid); err != nil {
		t.Fatal(err)
	}
	if tx, _ := f.ledger.Transaction(ctx, s.ID); tx.State != "broadcasting" {
		t.Fatalf("paid, not yet recorded: the send is %s, want broadcasting", tx.State)
	}
	if _, err := f.ledger.CancelSend(ctx, s.ID); !errors.Is(err, ledger.ErrNotCancellable) {
		t.Fatalf("cancelling a paid send: %v", err)
	}

	r, err := New(f.ledger, f.backend, time.Hour, testr.New(t)).Run(ctx)
	if err != nil || r.Sent || r.Reconciled {
		t.Fatalf("run after the restart: %+v %v", r, err)
	}
	if got := f.walletSends(t, map[string]ledger.Amount{x: 77_000_000}); len(got) != 1 || got[0] != txid {
		t.Fatalf("the wallet paid %v (want only %s)", got, txid)
	}
	if tx, _ := f.ledger.Transaction(ctx, s.ID); tx.State != "broadcasted" || tx.TxID != txid {
		t.Errorf("send after the run: %+v", tx)
	}
	if got, _ := f.broadcastedEvents(t); len(got[s.ID]) != 1 || got[s.ID][0] != txid {
		t.Errorf("broadcasted events of the send: %v, want one naming %s", got[s.ID], txid)
	}
	if left, err := f.ledger.UnsettledBroadcasts(ctx); err != nil || len(left) != 0 {
		t.Errorf("still to record: %v %v", left, err)
	}
	fees, err := f.ledger.Account(ctx, f.ledger.FeeAccountID())
	if err != nil || fees.Balance >= 0 {
		t.Errorf("fee not booked: %+v %v", fees, err)
	}
	// Recording again changes nothing.
	if err := f.ledger.SettleBroadcast(ctx, bc.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.broadcastedEvents(t); len(got[s.ID]) != 1 {
		t.Errorf("after a second record: %d events", len(got[s.ID]))
	}
	f.check(t)
}

func TestCrashBetweenSendAndRecordIsReconciled(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 5*ledger.Amount(1e8))
	x := f.address(t)
	s := f.send(t, x, 123_456_789)

	crashing := New(f.ledger, f.backend, time.Hour, testr.New(t))
	errKilled := errors.New("killed between the send and its record")
	crashing.afterSend = func(string) error { return errKilled }
	if _, err := crashing.Pass(ctx); !errors.Is(err, errKilled) {
		t.Fatalf("crash pass: %v", err)
	}
	if tx, _ := f.ledger.Transaction(ctx, s.ID); tx.State != "broadcasting" {
		t.Fatalf("after the crash the send is %s, want broadcasting", tx.State)
	}

	// The restarted broadcaster finds the payment in the wallet instead of paying again, even
	// with a grace period that would otherwise make it wait.
	restarted := New(f.ledger, f.backend, time.Hour, testr.New(t))
	r, err := restarted.Pass(ctx)
	if err != nil || !r.Reconciled || r.Sent {
		t.Fatalf("recovery: %+v %v", r, err)
	}
	want := map[string]ledger.Amount{x: 123_456_789}
	if got := f.walletSends(t, want); len(got) != 1 || got[0] != r.TxID {
		t.Fatalf("the wallet paid %v %d times (%v), want once", want, len(got), got)
	}
	if tx, _ := f.ledger.Transaction(ctx, s.ID); tx.State != "broadcasted" || tx.TxID != r.TxID {
		t.Errorf("send after recovery: %+v", tx)
	}
	f.check(t)
}

// TestRecoveryDoesNotTakeAnEarlierPaymentForItsOwn: a send paying exactly what an earlier,
// recorded broadcast paid is recovered as the wallet's new payment after a crash, not matched to
// the earlier one (the ledger names the wallet's recent sends it already knows).
func TestRecoveryDoesNotTakeAnEarlierPaymentForItsOwn(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 5*ledger.Amount(1e8))
	x := f.address(t)
	first := f.send(t, x, 100_000_000)
	earlier, err := New(f.ledger, f.backend, time.Hour, testr.New(t)).Pass(ctx)
	if err != nil || !earlier.Sent {
		t.Fatalf("first broadcast: %+v %v", earlier, err)
	}

	second := f.send(t, x, 100_000_000)
	crashing := New(f.ledger, f.backend, time.Hour, testr.New(t))
	errKilled := errors.New("killed between the send and its record")
	crashing.afterSend = func(string) error { return errKilled }
	if _, err := crashing.Pass(ctx); !errors.Is(err, errKilled) {
		t.Fatalf("crash pass: %v", err)
	}
	r, err := New(f.ledger, f.backend, time.Hour, testr.New(t)).Pass(ctx)
	if err != nil || !r.Reconciled || r.Sent || r.TxID == earlier.TxID {
		t.Fatalf("recovery: %+v %v (the earlier payment is %s)", r, err, earlier.TxID)
	}
	if got := f.walletSends(t, map[string]ledger.Amount{x: 100_000_000}); len(got) != 2 {
		t.Fatalf("the wallet paid %s 1 BTC %d times (%v), want twice: once per send", x, len(got), got)
	}
	for _, c := range []struct {
		id   int64
		txid string
	}{{first.ID, earlier.TxID}, {second.ID, r.TxID}} {
		if tx, _ := f.ledger.Transaction(ctx, c.id); tx.State != "broadcasted" || tx.TxID != c.txid {
			t.Errorf("send %d: %s in %s, want broadcasted in %s", c.id, tx.State, tx.TxID, c.txid)
		}
	}
	f.check(t)
}

func TestUnansweredSendWaitsThenSendsOnce(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 5*ledger.Amount(1e8))
	x := f.address(t)
	s := f.send(t, x, 77_000_000)

	down := New(f.ledger, newBackend(t, "http://127.0.0.1:1"), time.Hour, testr.New(t))
	if _, err := down.Pass(ctx); !errors.Is(err, backend.ErrUnreachable) {
		t.Fatalf("backend down: %v", err)
	}
	if tx, _ := f.ledger.Transaction(ctx, s.ID); tx.State != "broadcasting" {
		t.Fatalf("send is %s while the broadcast is unresolved", tx.State)
	}
	// Back up, within the grace period: it waits rather than risk paying twice.
	patient := New(f.ledger, f.backend, time.Hour, testr.New(t))
	if r, err := patient.Pass(ctx); err != nil || !r.Waiting || r.Sent {
		t.Fatalf("within grace: %+v %v", r, err)
	}
	// The wait is visible on the send, not a silent broadcasting.
	if tx, _ := f.ledger.Transaction(ctx, s.ID); tx.State != "broadcasting" || !strings.Contains(tx.Note, "no record of it yet") {
		t.Fatalf("waiting send: state %s, note %q", tx.State, tx.Note)
	}
	// Past the grace period with no such send in the wallet, it pays, once.
	late := New(f.ledger, f.backend, time.Hour, testr.New(t))
	late.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	r, err := late.Pass(ctx)
	if err != nil || !r.Sent {
		t.Fatalf("after grace: %+v %v", r, err)
	}
	if got := f.walletSends(t, map[string]ledger.Amount{x: 77_000_000}); len(got) != 1 {
		t.Fatalf("paid %d times", len(got))
	}
	f.check(t)
}

func TestRefusedBroadcastReturnsSendsToPending(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 100_000*ledger.Amount(1e8)) // more than the node's wallet holds
	s := f.send(t, f.address(t), 50_000*ledger.Amount(1e8))
	b := New(f.ledger, f.backend, time.Minute, testr.New(t))
	if _, err := b.Pass(ctx); !errors.Is(err, backend.ErrInsufficientFunds) {
		t.Fatalf("want insufficient funds, got %v", err)
	}
	if tx, _ := f.ledger.Transaction(ctx, s.ID); tx.State != "pending" {
		t.Errorf("refused send is %s, want pending (retried next period)", tx.State)
	}
	if a, _ := f.ledger.Account(ctx, f.alice); a.Balance != 50_000*1e8 {
		t.Errorf("the reservation was released: alice %d", a.Balance)
	}
	f.check(t)
}

// A broadcast interrupted before the backend was asked to pay it (a kill between opening it and
// the sendmany) cannot be under way anywhere: it is paid on the first pass after the restart,
// not after the grace period.
func TestBroadcastInterruptedBeforeSendingPaysAtOnce(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 5*ledger.Amount(1e8))
	x := f.address(t)
	s := f.send(t, x, 66_000_000)
	if bc, err := f.ledger.OpenBroadcast(ctx); err != nil || bc == nil {
		t.Fatalf("opening the broadcast the killed helper left: %+v %v", bc, err)
	}
	restarted := New(f.ledger, f.backend, time.Hour, testr.New(t))
	start := time.Now()
	r, err := restarted.Pass(ctx)
	if err != nil || !r.Sent || r.Waiting {
		t.Fatalf("first pass after the restart: %+v %v", r, err)
	}
	t.Logf("interrupted broadcast paid %v after the restart (the grace period was %v)", time.Since(start).Round(time.Millisecond), time.Hour)
	if got := f.walletSends(t, map[string]ledger.Amount{x: 66_000_000}); len(got) != 1 {
		t.Fatalf("paid %d times", len(got))
	}
	if tx, _ := f.ledger.Transaction(ctx, s.ID); tx.State != "broadcasted" || tx.Note != "" {
		t.Errorf("send: %+v", tx)
	}
	f.check(t)
}

// TestADustSendDoesNotHoldBackTheBatch: btcwallet refuses a batch with one output below the dust
// limit. The others are paid; that one ends in needs_review with the wallet's reason and an
// event, and is not retried.
func TestADustSendDoesNotHoldBackTheBatch(t *testing.T) {
	ctx := context.Background()
	f := setup(t, 10*coinUnit)
	var good []ledger.Transaction
	for range 4 {
		good = append(good, f.send(t, f.address(t), coinUnit/10))
	}
	dust := f.send(t, f.address(t), 100) // 100 satoshi: below any output's dust limit
	good = append(good, f.send(t, f.address(t), coinUnit/10))

	b := New(f.ledger, f.backend, time.Minute, testr.New(t))
	r, err := b.Run(ctx)
	if err != nil {
		t.Fatalf("run: %+v %v", r, err)
	}
	if r.Refused != 1 || r.Split == 0 {
		t.Errorf("result %+v, want one refused send after narrowing the batch down", r)
	}
	tx, err := f.ledger.Transaction(ctx, dust.ID)
	if err != nil || tx.State != "needs_review" || !strings.Contains(tx.Reason, "dust") {
		t.Fatalf("the dust send: %+v %v", tx, err)
	}
	for _, g := range good {
		tx, err := f.ledger.Transaction(ctx, g.ID)
		if err != nil || tx.State != "broadcasted" || tx.TxID == "" {
			t.Errorf("good send %d: %+v %v", g.ID, tx, err)
		}
		if sends := f.walletSends(t, map[string]ledger.Amount{g.Address: g.Amount}); len(sends) > 1 {
			t.Errorf("send %d paid %d times", g.ID, len(sends))
		}
	}
	var events int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE payload->>'state' = 'needs_review'
		AND (payload->>'transaction_id')::bigint = $1 AND payload->>'reason' LIKE '%dust%'`, dust.ID).Scan(&events); err != nil || events != 1 {
		t.Errorf("%d needs_review events for the dust send: %v", events, err)
	}
	// Not retried: the next run has nothing to do.
	again, err := b.Run(ctx)
	if err != nil || again.Sent || again.Refused != 0 {
		t.Errorf("second run: %+v %v", again, err)
	}
	f.check(t)
}

const coinUnit ledger.Amount = 100_000_000 // satoshi in a bitcoin

// garbledAnswer is a wallet that pays but whose answer cannot be read as a txid.
type garbledAnswer struct{ backend.Backend }

func (g garbledAnswer) SendMany(ctx context.Context, outputs map[string]ledger.Amount) (string, error) {
	if _, err := g.Backend.SendMany(ctx, outputs); err != nil {
		return "", err
	}
	return "", errors.New(`sendmany: the node answered "OK", not a transaction id`)
}

// TestAnAnswerThatIsNotARefusalIsReconciledNotRepaid: only a refusal the backend answered proves
// nothing was paid. An unreadable answer leaves the broadcast open; the next pass finds the
// payment in the wallet's records and records it, and the send is paid once.
func TestAnAnswerThatIsNotARefusalIsReconciledNotRepaid(t *testing.T) {
	ctx := context.Background()
	f := setup(t, coinUnit)
	to := f.address(t)
	send := f.send(t, to, coinUnit/10)

	first := New(f.ledger, garbledAnswer{f.backend}, time.Minute, testr.New(t))
	if r, err := first.Run(ctx); err == nil || r.Sent || !strings.Contains(err.Error(), "stays open and will be reconciled") {
		t.Fatalf("first pass: %+v %v", r, err)
	}
	if tx, _ := f.ledger.Transaction(ctx, send.ID); tx.State != "broadcasting" {
		t.Fatalf("after an unreadable answer the send is %s, want broadcasting", tx.State)
	}
	second := New(f.ledger, f.backend, time.Minute, testr.New(t))
	r, err := second.Run(ctx)
	if err != nil || !r.Reconciled {
		t.Fatalf("second pass: %+v %v", r, err)
	}
	if sends := f.walletSends(t, map[string]ledger.Amount{to: coinUnit / 10}); len(sends) != 1 {
		t.Errorf("the wallet paid %d times", len(sends))
	}
	if tx, _ := f.ledger.Transaction(ctx, send.ID); tx.State != "broadcasted" {
		t.Errorf("the send is %s, want broadcasted", tx.State)
	}
	f.check(t)
}
