package ledger

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestAuditListingsPaged: the chain audit's two listings, read a page at a time after the last
// page's end, are the whole listing in the order the ledger learnt of each transaction: every
// credited deposit output of the asset and none that is not credited or is another asset's, with
// a transaction's outputs always on one page; every broadcast of the asset and none of another's.
func TestAuditListingsPaged(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	shop, payroll := tenant(t, pool, "shop"), tenant(t, pool, "payroll")
	for _, l := range []*Ledger{shop, payroll} {
		a, err := l.CreateAccount(ctx, "customer")
		if err != nil {
			t.Fatal(err)
		}
		for _, addr := range []string{"addr-1", "addr-2", "addr-3"} {
			if _, err := l.AddReceivingAddress(ctx, a.ID, addr+"-"+l.opts.Namespace, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Shop's deposits, with payroll's booked between them: a and d pay shop more than once, b
	// is below the threshold.
	for _, d := range []struct {
		l   *Ledger
		obs []Observation
	}{
		{shop, []Observation{{TxID: "a", Output: 0, Address: "addr-1-shop", Amount: 100, Confirmations: 3}, {TxID: "a", Output: 3, Address: "addr-2-shop", Amount: 200, Confirmations: 3}}},
		{payroll, []Observation{{TxID: "p", Output: 0, Address: "addr-1-payroll", Amount: 300, Confirmations: 3}}},
		{shop, []Observation{{TxID: "b", Output: 0, Address: "addr-1-shop", Amount: 400, Confirmations: 1}}},
		{shop, []Observation{{TxID: "c", Output: 1, Address: "addr-3-shop", Amount: 500, Confirmations: 6}}},
		{shop, []Observation{{TxID: "d", Output: 0, Address: "addr-1-shop", Amount: 600, Confirmations: 4},
			{TxID: "d", Output: 1, Address: "addr-2-shop", Amount: 700, Confirmations: 4}, {TxID: "d", Output: 2, Address: "addr-3-shop", Amount: 800, Confirmations: 4}}},
	} {
		if _, err := d.l.RecordDeposits(ctx, d.obs); err != nil {
			t.Fatal(err)
		}
	}
	execAll(t, pool, []statement{
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations) VALUES ($1, 'broadcast', 'sent-1', 6)`, []any{shop.assetID}},
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations) VALUES ($1, 'broadcast', 'payroll-sent', 6)`, []any{payroll.assetID}},
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations) VALUES ($1, 'broadcast', 'sent-2', 0)`, []any{shop.assetID}},
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations) VALUES ($1, 'broadcast', 'sent-3', 2)`, []any{shop.assetID}},
	})
	const wantDeposits = "[a:0 100 a:3 200] [c:1 500] [d:0 600 d:1 700 d:2 800]"
	for _, tc := range []struct {
		limit                int
		deposits, broadcasts string
	}{
		{1, wantDeposits, "[sent-1] [sent-2] [sent-3]"},
		{2, "[a:0 100 a:3 200 c:1 500] [d:0 600 d:1 700 d:2 800]", "[sent-1 sent-2] [sent-3]"},
		{0, "[a:0 100 a:3 200 c:1 500 d:0 600 d:1 700 d:2 800]", "[sent-1 sent-2 sent-3]"},
	} {
		var pages []string
		for page := (Page{Limit: tc.limit}); ; {
			obs, last, err := shop.CreditedDeposits(ctx, page)
			if err != nil {
				t.Fatal(err)
			}
			if len(obs) == 0 {
				if last != page.After {
					t.Errorf("limit %d: the empty page after %d ends at %d", tc.limit, page.After, last)
				}
				break
			}
			var got []string
			for _, o := range obs {
				got = append(got, fmt.Sprintf("%s:%d %d", o.TxID, o.Output, o.Amount))
			}
			pages = append(pages, "["+strings.Join(got, " ")+"]")
			page.After = last
		}
		if got := strings.Join(pages, " "); got != tc.deposits {
			t.Errorf("limit %d: credited deposits %s, want %s", tc.limit, got, tc.deposits)
		}
		pages = nil
		for page := (Page{Limit: tc.limit}); ; {
			txids, last, err := shop.BroadcastTxIDs(ctx, page)
			if err != nil {
				t.Fatal(err)
			}
			if len(txids) == 0 {
				break
			}
			pages = append(pages, fmt.Sprint(txids))
			page.After = last
		}
		if got := strings.Join(pages, " "); got != tc.broadcasts {
			t.Errorf("limit %d: broadcasts %s, want %s", tc.limit, got, tc.broadcasts)
		}
	}
}

// TestAuditListingsReadTheirPage: on a database where 100,000 credited deposits and 100,000
// broadcasts of one asset are interleaved with another asset's, a later page of either audit
// listing reads that page (at most 40 pages of the database, some eight a deposit: its network
// transaction, its booking, the check that it is credited), custom plan or generic: a whole audit
// is one pass over the history, not a pass per page. A first version of the deposits' page
// walked the bookings from the first on each page: 2,029 pages, 27 ms, halfway through 200,000.
func TestAuditListingsReadTheirPage(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	shop, payroll := tenant(t, pool, "shop"), tenant(t, pool, "payroll")
	customer, err := shop.CreateAccount(ctx, "customer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shop.AddReceivingAddress(ctx, customer.ID, "addr-customer", ""); err != nil {
		t.Fatal(err)
	}
	execAll(t, pool, []statement{
		{`INSERT INTO network_transactions (asset_id, kind, txid, confirmations)
			SELECT CASE WHEN g % 3 = 0 THEN $2::bigint ELSE $1::bigint END, k, k || '-' || g, 6
			FROM generate_series(1, 150000) g, (VALUES ('deposit'), ('broadcast')) kinds (k)`, []any{shop.assetID, payroll.assetID}},
		{`INSERT INTO transactions (asset_id, wallet_id, kind, state, receiving_account_id, address_id, network_transaction_id, output_index, amount, credited)
			SELECT $1, $2, 'deposit', 'credited', $3, (SELECT id FROM addresses WHERE address = 'addr-customer'), id, 0, 1000, true
			FROM network_transactions WHERE asset_id = $1 AND kind = 'deposit'`, []any{shop.assetID, shop.walletID, customer.ID}},
		{`ANALYZE`, nil},
	})
	var middle int64
	if err := pool.QueryRow(ctx, `SELECT id FROM network_transactions WHERE txid = 'deposit-75001'`).Scan(&middle); err != nil {
		t.Fatal(err)
	}
	readsItsPage(t, shop, []pageRead{
		{"3 credited deposits from the middle", creditedDepositsSQL, []any{shop.assetID, middle, 3}, 3},
		{"3 broadcasts from the middle", broadcastTxIDsSQL, []any{shop.assetID, middle, 3}, 3},
	})
}
