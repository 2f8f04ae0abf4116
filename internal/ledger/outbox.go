package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Delivery is one event due at one target.
type Delivery struct {
	// Seq orders events; EventID is the stable id receivers deduplicate on.
	Seq       int64
	EventID   string
	Name      string
	Payload   json.RawMessage
	CreatedAt time.Time
	Attempts  int
}

// DueCursor is where a reading of a target's due deliveries goes on from, as DueDeliveries
// returns it; the zero value reads from the start.
type DueCursor struct {
	// new: the due retries are all read; reading on in the events never tried.
	new bool
	// until bounds the retries a reading takes to those due when it began: one that fails again
	// meanwhile is not read twice. Zero until the first page has been read.
	until time.Time
	// due and seq: the last retry read, by when it fell due and its event; with new, seq is the
	// last new event read.
	due time.Time
	seq int64
}

// dueDeliveriesSQL reads the deliveries due at a target ($1) of asset $2 as two sets, each in the
// order of its own index, in one round trip: the retries due by $3 (now() when null), in the order
// they fell due, after ($4, $5), unless $7 says they are read; then the events never tried, in
// event order, after $8. A target that was down for a day has a day of events backing off, and one
// index over both in event order made every read walk past all of them: with 100,000 such
// events and statistics from before the outage, 16-30 ms a read, every poll (a scratch test, not
// committed).
const dueDeliveriesSQL = `SELECT * FROM (
	(SELECT 0 AS part, d.next_attempt_at AS due, e.id, e.event_id::text, e.name, e.payload, e.created_at, d.attempts, now() AS read_at
		FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_id
		WHERE NOT $7 AND d.asset_id = $2 AND d.target = $1 AND d.delivered_at IS NULL AND d.attempts > 0
			AND d.next_attempt_at <= coalesce($3, now()) AND (d.next_attempt_at, d.event_id) > ($4, $5)
		ORDER BY d.next_attempt_at, d.event_id LIMIT $6)
	UNION ALL
	(SELECT 1, NULL, e.id, e.event_id::text, e.name, e.payload, e.created_at, d.attempts, now()
		FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_id
		WHERE d.asset_id = $2 AND d.target = $1 AND d.delivered_at IS NULL AND d.attempts = 0
			AND d.next_attempt_at <= now() AND d.event_id > $8
		ORDER BY d.event_id LIMIT $6)
) u ORDER BY part, due, id LIMIT $6`

// DueDeliveries returns up to limit undelivered events of a target whose next attempt is due,
// from c on, and the cursor to read on from: first the retries that are due, in the order they
// fell due, then the events never tried, oldest first. A reader that has not yet recorded the
// events it took pages on past them; fewer than limit means there are no more.
func (l *Ledger) DueDeliveries(ctx context.Context, target string, c DueCursor, limit int) ([]Delivery, DueCursor, error) {
	var until *time.Time
	if !c.until.IsZero() {
		until = &c.until
	}
	newAfter := int64(0)
	if c.new {
		newAfter = c.seq
	}
	rows, err := l.pool.Query(ctx, dueDeliveriesSQL, target, l.assetID, until, c.due, c.seq, limit, c.new, newAfter)
	if err != nil {
		return nil, c, fmt.Errorf("reading the events due at %s: %w", target, err)
	}
	var (
		out    []Delivery
		d      Delivery
		part   int
		due    *time.Time
		readAt time.Time
	)
	// The payload as bytes: scanned as a json.RawMessage, pgx would run it through json.Unmarshal.
	_, err = pgx.ForEachRow(rows, []any{&part, &due, &d.Seq, &d.EventID, &d.Name, (*[]byte)(&d.Payload), &d.CreatedAt, &d.Attempts, &readAt}, func() error {
		if c.until.IsZero() {
			c.until = readAt
		}
		if part == 0 {
			c.due, c.seq = *due, d.Seq
		} else {
			c.new, c.seq = true, d.Seq
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, c, fmt.Errorf("reading the events due at %s: %w", target, err)
	}
	return out, c, nil
}

// MarkDelivered records successful deliveries of events to a target, in one statement, by
// deleting them: outbox_deliveries holds the deliveries still to make, and the events stay in
// outbox_events for the pull API until the retention prunes them. Setting delivered_at instead
// wrote a new version of every row and an entry in each of its indexes (delivered_at is in the
// partial indexes' predicates, so the update is never HOT): for 10,000 events, 66-95 ms of
// updates against 20-25 ms of deletes (a scratch benchmark of 20 pages of 500, not committed).
// Reads still skip rows with delivered_at set, which a helper of an earlier version leaves.
func (l *Ledger) MarkDelivered(ctx context.Context, target string, seqs ...int64) error {
	if len(seqs) == 0 {
		return nil
	}
	_, err := l.pool.Exec(ctx, `DELETE FROM outbox_deliveries WHERE event_id = ANY($1) AND target = $2`, seqs, target)
	return err
}

// MarkAttemptFailed records a failed delivery and when to try again; a zero next gives up on it.
func (l *Ledger) MarkAttemptFailed(ctx context.Context, seq int64, target, reason string, next time.Time) error {
	var at any = next
	if next.IsZero() {
		at = "infinity"
	}
	_, err := l.pool.Exec(ctx, `UPDATE outbox_deliveries SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2
		WHERE event_id = $3 AND target = $4`, reason, at, seq, target)
	return err
}

// NextRetry returns when the earliest scheduled retry of a delivery to target falls due, or zero
// when none is scheduled. A dispatcher reads it when it starts: the retries an earlier run's
// failures scheduled are in no pass's results, and would otherwise wait for the idle poll.
func (l *Ledger) NextRetry(ctx context.Context, target string) (time.Time, error) {
	var at *time.Time
	if err := l.pool.QueryRow(ctx, `SELECT min(next_attempt_at) FROM outbox_deliveries
		WHERE asset_id = $1 AND target = $2 AND delivered_at IS NULL AND attempts > 0 AND next_attempt_at < 'infinity'`,
		l.assetID, target).Scan(&at); err != nil {
		return time.Time{}, fmt.Errorf("reading the next retry at %s: %w", target, err)
	}
	if at == nil {
		return time.Time{}, nil
	}
	return *at, nil
}

// Notify sends a PostgreSQL NOTIFY on the ledger's database.
func (l *Ledger) Notify(ctx context.Context, channel string, payload []byte) error {
	return Notify(ctx, l.pool, channel, payload)
}

// Notify sends a PostgreSQL NOTIFY on pool's database, for a caller that has no Ledger yet (the
// rescan command's OnEvents hook, built before its ledger is opened).
func Notify(ctx context.Context, pool *pgxpool.Pool, channel string, payload []byte) error {
	_, err := pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, string(payload))
	return err
}

// ErrEventsPruned: the events a reader asked for are older than the retention and were deleted.
var ErrEventsPruned = errors.New("the events asked for were deleted by the retention")

// Event is an outbox event as a reader pulls it: Position is the asset's pull cursor; EventID,
// Name, Payload and CreatedAt are what push delivery sends.
type Event struct {
	Position  int64
	EventID   string
	Name      string
	Payload   json.RawMessage
	CreatedAt time.Time
}

// positionEvents numbers the asset's committed events that have no position yet, in id order,
// after the highest position given. The per-asset lock makes two numberings run one after the
// other, so positions are unique and each numbering sees the other's; an event that commits later
// gets a later position, however low its id, and a reader never skips one.
func (l *Ledger) positionEvents(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, l.eventsLockKey()); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `WITH base AS (
			SELECT greatest((SELECT max(position) FROM outbox_events WHERE asset_id = $1 AND position IS NOT NULL),
			                (SELECT events_pruned_through FROM assets WHERE id = $1), 0) AS p),
		todo AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM outbox_events WHERE asset_id = $1 AND position IS NULL)
		UPDATE outbox_events e SET position = base.p + todo.n FROM todo, base WHERE e.id = todo.id`, l.assetID)
	return err
}

// eventsLockKey is the transaction-level advisory lock of positionEvents: one per asset.
func (l *Ledger) eventsLockKey() int64 { return 0x6576656e74730000 ^ l.assetID } // "events"

// Events returns up to limit of the asset's events after position after, in order. It refuses
// with ErrEventsPruned when events after that position were deleted by the retention.
func (l *Ledger) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
	var out []Event
	err := l.inTxAt(ctx, pgx.ReadCommitted, l.opts.Retry, func(tx pgx.Tx) error {
		if err := l.positionEvents(ctx, tx); err != nil {
			return err
		}
		var pruned int64
		if err := tx.QueryRow(ctx, `SELECT events_pruned_through FROM assets WHERE id = $1`, l.assetID).Scan(&pruned); err != nil {
			return err
		}
		if after < pruned {
			return fmt.Errorf("%w: events up to position %d are gone, and after=%d asks for some of them; "+
				"read from after=%d on, and recover what is missing from the ledger (GET /v1/transactions)", ErrEventsPruned, pruned, after, pruned)
		}
		rows, err := tx.Query(ctx, `SELECT position, event_id::text, name, payload, created_at FROM outbox_events
			WHERE asset_id = $1 AND position > $2 ORDER BY position LIMIT $3`, l.assetID, after, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
			var e Event
			err := r.Scan(&e.Position, &e.EventID, &e.Name, &e.Payload, &e.CreatedAt)
			return e, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading events after %d: %w", after, err)
	}
	return out, nil
}

// PruneBatch bounds one PruneEvents call, so the retention never holds locks for long.
const PruneBatch = 10_000

// PruneEvents deletes up to PruneBatch of the asset's events created before before, with their
// deliveries, and returns how many it deleted. The retention must outlast the push retry window,
// so no event still being delivered is deleted (config validation sees to it).
func (l *Ledger) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := l.inTxAt(ctx, pgx.ReadCommitted, l.opts.Retry, func(tx pgx.Tx) error {
		if err := l.positionEvents(ctx, tx); err != nil {
			return err
		}
		var through *int64
		if err := tx.QueryRow(ctx, `WITH doomed AS (
				SELECT id, position FROM outbox_events WHERE asset_id = $1 AND created_at < $2 AND position IS NOT NULL
				ORDER BY position LIMIT $3),
			d AS (DELETE FROM outbox_deliveries WHERE event_id IN (SELECT id FROM doomed)),
			e AS (DELETE FROM outbox_events WHERE id IN (SELECT id FROM doomed) RETURNING position)
			SELECT max(position), count(*) FROM e`, l.assetID, before, PruneBatch).Scan(&through, &n); err != nil {
			return err
		}
		if through == nil {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE assets SET events_pruned_through = greatest(events_pruned_through, $2) WHERE id = $1`, l.assetID, *through)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("deleting events created before %s: %w", before.UTC().Format(time.RFC3339), err)
	}
	return n, nil
}
