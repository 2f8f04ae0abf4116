package helper

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/backoff"
)

// stepLimit is how long one step of a periodic part (a catch-up, a broadcast pass) may run before
// liveness calls the helper hung and Kubernetes restarts it. Every backend call has its own
// timeout far below this; a step that still runs this long is stuck, and a restart resumes from
// the ledger without losing or repeating anything.
const stepLimit = 15 * time.Minute

// ledgerPingEvery is how often the helper checks its database when nothing else does.
const ledgerPingEvery = 10 * time.Second

// answers notes that one of the pool's connections had a statement answered, so the ledger
// watch can take the helper's own work for its check: an idle helper's catch-ups and broadcast
// passes ask the database several times a minute, and a ping of its own every ledgerPingEvery
// beside them was its largest share of round trips (BenchmarkHelperFootprint,
// pg-requests/helper/min). It is the pool's pgx tracer; the helper uses no batch or copy, whose
// answers it would not see (a ping then makes up for them).
type answers struct{ seen atomic.Bool }

// traceAnswers makes the connections of the pool that pc configures report their answers, and
// returns the configuration for the helper's connection outside the pool (the lock's), which
// does not: the watch speaks for the pool that the API and the parts use.
func traceAnswers(pc *pgxpool.Config) (*answers, *pgx.ConnConfig) {
	own := pc.ConnConfig.Copy()
	a := &answers{}
	pc.ConnConfig.Tracer = a
	return a, own
}

// TraceQueryStart implements pgx.QueryTracer.
func (a *answers) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer. Only an answer counts: after a statement that failed,
// for whatever reason, the watch asks for itself. The flag is read before it is written, so a
// busy helper's statements share its cache line rather than take it in turn.
func (a *answers) TraceQueryEnd(_ context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	if d.Err == nil && !a.seen.Load() {
		a.seen.Store(true)
	}
}

// take says whether a statement was answered since the last take.
func (a *answers) take() bool {
	return a.seen.Swap(false)
}

// connectLedger opens the connection that will hold the active-helper lock, waiting for a
// database that does not answer yet. Only ctx ends the wait: a database restart or a slow
// first start is not a reason to crash-loop, and /readyz says what it waits for meanwhile.
func connectLedger(ctx context.Context, cc *pgx.ConnConfig, h *health, log logr.Logger) (*pgx.Conn, error) {
	wait := backoff.New(30 * time.Second)
	for {
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err == nil {
			h.set("ledger", nil, "reachable")
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		err = fmt.Errorf("connecting to the ledger database: %w", err)
		h.set("ledger", err, "")
		h.set("active", fmt.Errorf("waiting for the ledger database: %w", err), "")
		d := wait.Next()
		log.Error(err, "the ledger database does not answer; retrying", "in", d)
		if !backoff.Sleep(ctx, d) {
			return nil, ctx.Err()
		}
	}
}

// watchLedger keeps the "ledger" component current while the helper runs.
func watchLedger(ctx context.Context, pool *pgxpool.Pool, answered *answers, h *health) {
	t := time.NewTicker(ledgerPingEvery)
	defer t.Stop()
	for {
		err := checkLedger(ctx, pool, answered)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			err = fmt.Errorf("ledger database: %w", err)
		}
		h.set("ledger", err, "reachable")
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkLedger says whether the pool's database answers: at once when a statement was answered
// since the last check, which is then as recent as a ping of its own would be; by a ping when
// none was.
func checkLedger(ctx context.Context, pool *pgxpool.Pool, answered *answers) error {
	if answered.take() {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A ping is not traced (pgx sends it below the tracer), so the check's own answer is no news
	// at the next one, which would otherwise stand on a ping a whole period old.
	return reachable(pctx, pool)
}

// reachable says whether the pool's database answers, in one round trip when it does: the pool
// hands out a quiet connection without a ping of its own (ledger.PoolConfig).
func reachable(ctx context.Context, pool *pgxpool.Pool) error {
	err := pool.Ping(ctx)
	if err == nil || ctx.Err() != nil {
		return err
	}
	// A connection the database ended (a restart) within the second before it was handed out
	// is handed out without a look, fails its ping, and is dropped. Ask once more, on another or
	// a new connection, so a database that is back is not reported gone until the next check.
	return pool.Ping(ctx)
}
