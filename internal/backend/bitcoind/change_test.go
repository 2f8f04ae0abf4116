package bitcoind

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/amount"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
)

// refusingWallet answers sendmany as btcwallet v0.15.1 does when the change address it draws
// starts "Sb1", for the first `refusals` calls: btcd's refusal wrapped in an internal error,
// code -32603 and the message "-5: Invalid address or key: <address>" (recorded from a real
// wallet), or with `direct` btcd's refusal as it is (code -5). getrawchangeaddress gets the
// refusal as it is, as btcwallet answers having kept the address.
// getnewaddress gets the refusal for its first `refusals` calls too, then hands out addresses in
// turn (the last again once they run out).
type refusingWallet struct {
	refused   string
	refusals  int
	direct    bool
	addresses []string
	mu        sync.Mutex
	calls     []string
}

func (w *refusingWallet) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.calls = append(w.calls, req.Method)
	sends := strings.Count(strings.Join(w.calls, " "), "sendmany")
	news := strings.Count(strings.Join(w.calls, " "), "getnewaddress")
	w.mu.Unlock()
	reply := map[string]any{"id": req.ID, "result": nil, "error": nil}
	refusal := map[string]any{"code": -5, "message": "Invalid address or key: " + w.refused}
	sendRefusal := map[string]any{"code": -32603, "message": "-5: Invalid address or key: " + w.refused}
	if w.direct {
		sendRefusal = refusal
	}
	switch {
	case req.Method == "getrawchangeaddress":
		reply["error"] = refusal
	case req.Method == "sendmany" && sends <= w.refusals:
		reply["error"] = sendRefusal
	case req.Method == "sendmany":
		reply["result"] = strings.Repeat("ab", 32)
	case req.Method == "getnewaddress" && news <= w.refusals:
		reply["error"] = refusal
	case req.Method == "getnewaddress" && len(w.addresses) > 0:
		reply["result"] = w.addresses[min(news-w.refusals, len(w.addresses))-1]
	default:
		reply["error"] = map[string]any{"code": -32601, "message": "Method not found"}
	}
	_ = json.NewEncoder(rw).Encode(reply)
}

// TestSendManyMovesPastARefusedChangeAddress: btcwallet refusing its own change address is not
// an output refusal. The wallet is moved past the address once and the payment asked for again;
// a refused output, or a second refusal, is reported as before.
func TestSendManyMovesPastARefusedChangeAddress(t *testing.T) {
	ctx := context.Background()
	out, err := node.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	output := out.EncodeAddress()
	for _, tc := range []struct {
		name     string
		flavor   string
		refused  string
		refusals int
		direct   bool
		wantErr  error
		calls    string
	}{
		{"change refused once", Btcwallet, "Sb1CmQd52fmy78f2zqAb6YMXGWND6Uu3Zm", 1, false, nil, "sendmany getrawchangeaddress sendmany"},
		{"change refused once, btcd's code as it is", Btcwallet, "Sb1CmQd52fmy78f2zqAb6YMXGWND6Uu3Zm", 1, true, nil, "sendmany getrawchangeaddress sendmany"},
		{"change refused twice", Btcwallet, "Sb1CmQd52fmy78f2zqAb6YMXGWND6Uu3Zm", 2, false, backend.ErrOutputRefused, "sendmany getrawchangeaddress sendmany"},
		{"an output refused", Btcwallet, output, 1, false, backend.ErrOutputRefused, "sendmany"},
		{"another address refused", Btcwallet, "SNN7F4L5pZFSQdMTzzyw1batvdzAvEKiht", 1, false, backend.ErrOutputRefused, "sendmany"},
		{"Bitcoin Core", BitcoinCore, "Sb1CmQd52fmy78f2zqAb6YMXGWND6Uu3Zm", 1, true, backend.ErrOutputRefused, "sendmany"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &refusingWallet{refused: tc.refused, refusals: tc.refusals, direct: tc.direct}
			srv := httptest.NewServer(w)
			defer srv.Close()
			c, err := New(Options{URL: srv.URL, Flavor: tc.flavor, User: "u", Password: "p", Timeout: 10 * time.Second, Coin: "bitcoin", Network: "simnet"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			txid, err := c.SendMany(ctx, map[string]amount.Amount{output: 10_000})
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("sendmany: %q, %v; want %v", txid, err, tc.wantErr)
			}
			if tc.wantErr == nil && txid != strings.Repeat("ab", 32) {
				t.Errorf("txid %q", txid)
			}
			if got := strings.Join(w.calls, " "); got != tc.calls {
				t.Errorf("calls: %s, want %s", got, tc.calls)
			}
		})
	}
}
