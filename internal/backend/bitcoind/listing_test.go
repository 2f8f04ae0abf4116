package bitcoind

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
)

// TestListingReplies: the wallet's listings are decoded from the reply as it arrives. An answer is read exactly (amounts as decimal text), and each way a reply can
// fail is told apart: the node refusing, the reply cut short or not from the node (unreachable,
// worth retrying), and a reply that is not a listing (named as such).
func TestListingReplies(t *testing.T) {
	ctx := context.Background()
	const lastBlock = "0000000000000000000000000000000000000000000000000000000000000abc"
	entry := `{"txid":"` + strings.Repeat("cd", 32) + `","category":"receive","address":"SZnvB5hxHe3ZCrbE1DnjC5ZsRo7HumJWCF",` +
		`"amount":20999999.99999999,"vout":3,"confirmations":0,"fee":null,"walletconflicts":[]}`
	for _, tc := range []struct {
		name    string
		status  int
		reply   string
		wantErr error  // nil: the listing is read
		words   string // in the error
	}{
		{"a listing", http.StatusOK, `{"result":{"transactions":[` + entry + `],"lastblock":"` + lastBlock + `"},"error":null,"id":1}` + "\n", nil, ""},
		{"refused by the node", http.StatusInternalServerError, `{"result":null,"error":{"code":-5,"message":"Block not found"},"id":1}`, backend.ErrRejected, "Block not found"},
		{"cut short", http.StatusOK, `{"result":{"transactions":[` + entry[:40], backend.ErrUnreachable, "reading the reply"},
		{"a proxy's error page", http.StatusBadGateway, `<html>bad gateway</html>`, backend.ErrUnreachable, "HTTP 502"},
		{"wrong credentials", http.StatusUnauthorized, ``, backend.ErrRejected, "authentication failed"},
		{"not a listing", http.StatusOK, `{"result":{"transactions":"none"},"error":null,"id":1}`, nil, "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				var req struct {
					Method string `json:"method"`
				}
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
					http.Error(rw, err.Error(), http.StatusBadRequest)
					return
				}
				rw.Header().Set("Content-Type", "application/json")
				switch req.Method {
				case "listsinceblock":
					rw.WriteHeader(tc.status)
					_, _ = io.WriteString(rw, tc.reply)
				case "getblockheader":
					_, _ = io.WriteString(rw, `{"result":{"height":7},"error":null,"id":2}`)
				default:
					http.Error(rw, "unexpected "+req.Method, http.StatusNotFound)
				}
			}))
			defer srv.Close()
			c, err := New(Options{URL: srv.URL, Flavor: Btcwallet, User: "u", Password: "p", Timeout: 10 * time.Second, Coin: "bitcoin", Network: "simnet"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			txs, tip, err := c.Since(ctx, "")
			if tc.words != "" {
				if err == nil || !strings.Contains(err.Error(), tc.words) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("listing: %v; want an error saying %q (%v)", err, tc.words, tc.wantErr)
				}
				if tc.wantErr == nil && (errors.Is(err, backend.ErrUnreachable) || errors.Is(err, backend.ErrRejected)) {
					t.Errorf("a reply that is not a listing reported as %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tip != (backend.Tip{Height: 7, Hash: lastBlock}) || len(txs) != 1 || len(txs[0].Received) != 1 {
				t.Fatalf("tip %+v, transactions %+v", tip, txs)
			}
			if o := txs[0].Received[0]; o.Amount != 2_099_999_999_999_999 || o.Index != 3 || o.Address != "SZnvB5hxHe3ZCrbE1DnjC5ZsRo7HumJWCF" {
				t.Errorf("output %+v", o)
			}
		})
	}
}
