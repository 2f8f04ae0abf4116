package intake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// Audit checks the ledger against the backend's chain, where `ledger check` checks it only
// against itself: every credited deposit is on the best chain with at least the asset's
// threshold and pays what the ledger booked, and every transaction we broadcast exists. It
// changes nothing; a catch-up would repair most of what it finds, so run it after one.
func (in *Intake) Audit(ctx context.Context) ([]ledger.Violation, error) {
	var out []ledger.Violation
	credited, err := in.ledger.CreditedDeposits(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing credited deposits: %w", err)
	}
	byTx := map[string][]ledger.Observation{}
	var order []string
	for _, o := range credited {
		if _, ok := byTx[o.TxID]; !ok {
			order = append(order, o.TxID)
		}
		byTx[o.TxID] = append(byTx[o.TxID], o)
	}
	threshold := in.ledger.Confirmations()
	for _, txid := range order {
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
		for _, o := range byTx[txid] {
			i := slices.IndexFunc(tx.Received, func(r backend.Output) bool { return r.Index == o.Output })
			if i < 0 || tx.Received[i].Address != o.Address || tx.Received[i].Amount != o.Amount {
				out = append(out, ledger.Violation{Check: "credited deposits pay what the ledger booked",
					Detail: fmt.Sprintf("deposit %s:%d is booked as %d to %s; the backend reports %s", txid, o.Output, o.Amount, o.Address, describe(tx.Received, i))})
			}
		}
	}
	broadcasts, err := in.ledger.BroadcastTxIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing broadcasts: %w", err)
	}
	ids := make([]string, 0, len(broadcasts))
	for id := range broadcasts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, txid := range ids {
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
