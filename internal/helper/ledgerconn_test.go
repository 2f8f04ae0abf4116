package helper

import (
	"context"
	"errors"
	"testing"
	"time"

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
