package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Broadcast is a batch of pending sends paid in one network transaction.
type Broadcast struct {
	ID       int64
	OpenedAt time.Time
	// Outputs are what the network transaction pays: sends to the same address are added up.
	Outputs map[string]Amount
	// Sends are the ledger sends it carries, oldest first.
	Sends []BroadcastSend
	// Recovered: the broadcast was already open when this pass began; an earlier attempt may
	// have paid it.
	Recovered bool
	Attempts  int
	// SendingAt: when the backend was last asked to pay it; nil when it never was.
	SendingAt *time.Time
}

// BroadcastSend is one ledger send of a broadcast.
type BroadcastSend struct {
	ID      int64
	Address string
	Amount  Amount
}

// Shrunk returns the broadcast carrying only the given sends, its outputs added up again.
func (b *Broadcast) Shrunk(keep []BroadcastSend) *Broadcast {
	out := *b
	out.Sends = keep
	out.Outputs = map[string]Amount{}
	for _, s := range keep {
		out.Outputs[s.Address] += s.Amount // each sum was checked when the broadcast opened
	}
	return &out
}

// MaxBroadcastSends caps the sends of one broadcast. A transaction paying more outputs than this
// grows past the 100 kB that nodes relay as standard (about 34 bytes per output).
const MaxBroadcastSends = 1000

// OpenBroadcast returns the wallet's open broadcast, or opens one with the oldest pending sends
// (at most MaxBroadcastSends), or returns nil when nothing is pending.
func (l *Ledger) OpenBroadcast(ctx context.Context) (*Broadcast, error) {
	var b *Broadcast
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		b = &Broadcast{Outputs: map[string]Amount{}}
		err := tx.QueryRow(ctx, `SELECT id, opened_at, attempts, sending_at FROM broadcasts WHERE wallet_id = $1 AND state = 'opened'`, l.walletID).
			Scan(&b.ID, &b.OpenedAt, &b.Attempts, &b.SendingAt)
		var rows pgx.Rows
		switch {
		case err == nil:
			b.Recovered = true
			rows, err = tx.Query(ctx, openBroadcastSendsSQL, b.ID)
		case errors.Is(err, pgx.ErrNoRows):
			var pending bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM transactions WHERE wallet_id = $1 AND kind = 'outgoing' AND state = 'pending')`,
				l.walletID).Scan(&pending); err != nil {
				return err
			}
			if !pending {
				b = nil
				return nil
			}
			if err := tx.QueryRow(ctx, `INSERT INTO broadcasts (asset_id, wallet_id, state) VALUES ($1, $2, 'opened') RETURNING id, opened_at`,
				l.assetID, l.walletID).Scan(&b.ID, &b.OpenedAt); err != nil {
				return err
			}
			// The sends taken, as they are updated, oldest first: one statement, not an update
			// and a read. Its shape keeps the plan from growing with the ledger: the limit is
			// written in, not a parameter, so the generic plan of the prepared statement knows
			// it takes MaxBroadcastSends rows (with an unknown limit, the planner guessed a tenth
			// of the backlog and scanned the whole table); and each address is looked up by its
			// key, where a join let the planner hash the whole addresses table for 1,000 rows
			// (20 ms with 100,000 addresses, against 1 ms of lookups).
			rows, err = tx.Query(ctx, `WITH t AS (UPDATE transactions SET state = 'broadcasting', broadcast_id = $1, updated_at = now()
					WHERE id IN (SELECT id FROM transactions WHERE wallet_id = $2 AND kind = 'outgoing' AND state = 'pending'
					             ORDER BY id LIMIT `+strconv.Itoa(MaxBroadcastSends)+`)
					RETURNING id, (SELECT a.address FROM addresses a WHERE a.id = transactions.address_id), amount)
				SELECT * FROM t ORDER BY id`, b.ID, l.walletID)
		}
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var addr string
			var amount Amount
			if err := rows.Scan(&id, &addr, &amount); err != nil {
				return err
			}
			sum, err := b.Outputs[addr].Add(amount)
			if err != nil {
				return fmt.Errorf("sends to %s: %w", addr, err)
			}
			b.Outputs[addr] = sum
			b.Sends = append(b.Sends, BroadcastSend{ID: id, Address: addr, Amount: amount})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("opening a broadcast: %w", err)
	}
	return b, nil
}

// MarkBroadcasted closes a broadcast with the network transaction that paid it and records its
// sends as paid: MarkPaid, then SettleBroadcast.
func (l *Ledger) MarkBroadcasted(ctx context.Context, broadcastID int64, txid string) error {
	if err := l.MarkPaid(ctx, broadcastID, txid); err != nil {
		return err
	}
	return l.SettleBroadcast(ctx, broadcastID)
}

// MarkPaid closes a broadcast with the network transaction that paid it. It writes two rows, so
// the payment is on record as soon as the backend has answered, and the next broadcast can open
// while SettleBroadcast records this one's sends. Until then the sends stay broadcasting (they
// cannot be cancelled) and UnsettledBroadcasts lists the broadcast.
//
// The wallet has paid when this runs, so it must not give up on contention; like
// SettleBroadcast it runs at READ COMMITTED: it moves no balance, and it changes only the open
// broadcast's row, which only one writer can close.
func (l *Ledger) MarkPaid(ctx context.Context, broadcastID int64, txid string) error {
	err := l.inTxAt(ctx, pgx.ReadCommitted, untilDone(l.opts.Retry), func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE broadcasts SET state = 'broadcasted', txid = $1, closed_at = now() WHERE id = $2 AND state = 'opened'`, txid, broadcastID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("broadcast %d is not open", broadcastID)
		}
		_, err = tx.Exec(ctx, `INSERT INTO network_transactions (asset_id, kind, txid, confirmations) VALUES ($1, 'broadcast', $2, 0)
			ON CONFLICT (asset_id, kind, txid) DO NOTHING`, l.assetID, txid)
		return err
	})
	if err != nil {
		return fmt.Errorf("recording broadcast %d as paid by %s: %w", broadcastID, txid, err)
	}
	return nil
}

// SettleBroadcast records the sends of a paid broadcast (MarkPaid) as broadcasted by its network
// transaction and reports each to the application. Sends already recorded are left alone, so it
// can be repeated, after a crash or beside another call.
//
// It runs at READ COMMITTED and retries until done, as MarkPaid does: every row it changes
// belongs to a closed broadcast. Under SERIALIZABLE, the predicate locks of a big broadcast
// (hundreds of sends and events) are promoted to whole-table locks, and any send queued or
// deposit booked meanwhile made it fail: a 118-send broadcast gave up twice after 25 retries.
func (l *Ledger) SettleBroadcast(ctx context.Context, broadcastID int64) error {
	err := l.inTxAt(ctx, pgx.ReadCommitted, untilDone(l.opts.Retry), func(tx pgx.Tx) error {
		var (
			ntID int64
			txid string
			conf int32
		)
		err := tx.QueryRow(ctx, `SELECT n.id, n.txid, n.confirmations FROM broadcasts b
				JOIN network_transactions n ON n.asset_id = b.asset_id AND n.kind = 'broadcast' AND n.txid = b.txid
			WHERE b.id = $1 AND b.state = 'broadcasted'`, broadcastID).Scan(&ntID, &txid, &conf)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("broadcast %d is not paid", broadcastID)
		}
		if err != nil {
			return err
		}
		txs, err := l.settleSends(ctx, tx, broadcastID, ntID, txid, conf)
		if err != nil {
			return err
		}
		return l.broadcastEvents(ctx, tx, ntID, txs)
	})
	if err != nil {
		return fmt.Errorf("recording the sends of broadcast %d: %w", broadcastID, err)
	}
	return nil
}

// BroadcastWork says whether the broadcaster has anything to do: sends pending or on their way
// (in an open broadcast, or in a paid one not yet recorded), an open broadcast (which may have
// carried only sends refused since), or a broadcast whose confirmations are still followed.
//
// It is one read, where a pass that finds nothing costs six round trips and a SERIALIZABLE
// transaction (UnsettledBroadcasts, OpenBroadcast, OpenBroadcastTxIDs): an idle helper's
// broadcaster asks every period, for as long as it runs. A send queued just after it answers
// waits for the next pass, as it would just after an empty one.
func (l *Ledger) BroadcastWork(ctx context.Context) (bool, error) {
	var work bool
	if err := l.pool.QueryRow(ctx, broadcastWorkSQL, l.assetID, l.opts.MaxTrackedConfirmations, l.walletID).Scan(&work); err != nil {
		return false, fmt.Errorf("looking for sends to broadcast or broadcasts to follow: %w", err)
	}
	return work, nil
}

// followedBroadcasts is the condition, on network_transactions n, of the asset's ($1) broadcasts
// whose confirmations are still followed (below $2, the tracking horizon): OpenBroadcastTxIDs
// lists them, and BroadcastWork must find the same ones.
const followedBroadcasts = `n.asset_id = $1 AND n.kind = 'broadcast' AND n.confirmations < $2
	AND NOT EXISTS (SELECT FROM transactions t WHERE t.network_transaction_id = n.id AND t.state = 'needs_review')`

// broadcastWorkSQL is BroadcastWork's read. Each part is the condition of the statement it stands
// for, so that the broadcaster never skips a pass that would have done something.
const broadcastWorkSQL = `SELECT
	EXISTS (SELECT FROM transactions WHERE wallet_id = $3 AND kind = 'outgoing' AND state IN ('pending', 'broadcasting'))
	OR EXISTS (SELECT FROM broadcasts WHERE wallet_id = $3 AND state = 'opened')
	OR EXISTS (SELECT FROM network_transactions n WHERE ` + followedBroadcasts + `)`

// UnsettledBroadcasts lists the paid broadcasts whose sends are not recorded yet (a helper
// stopped between MarkPaid and SettleBroadcast), oldest first.
func (l *Ledger) UnsettledBroadcasts(ctx context.Context) ([]int64, error) {
	rows, err := l.pool.Query(ctx, `SELECT DISTINCT t.broadcast_id FROM transactions t JOIN broadcasts b ON b.id = t.broadcast_id
		WHERE t.wallet_id = $1 AND t.kind = 'outgoing' AND t.state = 'broadcasting' AND b.state = 'broadcasted' ORDER BY 1`, l.walletID)
	if err != nil {
		return nil, fmt.Errorf("listing paid broadcasts not yet recorded: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// settleSends records the broadcasting sends of closed broadcast broadcastID as broadcasted by
// network transaction ntID, and returns them as transactionSelect reads them, in id order: one
// statement where an update and a read-back of up to MaxBroadcastSends rows were two.
//
// Only each send's address is looked up. Its network transaction is ntID, read by the statement
// just before, so its txid and confirmations are passed in (at READ COMMITTED, a lateral read
// too would only see them a moment later); and a closed broadcast leaves its
// sends no note (transactionJoins reads the note of open broadcasts only). That is two index
// probes fewer per send. The saving is small: pg_stat_statements on BenchmarkBroadcast
// (BENCH_PG_EXPLAIN_MS=off, two runs each) gave this statement a mean of 38.0 and 31.9 ms per
// 1,000 sends before, 31.2 and 24.6 ms after, while the unchanged statement that opens a
// broadcast moved from 37.5 and 26.0 to 30.1 and 24.9 ms between the same runs.
func (l *Ledger) settleSends(ctx context.Context, tx pgx.Tx, broadcastID, ntID int64, txid string, conf int32) ([]Transaction, error) {
	rows, err := tx.Query(ctx, settleSendsSQL, ntID, broadcastID, txid, conf)
	if err != nil {
		return nil, err
	}
	return l.collectTransactions(rows)
}

// The statements that read or change a broadcast's sends by broadcast. Each names the state the
// sends are in, broadcasting, which is also the predicate of the index by broadcast (migration
// 16): without it the index could not serve them. The sends of an open broadcast are all
// broadcasting (a refused send closes its broadcast; a broadcasting send cannot be cancelled).
const (
	openBroadcastSendsSQL = `SELECT t.id, a.address, t.amount FROM transactions t JOIN addresses a ON a.id = t.address_id
		WHERE t.broadcast_id = $1 AND t.state = 'broadcasting' ORDER BY t.id`
	// returnSendsSQL puts the sends of open broadcast $1 back to pending, but those in $2.
	returnSendsSQL = `UPDATE transactions SET state = 'pending', broadcast_id = NULL, updated_at = now()
		WHERE broadcast_id = $1 AND state = 'broadcasting' AND NOT (id = ANY($2))`
	settleSendsSQL = `WITH t AS (UPDATE transactions SET state = 'broadcasted', network_transaction_id = $1, updated_at = now()
			WHERE broadcast_id = $2 AND state = 'broadcasting' RETURNING *) ` +
		transactionColumns + ` FROM t ` + closedSendJoins + ` ORDER BY t.id`
)

// closedSendJoins is transactionJoins for the sends of one closed broadcast, whose network
// transaction's txid and confirmations the statement takes as $3 and $4: only each send's
// address is looked up.
const closedSendJoins = addressJoin + `
	CROSS JOIN (SELECT $3::text AS txid, $4::integer AS confirmations) n
	CROSS JOIN (SELECT NULL::text AS last_error) b`

// broadcastEvents reports the sends txs of network transaction ntID to the application.
func (l *Ledger) broadcastEvents(ctx context.Context, tx pgx.Tx, ntID int64, txs []Transaction) error {
	payloads := make([]any, 0, len(txs))
	for _, t := range txs {
		p := l.txUpdatePayload(t, ntID, DepositUpdate{})
		p.AccountID = t.SendingAccountID
		payloads = append(payloads, p)
	}
	return l.writeEvents(ctx, tx, "txupdate", payloads)
}

// MarkSending records that the backend is about to be asked to pay an open broadcast. It is
// committed before the request leaves, so after a crash the broadcaster knows whether a payment
// could be under way.
func (l *Ledger) MarkSending(ctx context.Context, broadcastID int64) error {
	return l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE broadcasts SET sending_at = now() WHERE id = $1 AND state = 'opened'`, broadcastID)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("broadcast %d is not open", broadcastID)
		}
		return err
	})
}

// NoteBroadcast says on an open broadcast why it is waiting; its sends show it as their note.
func (l *Ledger) NoteBroadcast(ctx context.Context, broadcastID int64, note string) error {
	return l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE broadcasts SET last_error = $1 WHERE id = $2 AND state = 'opened'`, note, broadcastID)
		return err
	})
}

// NoteBroadcastAttempt records a failed attempt of a broadcast that stays open, because the send
// may or may not have gone out (the backend did not answer).
func (l *Ledger) NoteBroadcastAttempt(ctx context.Context, broadcastID int64, reason string) error {
	return l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE broadcasts SET attempts = attempts + 1, last_error = $1 WHERE id = $2`, reason, broadcastID)
		return err
	})
}

// FailBroadcast closes a broadcast the backend definitely refused (it paid nothing) and puts its
// sends back to pending for the next period; the amounts stay reserved.
func (l *Ledger) FailBroadcast(ctx context.Context, broadcastID int64, reason string) error {
	return l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE broadcasts SET state = 'failed', last_error = $1, attempts = attempts + 1, closed_at = now()
			WHERE id = $2 AND state = 'opened'`, reason, broadcastID); err != nil {
			return err
		}
		// All its sends go back: none kept (an empty list, not nil, which ANY reads as NULL).
		_, err := tx.Exec(ctx, returnSendsSQL, broadcastID, []int64{})
		return err
	})
}

// ShrinkBroadcast keeps only the given sends in an open broadcast the backend refused, and puts
// the others back to pending, to go out in a later broadcast. The refusal paid nothing, so the
// broadcast is not "asked" any more (sending_at is cleared) and is paid at once.
func (l *Ledger) ShrinkBroadcast(ctx context.Context, broadcastID int64, keep []int64, reason string) error {
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE broadcasts SET sending_at = NULL, attempts = attempts + 1, last_error = $2
			WHERE id = $1 AND state = 'opened'`, broadcastID, reason)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("broadcast %d is not open", broadcastID)
		}
		_, err = tx.Exec(ctx, returnSendsSQL, broadcastID, keep)
		return err
	})
	if err != nil {
		return fmt.Errorf("shrinking refused broadcast %d: %w", broadcastID, err)
	}
	return nil
}

// RefuseSend closes an open broadcast that carried only one send, which the backend refused on its
// own (a dust amount, an address it will not pay): the send moves to needs_review with the
// backend's reason and an event, its amount still reserved until someone cancels it or pays it
// by other means. It is never retried on its own: a person must look at it.
func (l *Ledger) RefuseSend(ctx context.Context, broadcastID, sendID int64, reason string) error {
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE broadcasts SET state = 'failed', last_error = $2, attempts = attempts + 1, closed_at = now()
			WHERE id = $1 AND state = 'opened'`, broadcastID, reason)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("broadcast %d is not open", broadcastID)
		}
		tag, err = tx.Exec(ctx, `UPDATE transactions SET state = 'needs_review', reason = $3, updated_at = now()
			WHERE id = $1 AND broadcast_id = $2`, sendID, broadcastID, reason)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("send %d is not in broadcast %d", sendID, broadcastID)
		}
		return l.transactionEvent(ctx, tx, sendID)
	})
	if err != nil {
		return fmt.Errorf("moving refused send %d to needs_review: %w", sendID, err)
	}
	return nil
}

// CancelSend cancels a send that has not gone out: a pending one, or one the backend refused
// (needs_review without a network transaction). Its amount goes back to the account, and an
// event says so. A send in a broadcast being paid, or paid, is refused with ErrNotCancellable.
func (l *Ledger) CancelSend(ctx context.Context, id int64) (Transaction, error) {
	var out Transaction
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		var kind, state string
		var from *int64
		var amount Amount
		var ntID *int64
		err := tx.QueryRow(ctx, `SELECT kind, state, sending_account_id, amount, network_transaction_id FROM transactions
			WHERE id = $1 AND asset_id = $2 FOR UPDATE`, id, l.assetID).Scan(&kind, &state, &from, &amount, &ntID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("transaction %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		switch {
		case kind != "outgoing":
			return fmt.Errorf("transaction %d is %s, not a send to an address: %w", id, kind, ErrNotCancellable)
		case state == "pending", state == "needs_review" && ntID == nil:
		case state == "broadcasting":
			return fmt.Errorf("send %d is in a broadcast being paid now: %w", id, ErrNotCancellable)
		default:
			return fmt.Errorf("send %d is %s: %w", id, state, ErrNotCancellable)
		}
		sender, err := l.lockAccount(ctx, tx, *from)
		if err != nil {
			return err
		}
		if err := l.adjust(ctx, tx, sender, amount); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE transactions SET state = 'cancelled', broadcast_id = NULL, updated_at = now() WHERE id = $1`, id); err != nil {
			return err
		}
		if err := l.transactionEvent(ctx, tx, id); err != nil {
			return err
		}
		out, err = l.scanTransaction(tx.QueryRow(ctx, transactionSelect+` WHERE t.id = $1`, id))
		return err
	})
	if err != nil {
		return Transaction{}, fmt.Errorf("cancelling send %d: %w", id, err)
	}
	return out, nil
}

// knownBroadcastsSQL picks, of some txids, those of the asset's broadcasts, from the unique index
// (asset_id, kind, txid).
const knownBroadcastsSQL = `SELECT txid FROM network_transactions WHERE asset_id = $1 AND kind = 'broadcast' AND txid = ANY($2)`

// KnownBroadcasts returns which of txids are broadcasts the ledger knows, so reconciliation
// never mistakes an earlier payment for the one it is looking for. It asks about the wallet's
// recent sends only: the ledger's broadcasts grow by one per broadcast period for as long as the
// asset runs (a million in a year at 30 s), and reading them all took as many rows and their
// memory at the moment a helper recovers an interrupted payment.
func (l *Ledger) KnownBroadcasts(ctx context.Context, txids []string) (map[string]bool, error) {
	rows, err := l.pool.Query(ctx, knownBroadcastsSQL, l.assetID, txids)
	if err != nil {
		return nil, fmt.Errorf("looking up %d txids among the broadcasts: %w", len(txids), err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("looking up %d txids among the broadcasts: %w", len(txids), err)
	}
	known := make(map[string]bool, len(found))
	for _, txid := range found {
		known[txid] = true
	}
	return known, nil
}

// broadcastTxIDsSQL lists a page of the asset's broadcasts in id order, walking the primary key
// from $2 on (see creditedDepositsSQL).
const broadcastTxIDsSQL = `SELECT id, txid FROM network_transactions
	WHERE asset_id = $1 AND kind = 'broadcast' AND id > $2 ORDER BY id LIMIT $3`

// BroadcastTxIDs lists the txids of the asset's broadcasts, for an audit that checks each of
// them against the backend, a page at a time in the order they were made: those with an id above
// page.After, and the id of the last (page.After when there are none left).
func (l *Ledger) BroadcastTxIDs(ctx context.Context, page Page) (txids []string, last int64, err error) {
	rows, err := l.pool.Query(ctx, broadcastTxIDsSQL, l.assetID, page.After, page.limit())
	if err != nil {
		return nil, 0, fmt.Errorf("listing broadcasts after network transaction %d: %w", page.After, err)
	}
	last = page.After
	txids, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var txid string
		err := r.Scan(&last, &txid)
		return txid, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("listing broadcasts after network transaction %d: %w", page.After, err)
	}
	return txids, last, nil
}

// BookFee books the network fee of one of our broadcasts to the fee account, once.
func (l *Ledger) BookFee(ctx context.Context, txid string, fee Amount) error {
	if fee <= 0 {
		return nil
	}
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		var ntID int64
		if err := tx.QueryRow(ctx, `SELECT id FROM network_transactions WHERE asset_id = $1 AND kind = 'broadcast' AND txid = $2`, l.assetID, txid).Scan(&ntID); err != nil {
			return fmt.Errorf("broadcast %s: %w", txid, err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM transactions WHERE network_transaction_id = $1 AND kind = 'network_fee')`, ntID).Scan(&exists); err != nil || exists {
			return err
		}
		fees, err := l.lockAccount(ctx, tx, l.feeAccountID)
		if err != nil {
			return err
		}
		if err := l.adjust(ctx, tx, fees, -fee); err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO transactions (asset_id, wallet_id, kind, state, sending_account_id, amount, network_transaction_id)
			VALUES ($1, $2, 'network_fee', 'done', $3, $4, $5) RETURNING id`, l.assetID, l.walletID, l.feeAccountID, fee, ntID).Scan(&id); err != nil {
			return err
		}
		return l.transactionEvent(ctx, tx, id)
	})
	if err != nil {
		return fmt.Errorf("booking the fee of %s: %w", txid, err)
	}
	return nil
}

// OpenBroadcastTxIDs lists our broadcasts whose confirmations are still followed.
func (l *Ledger) OpenBroadcastTxIDs(ctx context.Context) ([]string, error) {
	rows, err := l.pool.Query(ctx, `SELECT txid FROM network_transactions n WHERE `+followedBroadcasts+` ORDER BY id`,
		l.assetID, l.opts.MaxTrackedConfirmations)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// RecordBroadcastConfirmations follows a broadcast's confirmations: its sends become confirmed at
// the asset's threshold, go back to broadcasted when a reorganisation unconfirms them, and each
// change is reported. A conflicted broadcast (its inputs spent by another transaction on the best
// chain) did not pay: its sends go to needs_review, for a person to decide, and are never paid
// again on their own.
func (l *Ledger) RecordBroadcastConfirmations(ctx context.Context, txid string, confirmations int32, blockHash string, height int64, conflicted bool) (changed bool, err error) {
	if confirmations > l.opts.MaxTrackedConfirmations {
		confirmations = l.opts.MaxTrackedConfirmations
	}
	if conflicted {
		confirmations, blockHash, height = -1, "", 0
	}
	err = l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		var ntID int64
		var old int32
		if err := tx.QueryRow(ctx, `SELECT id, confirmations FROM network_transactions WHERE asset_id = $1 AND kind = 'broadcast' AND txid = $2 FOR UPDATE`,
			l.assetID, txid).Scan(&ntID, &old); err != nil {
			return fmt.Errorf("broadcast %s: %w", txid, err)
		}
		changed = old != confirmations
		if !changed {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE network_transactions SET confirmations = $1, block_hash = nullif($2, ''), block_height = nullif($3, 0), updated_at = now() WHERE id = $4`,
			confirmations, blockHash, height, ntID); err != nil {
			return err
		}
		state := "broadcasted"
		switch {
		case conflicted:
			state = "needs_review"
		case confirmations >= l.opts.Confirmations:
			state = "confirmed"
		}
		// Only the sends whose state changes are written. After the block that confirms them,
		// each block up to the tracking horizon changes the network transaction's count and
		// nothing on its sends, and rewriting them all each time (a new version of every row, in
		// every index of transactions) was most of what a busy payout wallet's ledger did.
		// Every send is reported: the application follows each one's confirmations. One
		// statement returns them all, the updated ones as updated and the rest as this
		// (serializable) transaction sees them, where an update and a read-back were two; and,
		// as in settleSends, only each send's address is looked up. Confirming 1,000 sends took
		// 18.7 and 18.4 ms in those two statements, 14.6 and 14.8 ms in this one
		// (pg_stat_statements on BenchmarkBroadcast, BENCH_PG_EXPLAIN_MS=off, two runs each).
		rows, err := tx.Query(ctx, `WITH u AS (UPDATE transactions SET state = $1, updated_at = now()
				WHERE network_transaction_id = $2 AND kind = 'outgoing' AND state <> $1 RETURNING *),
			t AS (SELECT * FROM u UNION ALL SELECT * FROM transactions
				WHERE network_transaction_id = $2 AND kind = 'outgoing' AND id NOT IN (SELECT id FROM u)) `+
			transactionColumns+` FROM t `+closedSendJoins+` ORDER BY t.id`, state, ntID, txid, confirmations)
		if err != nil {
			return err
		}
		txs, err := l.collectTransactions(rows)
		if err != nil {
			return err
		}
		return l.broadcastEvents(ctx, tx, ntID, txs)
	})
	return changed, err
}

// BroadcastRecord is a broadcast as the status page shows it.
type BroadcastRecord struct {
	ID        int64
	State     string
	TxID      string
	Attempts  int
	LastError string
	OpenedAt  time.Time
	ClosedAt  *time.Time
}

// LastBroadcast returns the newest broadcast, or nil before the first.
func (l *Ledger) LastBroadcast(ctx context.Context) (*BroadcastRecord, error) {
	var b BroadcastRecord
	err := l.pool.QueryRow(ctx, `SELECT id, state, coalesce(txid, ''), attempts, coalesce(last_error, ''), opened_at, closed_at
		FROM broadcasts WHERE wallet_id = $1 ORDER BY id DESC LIMIT 1`, l.walletID).
		Scan(&b.ID, &b.State, &b.TxID, &b.Attempts, &b.LastError, &b.OpenedAt, &b.ClosedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &b, nil
}
