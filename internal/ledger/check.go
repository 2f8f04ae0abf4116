package ledger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Violation is one broken ledger invariant.
type Violation struct {
	Check  string
	Detail string
}

func (v Violation) String() string { return v.Check + ": " + v.Detail }

// invariants are SQL queries that return one row per violation, as (detail text). They run over
// every asset in the database, so `ledger check` needs no asset config.
func invariants() []struct{ name, query string } {
	return []struct{ name, query string }{
		{"wallet balance equals the sum of its accounts", `
		SELECT format('wallet %s (asset %s): balance %s, accounts sum to %s', w.id, concat_ws('/', nullif(a.namespace, ''), a.name), w.balance, coalesce(sum(ac.balance), 0))
		FROM wallets w JOIN assets a ON a.id = w.asset_id LEFT JOIN accounts ac ON ac.wallet_id = w.id
		GROUP BY w.id, a.namespace, a.name, w.balance HAVING w.balance <> coalesce(sum(ac.balance), 0)`},
		{"account balance equals its booked transactions", `
		WITH moves AS (
			SELECT receiving_account_id AS account, amount FROM transactions
			 WHERE kind = 'internal' OR (kind = 'deposit' AND credited)
			UNION ALL
			SELECT sending_account_id, -amount FROM transactions
			 WHERE kind IN ('internal', 'network_fee') OR (kind = 'outgoing' AND state NOT IN ('failed', 'cancelled')))
		SELECT format('account %s (%s): balance %s, transactions sum to %s', ac.id, ac.name, ac.balance, coalesce(sum(m.amount), 0))
		FROM accounts ac LEFT JOIN moves m ON m.account = ac.id
		GROUP BY ac.id, ac.name, ac.balance HAVING ac.balance <> coalesce(sum(m.amount), 0)`},
		{"credited deposits have their confirmations", `
		SELECT format('deposit %s (%s:%s) is credited with %s confirmations', t.id, n.txid, t.output_index, n.confirmations)
		FROM transactions t JOIN network_transactions n ON n.id = t.network_transaction_id
		WHERE t.kind = 'deposit' AND t.credited AND n.confirmations < 1`},
		{"deposit state matches its credit", `
		SELECT format('deposit %s is %s but credited=%s', id, state, credited) FROM transactions
		WHERE kind = 'deposit' AND ((credited AND state <> 'credited') OR (NOT credited AND state = 'credited'))`},
		{"user accounts are not overdrawn", `
		SELECT format('account %s (%s) has a negative balance %s (a reorg took back a deposit it had spent?)', id, name, balance)
		FROM accounts WHERE kind = 'user' AND balance < 0`},
		{"deposits pay our own receiving addresses", `
		SELECT format('deposit %s pays address %s, which belongs to no account', t.id, ad.address)
		FROM transactions t JOIN addresses ad ON ad.id = t.address_id
		WHERE t.kind = 'deposit' AND ad.account_id IS NULL`},
	}
}

// Check verifies every invariant over the whole database and returns the violations found.
func Check(ctx context.Context, pool *pgxpool.Pool) ([]Violation, error) {
	if err := CheckSchema(ctx, pool); err != nil {
		return nil, err
	}
	var out []Violation
	for _, inv := range invariants() {
		rows, err := pool.Query(ctx, inv.query)
		if err != nil {
			return nil, fmt.Errorf("checking %q: %w", inv.name, err)
		}
		for rows.Next() {
			var detail string
			if err := rows.Scan(&detail); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, Violation{Check: inv.name, Detail: detail})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Confirmations is the asset's threshold for crediting a deposit.
func (l *Ledger) Confirmations() int32 { return l.opts.Confirmations }

// TrackedConfirmations is the tracking horizon: a deposit is followed until its transaction has
// this many confirmations, and booked with at most this many.
func (l *Ledger) TrackedConfirmations() int32 { return l.opts.MaxTrackedConfirmations }
