package helper

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/backoff"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// stepLimit is how long one step of a periodic part (a catch-up, a broadcast pass) may run before
// liveness calls the helper hung and Kubernetes restarts it. Every backend call has its own
// timeout far below this; a step that still runs this long is stuck, and a restart resumes from
// the ledger without losing or repeating anything.
const stepLimit = 15 * time.Minute

// ledgerPingEvery is how often the active helper checks its database when nothing else does.
const ledgerPingEvery = 10 * time.Second

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
func watchLedger(ctx context.Context, pool *pgxpool.Pool, h *health) {
	t := time.NewTicker(ledgerPingEvery)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := reachable(pctx, pool)
		cancel()
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

// reachable says whether the pool's database answers, in one round trip when it does. pool.Ping
// cost two: the pool pings a connection idle for over a second before it hands it out, and
// pool.Ping then pings it again, every ledgerPingEvery from every idle helper.
func reachable(ctx context.Context, pool *pgxpool.Pool) error {
	c, err := pool.Acquire(ledger.WithoutPrePing(ctx))
	if err != nil {
		return err
	}
	err = c.Ping(ctx)
	c.Release()
	if err == nil || ctx.Err() != nil {
		return err
	}
	// A connection the database closed while it sat idle (a restart) fails its ping, and the
	// pool drops it. Ask again the usual way, which pings idle connections and replaces the
	// dead ones, so a database that is back is not reported gone until the next check.
	return pool.Ping(ctx)
}
