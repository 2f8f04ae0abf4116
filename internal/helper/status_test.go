package helper

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
)

// TestStatusPageShowsAPageOfAccounts: with more accounts than the status page shows, it shows
// the first statusAccounts, in id order, and says where the API's listing of the rest starts.
func TestStatusPageShowsAPageOfAccounts(t *testing.T) {
	ctx := context.Background()
	_, pool := ledgertest.DB(t, pg)
	l := ledgertest.Open(t, pool)
	cfg := &config.Config{Asset: config.Asset{Name: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 1, MaxTrackedConfirmations: 6}}
	page := func() string {
		t.Helper()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/status", nil)
		req.Header.Set("Authorization", "Bearer token")
		statusHandler(cfg, l, newHealth(), &activity{}, "token").ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != http.StatusOK {
			t.Fatalf("status page: %d %s", rec.Code, body)
		}
		return string(body)
	}

	// The fee account and 98 more: all shown, and no pointer to more.
	var ids []int64
	add := func(n int) {
		for range n {
			a, err := l.CreateAccount(ctx, fmt.Sprintf("customer-%03d", len(ids)))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, a.ID)
		}
	}
	add(statusAccounts - 2)
	if p := page(); !strings.Contains(p, fmt.Sprintf("customer-%03d", len(ids)-1)) || strings.Contains(p, "GET /v1/accounts?after=") {
		t.Errorf("%d accounts: the page does not list them all, or points to more", len(ids)+1)
	}
	// Exactly statusAccounts: still no pointer.
	add(1)
	if p := page(); strings.Contains(p, "GET /v1/accounts?after=") {
		t.Errorf("%d accounts: the page points to more", len(ids)+1)
	}
	// Five more than it shows.
	add(5)
	p := page()
	shown := strings.Count(p, "<td>customer-")
	last := ids[statusAccounts-2] // the fee account is the first shown
	if shown != statusAccounts-1 || !strings.Contains(p, fmt.Sprintf("customer-%03d", statusAccounts-2)) ||
		strings.Contains(p, fmt.Sprintf("customer-%03d", statusAccounts-1)) {
		t.Errorf("%d accounts: the page lists %d customers, want the first %d", len(ids)+1, shown, statusAccounts-1)
	}
	if want := fmt.Sprintf("GET /v1/accounts?after=%d", last); !strings.Contains(p, want) {
		t.Errorf("the page does not say %q", want)
	}
}
