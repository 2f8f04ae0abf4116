package bitcoind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
			c := scriptedWallet(t, func(method string, _ []json.RawMessage) (int, string) {
				switch method {
				case "listsinceblock":
					return tc.status, tc.reply
				case "getblockheader":
					return http.StatusOK, `{"result":{"height":7},"error":null,"id":2}`
				}
				return 0, ""
			})
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

// TestListingEntriesMakeOneTransactionEach: a listing has an entry per detail of a transaction,
// in any order, and a paged listing can show one twice when the wallet gains entries between
// pages. Each transaction comes out once, where its first entry stood, with its outputs in the
// listing's order and no output twice.
func TestListingEntriesMakeOneTransactionEach(t *testing.T) {
	ctx := context.Background()
	const lastBlock = "0000000000000000000000000000000000000000000000000000000000000abc"
	txA, txB := strings.Repeat("aa", 32), strings.Repeat("bb", 32)
	entry := func(txid, category string, vout int) string {
		return fmt.Sprintf(`{"txid":%q,"category":%q,"address":"SZnvB5hxHe3ZCrbE1DnjC5ZsRo7HumJWCF","amount":0.0000000%d,"vout":%d,"confirmations":0,"fee":null}`,
			txid, category, vout+1, vout)
	}
	// Recent's first page is full, so it reads a second, which starts with the first page's
	// last entry again: the wallet gained an entry in between.
	var firstPage []string
	for i := range recentPage - 1 {
		firstPage = append(firstPage, entry(fmt.Sprintf("%064x", i+1), "receive", 0))
	}
	firstPage = append(firstPage, entry(txA, "receive", 0))
	secondPage := []string{entry(txA, "receive", 0), entry(txB, "send", 1), entry(txA, "receive", 2), entry(txB, "receive", 0)}

	ok := func(result string) (int, string) {
		return http.StatusOK, `{"result":` + result + `,"error":null,"id":1}`
	}
	c := scriptedWallet(t, func(method string, params []json.RawMessage) (int, string) {
		switch method {
		case "listsinceblock":
			// The same transactions, their entries interleaved and one repeated.
			return ok(`{"transactions":[` + strings.Join([]string{entry(txA, "receive", 0), entry(txB, "send", 1),
				entry(txA, "receive", 2), entry(txA, "receive", 0), entry(txB, "receive", 0)}, ",") + `],"lastblock":"` + lastBlock + `"}`)
		case "listtransactions":
			page := firstPage
			if len(params) == 3 && string(params[2]) != "0" {
				page = secondPage
			}
			return ok(`[` + strings.Join(page, ",") + `]`)
		case "getblockheader":
			return ok(`{"height":7}`)
		case "getblockcount":
			return ok(`7`)
		case "getblockhash":
			return ok(`"` + lastBlock + `"`)
		}
		return 0, ""
	})

	// outputs names a transaction's outputs as vout:amount, in order.
	outputs := func(tx backend.Transaction) string {
		var s []string
		for _, o := range tx.Received {
			s = append(s, fmt.Sprintf("%d:%d", o.Index, o.Amount))
		}
		return strings.Join(s, " ")
	}
	check := func(t *testing.T, txs []backend.Transaction, before int) {
		t.Helper()
		if len(txs) != before+2 {
			t.Fatalf("%d transactions, want %d", len(txs), before+2)
		}
		for i, tx := range txs[:before] {
			if tx.TxID != fmt.Sprintf("%064x", i+1) || outputs(tx) != "0:1" || tx.Sent {
				t.Fatalf("transaction %d: %+v", i, tx)
			}
		}
		a, b := txs[before], txs[before+1]
		if a.TxID != txA || outputs(a) != "0:1 2:3" || a.Sent {
			t.Errorf("first transaction %s: outputs %q, sent %v; want %s with 0:1 2:3, not sent", a.TxID, outputs(a), a.Sent, txA)
		}
		if b.TxID != txB || outputs(b) != "0:1" || !b.Sent {
			t.Errorf("second transaction %s: outputs %q, sent %v; want %s with 0:1, sent", b.TxID, outputs(b), b.Sent, txB)
		}
	}
	t.Run("listsinceblock", func(t *testing.T) {
		txs, _, err := c.Since(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		check(t, txs, 0)
	})
	t.Run("listtransactions in pages", func(t *testing.T) {
		txs, _, err := c.Recent(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		check(t, txs, recentPage-1)
	})
}

// scriptedWallet is a client of a fake wallet that answers each call as answer says: an HTTP
// status and the reply's text. A status of 0 means the call was not expected, which the
// client sees as a 404 naming the method.
func scriptedWallet(t *testing.T, answer func(method string, params []json.RawMessage) (status int, reply string)) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var req struct {
			Method string            `json:"method"`
			Params []json.RawMessage `json:"params"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		status, reply := answer(req.Method, req.Params)
		if status == 0 {
			http.Error(rw, "unexpected "+req.Method, http.StatusNotFound)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(status)
		_, _ = io.WriteString(rw, reply)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Options{URL: srv.URL, Flavor: Btcwallet, User: "u", Password: "p", Timeout: 10 * time.Second, Coin: "bitcoin", Network: "simnet"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
