package ledger

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestTransactionsListing: every combination of filters lists the asset's transactions that
// match, newest first, a page at a time, and none of another asset's on the same database.
func TestTransactionsListing(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	shop, payroll := tenant(t, pool, "shop"), tenant(t, pool, "payroll")

	type row struct {
		id                 int64
		kind, state        string
		sending, receiving int64
	}
	var rows []row
	// add writes a transaction straight into l's tables: the listing reads what is there,
	// whichever path wrote it.
	add := func(l *Ledger, kind, state string, sending, receiving int64) {
		t.Helper()
		var id int64
		err := pool.QueryRow(ctx, `INSERT INTO transactions (asset_id, wallet_id, kind, state, sending_account_id, receiving_account_id, address_id,
				network_transaction_id, output_index, amount)
			VALUES ($1, $2, $3, $4, nullif($5, 0), nullif($6, 0),
				CASE WHEN $3 = 'outgoing' THEN (SELECT id FROM addresses WHERE asset_id = $1 LIMIT 1) END,
				CASE WHEN $3 = 'deposit' THEN (SELECT id FROM network_transactions WHERE asset_id = $1 LIMIT 1) END,
				CASE WHEN $3 = 'deposit' THEN (SELECT count(*) FROM transactions WHERE asset_id = $1) END, 1000) RETURNING id`,
			l.assetID, l.walletID, kind, state, sending, receiving).Scan(&id)
		if err != nil {
			t.Fatalf("adding a %s transaction: %v", kind, err)
		}
		if l == shop {
			rows = append(rows, row{id, kind, state, sending, receiving})
		}
	}
	accounts := func(l *Ledger) (ids [3]int64) {
		for i := range ids {
			a, err := l.CreateAccount(ctx, fmt.Sprint("user-", i))
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = a.ID
		}
		if _, err := pool.Exec(ctx, `INSERT INTO addresses (asset_id, wallet_id, address) VALUES ($1, $2, $3)`,
			l.assetID, l.walletID, fmt.Sprint("addr-payee-", l.assetID)); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO network_transactions (asset_id, kind, txid, confirmations) VALUES ($1, 'deposit', $2, 1)`,
			l.assetID, fmt.Sprint("tx-", l.assetID)); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	a, p := accounts(shop), accounts(payroll)
	tenants := []struct {
		l *Ledger
		u [3]int64
	}{{shop, a}, {payroll, p}}
	for i := range 3 { // the two assets' transactions interleaved, each kind and a few states
		for _, tn := range tenants {
			l, u := tn.l, tn.u
			add(l, "internal", "done", u[0], u[1])
			add(l, "internal", "done", u[1], u[2])
			add(l, "deposit", []string{"incoming", "credited", "credited"}[i], 0, u[i])
			add(l, "outgoing", []string{"pending", "needs_review", "confirmed"}[i], u[2], 0)
		}
	}

	mid := rows[len(rows)/2].id
	for _, f := range []TransactionFilter{
		{},
		{Before: mid},
		{Before: mid, Limit: 3},
		{Before: rows[0].id}, // nothing older
		{AccountID: a[1], Before: mid, Limit: 2},
		{AccountID: a[2], Kind: "outgoing", Before: mid},
		{Kind: "deposit", Before: mid},
		{State: "needs_review", Before: mid},
		{State: "pending", Before: mid},
		{Limit: 5},
		{AccountID: a[0]},
		{AccountID: a[1]},
		{AccountID: a[1], Limit: 4},
		{AccountID: a[2], Kind: "outgoing"},
		{AccountID: a[2], State: "needs_review"},
		{AccountID: a[1], Kind: "deposit", State: "credited"},
		{AccountID: p[0]}, // another asset's account
		{Kind: "deposit"},
		{Kind: "outgoing", Limit: 2},
		{State: "pending"},
		{State: "needs_review"},
		{State: "credited"},
		{State: "pending", Kind: "deposit"},
	} {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			var want []int64
			for _, r := range slices.Backward(rows) {
				if (f.AccountID == 0 || r.sending == f.AccountID || r.receiving == f.AccountID) &&
					(f.Kind == "" || r.kind == f.Kind) && (f.State == "" || r.state == f.State) && (f.Before == 0 || r.id < f.Before) &&
					(f.Limit == 0 || len(want) < f.Limit) {
					want = append(want, r.id)
				}
			}
			got, err := shop.Transactions(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]int64, len(got))
			for i, tx := range got {
				ids[i] = tx.ID
			}
			if !slices.Equal(ids, want) {
				t.Errorf("listed %v, want %v", ids, want)
			}
		})
	}

	// Paging through an account's transactions, two at a time, each page starting before the
	// last one's end, lists each exactly once.
	for _, acct := range a {
		all, err := shop.Transactions(ctx, TransactionFilter{AccountID: acct})
		if err != nil {
			t.Fatal(err)
		}
		var paged []Transaction
		for f := (TransactionFilter{AccountID: acct, Limit: 2}); ; {
			page, err := shop.Transactions(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			if paged = append(paged, page...); len(paged) > len(rows) {
				t.Fatalf("account %d: paging does not end", acct)
			}
			f.Before = page[len(page)-1].ID
		}
		if len(all) == 0 || !slices.EqualFunc(paged, all, func(x, y Transaction) bool { return x.ID == y.ID }) {
			t.Errorf("account %d: paged through %d transactions, listed %d at once", acct, len(paged), len(all))
		}
	}
}

// statement is one SQL statement and its arguments, for execAll.
type statement struct {
	sql  string
	args []any
}

// execAll runs a test's set-up statements in order.
func execAll(t *testing.T, pool *pgxpool.Pool, statements []statement) {
	t.Helper()
	for _, s := range statements {
		if _, err := pool.Exec(context.Background(), s.sql, s.args...); err != nil {
			t.Fatalf("%s: %v", s.sql, err)
		}
	}
}

// tenant opens the asset btc of a namespace on a database other namespaces' assets share.
func tenant(t *testing.T, pool *pgxpool.Pool, namespace string) *Ledger {
	t.Helper()
	l, err := openAs(t, pool, namespace, "btc", "")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestAccountsAndAddressesPaged: the accounts of an asset, and the receiving addresses of an
// account, listed a page at a time after the last page's end, are the whole listing, in id
// order, and none of another asset's or another account's, on a database two assets share.
func TestAccountsAndAddressesPaged(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	shop, payroll := tenant(t, pool, "shop"), tenant(t, pool, "payroll")
	// The two assets' accounts interleaved, and shop's first customer's addresses interleaved
	// with the other customers'.
	wantAccounts := []int64{shop.FeeAccountID()}
	var wantAddresses []int64
	var first int64
	for i := range 7 {
		for _, l := range []*Ledger{shop, payroll} {
			a, err := l.CreateAccount(ctx, fmt.Sprint("customer-", i))
			if err != nil {
				t.Fatal(err)
			}
			owner := a.ID
			if l == shop {
				wantAccounts = append(wantAccounts, a.ID)
				if first == 0 {
					first = a.ID
				}
				if i%2 == 1 {
					owner = first
				}
			}
			addr, err := l.AddReceivingAddress(ctx, owner, fmt.Sprintf("addr-%d-%d", l.assetID, i), "")
			if err != nil {
				t.Fatal(err)
			}
			if owner == first {
				wantAddresses = append(wantAddresses, addr.ID)
			}
		}
	}
	paged := func(list func(Page) ([]int64, error)) (all, byTwo []int64) {
		t.Helper()
		all, err := list(Page{})
		if err != nil {
			t.Fatal(err)
		}
		for p := (Page{Limit: 2}); ; {
			ids, err := list(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) > p.Limit {
				t.Fatalf("a page of %d listed %d", p.Limit, len(ids))
			}
			if len(ids) == 0 {
				return all, byTwo
			}
			if byTwo = append(byTwo, ids...); len(byTwo) > 100 {
				t.Fatal("paging does not end")
			}
			p.After = ids[len(ids)-1]
		}
	}
	all, byTwo := paged(func(p Page) ([]int64, error) {
		as, err := shop.Accounts(ctx, p)
		ids := make([]int64, len(as))
		for i, a := range as {
			ids[i] = a.ID
		}
		return ids, err
	})
	if !slices.Equal(all, wantAccounts) || !slices.Equal(byTwo, wantAccounts) {
		t.Errorf("accounts listed %v, paged %v, want %v", all, byTwo, wantAccounts)
	}
	all, byTwo = paged(func(p Page) ([]int64, error) {
		as, err := shop.ReceivingAddresses(ctx, first, p)
		ids := make([]int64, len(as))
		for i, a := range as {
			ids[i] = a.ID
		}
		return ids, err
	})
	if len(wantAddresses) < 3 || !slices.Equal(all, wantAddresses) || !slices.Equal(byTwo, wantAddresses) {
		t.Errorf("addresses listed %v, paged %v, want %v", all, byTwo, wantAddresses)
	}
}

// TestTransactionsListingReadsItsPage: listing the transactions of an account with few, on a
// ledger with many, reads the account's own, and a listing of the sends needing review those
// sends: 5-8 pages each, custom plan or generic. One catch-all statement walked the primary key
// back from the newest transaction, past every transaction since: 3,079-4,173.
func TestTransactionsListingReadsItsPage(t *testing.T) {
	ctx := context.Background()
	l := open(t, newPool(t))
	quiet, err := l.CreateAccount(ctx, "quiet")
	if err != nil {
		t.Fatal(err)
	}
	busy, err := l.CreateAccount(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.pool.Exec(ctx, `INSERT INTO addresses (asset_id, wallet_id, address) VALUES ($1, $2, 'addr-payee')`, l.assetID, l.walletID); err != nil {
		t.Fatal(err)
	}
	// The quiet account's transfers and a send needing review, then 200,000 transfers among a
	// thousand customers.
	execAll(t, l.pool, []statement{
		{`INSERT INTO transactions (asset_id, wallet_id, kind, state, sending_account_id, receiving_account_id, amount)
			SELECT $1, $2, 'internal', 'done', $3, $4, 1000 FROM generate_series(1, 3)`, []any{l.assetID, l.walletID, quiet.ID, busy.ID}},
		{`INSERT INTO transactions (asset_id, wallet_id, kind, state, sending_account_id, address_id, amount)
			SELECT $1, $2, 'outgoing', 'needs_review', $3, id, 1000 FROM addresses WHERE address = 'addr-payee'`, []any{l.assetID, l.walletID, busy.ID}},
		{`INSERT INTO accounts (wallet_id, name) SELECT $1, 'customer-' || g FROM generate_series(1, 1000) g`, []any{l.walletID}},
		{`INSERT INTO transactions (asset_id, wallet_id, kind, state, sending_account_id, receiving_account_id, amount)
			SELECT $1, $2, 'internal', 'done', c.ids[1 + g % 1000], c.ids[1 + (7 * g + 1) % 1000], 1000
			FROM (SELECT array_agg(id ORDER BY id) AS ids FROM accounts WHERE name LIKE 'customer-%') c, generate_series(1, 200000) g`,
			[]any{l.assetID, l.walletID}},
	})
	if _, err := l.pool.Exec(ctx, `ANALYZE transactions`); err != nil {
		t.Fatal(err)
	}
	// A later page of a customer's transactions, from the middle of the ledger.
	var customer, mid int64
	if err := l.pool.QueryRow(ctx, `SELECT (SELECT id FROM accounts WHERE name = 'customer-500'), (SELECT max(id) / 2 FROM transactions)`).Scan(&customer, &mid); err != nil {
		t.Fatal(err)
	}
	var cases []pageRead
	for _, c := range []struct {
		f    TransactionFilter
		want int
	}{
		{TransactionFilter{AccountID: quiet.ID}, 3},
		{TransactionFilter{State: "needs_review"}, 1},
		{TransactionFilter{State: "needs_review", Kind: "outgoing", AccountID: busy.ID}, 1},
		{TransactionFilter{AccountID: customer, Before: mid, Limit: 5}, 5},
	} {
		query, args := l.transactionsQuery(c.f)
		cases = append(cases, pageRead{fmt.Sprintf("%+v", c.f), query, args, c.want})
	}
	readsItsPage(t, l, cases)
}

// pageRead is a listing's statement and arguments, and how many rows it must return.
type pageRead struct {
	name  string
	query string
	args  []any
	want  int
}

// readsItsPage checks that each listing returns its rows reading at most 40 pages of the
// database, with both plans a statement gets: custom, for its first executions, and the generic
// one PostgreSQL may keep for it after five (pgx prepares and caches each statement). Each runs
// in a transaction rolled back after it, so a statement that writes can be checked too.
func readsItsPage(t *testing.T, l *Ledger, cases []pageRead) {
	t.Helper()
	ctx := context.Background()
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rows, pages, plan := analyzed(t, tx, c.query, c.args...)
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s, %s: %d rows, %d pages", mode, c.name, rows, pages)
			if rows != c.want || pages > 40 {
				t.Errorf("%s, %s: %d rows (want %d) in %d pages:\n%s", mode, c.name, rows, c.want, pages, plan)
			}
		}
	}
}

// TestAccountsAndAddressesReadTheirPage: on a ledger with 200,000 receiving addresses among a
// thousand customers, listing a quiet account's addresses, or a later page of a busy one's or of
// the accounts, reads that page (at most 40 pages of the database), custom plan or generic. Before
// migration 15 an account's addresses were read by scanning every address on the database.
func TestAccountsAndAddressesReadTheirPage(t *testing.T) {
	ctx := context.Background()
	l := open(t, newPool(t))
	execAll(t, l.pool, []statement{
		{`INSERT INTO accounts (wallet_id, name) SELECT $1, 'customer-' || g FROM generate_series(1, 1000) g`, []any{l.walletID}},
		{`INSERT INTO addresses (asset_id, wallet_id, account_id, address)
			SELECT $1, $2, c.ids[1 + g % 1000], 'addr-' || g
			FROM (SELECT array_agg(id ORDER BY id) AS ids FROM accounts WHERE name LIKE 'customer-%') c, generate_series(1, 200000) g`,
			[]any{l.assetID, l.walletID}},
		{`INSERT INTO accounts (wallet_id, name) VALUES ($1, 'quiet')`, []any{l.walletID}},
		{`INSERT INTO addresses (asset_id, wallet_id, account_id, address)
			SELECT $1, $2, (SELECT id FROM accounts WHERE name = 'quiet'), 'addr-quiet-' || g FROM generate_series(1, 3) g`,
			[]any{l.assetID, l.walletID}},
		{`ANALYZE accounts, addresses`, nil},
	})
	var quiet, busy, busyMid, accountsMid int64
	if err := l.pool.QueryRow(ctx, `SELECT (SELECT id FROM accounts WHERE name = 'quiet'), a.id,
			(SELECT id FROM addresses WHERE account_id = a.id ORDER BY id OFFSET 100 LIMIT 1), (SELECT id FROM accounts WHERE name = 'customer-500')
		FROM accounts a WHERE a.name = 'customer-7'`).Scan(&quiet, &busy, &busyMid, &accountsMid); err != nil {
		t.Fatal(err)
	}
	readsItsPage(t, l, []pageRead{
		{"a quiet account's addresses", receivingAddressesSQL, []any{quiet, l.walletID, 0, Page{}.limit()}, 3},
		{"a later page of a busy account's addresses", receivingAddressesSQL, []any{busy, l.walletID, busyMid, 5}, 5},
		{"a later page of the accounts", accountsSQL, []any{l.walletID, accountsMid, 5}, 5},
	})
}
