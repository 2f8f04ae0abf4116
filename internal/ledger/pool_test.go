package ledger

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
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

// TestPoolPingsOnlyConnectionsItCannotVouchFor: a pool from PoolConfig hands out a connection
// idle for over a second without a ping when a look at its socket shows it open and quiet; pings
// one the server spoke on or ended, or whose socket it cannot look at, as pgxpool does every idle
// one. A statement after the server ended the session still succeeds: the ping finds the
// connection dead, and the pool opens another.
func TestPoolPingsOnlyConnectionsItCannotVouchFor(t *testing.T) {
	ctx := context.Background()
	dbURL := server.Database(t)
	counts, url := pgtest.CountingProxy(t, dbURL)
	pc, err := PoolConfig(url, 4)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(ctx) })

	// A connection of the pool's kind, outside it, so a failed check cannot leave the pool
	// waiting for it to come back when the test ends.
	quiet, err := pgx.ConnectConfig(ctx, pc.ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { quiet.Close(ctx) })
	for _, c := range []struct {
		name string
		conn *pgx.Conn
		idle time.Duration
		want bool
	}{
		{"used within the second", quiet, 500 * time.Millisecond, false},
		{"idle for a while, open and quiet", quiet, 10 * time.Second, false},
		{"idle for a while, its socket out of sight", nil, 10 * time.Second, true},
	} {
		if got := pc.ShouldPing(ctx, pgxpool.ShouldPingParams{Conn: c.conn, IdleDuration: c.idle}); got != c.want {
			t.Errorf("%s: pinged before handing out: %v, want %v", c.name, got, c.want)
		}
	}
	// The server speaks on an idle connection: a notification it listens for.
	if _, err := quiet.Exec(ctx, "LISTEN wake"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "NOTIFY wake"); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 30*time.Second, "a connection the server spoke on pinged", func() error {
		if !pc.ShouldPing(ctx, pgxpool.ShouldPingParams{Conn: quiet, IdleDuration: 10 * time.Second}) {
			return errors.New("not pinged")
		}
		return nil
	})

	// Through the pool itself: a quiet connection idle for over a second is handed out with no
	// request sent; one whose session the server ended is found dead and replaced.
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	idle := func() {
		// The pool's own threshold is a time, not another process's progress.
		time.Sleep(1500 * time.Millisecond)
	}
	idle()
	before := counts.Requests()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.Conn().PgConn().PID()
	c.Release()
	if sent := counts.Requests() - before; sent != 0 {
		t.Errorf("handing out a quiet connection idle for over a second sent %d requests, want none", sent)
	}
	var ended bool
	if err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ended); err != nil || !ended {
		t.Fatalf("ending the pooled session: %v, %v", ended, err)
	}
	idle()
	sessions := counts.Sessions()
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("a statement after the server ended the pooled session: %v", err)
	}
	if got := counts.Sessions() - sessions; got != 1 {
		t.Errorf("the pool opened %d sessions to replace the one the server ended, want 1", got)
	}
}

// TestPoolLooksThroughTLS: the look at an idle connection's socket works through TLS, as most
// production databases are reached: a quiet one is handed out without a ping, one whose session
// the server ended is pinged (and so replaced).
func TestPoolLooksThroughTLS(t *testing.T) {
	ctx := context.Background()
	srv, err := pgtest.StartTLS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	pc, err := PoolConfig(srv.TLSURL("postgres"), 4)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, pc.ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("the connection is a %T, not TLS", conn.PgConn().Conn())
	}
	idle := pgxpool.ShouldPingParams{Conn: conn, IdleDuration: 10 * time.Second}
	if pc.ShouldPing(ctx, idle) {
		t.Error("a quiet TLS connection idle for a while is pinged before it is handed out")
	}
	admin, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(ctx) })
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", conn.PgConn().PID()); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 30*time.Second, "a TLS connection the server ended pinged", func() error {
		if !pc.ShouldPing(ctx, idle) {
			return errors.New("not pinged")
		}
		return nil
	})
	if err := conn.Ping(ctx); err == nil {
		t.Error("the ended session still answers a ping")
	}
}
