package ledger

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
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

// DueDeliveries returns up to limit undelivered events of a target whose next attempt is due,
// oldest first.
func (l *Ledger) DueDeliveries(ctx context.Context, target string, limit int) ([]Delivery, error) {
	rows, err := l.pool.Query(ctx, `SELECT e.id, e.event_id::text, e.name, e.payload, e.created_at, d.attempts
		FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_id
		WHERE d.target = $1 AND e.asset_id = $2 AND d.delivered_at IS NULL AND d.next_attempt_at <= now()
		ORDER BY e.id LIMIT $3`, target, l.assetID, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		err := r.Scan(&d.Seq, &d.EventID, &d.Name, &d.Payload, &d.CreatedAt, &d.Attempts)
		return d, err
	})
}

// MarkDelivered records successful deliveries of events to a target, in one statement.
func (l *Ledger) MarkDelivered(ctx context.Context, target string, seqs ...int64) error {
	if len(seqs) == 0 {
		return nil
	}
	_, err := l.pool.Exec(ctx, `UPDATE outbox_deliveries SET delivered_at = now(), attempts = attempts + 1, last_error = NULL
		WHERE event_id = ANY($1) AND target = $2`, seqs, target)
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

// Notify sends a PostgreSQL NOTIFY on the ledger's database.
func (l *Ledger) Notify(ctx context.Context, channel string, payload []byte) error {
	_, err := l.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, string(payload))
	return err
}
