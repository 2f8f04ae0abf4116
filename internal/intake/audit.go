package intake

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// auditPage is how many network transactions the audit reads from the ledger at a time: its
// memory is a page's, not the history's, and it runs in the helper's container, under the
// helper's memory limit.
const auditPage = 500

// Audit checks the ledger against the backend's chain, where `ledger check` checks it only
// against itself: every credited deposit is on the best chain with at least the asset's
// threshold and pays what the ledger booked, and every transaction we broadcast exists. It
// changes nothing; a catch-up would repair most of what it finds, so run it after one. It walks
// the history a page at a time, oldest first.
func (in *Intake) Audit(ctx context.Context) ([]ledger.Violation, error) {
	return in.audit(ctx, auditPage)
}

func (in *Intake) audit(ctx context.Context, pageSize int) ([]ledger.Violation, error) {
	var out []ledger.Violation
	err := walk(ctx, pageSize, in.ledger.CreditedDeposits, func(credited []ledger.Observation) (err error) {
		out, err = in.auditDeposits(ctx, credited, out)
		return err
	})
	if err != nil {
		return nil, err
	}
	err = walk(ctx, pageSize, in.ledger.BroadcastTxIDs, func(txids []string) (err error) {
		out, err = in.auditBroadcasts(ctx, txids, out)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// walk reads a ledger listing a page at a time, oldest first, and hands each page to check until
// the listing runs out.
func walk[T any](ctx context.Context, size int, list func(context.Context, ledger.Page) ([]T, int64, error), check func([]T) error) error {
	for page := (ledger.Page{Limit: size}); ; {
		rows, last, err := list(ctx, page)
		if err != nil || len(rows) == 0 {
			return err
		}
		if err := check(rows); err != nil {
			return err
		}
		page.After = last
	}
}

// auditDeposits checks a page of credited deposit outputs, each transaction's outputs together,
// and appends what it finds to out.
func (in *Intake) auditDeposits(ctx context.Context, credited []ledger.Observation, out []ledger.Violation) ([]ledger.Violation, error) {
	threshold := in.ledger.Confirmations()
	for len(credited) > 0 {
		txid := credited[0].TxID
		n := 1
		for n < len(credited) && credited[n].TxID == txid {
			n++
		}
		outputs := credited[:n]
		credited = credited[n:]
		tx, err := in.backend.Transaction(ctx, txid)
		switch {
		case errors.Is(err, backend.ErrUnknownTransaction):
			out = append(out, ledger.Violation{Check: "credited deposits are on the chain",
				Detail: fmt.Sprintf("deposit %s is credited but the backend does not know the transaction", txid)})
			continue
		case err != nil:
			return nil, fmt.Errorf("looking up credited deposit %s: %w", txid, err)
		case tx.Conflicted:
			out = append(out, ledger.Violation{Check: "credited deposits are on the chain",
				Detail: fmt.Sprintf("deposit %s is credited but was double-spent on the best chain", txid)})
			continue
		case tx.Confirmations < threshold:
			out = append(out, ledger.Violation{Check: "credited deposits are on the chain",
				Detail: fmt.Sprintf("deposit %s is credited but has %d confirmations on the best chain, below the threshold %d", txid, tx.Confirmations, threshold)})
		}
		for _, o := range outputs {
			i := slices.IndexFunc(tx.Received, func(r backend.Output) bool { return r.Index == o.Output })
			if i < 0 || tx.Received[i].Address != o.Address || tx.Received[i].Amount != o.Amount {
				out = append(out, ledger.Violation{Check: "credited deposits pay what the ledger booked",
					Detail: fmt.Sprintf("deposit %s:%d is booked as %d to %s; the backend reports %s", txid, o.Output, o.Amount, o.Address, describe(tx.Received, i))})
			}
		}
	}
	return out, nil
}

// auditBroadcasts checks that each of a page of our broadcasts exists and was not double-spent,
// and appends what it finds to out.
func (in *Intake) auditBroadcasts(ctx context.Context, txids []string, out []ledger.Violation) ([]ledger.Violation, error) {
	for _, txid := range txids {
		tx, err := in.backend.Transaction(ctx, txid)
		switch {
		case errors.Is(err, backend.ErrUnknownTransaction):
			out = append(out, ledger.Violation{Check: "our broadcasts exist",
				Detail: fmt.Sprintf("broadcast %s is not known to the backend", txid)})
		case err != nil:
			return nil, fmt.Errorf("looking up broadcast %s: %w", txid, err)
		case tx.Conflicted:
			out = append(out, ledger.Violation{Check: "our broadcasts exist",
				Detail: fmt.Sprintf("broadcast %s was double-spent on the best chain: its sends did not pay", txid)})
		}
	}
	return out, nil
}

func describe(received []backend.Output, i int) string {
	if i < 0 {
		return "no such output paying the wallet"
	}
	return fmt.Sprintf("%d to %s", received[i].Amount, received[i].Address)
}
