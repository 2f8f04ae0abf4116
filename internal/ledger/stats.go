package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Stats are what alerts watch: money or messages waiting.
type Stats struct {
	// PendingSends are queued or being broadcast; OldestPending is when the oldest was queued.
	PendingSends  int64
	OldestPending *time.Time
	// NeedsReview counts sends a person must look at.
	NeedsReview int64
	// Outbox is, per event target, what push delivery still retries and what it gave up.
	Outbox map[string]OutboxStats
	// TipHeight is the chain height the last catch-up reached (the cursor); -1 before the first.
	TipHeight int64
	// WalletBalance is the ledger's balance of the asset's wallet, in base units.
	WalletBalance Amount
}

// OutboxStats are one target's undelivered events.
type OutboxStats struct {
	Undelivered   int64
	OldestCreated *time.Time
	GivenUp       int64
}

// Stats reads the asset's gauges. Every query runs on an index of its own (pending sends by
// wallet and state, due deliveries by target), so a scrape stays cheap on a large ledger.
func (l *Ledger) Stats(ctx context.Context) (Stats, error) {
	s := Stats{Outbox: map[string]OutboxStats{}, TipHeight: -1}
	for _, t := range l.opts.EventTargets {
		s.Outbox[t] = OutboxStats{}
	}
	err := l.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state IN ('pending', 'broadcasting')),
			min(created_at) FILTER (WHERE state IN ('pending', 'broadcasting')),
			count(*) FILTER (WHERE state = 'needs_review')
		FROM transactions WHERE wallet_id = $1 AND kind = 'outgoing' AND state IN ('pending', 'broadcasting', 'needs_review')`,
		l.walletID).Scan(&s.PendingSends, &s.OldestPending, &s.NeedsReview)
	if err != nil {
		return Stats{}, fmt.Errorf("reading pending sends: %w", err)
	}
	rows, err := l.pool.Query(ctx, `SELECT d.target, count(*) FILTER (WHERE d.next_attempt_at <> 'infinity'),
			min(e.created_at) FILTER (WHERE d.next_attempt_at <> 'infinity'),
			count(*) FILTER (WHERE d.next_attempt_at = 'infinity')
		FROM outbox_deliveries d JOIN outbox_events e ON e.id = d.event_id
		WHERE d.delivered_at IS NULL AND e.asset_id = $1 GROUP BY d.target`, l.assetID)
	if err != nil {
		return Stats{}, fmt.Errorf("reading the outbox: %w", err)
	}
	var target string
	var o OutboxStats
	if _, err := pgx.ForEachRow(rows, []any{&target, &o.Undelivered, &o.OldestCreated, &o.GivenUp}, func() error {
		s.Outbox[target] = o
		return nil
	}); err != nil {
		return Stats{}, fmt.Errorf("reading the outbox: %w", err)
	}
	if s.WalletBalance, err = l.WalletBalance(ctx); err != nil {
		return Stats{}, fmt.Errorf("reading the wallet balance: %w", err)
	}
	if c, ok, err := l.Cursor(ctx); err != nil {
		return Stats{}, err
	} else if ok {
		s.TipHeight = c.Height
	}
	return s, nil
}
