package bitcoind

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2/base58"
)

// simnetAddress is a valid simnet P2PKH address that starts "Sb1", or one that does not.
func simnetAddress(t *testing.T, startsSb1 bool) string {
	t.Helper()
	h := make([]byte, 20)
	for {
		if _, err := rand.Read(h); err != nil {
			t.Fatal(err)
		}
		if a := base58.CheckEncode(h, 0x3f); strings.HasPrefix(a, "Sb1") == startsSb1 {
			return a
		}
	}
}

// btcwallet v0.15 on simnet may hand out an address starting "Sb1", which it cannot pay, or
// refuse to hand one out at all with the same words; NewAddress draws past both.
func TestNewAddressDrawsPastSb1(t *testing.T) {
	refused, unpayable, good := simnetAddress(t, true), simnetAddress(t, true), simnetAddress(t, false)
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Method != "getnewaddress" {
			http.Error(rw, "unexpected request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		answer := map[string]any{"id": req.ID, "result": nil, "error": nil}
		switch n {
		case 1:
			answer["error"] = map[string]any{"code": -5, "message": "Invalid address or key: " + refused}
		case 2:
			answer["result"] = unpayable
		default:
			answer["result"] = good
		}
		_ = json.NewEncoder(rw).Encode(answer)
	}))
	defer srv.Close()

	for _, tc := range []struct {
		network string
		want    string
		calls   int
		err     string
	}{
		{"simnet", good, 3, ""},
		// Elsewhere an "Sb1" refusal is not the quirk: it is the answer.
		{"regtest", "", 1, "Invalid address or key"},
	} {
		calls = 0
		c, err := New(Options{URL: srv.URL, Flavor: Btcwallet, User: "u", Password: "p", Timeout: 10 * time.Second, Coin: "bitcoin", Network: tc.network})
		if err != nil {
			t.Fatal(err)
		}
		addr, err := c.NewAddress(context.Background(), "")
		c.Close()
		if addr != tc.want || calls != tc.calls || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %q after %d calls (%v), want %q after %d", tc.network, addr, calls, err, tc.want, tc.calls)
		}
	}
}
