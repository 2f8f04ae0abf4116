package ledger

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// TestPoolClosesWhatABurstOpened: after a burst opens several connections, a helper that goes
// back to one query at a time keeps one open, as PostgreSQL sees it. Before the pool was checked
// once per idle period, its checks handed the least used connection out next, and two stayed
// open for good.
func TestPoolClosesWhatABurstOpened(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := server.Database(t)
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	// PoolIdleTime scaled down, so the test takes seconds, not minutes; but well above the half
	// second after which the pool checks again once it has closed one, which would otherwise
	// close the second spare whatever the period (it did, at a third of a second).
	closeIdle(pc, 3*time.Second)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// The burst: three at once, as a helper's parts do when it starts.
	var burst []*pgxpool.Conn
	for range 3 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		burst = append(burst, c)
	}
	for _, c := range burst {
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		c.Release()
	}

	// Then one query at a time, many in each idle period, as an idle helper's poll, ping and
	// dispatcher make them.
	queries := make(chan error, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				queries <- nil
				return
			case <-tick.C:
			}
			if _, err := pool.Exec(ctx, "SELECT 1"); err != nil && ctx.Err() == nil {
				queries <- err
				return
			}
		}
	}()

	watch, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(context.WithoutCancel(ctx))
	open := func() (n int) {
		if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := open(); n != 3 {
		t.Fatalf("the burst left %d connections open, want 3", n)
	}
	// The pool's checks run on their own clock; a loaded machine may delay them, never skip them.
	testassets.Eventually(t, 30*time.Second, "the spare connections closed", func() error {
		if n := open(); n != 1 {
			return fmt.Errorf("%d connections open, want 1", n)
		}
		return nil
	})
	cancel()
	if err := <-queries; err != nil {
		t.Fatalf("a query while the pool closed its spare connections: %v", err)
	}
}

// TestPoolPingsIdleConnectionsUnlessTheCallerDoes: a pool from PoolConfig pings a connection
// idle for over a second before it hands it out, as pgxpool does by default, except to a caller
// that said it pings the connection itself (WithoutPrePing), whose check would otherwise cost two
// round trips.
func TestPoolPingsIdleConnectionsUnlessTheCallerDoes(t *testing.T) {
	pc, err := PoolConfig("postgres://ledger@db.invalid:5432/ledger", 4)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name string
		ctx  context.Context
		idle time.Duration
		want bool
	}{
		{"used within the second", ctx, 500 * time.Millisecond, false},
		{"idle for a while", ctx, 10 * time.Second, true},
		{"idle, for a caller that pings", WithoutPrePing(ctx), 10 * time.Second, false},
		{"idle for long, for a caller that pings", WithoutPrePing(ctx), time.Hour, false},
	} {
		if got := pc.ShouldPing(c.ctx, pgxpool.ShouldPingParams{IdleDuration: c.idle}); got != c.want {
			t.Errorf("%s: pinged before handing out: %v, want %v", c.name, got, c.want)
		}
	}
}
