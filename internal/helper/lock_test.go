package helper

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// TestLockWatch: the active helper's lock watch notices at once that the server ended the lock's
// session, though it pings only after a long quiet read; the broadcaster's ping (held) does not
// wait for that read; reads that run out leave the session holding the lock; and the read hands
// on the notifications of the channel the helper listens to.
func TestLockWatch(t *testing.T) {
	ctx := context.Background()
	dbURL, admin := ledgertest.DB(t, pg)

	// locked takes the advisory lock on a connection of its own, as the tenure does.
	locked := func(t *testing.T, key int64) (*lockHolder, uint32) {
		t.Helper()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			t.Fatal(err)
		}
		return newLockHolder(conn), conn.PgConn().PID()
	}
	// watching runs the watch until the test ends and returns what it returned.
	watching := func(t *testing.T, lh *lockHolder) chan error {
		t.Helper()
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- lh.watch(wctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return done
	}
	reading := func(lh *lockHolder) func() error {
		return func() error {
			lh.mu.Lock()
			defer lh.mu.Unlock()
			if lh.cutRead == nil {
				return errors.New("the watch is not reading the connection")
			}
			return nil
		}
	}
	holds := func(t *testing.T, pid uint32, key int64) {
		t.Helper()
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND pid = $1 AND objid = $2`, int32(pid), key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("session %d holds the lock %d times, want once", pid, n)
		}
	}

	t.Run("reads that run out are followed by a ping and keep the lock", func(t *testing.T) {
		lh, pid := locked(t, 1)
		lh.idleCheck = 50 * time.Millisecond
		done := watching(t, lh)
		// pgx's Ping is the empty statement "-- ping"; the session shows it once a read ran out.
		testassets.Eventually(t, 60*time.Second, "the watch pinged after a quiet read", func() error {
			var query string
			if err := admin.QueryRow(ctx, "SELECT query FROM pg_stat_activity WHERE pid = $1", int32(pid)).Scan(&query); err != nil {
				return err
			}
			if query != "-- ping" {
				return fmt.Errorf("the lock session's last statement is %q", query)
			}
			return nil
		})
		testassets.Eventually(t, 60*time.Second, "the watch reading again", reading(lh))
		select {
		case err := <-done:
			t.Fatalf("the watch returned %v with the session alive", err)
		default:
		}
		if err := lh.held(ctx); err != nil {
			t.Fatal(err)
		}
		holds(t, pid, 1)
	})

	t.Run("a ping does not wait for the watch's read", func(t *testing.T) {
		lh, pid := locked(t, 2)
		lh.idleCheck = time.Hour
		watching(t, lh)
		for i := range 3 {
			testassets.Eventually(t, 60*time.Second, "the watch reading", reading(lh))
			answered := make(chan error, 1)
			go func() { answered <- lh.held(ctx) }()
			select {
			case err := <-answered:
				if err != nil {
					t.Fatalf("ping %d: %v", i, err)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("ping %d still waits for the watch's read of an hour", i)
			}
		}
		holds(t, pid, 2)
	})

	t.Run("notifications on the channel it listens to are handed on", func(t *testing.T) {
		lh, pid := locked(t, 4)
		lh.idleCheck = time.Hour
		var notified atomic.Int32
		if err := lh.listen(ctx, "cryptoassets_events_test", func() { notified.Add(1) }); err != nil {
			t.Fatal(err)
		}
		done := watching(t, lh)
		for want := int32(1); want <= 2; want++ {
			testassets.Eventually(t, 60*time.Second, "the watch reading", reading(lh))
			if _, err := admin.Exec(ctx, "SELECT pg_notify('cryptoassets_events_test', '')"); err != nil {
				t.Fatal(err)
			}
			testassets.Eventually(t, 60*time.Second, "the notification handed on", func() error {
				if n := notified.Load(); n != want {
					return fmt.Errorf("%d notifications handed on, want %d", n, want)
				}
				return nil
			})
		}
		// One that comes while a statement has the connection is kept (by pgx, if the statement
		// read it) for the watch's next read.
		lh.take(nil)
		if _, err := admin.Exec(ctx, "SELECT pg_notify('cryptoassets_events_test', '')"); err != nil {
			t.Fatal(err)
		}
		err := lh.conn.Ping(ctx)
		lh.give()
		if err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, 60*time.Second, "the notification that came during a ping handed on", func() error {
			if n := notified.Load(); n != 3 {
				return fmt.Errorf("%d notifications handed on, want 3", n)
			}
			return nil
		})
		select {
		case err := <-done:
			t.Fatalf("the watch returned %v", err)
		default:
		}
		holds(t, pid, 4)
	})

	t.Run("a session the server ends is noticed without a ping", func(t *testing.T) {
		lh, pid := locked(t, 3)
		lh.idleCheck = time.Hour // no ping comes within the test
		done := watching(t, lh)
		testassets.Eventually(t, 60*time.Second, "the watch reading", reading(lh))
		if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, errLostLock) {
				t.Fatalf("the watch returned %v, want errLostLock", err)
			}
			done <- nil // for the cleanup
		case <-time.After(60 * time.Second):
			t.Fatal("the watch did not notice that its session was ended")
		}
	})
}
