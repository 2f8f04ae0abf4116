package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func openAs(t *testing.T, pool *pgxpool.Pool, namespace, name, backend string) (*Ledger, error) {
	t.Helper()
	return Open(context.Background(), pool, Options{Namespace: namespace, Asset: name, Backend: backend,
		Coin: "bitcoin", Network: "regtest", Confirmations: 3, MaxTrackedConfirmations: 6, ValidateAddress: testAddress})
}

// txUpdates reads the asset's txupdate payloads in order.
func txUpdates(t *testing.T, l *Ledger) []TxUpdate {
	t.Helper()
	evs, err := l.Events(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []TxUpdate
	for _, e := range evs {
		var p TxUpdate
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestTwoTenantsWithOneName(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	shop, err := openAs(t, pool, "shop", "btc", "bitcoind")
	if err != nil {
		t.Fatal(err)
	}
	payroll, err := openAs(t, pool, "payroll", "btc", "bitcoind")
	if err != nil {
		t.Fatal(err)
	}
	if shop.assetID == payroll.assetID {
		t.Fatalf("shop/btc and payroll/btc share asset %d", shop.assetID)
	}
	// Each has its own accounts, addresses and balances; the same account name in both.
	a, err := shop.CreateAccount(ctx, "treasury")
	if err != nil {
		t.Fatal(err)
	}
	b, err := payroll.CreateAccount(ctx, "treasury")
	if err != nil {
		t.Fatal(err)
	}
	fund(t, shop, a.ID, 70_000)
	fund(t, payroll, b.ID, 30_000)
	if _, err := payroll.Account(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("payroll reads shop's account: %v", err)
	}
	if _, err := payroll.SendInternal(ctx, b.ID, a.ID, 1, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("payroll sent into shop's account: %v", err)
	}
	for _, c := range []struct {
		l    *Ledger
		want Amount
	}{{shop, 70_000}, {payroll, 30_000}} {
		if got, _ := c.l.WalletBalance(ctx); got != c.want {
			t.Errorf("%s wallet %d, want %d", c.l.AssetRef(), got, c.want)
		}
		if n := len(txUpdates(t, c.l)); n != 1 {
			t.Errorf("%s has %d events, want its own deposit's one", c.l.AssetRef(), n)
		}
	}
	// Opened again, each finds its own.
	again, err := openAs(t, pool, "shop", "btc", "bitcoind")
	if err != nil || again.assetID != shop.assetID {
		t.Errorf("reopening shop/btc: %v (asset %d, want %d)", err, again.assetID, shop.assetID)
	}
	mustCheck(t, pool)
}

func TestOpenRefusesAnotherBackend(t *testing.T) {
	pool := newPool(t)
	if _, err := openAs(t, pool, "shop", "btc", "bitcoind"); err != nil {
		t.Fatal(err)
	}
	_, err := openAs(t, pool, "shop", "btc", "blockio")
	if !errors.Is(err, ErrAssetMismatch) || !strings.Contains(err.Error(), "asset shop/btc in the ledger: backend is bitcoind, the config says blockio") {
		t.Fatalf("opening shop/btc with another backend: %v", err)
	}
}

// TestAssetsFromBeforeNamespacesAreAdopted: an upgraded helper keeps the ledger it had.
func TestAssetsFromBeforeNamespacesAreAdopted(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	legacy, err := openAs(t, pool, "", "btc", "")
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := legacy.CreateAccount(ctx, "alice")
	fund(t, legacy, alice.ID, 5_000)
	// What migration 0005 leaves of a row written before it.
	if _, err := pool.Exec(ctx, `UPDATE assets SET namespace = NULL, backend = NULL WHERE id = $1`, legacy.assetID); err != nil {
		t.Fatal(err)
	}
	shop, err := openAs(t, pool, "shop", "btc", "bitcoind")
	if err != nil {
		t.Fatal(err)
	}
	if shop.assetID != legacy.assetID || balance(t, shop, alice.ID) != 5_000 {
		t.Fatalf("the upgraded helper got asset %d (want %d)", shop.assetID, legacy.assetID)
	}
	// Adopted once: another team's btc is a ledger of its own.
	payroll, err := openAs(t, pool, "payroll", "btc", "bitcoind")
	if err != nil || payroll.assetID == legacy.assetID {
		t.Fatalf("payroll/btc: %v, asset %d", err, payroll.assetID)
	}
}

func TestFeeAccountIsTheLedgersOwn(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, _ := l.CreateAccount(ctx, "alice")
	fees := l.FeeAccountID()
	for name, err := range map[string]error{
		"address":       func() error { _, err := l.AddReceivingAddress(ctx, fees, "addr-fees", ""); return err }(),
		"external send": func() error { _, err := l.SendExternal(ctx, fees, "addr-shop", 1, "", false); return err }(),
		"internal send": func() error { _, err := l.SendInternal(ctx, fees, alice.ID, 1, ""); return err }(),
	} {
		if !errors.Is(err, ErrFeeAccount) || !strings.Contains(err.Error(), `"network fees"`) {
			t.Errorf("%s from the fee account: %v", name, err)
		}
	}
	mustCheck(t, pool)
}

func TestInternalTransfersWriteEvents(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, _ := l.CreateAccount(ctx, "alice")
	bob, _ := l.CreateAccount(ctx, "bob")
	fund(t, l, alice.ID, 10_000)
	if _, err := l.AddReceivingAddress(ctx, bob.ID, "addr-bob", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SendInternal(ctx, alice.ID, bob.ID, 1_000, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SendExternal(ctx, alice.ID, "addr-bob", 2_000, "", false); err != nil { // our own address
		t.Fatal(err)
	}
	ups := txUpdates(t, l)
	if len(ups) != 3 {
		t.Fatalf("%d events, want the deposit's and two transfers': %+v", len(ups), ups)
	}
	for i, want := range []string{"0.00001000", "0.00002000"} {
		u := ups[i+1]
		if u.Kind != "internal" || u.State != "done" || u.FromAccountID == nil || *u.FromAccountID != alice.ID ||
			u.AccountID == nil || *u.AccountID != bob.ID || u.Amount != want {
			t.Errorf("transfer event %d: %+v", i, u)
		}
	}
}

func TestCancelSend(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, _ := l.CreateAccount(ctx, "alice")
	bob, _ := l.CreateAccount(ctx, "bob")
	fund(t, l, alice.ID, 100_000)
	queued, err := l.SendExternal(ctx, alice.ID, "addr-shop", 30_000, "", false)
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := l.CancelSend(ctx, queued.ID)
	if err != nil || cancelled.State != "cancelled" || balance(t, l, alice.ID) != 100_000 {
		t.Fatalf("cancel: %+v %v, alice %d", cancelled, err, balance(t, l, alice.ID))
	}
	if _, err := l.CancelSend(ctx, queued.ID); !errors.Is(err, ErrNotCancellable) || !strings.Contains(err.Error(), "is cancelled") {
		t.Errorf("cancelled twice: %v", err)
	}
	ups := txUpdates(t, l)
	if last := ups[len(ups)-1]; last.State != "cancelled" || last.TransactionID != queued.ID {
		t.Errorf("no cancel event: %+v", last)
	}
	// Once in a broadcast, it is out of reach.
	out, _ := l.SendExternal(ctx, alice.ID, "addr-shop", 10_000, "", false)
	bc, err := l.OpenBroadcast(ctx)
	if err != nil || bc == nil {
		t.Fatal(bc, err)
	}
	if _, err := l.CancelSend(ctx, out.ID); !errors.Is(err, ErrNotCancellable) || !strings.Contains(err.Error(), "being paid now") {
		t.Errorf("cancel while broadcasting: %v", err)
	}
	if err := l.MarkBroadcasted(ctx, bc.ID, strings.Repeat("ab", 32)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CancelSend(ctx, out.ID); !errors.Is(err, ErrNotCancellable) || !strings.Contains(err.Error(), "is broadcasted") {
		t.Errorf("cancel after broadcast: %v", err)
	}
	internal, _ := l.SendInternal(ctx, alice.ID, bob.ID, 1, "")
	if _, err := l.CancelSend(ctx, internal.ID); !errors.Is(err, ErrNotCancellable) {
		t.Errorf("cancel an internal transfer: %v", err)
	}
	if _, err := l.CancelSend(ctx, 999_999); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel nothing: %v", err)
	}
	mustCheck(t, pool)
}

// TestRefusedSendNeedsReview: the broadcaster narrows a refused batch to its bad send, which
// ends in needs_review with the reason and an event; the rest go back to pending; the refused
// send can be cancelled, since it was never paid.
func TestRefusedSendNeedsReview(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, _ := l.CreateAccount(ctx, "alice")
	fund(t, l, alice.ID, 100_000)
	good, _ := l.SendExternal(ctx, alice.ID, "addr-good", 40_000, "", false)
	dust, _ := l.SendExternal(ctx, alice.ID, "addr-dust", 1, "", false)
	bc, err := l.OpenBroadcast(ctx)
	if err != nil || len(bc.Sends) != 2 {
		t.Fatalf("%+v %v", bc, err)
	}
	if err := l.ShrinkBroadcast(ctx, bc.ID, []int64{dust.ID}, "refused: dust"); err != nil {
		t.Fatal(err)
	}
	if tx, _ := l.Transaction(ctx, good.ID); tx.State != "pending" {
		t.Errorf("the send left out of the narrowed batch is %s, want pending", tx.State)
	}
	again, err := l.OpenBroadcast(ctx)
	if err != nil || !again.Recovered || len(again.Sends) != 1 || again.Sends[0].ID != dust.ID || again.SendingAt != nil {
		t.Fatalf("the narrowed broadcast: %+v %v", again, err)
	}
	reason := "sendmany: backend rejected the request: an output was refused: transaction output is dust (code -32603)"
	if err := l.RefuseSend(ctx, bc.ID, dust.ID, reason); err != nil {
		t.Fatal(err)
	}
	tx, _ := l.Transaction(ctx, dust.ID)
	if tx.State != "needs_review" || tx.Reason != reason {
		t.Errorf("refused send: %+v", tx)
	}
	ups := txUpdates(t, l)
	if last := ups[len(ups)-1]; last.State != "needs_review" || last.Reason != reason || last.TransactionID != dust.ID {
		t.Errorf("no needs_review event: %+v", last)
	}
	// needs_review is final for the broadcaster: the next broadcast takes only the good send.
	next, err := l.OpenBroadcast(ctx)
	if err != nil || len(next.Sends) != 1 || next.Sends[0].ID != good.ID {
		t.Fatalf("next broadcast: %+v %v", next, err)
	}
	if _, err := l.CancelSend(ctx, dust.ID); err != nil {
		t.Errorf("cancelling the refused send: %v", err)
	}
	if got := balance(t, l, alice.ID); got != 60_000 {
		t.Errorf("alice %d, want 60000 (the good send still reserved)", got)
	}
	mustCheck(t, pool)
}

// TestEventsArePulledInCommitOrder: a transaction that took a lower event id but commits later
// is not skipped by a reader that has already read past a higher id.
func TestEventsArePulledInCommitOrder(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool)
	alice, _ := l.CreateAccount(ctx, "alice")
	bob, _ := l.CreateAccount(ctx, "bob")
	fund(t, l, alice.ID, 10_000) // position 1

	slow, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx)
	if err := l.writeEvent(ctx, slow, "txupdate", map[string]string{"who": "slow"}); err != nil { // a lower id
		t.Fatal(err)
	}
	if _, err := l.SendInternal(ctx, alice.ID, bob.ID, 1, ""); err != nil { // a higher id, committed first
		t.Fatal(err)
	}
	first, err := l.Events(ctx, 0, 10)
	if err != nil || len(first) != 2 || first[0].Position != 1 || first[1].Position != 2 {
		t.Fatalf("before the slow commit: %+v %v", first, err)
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := l.Events(ctx, 2, 10)
	if err != nil || len(next) != 1 || next[0].Position != 3 || !strings.Contains(string(next[0].Payload), "slow") {
		t.Fatalf("after the slow commit, reading on from 2: %+v %v", next, err)
	}
}

func TestEventRetention(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool, "app")
	alice, _ := l.CreateAccount(ctx, "alice")
	fund(t, l, alice.ID, 10_000)
	fund(t, l, alice.ID, 10_000)
	fund(t, l, alice.ID, 10_000)
	if _, err := pool.Exec(ctx, `UPDATE outbox_events SET created_at = now() - interval '40 days'
		WHERE id IN (SELECT id FROM outbox_events WHERE asset_id = $1 ORDER BY id LIMIT 2)`, l.assetID); err != nil {
		t.Fatal(err)
	}
	n, err := l.PruneEvents(ctx, time.Now().Add(-30*24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d: %v", n, err)
	}
	if _, err := l.Events(ctx, 0, 10); !errors.Is(err, ErrEventsPruned) || !strings.Contains(err.Error(), "read from after=2 on") {
		t.Errorf("reading pruned events: %v", err)
	}
	kept, err := l.Events(ctx, 2, 10)
	if err != nil || len(kept) != 1 || kept[0].Position != 3 {
		t.Errorf("reading on from the pruned position: %+v %v", kept, err)
	}
	var deliveries int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_deliveries`).Scan(&deliveries); err != nil || deliveries != 1 {
		t.Errorf("%d deliveries left, want the kept event's: %v", deliveries, err)
	}
	// New events go on after the pruned ones, even with every old one gone.
	if _, err := pool.Exec(ctx, `UPDATE outbox_events SET created_at = now() - interval '40 days' WHERE asset_id = $1`, l.assetID); err != nil {
		t.Fatal(err)
	}
	if _, err := l.PruneEvents(ctx, time.Now().Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	fund(t, l, alice.ID, 10_000)
	if evs, err := l.Events(ctx, 3, 10); err != nil || len(evs) != 1 || evs[0].Position != 4 {
		t.Errorf("after pruning everything: %+v %v", evs, err)
	}
}
