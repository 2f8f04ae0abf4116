package helper

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// TestReachableFollowsTheDatabase: the ledger watch's check says the database answers at once
// after a restart, though the restart killed the pool's connection; says it is gone while it is
// down, though the pool holds connections that were fine before; and says it answers again once
// it is back.
func TestReachableFollowsTheDatabase(t *testing.T) {
	ctx := context.Background()
	db, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Stop)
	pc, err := ledger.PoolConfig(db.Database(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	check := func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return reachable(cctx, pool)
	}
	if err := check(); err != nil {
		t.Fatalf("database up: %v", err)
	}
	// A restart ends the pooled connection's session. The database is back, so the first check
	// says so: it does not report the dead connection.
	if pool.Stat().IdleConns() == 0 {
		t.Fatal("the pool kept no connection for the restart to end")
	}
	db.Down()
	if err := db.Up(); err != nil {
		t.Fatal(err)
	}
	if err := check(); err != nil {
		t.Fatalf("first check after a restart: %v", err)
	}

	if pool.Stat().IdleConns() == 0 {
		t.Fatal("the pool kept no connection to find dead")
	}
	db.Down()
	testassets.Eventually(t, 60*time.Second, "the check failing while the database is down", func() error {
		if err := check(); err == nil {
			return errors.New("reachable says the database answers")
		}
		return nil
	})
	if err := db.Up(); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 60*time.Second, "the check passing once the database is back", check)
}

// TestLedgerCheckStandsOnTheHelpersStatements: the ledger watch's check pings the database only
// when none of the pool's statements was answered since the last check. Its own ping is no such
// answer, nor is a statement that failed, nor one on the lock's connection; and a database that
// went down is reported at the first check that has no answer to stand on.
func TestLedgerCheckStandsOnTheHelpersStatements(t *testing.T) {
	ctx := context.Background()
	db, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Stop)
	// Every request the pool sends goes through the proxy, which counts them.
	counts, url := pgtest.CountingProxy(t, db.Database(t))
	pc, err := ledger.PoolConfig(url, 4)
	if err != nil {
		t.Fatal(err)
	}
	answered, lockConfig := traceAnswers(pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	lockConn, err := pgx.ConnectConfig(ctx, lockConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lockConn.Close(ctx) })
	// check runs one check, which sends one request (its ping) or, standing on an answer, none.
	check := func(step string, wantPing bool) error {
		t.Helper()
		before := counts.Requests()
		err := checkLedger(ctx, pool, answered)
		want := int64(0)
		if wantPing {
			want = 1
		}
		if sent := counts.Requests() - before; sent != want {
			t.Errorf("%s: the check sent %d requests, want %d", step, sent, want)
		}
		return err
	}
	work := func(sql string) error {
		_, err := pool.Exec(ctx, sql)
		return err
	}

	if err := check("nothing answered yet", true); err != nil {
		t.Fatalf("database up: %v", err)
	}
	if err := check("right after a check of its own", true); err != nil {
		t.Fatal(err)
	}
	if err := work("SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := check("a statement answered since", false); err != nil {
		t.Fatal(err)
	}
	if err := check("that answer taken by the last check", true); err != nil {
		t.Fatal(err)
	}
	if err := work("SELECT * FROM no_such_table"); err == nil {
		t.Fatal("a statement on a missing table succeeded")
	}
	if err := check("a statement failed since", true); err != nil {
		t.Fatal(err)
	}
	if _, err := lockConn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := check("the lock's connection answered since", true); err != nil {
		t.Fatal(err)
	}

	if err := work("SELECT 1"); err != nil {
		t.Fatal(err)
	}
	db.Down()
	if err := work("SELECT 1"); err == nil {
		t.Fatal("a statement succeeded with the database down")
	}
	// The answer before the outage was taken in the period of the check after it, as a ping's
	// would have been; the next finds none and asks.
	if err := check("the period of the last answer", false); err != nil {
		t.Fatalf("the check after an answer within its period: %v", err)
	}
	// Asked with nothing to stand on, it pings; no request reaches a database that is down.
	if err := checkLedger(ctx, pool, answered); err == nil {
		t.Fatal("the check says the database answers while it is down")
	}
	if err := db.Up(); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 60*time.Second, "the check passing once the database is back", func() error {
		return checkLedger(ctx, pool, answered)
	})
}
