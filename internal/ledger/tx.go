package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RetryPolicy bounds the retries of a serializable transaction.
type RetryPolicy struct {
	Attempts int
	Base     time.Duration
	Max      time.Duration
}

// DefaultRetry retries contention with jittered exponential backoff. Transfers that touch the same
// account serialise through row locks, and under SERIALIZABLE a transaction that waited for such a
// lock must start over; a busy account can take several rounds.
func DefaultRetry() RetryPolicy {
	return RetryPolicy{Attempts: 25, Base: 2 * time.Millisecond, Max: 250 * time.Millisecond}
}

// errRaced: what a statement decided on changed before it could act; running it again is correct.
var errRaced = errors.New("changed meanwhile")

// retryable reports PostgreSQL's serialization failure and deadlock, and errRaced: the
// transaction did nothing and running it again is correct.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, errRaced) || errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// inTx runs fn in a SERIALIZABLE transaction, retrying it from the start on serialization failures
// and deadlocks. fn must only touch the database: no network calls, since it may run several times.
func inTx(ctx context.Context, pool *pgxpool.Pool, policy RetryPolicy, fn func(pgx.Tx) error) error {
	return inTxAt(ctx, pool, pgx.Serializable, policy, fn)
}

// untilDone is a retry policy that gives up only when the context ends: for records of what the
// backend already did, which must not be dropped on contention.
func untilDone(p RetryPolicy) RetryPolicy {
	p.Attempts = math.MaxInt
	return p
}

// inTxAt is inTx at a given isolation level.
func inTxAt(ctx context.Context, pool *pgxpool.Pool, iso pgx.TxIsoLevel, policy RetryPolicy, fn func(pgx.Tx) error) error {
	return withRetry(ctx, policy, func() error {
		return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: iso}, fn)
	})
}

// inTx runs fn as the function inTx does, on the ledger's pool, and tells Options.OnEvents once
// a transaction that wrote events has committed.
func (l *Ledger) inTx(ctx context.Context, policy RetryPolicy, fn func(pgx.Tx) error) error {
	return l.inTxAt(ctx, pgx.Serializable, policy, fn)
}

// inTxAt is the method inTx at a given isolation level. OnEvents is told after the commit, not
// when the events are written: the dispatcher it wakes would look before they are there.
func (l *Ledger) inTxAt(ctx context.Context, iso pgx.TxIsoLevel, policy RetryPolicy, fn func(pgx.Tx) error) error {
	var wrote bool // of the latest attempt: the one that committed, when inTxAt succeeds
	err := inTxAt(ctx, l.pool, iso, policy, func(tx pgx.Tx) error {
		et := &eventTx{Tx: tx}
		err := fn(et)
		wrote = et.wroteEvents
		return err
	})
	if err == nil && wrote {
		l.eventsWritten()
	}
	return err
}

// eventTx is a ledger transaction that remembers whether it wrote events (noteEvents).
type eventTx struct {
	pgx.Tx
	wroteEvents bool
}

// noteEvents records that q's transaction wrote events. On the pool, where a statement is a
// transaction of its own, it does nothing: the caller tells OnEvents after the statement.
func noteEvents(q any) {
	if et, ok := q.(*eventTx); ok {
		et.wroteEvents = true
	}
}

// eventsWritten tells Options.OnEvents that committed events wait for delivery.
func (l *Ledger) eventsWritten() {
	if l.opts.OnEvents != nil {
		l.opts.OnEvents()
	}
}

// withRetry runs op until it succeeds, fails for good, or has been tried policy.Attempts times;
// op must be safe to repeat after a retryable error.
func withRetry(ctx context.Context, policy RetryPolicy, op func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = op()
		if err == nil || !retryable(err) || attempt >= policy.Attempts {
			break
		}
		backoff := policy.Base << (attempt - 1)
		if backoff > policy.Max || backoff <= 0 {
			backoff = policy.Max
		}
		// Full jitter: colliding transactions must not retry in lockstep.
		sleep := time.Duration(rand.Int64N(int64(backoff)) + 1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(sleep):
		}
	}
	if err != nil && retryable(err) {
		return fmt.Errorf("gave up after %d attempts on contention: %w", policy.Attempts, err)
	}
	return err
}
