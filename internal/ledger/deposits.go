package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Observation is what the trusted backend says about one output of a wallet transaction.
type Observation struct {
	TxID    string
	Output  int32
	Address string
	Amount  Amount
	// Confirmations: -1 when the backend no longer has the transaction (reorganised away or
	// double-spent), 0 when it is unconfirmed.
	Confirmations int32
	BlockHash     string
	BlockHeight   int64
	// Conflicted: the transaction was double-spent on the best chain. The deposit is taken back
	// and is never credited again.
	Conflicted bool
}

// DepositUpdate says what booking an observation changed.
type DepositUpdate struct {
	Transaction Transaction
	// New: the deposit was not known before.
	New bool
	// Changed: anything changed (a new deposit, confirmations, credit); false for a repeat.
	Changed bool
	// Credited: the deposit reached the threshold now and its amount went to the account.
	Credited bool
	// Uncredited: a credited deposit lost confirmations (reorg, double spend) and was taken back.
	Uncredited bool
}

// RecordDeposit books what the backend reports about an output paying one of our receiving
// addresses. It is idempotent: the same observation twice changes nothing the second time. The
// deposit is credited once, when confirmations reach the asset's threshold, and taken back if a
// reorganisation lowers them again. Every change writes a txupdate event to the outbox in the same
// transaction.
func (l *Ledger) RecordDeposit(ctx context.Context, o Observation) (DepositUpdate, error) {
	if o.TxID == "" || o.Output < 0 {
		return DepositUpdate{}, fmt.Errorf("deposit observation needs a txid and an output index, got %q:%d", o.TxID, o.Output)
	}
	if o.Amount <= 0 {
		return DepositUpdate{}, fmt.Errorf("deposit %s:%d: %w", o.TxID, o.Output, ErrInvalidAmount)
	}
	var up DepositUpdate
	err := inTx(ctx, l.pool, l.opts.Retry, func(tx pgx.Tx) error {
		up = DepositUpdate{}
		var addrID int64
		var accountID *int64
		err := tx.QueryRow(ctx, `SELECT id, account_id FROM addresses WHERE asset_id = $1 AND address = $2`, l.assetID, o.Address).Scan(&addrID, &accountID)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && accountID == nil) {
			return fmt.Errorf("%s: %w", o.Address, ErrNotOurAddress)
		}
		if err != nil {
			return err
		}

		conf := o.Confirmations
		if conf > l.opts.MaxTrackedConfirmations {
			conf = l.opts.MaxTrackedConfirmations
		}
		if o.Conflicted {
			conf = -1
		}
		var ntID int64
		var oldConf int32
		err = tx.QueryRow(ctx, `INSERT INTO network_transactions (asset_id, kind, txid, confirmations, block_hash, block_height)
			VALUES ($1, 'deposit', $2, $3, nullif($4, ''), nullif($5, 0))
			ON CONFLICT (asset_id, kind, txid) DO UPDATE SET txid = excluded.txid
			RETURNING id, confirmations`, l.assetID, o.TxID, conf, o.BlockHash, o.BlockHeight).Scan(&ntID, &oldConf)
		if err != nil {
			return err
		}
		if oldConf != conf {
			// A conflicted transaction keeps the -1 it was given (see the state check below).
			if _, err := tx.Exec(ctx, `UPDATE network_transactions SET confirmations = $1, block_hash = nullif($2, ''), block_height = nullif($3, 0), updated_at = now()
				WHERE id = $4 AND NOT EXISTS (SELECT 1 FROM transactions WHERE network_transaction_id = $4 AND state = 'conflicted')`,
				conf, o.BlockHash, o.BlockHeight, ntID); err != nil {
				return err
			}
		}

		var (
			txID     int64
			amount   Amount
			receiver int64
			addrOfTx *int64
			credited bool
			state    string
		)
		err = tx.QueryRow(ctx, `SELECT id, amount, receiving_account_id, address_id, credited, state FROM transactions
			WHERE network_transaction_id = $1 AND output_index = $2 AND kind = 'deposit' FOR UPDATE`, ntID, o.Output).
			Scan(&txID, &amount, &receiver, &addrOfTx, &credited, &state)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			up.New = true
			credited, state, amount, receiver = false, "incoming", o.Amount, *accountID
			if err := tx.QueryRow(ctx, `INSERT INTO transactions (asset_id, wallet_id, kind, state, receiving_account_id, address_id, amount,
				network_transaction_id, output_index) VALUES ($1, $2, 'deposit', 'incoming', $3, $4, $5, $6, $7) RETURNING id`,
				l.assetID, l.walletID, receiver, addrID, amount, ntID, o.Output).Scan(&txID); err != nil {
				return err
			}
		case err != nil:
			return err
		case amount != o.Amount || addrOfTx == nil || *addrOfTx != addrID:
			// An output of a transaction cannot change; a backend saying so is wrong, and the
			// ledger keeps what it booked until a human looks.
			return fmt.Errorf("deposit %s:%d was booked as %s to %s, the backend now reports %s to %s: %w",
				o.TxID, o.Output, amount.Format(l.coin.Decimals), o.Address, o.Amount.Format(l.coin.Decimals), o.Address, ErrInconsistent)
		}

		if state == "conflicted" {
			// Final: a double spend on the best chain is not undone by what a wallet says later.
			return nil
		}
		newState := state
		want := conf >= l.opts.Confirmations && !o.Conflicted
		switch {
		case want && !credited:
			account, err := l.lockAccount(ctx, tx, receiver)
			if err != nil {
				return err
			}
			if err := l.adjust(ctx, tx, account, amount); err != nil {
				return err
			}
			credited, up.Credited, newState = true, true, "credited"
		case !want && credited:
			account, err := l.lockAccount(ctx, tx, receiver)
			if err != nil {
				return err
			}
			if err := l.adjust(ctx, tx, account, -amount); err != nil {
				return err
			}
			credited, up.Uncredited = false, true
			newState = "incoming"
			if conf < 0 {
				newState = "reverted"
			}
			if o.Conflicted {
				newState = "conflicted"
			}
		case o.Conflicted:
			newState = "conflicted"
		case !want && conf < 0:
			newState = "reverted"
		case !want:
			newState = "incoming"
		}
		up.Changed = up.New || oldConf != conf || newState != state
		if newState != state || up.Credited || up.Uncredited {
			if _, err := tx.Exec(ctx, `UPDATE transactions SET state = $1, credited = $2, updated_at = now() WHERE id = $3`, newState, credited, txID); err != nil {
				return err
			}
		}
		up.Transaction, err = l.scanTransaction(tx.QueryRow(ctx, transactionSelect+` WHERE t.id = $1`, txID))
		if err != nil {
			return err
		}
		if up.Changed {
			return l.writeEvent(ctx, tx, "txupdate", l.txUpdatePayload(up.Transaction, ntID, up))
		}
		return nil
	})
	if err != nil {
		return DepositUpdate{}, fmt.Errorf("booking deposit %s:%d: %w", o.TxID, o.Output, err)
	}
	return up, nil
}

// TxUpdate is the payload of a txupdate event. Amounts are decimal strings.
type TxUpdate struct {
	Asset                string `json:"asset"`
	Coin                 string `json:"coin"`
	Network              string `json:"network"`
	Kind                 string `json:"kind"`
	TransactionID        int64  `json:"transaction_id"`
	NetworkTransactionID int64  `json:"network_transaction_id"`
	TxID                 string `json:"txid"`
	OutputIndex          *int32 `json:"output_index,omitempty"`
	AccountID            *int64 `json:"account_id,omitempty"`
	// FromAccountID is the sending account of an internal transfer (AccountID receives).
	FromAccountID *int64 `json:"from_account_id,omitempty"`
	Address       string `json:"address"`
	Amount        string `json:"amount"`
	Confirmations int32  `json:"confirmations"`
	Credited      bool   `json:"credited"`
	State         string `json:"state"`
	Processed     bool   `json:"processed"`
	Reverted      bool   `json:"reverted,omitempty"`
	// Reason says why a send is in needs_review.
	Reason string `json:"reason,omitempty"`
}

func (l *Ledger) txUpdatePayload(t Transaction, ntID int64, up DepositUpdate) TxUpdate {
	return TxUpdate{
		Asset: l.opts.Asset, Coin: l.coin.Name, Network: l.opts.Network, Kind: t.Kind,
		TransactionID: t.ID, NetworkTransactionID: ntID, TxID: t.TxID, OutputIndex: t.OutputIndex,
		AccountID: t.ReceivingAccountID, Address: t.Address, Amount: t.Amount.Format(l.coin.Decimals),
		Confirmations: t.Confirmations, Credited: t.Credited, State: t.State, Processed: t.ProcessedAt != nil,
		Reverted: up.Uncredited || t.State == "reverted" || t.State == "conflicted", Reason: t.Reason,
	}
}

// writeEvent appends an event to the outbox with one pending delivery per configured target.
func (l *Ledger) writeEvent(ctx context.Context, tx pgx.Tx, name string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", name, err)
	}
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO outbox_events (asset_id, name, payload) VALUES ($1, $2, $3) RETURNING id`, l.assetID, name, b).Scan(&id); err != nil {
		return err
	}
	for _, target := range l.opts.EventTargets {
		if _, err := tx.Exec(ctx, `INSERT INTO outbox_deliveries (event_id, target) VALUES ($1, $2)`, id, target); err != nil {
			return err
		}
	}
	return nil
}

// Cursor is where catch-up resumes.
type Cursor struct {
	Height int64
	Hash   string
}

// Cursor returns the asset's chain cursor, or ok=false before the first catch-up.
func (l *Ledger) Cursor(ctx context.Context) (c Cursor, ok bool, err error) {
	err = l.pool.QueryRow(ctx, `SELECT block_height, block_hash FROM cursors WHERE asset_id = $1`, l.assetID).Scan(&c.Height, &c.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return Cursor{}, false, nil
	}
	return c, err == nil, err
}

// SetCursor records the last block catch-up fully processed.
func (l *Ledger) SetCursor(ctx context.Context, c Cursor) error {
	return inTx(ctx, l.pool, l.opts.Retry, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO cursors (asset_id, block_height, block_hash) VALUES ($1, $2, $3)
			ON CONFLICT (asset_id) DO UPDATE SET block_height = excluded.block_height, block_hash = excluded.block_hash, updated_at = now()`,
			l.assetID, c.Height, c.Hash)
		return err
	})
}

// OpenDeposits lists the deposit outputs whose confirmations are still followed: below
// maxTrackedConfirmations, including ones that disappeared (they may come back), but not
// conflicted ones (final). The intake asks the backend about each, so a reorganisation is seen
// even by backends that do not report one.
func (l *Ledger) OpenDeposits(ctx context.Context) ([]Observation, error) {
	return l.deposits(ctx, `n.confirmations < $2 AND t.state <> 'conflicted'`, l.opts.MaxTrackedConfirmations)
}

// CreditedDeposits lists the asset's credited deposit outputs as the ledger booked them, for a
// check against the chain.
func (l *Ledger) CreditedDeposits(ctx context.Context) ([]Observation, error) {
	return l.deposits(ctx, `t.credited`)
}

// deposits lists the asset's deposit outputs that meet cond ($1 is the asset; args follow).
func (l *Ledger) deposits(ctx context.Context, cond string, args ...any) ([]Observation, error) {
	rows, err := l.pool.Query(ctx, `SELECT n.txid, t.output_index, a.address, t.amount, n.confirmations
		FROM transactions t
		JOIN network_transactions n ON n.id = t.network_transaction_id
		JOIN addresses a ON a.id = t.address_id
		WHERE t.asset_id = $1 AND t.kind = 'deposit' AND `+cond+`
		ORDER BY n.id, t.output_index`, append([]any{l.assetID}, args...)...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Observation, error) {
		var o Observation
		err := r.Scan(&o.TxID, &o.Output, &o.Address, &o.Amount, &o.Confirmations)
		return o, err
	})
}
