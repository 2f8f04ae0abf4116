package ledger

import (
	"context"
	"fmt"
	"testing"
)

// TestKnownBroadcasts: of the txids a reconciliation asks about, the ledger names its asset's
// broadcasts only (not another asset's on the same database, not a deposit), and reads only
// those it was asked about, however many broadcasts it holds.
func TestKnownBroadcasts(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	shop, payroll := tenant(t, pool, "shop"), tenant(t, pool, "payroll")
	// 100,000 past broadcasts of shop, one of payroll's, and a deposit of shop's.
	execAll(t, pool, []statement{
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations) SELECT $1, 'broadcast', 'paid-' || g, 6 FROM generate_series(1, 100000) g`, []any{shop.assetID}},
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations) VALUES ($1, 'broadcast', 'payroll-paid', 6)`, []any{payroll.assetID}},
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations) VALUES ($1, 'deposit', 'received', 6)`, []any{shop.assetID}},
		{`ANALYZE network_transactions`, nil},
	})
	asked := []string{"paid-7", "paid-99999", "payroll-paid", "received", "never-seen"}
	known, err := shop.KnownBroadcasts(ctx, asked)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(known) != "map[paid-7:true paid-99999:true]" {
		t.Errorf("known among %v: %v, want paid-7 and paid-99999", asked, known)
	}
	if known, err := shop.KnownBroadcasts(ctx, nil); err != nil || len(known) != 0 {
		t.Errorf("known among none: %v %v", known, err)
	}
	readsItsPage(t, shop, []pageRead{{"five txids among 100,000 broadcasts", knownBroadcastsSQL, []any{shop.assetID, asked}, 2}})
}

// TestBroadcastSendsReadByBroadcast: on a ledger with 100,000 sends of past broadcasts, the
// statements that read or change the sends of one broadcast (recovering an open one, settling a
// paid one, putting an open one's sends back) read that broadcast's sends only, custom plan or
// generic. The index by broadcast holds broadcasting sends only (migration 16), so a statement
// that does not name their state scans the whole table: about 1,830 pages here.
func TestBroadcastSendsReadByBroadcast(t *testing.T) {
	ctx := context.Background()
	l, _, payer := withAlice(t)
	// 100 past broadcasts of 1,000 confirmed sends each; a paid broadcast of one send, not yet
	// settled; an open broadcast of two. Few sends, because what a statement writes counts too:
	// each send written is a new row version in four or five indexes (settling three sends took
	// 37 pages, against the 40 readsItsPage allows).
	execAll(t, l.pool, []statement{
		{`INSERT INTO addresses (asset_id, wallet_id, address) VALUES ($1, $2, 'addr-payee')`, []any{l.assetID, l.walletID}},
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations)
			SELECT $1::bigint, 'broadcast', 'past-' || g, 6 FROM generate_series(1, 100) g UNION ALL SELECT $1::bigint, 'broadcast', 'paid', 0`, []any{l.assetID}},
		{`INSERT INTO broadcasts (asset_id, wallet_id, state, txid, closed_at)
			SELECT $1, $2, 'broadcasted', txid, now() FROM network_transactions WHERE asset_id = $1 ORDER BY id`, []any{l.assetID, l.walletID}},
		{`INSERT INTO broadcasts (asset_id, wallet_id, state) VALUES ($1, $2, 'opened')`, []any{l.assetID, l.walletID}},
		{`INSERT INTO transactions (asset_id, wallet_id, kind, state, sending_account_id, address_id, amount, broadcast_id, network_transaction_id)
			SELECT $1, $2, 'outgoing', 'confirmed', $3, (SELECT id FROM addresses WHERE address = 'addr-payee'), 1000, b.id, n.id
			FROM broadcasts b JOIN network_transactions n ON n.txid = b.txid, generate_series(1, 1000) g
			WHERE b.txid LIKE 'past-%'`, []any{l.assetID, l.walletID, payer.ID}},
		{`INSERT INTO transactions (asset_id, wallet_id, kind, state, sending_account_id, address_id, amount, broadcast_id)
			SELECT $1, $2, 'outgoing', 'broadcasting', $3, (SELECT id FROM addresses WHERE address = 'addr-payee'), 1000, b.id
			FROM broadcasts b, generate_series(1, CASE b.state WHEN 'opened' THEN 2 ELSE 1 END) g WHERE b.txid = 'paid' OR b.state = 'opened'`, []any{l.assetID, l.walletID, payer.ID}},
		{`ANALYZE transactions, broadcasts, network_transactions`, nil},
	})
	var open, paid, paidTx, kept int64
	if err := l.pool.QueryRow(ctx, `SELECT b.id, p.id, n.id, (SELECT min(id) FROM transactions WHERE broadcast_id = b.id)
		FROM broadcasts b, broadcasts p JOIN network_transactions n ON n.txid = p.txid
		WHERE b.state = 'opened' AND p.txid = 'paid'`).Scan(&open, &paid, &paidTx, &kept); err != nil {
		t.Fatal(err)
	}
	// An update without RETURNING returns no rows: the two that put sends back are checked for
	// what they read only. What they change, TestRefusedSendNeedsReview and the broadcaster's
	// tests check.
	readsItsPage(t, l, []pageRead{
		{"an open broadcast's sends, to recover it", openBroadcastSendsSQL, []any{open}, 2},
		{"a paid broadcast's send, to settle it", settleSendsSQL, []any{paidTx, paid, "paid", 0}, 1},
		{"an open broadcast's sends, back to pending", returnSendsSQL, []any{open, []int64{}}, 0},
		{"all but one of them, back to pending", returnSendsSQL, []any{open, []int64{kept}}, 0},
	})
}

// TestBroadcastWork: the read the broadcaster makes before a pass finds work from the moment a
// send is queued until its broadcast is past the tracking horizon, and none after; none for a
// send left for review, nor for another asset's send on the same database. On a ledger with
// 100,000 past sends it reads a few pages, with either plan.
func TestBroadcastWork(t *testing.T) {
	ctx := context.Background()
	l, pool, alice := withAlice(t)
	fund(t, l, alice.ID, 100_000)
	work := func(step string, want bool) {
		t.Helper()
		got, err := l.BroadcastWork(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if got != want {
			t.Errorf("%s: work %v, want %v", step, got, want)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	work("nothing ever sent", false)

	other := tenant(t, pool, "payroll")
	bob, err := other.CreateAccount(ctx, "bob")
	must(err)
	fund(t, other, bob.ID, 10_000)
	_, err = other.SendExternal(ctx, bob.ID, "addr-payee", 5_000, "", false)
	must(err)
	work("another asset's send queued", false)

	_, err = l.SendExternal(ctx, alice.ID, "addr-payee", 10_000, "", false)
	must(err)
	work("a send queued", true)
	bc, err := l.OpenBroadcast(ctx)
	must(err)
	work("its broadcast open", true)
	must(l.MarkPaid(ctx, bc.ID, "paid-1"))
	work("paid, its send not yet recorded", true)
	must(l.SettleBroadcast(ctx, bc.ID))
	work("recorded, unconfirmed", true)
	_, err = l.RecordBroadcastConfirmations(ctx, "paid-1", 5, "block-5", 105, false)
	must(err)
	work("5 confirmations of the 6 followed", true)
	_, err = l.RecordBroadcastConfirmations(ctx, "paid-1", 6, "block-5", 105, false)
	must(err)
	work("past the tracking horizon", false)

	dust, err := l.SendExternal(ctx, alice.ID, "addr-dust", 1, "", false)
	must(err)
	bc, err = l.OpenBroadcast(ctx)
	must(err)
	must(l.RefuseSend(ctx, bc.ID, dust.ID, "dust"))
	work("the only send refused and left for review", false)

	_, err = l.SendExternal(ctx, alice.ID, "addr-payee", 20_000, "", false)
	must(err)
	bc, err = l.OpenBroadcast(ctx)
	must(err)
	must(l.MarkBroadcasted(ctx, bc.ID, "paid-2"))
	_, err = l.RecordBroadcastConfirmations(ctx, "paid-2", 0, "", 0, true)
	must(err)
	work("a broadcast double-spent, its send left for review", false)

	// 100 past broadcasts of 1,000 confirmed sends each.
	execAll(t, pool, []statement{
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations)
			SELECT $1, 'broadcast', 'past-' || g, 6 FROM generate_series(1, 100) g`, []any{l.assetID}},
		{`INSERT INTO broadcasts (asset_id, wallet_id, state, txid, closed_at)
			SELECT $1, $2, 'broadcasted', txid, now() FROM network_transactions WHERE asset_id = $1 AND txid LIKE 'past-%' ORDER BY id`, []any{l.assetID, l.walletID}},
		{`INSERT INTO transactions (asset_id, wallet_id, kind, state, sending_account_id, address_id, amount, broadcast_id, network_transaction_id)
			SELECT $1, $2, 'outgoing', 'confirmed', $3, (SELECT id FROM addresses WHERE address = 'addr-payee' AND asset_id = $1), 1, b.id, n.id
			FROM broadcasts b JOIN network_transactions n ON n.txid = b.txid, generate_series(1, 1000) g
			WHERE b.txid LIKE 'past-%' AND b.asset_id = $1`, []any{l.assetID, l.walletID, alice.ID}},
		{`ANALYZE`, nil},
	})
	work("100,000 past sends", false)
	readsItsPage(t, l, []pageRead{{"anything to broadcast or follow, among 100,000 past sends", broadcastWorkSQL,
		[]any{l.assetID, l.opts.MaxTrackedConfirmations, l.walletID}, 1}})
}
