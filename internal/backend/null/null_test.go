package null

import (
	"context"
	"testing"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/backendtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

func newSim(t *testing.T, store Store) *Backend {
	t.Helper()
	b, err := New(context.Background(), Options{Coin: "bitcoin", Network: "regtest", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContract(t *testing.T) {
	ctx := context.Background()
	b := newSim(t, nil)
	// Coins to send with: a customer's confirmed payment.
	funding, err := b.NewAddress(ctx, "funding")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Receive(ctx, map[string]ledger.Amount{funding: 10 * 100_000_000}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	backendtest.Run(t, backendtest.Harness{
		Backend: b, Coin: "bitcoin", Network: "regtest", Amount: 1_234_567,
		Pay: func(t *testing.T, addr string, amount ledger.Amount) string {
			txid, err := b.Receive(ctx, map[string]ledger.Amount{addr: amount})
			if err != nil {
				t.Fatal(err)
			}
			return txid
		},
		Mine: func(t *testing.T, n int) {
			if _, err := b.Mine(ctx, n); err != nil {
				t.Fatal(err)
			}
		},
		External: func(t *testing.T) string { return backendtest.ExternalAddress(t, "bitcoin", "regtest") },
	})
}
