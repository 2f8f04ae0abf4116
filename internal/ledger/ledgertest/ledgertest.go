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

// Open opens the asset btc (bitcoin regtest, credited at 1 confirmation) on pool, taking any
// address as valid: for tests of what reads the ledger, not of address validation.
func Open(t testing.TB, pool *pgxpool.Pool) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(context.Background(), pool, ledger.Options{Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 1,
		MaxTrackedConfirmations: 6, ValidateAddress: func(string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
