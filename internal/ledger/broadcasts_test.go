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
