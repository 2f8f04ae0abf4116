// Package ledgertest gives tests a fresh ledger database. It stands apart from the ledger's own
// tests, which use pgtest directly (a helper importing ledger there would be an import cycle).
package ledgertest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
)

// DB creates a database on srv with the ledger schema applied (the init container's job) and
// returns its URL and a pool on it, closed when the test ends.
func DB(t testing.TB, srv *pgtest.Server) (string, *pgxpool.Pool) {
	t.Helper()
	url := srv.Database(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := ledger.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return url, pool
}
