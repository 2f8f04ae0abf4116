package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

var server *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(testassets.Main(m, testassets.Postgres(&server)))
}

// testAddress accepts the addresses the tests make up ("addr-..."), standing in for the coin's
// address validation, which has its own tests.
func testAddress(a string) error {
	if !strings.HasPrefix(a, "addr-") {
		return errors.New("not an addr- address")
	}
	return nil
}

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), server.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

func open(t *testing.T, pool *pgxpool.Pool, targets ...string) *Ledger {
	t.Helper()
	l, err := Open(context.Background(), pool, Options{
		Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 3, MaxTrackedConfirmations: 6,
		ValidateAddress: testAddress, EventTargets: targets,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// withAlice opens a ledger (with events for targets) on a database of its own, with an account
// "alice" that receives at "addr-alice".
func withAlice(t *testing.T, targets ...string) (*Ledger, *pgxpool.Pool, Account) {
	t.Helper()
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool, targets...)
	alice, err := l.CreateAccount(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddReceivingAddress(ctx, alice.ID, "addr-alice", ""); err != nil {
		t.Fatal(err)
	}
	return l, pool, alice
}

// mustCheck fails the test if any ledger invariant is broken.
func mustCheck(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	v, err := Check(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) > 0 {
		t.Fatalf("ledger check: %v", v)
	}
}

func balance(t *testing.T, l *Ledger, id int64) Amount {
	t.Helper()
	a, err := l.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

// fund credits an account through a confirmed deposit, the only way money enters the ledger.
func fund(t *testing.T, l *Ledger, account int64, amount Amount) {
	t.Helper()
	ctx := context.Background()
	addr := fmt.Sprintf("addr-fund-%d-%d", account, rand.Int64())
	if _, err := l.AddReceivingAddress(ctx, account, addr, ""); err != nil {
		t.Fatal(err)
	}
	up, err := l.RecordDeposit(ctx, Observation{TxID: "fund-" + addr, Output: 0, Address: addr, Amount: amount, Confirmations: 6})
	if err != nil || !up.Credited {
		t.Fatalf("funding: %+v %v", up, err)
	}
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, server.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := CheckSchema(ctx, pool); err == nil {
		t.Fatal("CheckSchema passed on an empty database")
	}
	// Concurrent runs (two helper pods starting together) apply each migration once.
	var wg sync.WaitGroup
	applied := make([][]string, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); applied[i], errs[i] = Migrate(ctx, pool) }()
	}
	wg.Wait()
	total := 0
	for i := range 4 {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != SchemaVersion() {
		t.Errorf("%d migrations applied across 4 concurrent runs, want %d", total, SchemaVersion())
	}
	if again, err := Migrate(ctx, pool); err != nil || len(again) != 0 {
		t.Errorf("second run applied %v, %v; want nothing", again, err)
	}
	if err := CheckSchema(ctx, pool); err != nil {
		t.Error(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO cryptoassets_schema (version, name) VALUES (999, 'future')`); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, pool); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Errorf("migrating a newer schema: %v", err)
	}
}

func TestOpenRefusesAnotherCoin(t *testing.T) {
	pool := newPool(t)
	open(t, pool)
	_, err := Open(context.Background(), pool, Options{Asset: "btc", Coin: "litecoin", Network: "regtest",
		Confirmations: 6, MaxTrackedConfirmations: 15, ValidateAddress: testAddress})
	if err == nil || !strings.Contains(err.Error(), "coin is bitcoin, the config says litecoin") {
		t.Fatalf("opening btc as litecoin: %v", err)
	}
}

func TestAccountsAndAddresses(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, err := l.CreateAccount(ctx, "alice")
	if err != nil || alice.Balance != 0 {
		t.Fatalf("%+v %v", alice, err)
	}
	bob, _ := l.CreateAccount(ctx, "bob")
	for _, name := range []string{"alice", FeeAccount} {
		if _, err := l.CreateAccount(ctx, name); !errors.Is(err, ErrExists) {
			t.Errorf("creating %q again: %v", name, err)
		}
	}
	if _, err := l.CreateAccount(ctx, "  "); err == nil {
		t.Errorf("blank account name accepted")
	}
	for i := range 2 {
		if _, err := l.AddReceivingAddress(ctx, alice.ID, fmt.Sprintf("addr-a%d", i), "shop"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.AddReceivingAddress(ctx, bob.ID, "addr-a0", ""); !errors.Is(err, ErrExists) {
		t.Errorf("an address of alice given to bob: %v", err)
	}
	if _, err := l.AddReceivingAddress(ctx, bob.ID, "bc1-not-valid", ""); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("invalid address: %v", err)
	}
	if _, err := l.AddReceivingAddress(ctx, 99999, "addr-x", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown account: %v", err)
	}
	addrs, err := l.ReceivingAddresses(ctx, alice.ID, Page{})
	if err != nil || len(addrs) != 2 || addrs[0].Address != "addr-a0" || addrs[0].Label != "shop" {
		t.Errorf("alice's addresses: %+v %v", addrs, err)
	}
	mustCheck(t, pool)
}

func TestInternalSend(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, _ := l.CreateAccount(ctx, "alice")
	bob, _ := l.CreateAccount(ctx, "bob")
	fund(t, l, alice.ID, 100_000)

	tx, err := l.SendInternal(ctx, alice.ID, bob.ID, 30_000, "order-1")
	if err != nil || tx.Kind != "internal" || tx.State != "done" {
		t.Fatalf("%+v %v", tx, err)
	}
	if balance(t, l, alice.ID) != 70_000 || balance(t, l, bob.ID) != 30_000 {
		t.Errorf("balances %d/%d", balance(t, l, alice.ID), balance(t, l, bob.ID))
	}
	// The transfer is returned as it is stored, though it is not read back.
	if stored, err := l.Transaction(ctx, tx.ID); err != nil || !reflect.DeepEqual(stored, tx) {
		t.Errorf("returned %+v, stored %+v (%v)", tx, stored, err)
	}
	// Its event is the one the application gets for the stored transaction: the transaction's
	// id is drawn by the statement that books it and filled into the event's text.
	var name string
	var payload []byte
	if err := pool.QueryRow(ctx, `SELECT name, payload FROM outbox_events ORDER BY id DESC LIMIT 1`).Scan(&name, &payload); err != nil {
		t.Fatal(err)
	}
	want := l.txUpdatePayload(tx, 0, DepositUpdate{})
	want.FromAccountID = tx.SendingAccountID
	var got TxUpdate
	if err := json.Unmarshal(payload, &got); err != nil || name != "txupdate" || !reflect.DeepEqual(got, want) {
		t.Errorf("event %s %s, want txupdate %+v", name, payload, want)
	}
	// The same idempotency key returns the same transaction and moves nothing.
	again, err := l.SendInternal(ctx, alice.ID, bob.ID, 30_000, "order-1")
	if err != nil || again.ID != tx.ID || balance(t, l, alice.ID) != 70_000 {
		t.Errorf("repeat: %+v %v, alice %d", again, err, balance(t, l, alice.ID))
	}
	if _, err := l.SendInternal(ctx, alice.ID, bob.ID, 1, "order-1"); !errors.Is(err, ErrIdempotencyConflict) {
		t.Errorf("reused key for another amount: %v", err)
	}
	for name, tc := range map[string]struct {
		from, to int64
		amount   Amount
		want     error
	}{
		"low balance":  {bob.ID, alice.ID, 30_001, ErrInsufficientBalance},
		"same account": {alice.ID, alice.ID, 1, ErrSameAccount},
		"zero":         {alice.ID, bob.ID, 0, ErrInvalidAmount},
		"negative":     {alice.ID, bob.ID, -5, ErrInvalidAmount},
		"no account":   {alice.ID, 424242, 1, ErrNotFound},
	} {
		if _, err := l.SendInternal(ctx, tc.from, tc.to, tc.amount, ""); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if balance(t, l, alice.ID) != 70_000 || balance(t, l, bob.ID) != 30_000 {
		t.Errorf("failed sends moved money: %d/%d", balance(t, l, alice.ID), balance(t, l, bob.ID))
	}
	mustCheck(t, pool)
}

func TestSendExternal(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, _ := l.CreateAccount(ctx, "alice")
	bob, _ := l.CreateAccount(ctx, "bob")
	fund(t, l, alice.ID, 100_000)
	if _, err := l.AddReceivingAddress(ctx, bob.ID, "addr-bob", ""); err != nil {
		t.Fatal(err)
	}

	out, err := l.SendExternal(ctx, alice.ID, "addr-shop", 25_000, "pay-1", false)
	if err != nil || out.Kind != "outgoing" || out.State != "pending" || out.Address != "addr-shop" {
		t.Fatalf("%+v %v", out, err)
	}
	if balance(t, l, alice.ID) != 75_000 {
		t.Errorf("send not reserved at once: alice %d", balance(t, l, alice.ID))
	}
	if again, err := l.SendExternal(ctx, alice.ID, "addr-shop", 25_000, "pay-1", false); err != nil || again.ID != out.ID {
		t.Errorf("repeat with the same key: %+v %v", again, err)
	}
	if _, err := l.SendExternal(ctx, alice.ID, "addr-elsewhere", 25_000, "pay-1", false); !errors.Is(err, ErrIdempotencyConflict) {
		t.Errorf("same key, other address: %v", err)
	}

	// Paying one of our own addresses is an internal transfer, unless forced out to the network.
	in, err := l.SendExternal(ctx, alice.ID, "addr-bob", 5_000, "", false)
	if err != nil || in.Kind != "internal" || balance(t, l, bob.ID) != 5_000 {
		t.Errorf("send to own address: %+v %v bob %d", in, err, balance(t, l, bob.ID))
	}
	if stored, err := l.Transaction(ctx, in.ID); err != nil || !reflect.DeepEqual(stored, in) {
		t.Errorf("returned %+v, stored %+v (%v)", in, stored, err)
	}
	forced, err := l.SendExternal(ctx, alice.ID, "addr-bob", 5_000, "", true)
	if err != nil || forced.Kind != "outgoing" || forced.State != "pending" || balance(t, l, bob.ID) != 5_000 {
		t.Errorf("forced external: %+v %v bob %d", forced, err, balance(t, l, bob.ID))
	}

	for name, tc := range map[string]struct {
		addr   string
		amount Amount
		want   error
	}{
		"invalid address": {"1BoatSLRHtKNngkdXEeobR76b53LETtpyT!", 1, ErrInvalidAddress},
		"low balance":     {"addr-shop", 65_001, ErrInsufficientBalance},
		"zero":            {"addr-shop", 0, ErrInvalidAmount},
	} {
		if _, err := l.SendExternal(ctx, alice.ID, tc.addr, tc.amount, "", false); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := l.SendExternal(ctx, l.FeeAccountID(), "addr-shop", 1, "", false); err == nil {
		t.Errorf("the fee account sent money")
	}
	// 100000 funded - 25000 pending - 5000 to bob internally - 5000 forced out.
	if got := balance(t, l, alice.ID); got != 65_000 {
		t.Errorf("alice %d, want 65000", got)
	}
	mustCheck(t, pool)
}

func TestDepositLifecycle(t *testing.T) {
	ctx := context.Background()
	l, pool, alice := withAlice(t, "app", "audit")
	obs := Observation{TxID: "aa11", Output: 1, Address: "addr-alice", Amount: 50_000}
	step := func(conf int32) DepositUpdate {
		t.Helper()
		o := obs
		o.Confirmations = conf
		up, err := l.RecordDeposit(ctx, o)
		if err != nil {
			t.Fatalf("confirmations %d: %v", conf, err)
		}
		mustCheck(t, pool)
		return up
	}

	up := step(0)
	if !up.New || up.Credited || up.Transaction.State != "incoming" || balance(t, l, alice.ID) != 0 {
		t.Fatalf("unconfirmed deposit: %+v", up)
	}
	if up := step(0); up.Changed {
		t.Errorf("a repeated notification changed something: %+v", up)
	}
	if up := step(2); up.Credited || balance(t, l, alice.ID) != 0 || up.Transaction.Confirmations != 2 {
		t.Errorf("below the threshold: %+v", up)
	}
	if _, err := l.MarkProcessed(ctx, up.Transaction.ID); err != nil {
		t.Fatal(err)
	}
	up = step(3)
	if !up.Credited || up.Transaction.State != "credited" || balance(t, l, alice.ID) != 50_000 || up.Transaction.ProcessedAt == nil {
		t.Errorf("at the threshold (after mark processed): %+v", up)
	}
	for _, c := range []int32{3, 4, 5} {
		if up := step(c); up.Credited || balance(t, l, alice.ID) != 50_000 {
			t.Errorf("confirmations %d credited again: %+v", c, up)
		}
	}
	// Tracking stops at maxTrackedConfirmations: beyond it nothing changes any more.
	step(6)
	if up := step(9); up.Changed || up.Transaction.Confirmations != 6 {
		t.Errorf("beyond the tracking horizon: %+v", up)
	}
	// A reorg drops the transaction: the credit is taken back and reported.
	up = step(-1)
	if !up.Uncredited || up.Transaction.State != "reverted" || balance(t, l, alice.ID) != 0 {
		t.Errorf("reorg: %+v alice %d", up, balance(t, l, alice.ID))
	}
	// It is mined again: credited again, once.
	up = step(4)
	if !up.Credited || balance(t, l, alice.ID) != 50_000 {
		t.Errorf("re-mined: %+v", up)
	}

	// The outbox holds one event per change, each with a delivery per target.
	rows, err := pool.Query(ctx, `SELECT e.payload, count(d.*) FROM outbox_events e JOIN outbox_deliveries d ON d.event_id = e.id GROUP BY e.id ORDER BY e.id`)
	if err != nil {
		t.Fatal(err)
	}
	var events []TxUpdate
	for rows.Next() {
		var raw []byte
		var deliveries int
		if err := rows.Scan(&raw, &deliveries); err != nil {
			t.Fatal(err)
		}
		if deliveries != 2 {
			t.Errorf("event with %d deliveries, want 2", deliveries)
		}
		var e TxUpdate
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	var states []string
	for _, e := range events {
		states = append(states, fmt.Sprintf("%d/%v/%s", e.Confirmations, e.Credited, e.State))
	}
	want := "0/false/incoming 2/false/incoming 3/true/credited 4/true/credited 5/true/credited 6/true/credited -1/false/reverted 4/true/credited"
	if strings.Join(states, " ") != want {
		t.Errorf("events:\n got %s\nwant %s", strings.Join(states, " "), want)
	}
	last := events[len(events)-1]
	if last.Amount != "0.00050000" || last.TxID != "aa11" || *last.OutputIndex != 1 || last.Coin != "bitcoin" || !last.Processed {
		t.Errorf("payload %+v", last)
	}
}

func TestDepositRejects(t *testing.T) {
	ctx := context.Background()
	l, pool, alice := withAlice(t)
	if _, err := l.SendExternal(ctx, alice.ID, "addr-stranger", 1, "", false); !errors.Is(err, ErrInsufficientBalance) {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		o    Observation
		want error
	}{
		"unknown address": {Observation{TxID: "bb", Address: "addr-stranger", Amount: 5, Confirmations: 9}, ErrNotOurAddress},
		"zero amount":     {Observation{TxID: "bb", Address: "addr-alice", Amount: 0, Confirmations: 9}, ErrInvalidAmount},
	} {
		if _, err := l.RecordDeposit(ctx, tc.o); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := l.RecordDeposit(ctx, Observation{TxID: "cc", Output: 0, Address: "addr-alice", Amount: 10, Confirmations: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RecordDeposit(ctx, Observation{TxID: "cc", Output: 0, Address: "addr-alice", Amount: 99, Confirmations: 5}); !errors.Is(err, ErrInconsistent) {
		t.Errorf("changed amount: %v", err)
	}
	if balance(t, l, alice.ID) != 0 {
		t.Errorf("a contradicted deposit was credited")
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM network_transactions WHERE txid = 'bb'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("an unrelated txid left %d rows behind", n)
	}
	mustCheck(t, pool)
}

func TestCheckFindsTampering(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, _ := l.CreateAccount(ctx, "alice")
	fund(t, l, alice.ID, 1000)
	mustCheck(t, pool)
	if _, err := pool.Exec(ctx, `UPDATE accounts SET balance = balance + 1 WHERE id = $1`, alice.ID); err != nil {
		t.Fatal(err)
	}
	v, err := Check(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, x := range v {
		found[x.Check] = true
	}
	if !found["wallet balance equals the sum of its accounts"] || !found["account balance equals its booked transactions"] {
		t.Errorf("tampering not found: %v", v)
	}
}

// TestConcurrentTransfers runs transfers from 8 clients over a few accounts: they wait for each
// other's row locks, no money is created or lost, and the invariants hold.
func TestConcurrentTransfers(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	var ids []int64
	for i := range 4 {
		a, err := l.CreateAccount(ctx, fmt.Sprintf("acct-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		fund(t, l, a.ID, 1_000_000)
		ids = append(ids, a.ID)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for i := range 50 {
				from, to := ids[r.IntN(4)], ids[r.IntN(4)]
				if from == to {
					continue
				}
				_, err := l.SendInternal(ctx, from, to, Amount(r.IntN(5000)+1), fmt.Sprintf("c%d-%d", c, i))
				if err != nil && !errors.Is(err, ErrInsufficientBalance) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var total Amount
	for _, id := range ids {
		total += balance(t, l, id)
	}
	if total != 4_000_000 {
		t.Errorf("money created or lost: total %d", total)
	}
	mustCheck(t, pool)
}

// TestConcurrentRepeatsOfOneTransfer sends one transfer, under one idempotency key, from 8
// clients at once: transfers run at READ COMMITTED, and the key must still book it exactly once.
func TestConcurrentRepeatsOfOneTransfer(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, _ := l.CreateAccount(ctx, "alice")
	bob, _ := l.CreateAccount(ctx, "bob")
	fund(t, l, alice.ID, 100_000)
	for round := range 5 {
		key := fmt.Sprintf("order-%d", round)
		var wg sync.WaitGroup
		results := make(chan Transaction, 8)
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tx, err := l.SendInternal(ctx, alice.ID, bob.ID, 1_000, key)
				if err != nil {
					errs <- err
					return
				}
				results <- tx
			}()
		}
		wg.Wait()
		close(results)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		ids, fresh := map[int64]bool{}, 0
		for tx := range results {
			ids[tx.ID] = true
			if !tx.Replayed {
				fresh++
			}
		}
		if len(ids) != 1 || fresh != 1 {
			t.Fatalf("round %d: transactions %v, %d not replayed; want one, booked once", round, ids, fresh)
		}
	}
	if a, b := balance(t, l, alice.ID), balance(t, l, bob.ID); a != 95_000 || b != 5_000 {
		t.Errorf("balances %d/%d, want 95000/5000", a, b)
	}
	mustCheck(t, pool)
}

func TestConflictedDepositIsFinal(t *testing.T) {
	ctx := context.Background()
	l, pool, alice := withAlice(t, "app")
	record := func(o Observation) DepositUpdate {
		t.Helper()
		o.TxID, o.Output, o.Address, o.Amount = "bb22", 0, "addr-alice", 70_000
		up, err := l.RecordDeposit(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		mustCheck(t, pool)
		// What the booking returns is what the ledger has, the confirmations a conflicted
		// transaction keeps included.
		if stored, err := l.Transaction(ctx, up.Transaction.ID); err != nil || !reflect.DeepEqual(up.Transaction, stored) {
			t.Fatalf("the booking returned %+v, the ledger has %+v (%v)", up.Transaction, stored, err)
		}
		return up
	}
	if up := record(Observation{Confirmations: 3, BlockHash: "b1", BlockHeight: 10}); !up.Credited {
		t.Fatalf("credited at the threshold: %+v", up)
	}
	up := record(Observation{Confirmations: -1, Conflicted: true})
	if !up.Uncredited || up.Transaction.State != "conflicted" || up.Transaction.Confirmations != -1 || balance(t, l, alice.ID) != 0 {
		t.Fatalf("double-spent: %+v, balance %d", up, balance(t, l, alice.ID))
	}
	// Whatever a wallet says later (btcwallet keeps a stale block for it), it stays taken back.
	if up := record(Observation{Confirmations: 5, BlockHash: "b1", BlockHeight: 10}); up.Changed || up.Credited || balance(t, l, alice.ID) != 0 {
		t.Fatalf("a later observation changed a conflicted deposit: %+v", up)
	}
	var conf int32
	if err := pool.QueryRow(ctx, `SELECT confirmations FROM network_transactions WHERE txid = 'bb22'`).Scan(&conf); err != nil || conf != -1 {
		t.Fatalf("confirmations kept for a conflicted transaction: %d %v", conf, err)
	}
	followed, err := l.OpenDeposits(ctx)
	if err != nil || len(followed) != 0 {
		t.Fatalf("a conflicted deposit is still followed: %+v %v", followed, err)
	}
}

// TestOpenDepositsLeavesOutTheGiven lists the deposits still followed, with and without the
// transactions a caller has just heard about: those are left out, and so are deposits past the
// tracking horizon, whatever is given.
func TestOpenDepositsLeavesOutTheGiven(t *testing.T) {
	ctx := context.Background()
	l, _, _ := withAlice(t)
	for _, o := range []Observation{
		{TxID: "aa", Output: 0, Confirmations: 1},
		{TxID: "aa", Output: 1, Confirmations: 1},
		{TxID: "bb", Output: 0, Confirmations: 2},
		{TxID: "cc", Output: 0, Confirmations: 7}, // past MaxTrackedConfirmations (6)
	} {
		o.Address, o.Amount = "addr-alice", 10_000
		if _, err := l.RecordDeposit(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		except []string
		want   []string
	}{
		{nil, []string{"aa/0", "aa/1", "bb/0"}},
		{[]string{}, []string{"aa/0", "aa/1", "bb/0"}},
		{[]string{"aa"}, []string{"bb/0"}},
		{[]string{"bb", "zz"}, []string{"aa/0", "aa/1"}},
		{[]string{"aa", "bb", "cc"}, nil},
	} {
		open, err := l.OpenDeposits(ctx, tc.except...)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range open {
			if o.Address != "addr-alice" || o.Amount != 10_000 {
				t.Errorf("except %v: %+v is not the deposit booked", tc.except, o)
			}
			got = append(got, fmt.Sprintf("%s/%d", o.TxID, o.Output))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("except %v: open deposits %v, want %v", tc.except, got, tc.want)
		}
	}
}

// TestDepositBatchBooksAsOneByOne books the same reports into two ledgers, in one batch and one
// at a time, and compares what they hold: states, balances, and the events' payloads. The batch
// has outputs of one transaction to two accounts, an address that is not ours, a credit, a
// reorg's take-back, a double spend and a report that contradicts the ledger; the contradiction
// is refused and the rest of its batch is booked anyway. An output reported twice in one batch is
// booked once, as its last report says.
func TestDepositBatchBooksAsOneByOne(t *testing.T) {
	ctx := context.Background()
	setup := func() (*Ledger, *pgxpool.Pool, [2]int64) {
		pool := newPool(t)
		l := open(t, pool, "app")
		var ids [2]int64
		for i, name := range []string{"alice", "bob"} {
			a, err := l.CreateAccount(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.AddReceivingAddress(ctx, a.ID, "addr-"+name, ""); err != nil {
				t.Fatal(err)
			}
			ids[i] = a.ID
		}
		// Booked before: one credited deposit a reorg takes back, one a double spend ends, one
		// the backend will misreport.
		for _, o := range []Observation{
			{TxID: "old1", Output: 0, Address: "addr-alice", Amount: 7_000, Confirmations: 3},
			{TxID: "old2", Output: 0, Address: "addr-bob", Amount: 9_000, Confirmations: 4},
			{TxID: "old3", Output: 2, Address: "addr-bob", Amount: 11_000, Confirmations: 1},
		} {
			if _, err := l.RecordDeposit(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		return l, pool, ids
	}
	reports := []Observation{
		{TxID: "new1", Output: 0, Address: "addr-alice", Amount: 1_000, Confirmations: 3},
		{TxID: "new1", Output: 1, Address: "addr-bob", Amount: 2_000, Confirmations: 3},
		{TxID: "new1", Output: 2, Address: "addr-change", Amount: 3_000, Confirmations: 3},
		{TxID: "old3", Output: 2, Address: "addr-bob", Amount: 99_000, Confirmations: 2}, // contradicts the ledger
		{TxID: "new2", Output: 0, Address: "addr-bob", Amount: 4_000, Confirmations: 0},
		{TxID: "old1", Output: 0, Address: "addr-alice", Amount: 7_000, Confirmations: -1},
		{TxID: "old2", Output: 0, Address: "addr-bob", Amount: 9_000, Confirmations: -1, Conflicted: true},
	}
	state := func(l *Ledger, pool *pgxpool.Pool, ids [2]int64) string {
		t.Helper()
		mustCheck(t, pool)
		rows, err := pool.Query(ctx, `SELECT n.txid || ':' || t.output_index || ' ' || t.state || ' ' || t.credited || ' ' || n.confirmations
			FROM transactions t JOIN network_transactions n ON n.id = t.network_transaction_id WHERE t.kind = 'deposit' ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		txs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		rows, err = pool.Query(ctx, `SELECT payload->>'txid' || ':' || (payload->>'output_index') || ' ' || (payload->>'state') || ' ' || (payload->>'confirmations')
			FROM outbox_events ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		events, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("alice %d bob %d\n%s\nevents:\n%s", balance(t, l, ids[0]), balance(t, l, ids[1]),
			strings.Join(txs, "\n"), strings.Join(events, "\n"))
	}

	one, onePool, oneIDs := setup()
	for _, o := range reports {
		_, err := one.RecordDeposit(ctx, o)
		if err != nil && !errors.Is(err, ErrNotOurAddress) && !errors.Is(err, ErrInconsistent) {
			t.Fatal(err)
		}
	}
	batch, batchPool, batchIDs := setup()
	ups, err := batch.RecordDeposits(ctx, reports)
	if !errors.Is(err, ErrInconsistent) || !strings.Contains(err.Error(), "old3:2") {
		t.Errorf("the contradiction: %v", err)
	}
	if len(ups) != len(reports) || !ups[0].New || !ups[0].Credited || !ups[1].Credited || !ups[2].Ignored || ups[3].Transaction.ID != 0 ||
		!ups[4].New || ups[4].Credited || !ups[5].Uncredited || !ups[6].Uncredited {
		t.Errorf("updates: %+v", ups)
	}
	// What a booking returns of each deposit is what the ledger reads back of it afterwards,
	// whichever way the booking read it: the read-only pass a repeated batch ends in fills in
	// the address, txid and confirmations itself rather than joining them in.
	asStored := func(what string, booked []DepositUpdate) {
		t.Helper()
		for i, up := range booked {
			if up.Transaction.ID == 0 {
				continue
			}
			stored, err := batch.Transaction(ctx, up.Transaction.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(up.Transaction, stored) {
				t.Errorf("%s: report %d returned %+v, the ledger has %+v", what, i, up.Transaction, stored)
			}
		}
	}
	asStored("the batch", ups)
	got, want := state(batch, batchPool, batchIDs), state(one, onePool, oneIDs)
	if got != want {
		t.Errorf("booked in a batch:\n%s\none by one:\n%s", got, want)
	}
	if !strings.Contains(got, "alice 1000 bob 2000") {
		t.Errorf("balances:\n%s", got)
	}
	// The same batch again changes nothing, and writes nothing: no row gets a new version
	// (xmin) or a lock (xmax).
	versions := func() string {
		t.Helper()
		rows, err := batchPool.Query(ctx, `SELECT 't' || id || ' ' || xmin || ' ' || xmax FROM transactions
			UNION ALL SELECT 'n' || id || ' ' || xmin || ' ' || xmax FROM network_transactions
			UNION ALL SELECT 'a' || id || ' ' || xmin || ' ' || xmax FROM accounts ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		v, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(v, "\n")
	}
	before := versions()
	again, err := batch.RecordDeposits(ctx, slices.Delete(slices.Clone(reports), 3, 4))
	if err != nil {
		t.Fatal(err)
	}
	for i, up := range again {
		if up.Changed || up.Credited || up.Uncredited {
			t.Errorf("report %d changed something the second time: %+v", i, up)
		}
		j := i // the report left out is the fourth
		if i >= 3 {
			j++
		}
		if !up.Ignored && !reflect.DeepEqual(up.Transaction, ups[j].Transaction) {
			t.Errorf("report %d the second time returned %+v, want %+v", i, up.Transaction, ups[j].Transaction)
		}
	}
	asStored("the batch again", again)
	if after := state(batch, batchPool, batchIDs); after != got {
		t.Errorf("a repeated batch changed the ledger:\n%s\nbefore:\n%s", after, got)
	}
	if after := versions(); after != before {
		t.Errorf("a repeated batch wrote or locked rows:\n%s\nbefore:\n%s", after, before)
	}

	ups, err = batch.RecordDeposits(ctx, []Observation{
		{TxID: "twice", Output: 0, Address: "addr-alice", Amount: 500, Confirmations: 0},
		{TxID: "twice", Output: 0, Address: "addr-alice", Amount: 500, Confirmations: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ups[0].Changed || !ups[1].New || !ups[1].Credited || ups[0].Transaction.ID != ups[1].Transaction.ID || balance(t, batch, batchIDs[0]) != 1_500 {
		t.Errorf("an output reported twice in a batch: %+v", ups)
	}
	asStored("an output reported twice", ups)
	mustCheck(t, batchPool)
}

func TestAroundTransactionID(t *testing.T) {
	encode := func(p TxUpdate) string {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for name, tc := range map[string]struct {
		body    string
		wantErr bool
	}{
		"an event":                                    {body: encode(TxUpdate{Asset: "btc", Kind: "internal", Amount: "1.0"})},
		"the key's text inside a string value":        {body: encode(TxUpdate{Asset: `"transaction_id":0`, Reason: `x","transaction_id":0,"`})},
		"another id":                                  {body: encode(TxUpdate{TransactionID: 7}), wantErr: true},
		"not a transaction's event":                   {body: `{"id":0}`, wantErr: true},
		"the key twice (not what json.Marshal makes)": {body: `{"transaction_id":0,"transaction_id":0}`, wantErr: true},
	} {
		before, after, err := aroundTransactionID(tc.body)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%s: split %q into %q and %q, want an error", name, tc.body, before, after)
			}
			continue
		}
		var got TxUpdate
		if err != nil || json.Unmarshal([]byte(before+"42"+after), &got) != nil || got.TransactionID != 42 {
			t.Errorf("%s: %q and %q (%v), want the id 42 filled in", name, before, after, err)
		}
		if filled := before + "0" + after; filled != tc.body {
			t.Errorf("%s: the parts around 0 are %q, want %q", name, filled, tc.body)
		}
	}
}
