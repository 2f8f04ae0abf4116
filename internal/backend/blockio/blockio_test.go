package blockio_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/backendtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockio"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockio/blockiotest"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

const (
	apiKey = "a1b2-c3d4-e5f6-0718"
	pin    = "correct horse battery staple"
)

func start(t *testing.T) *blockiotest.Server {
	t.Helper()
	srv, err := blockiotest.Start(apiKey, pin, "bitcoin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func client(t *testing.T, srv *blockiotest.Server, mutate ...func(*blockio.Options)) *blockio.Client {
	t.Helper()
	opts := blockio.Options{URL: srv.URL(), APIKey: apiKey, PIN: pin, Coin: "bitcoin", Network: "testnet", Timeout: 5 * time.Second}
	for _, m := range mutate {
		m(&opts)
	}
	c, err := blockio.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestContract(t *testing.T) {
	ctx := context.Background()
	srv := start(t)
	srv.PageSize = 3 // every list walk crosses pages
	c := client(t, srv)
	funding, err := c.NewAddress(ctx, "funding")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Receive(funding, 5*100_000_000); err != nil {
		t.Fatal(err)
	}
	srv.Confirm(6)
	backendtest.Run(t, backendtest.Harness{
		Backend: c, Coin: "bitcoin", Network: "testnet", Amount: 1_234_567, Blockless: true,
		Pay: func(t *testing.T, addr string, amount ledger.Amount) string {
			txid, err := srv.Receive(addr, amount)
			if err != nil {
				t.Fatal(err)
			}
			return txid
		},
		Mine:     func(_ *testing.T, n int) { srv.Confirm(n) },
		External: func(t *testing.T) string { return backendtest.ExternalAddress(t, "bitcoin", "testnet") },
	})
}

func TestWithdrawalSignedWithThePIN(t *testing.T) {
	ctx := context.Background()
	srv := start(t)
	c := client(t, srv)
	addr, _ := c.NewAddress(ctx, "")
	if _, err := srv.Receive(addr, 100_000_000); err != nil {
		t.Fatal(err)
	}
	to := backendtest.ExternalAddress(t, "bitcoin", "testnet")
	txid, err := c.SendMany(ctx, map[string]ledger.Amount{to: 20_000_000})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := c.Transaction(ctx, txid)
	if err != nil || !tx.Sent || tx.Fee != blockiotest.NetworkFee {
		t.Fatalf("the withdrawal as the wallet sees it: %+v %v", tx, err)
	}

	// A wrong PIN cannot unlock the key: nothing is finalised, so nothing is sent.
	wrong := client(t, srv, func(o *blockio.Options) { o.PIN = "123456" })
	before := srv.Calls("sign_and_finalize_withdrawal")
	_, err = wrong.SendMany(ctx, map[string]ledger.Amount{to: 1000})
	if !errors.Is(err, backend.ErrRejected) || !strings.Contains(err.Error(), "PIN") {
		t.Fatalf("wrong PIN: %v", err)
	}
	if srv.Calls("sign_and_finalize_withdrawal") != before {
		t.Fatal("a withdrawal was finalised with a wrong PIN")
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	srv := start(t)
	bad := client(t, srv, func(o *blockio.Options) { o.APIKey = "wrong-key-0000" })
	_, err := bad.NewAddress(ctx, "x")
	if !errors.Is(err, backend.ErrRejected) || !strings.Contains(err.Error(), "API key") {
		t.Fatalf("wrong API key: %v", err)
	}
	srv.SetDown(true)
	c := client(t, srv)
	if _, err := c.Tip(ctx); !errors.Is(err, backend.ErrUnreachable) {
		t.Fatalf("server down: %v", err)
	}
	srv.SetDown(false)
	srv.Close()
	_, err = c.Tip(ctx)
	if !errors.Is(err, backend.ErrUnreachable) || strings.Contains(err.Error(), apiKey) {
		t.Fatalf("server gone (the key must not be in the message): %v", err)
	}

	for _, tc := range []struct{ name, body, want string }{
		{"not JSON", "<html>oops</html>", "not block.io JSON"},
		{"no txid", `{"status":"success","data":{"network":"BTCTEST","txs":[{"txid":"","time":1}]}}`, "without a txid"},
		{"bad amount", `{"status":"success","data":{"network":"BTCTEST","txs":[{"txid":"` + strings.Repeat("ab", 32) + `","amounts_received":[{"recipient":"x","amount":"1e-8"}]}]}}`, "amount"},
		{"another network", `{"status":"success","data":{"network":"BTC","txs":[]}}`, "belongs to a BTC wallet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, tc.body) })}
			ln := listen(t)
			go func() { _ = hs.Serve(ln) }()
			defer hs.Close()
			c := client(t, srv, func(o *blockio.Options) { o.URL = "http://" + ln.Addr().String() + "/api/v2/" })
			_, _, err := c.Since(ctx, "")
			if !errors.Is(err, backend.ErrRejected) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrRejected with %q", err, tc.want)
			}
		})
	}
	for _, o := range []blockio.Options{
		{URL: "ftp://block.io/", APIKey: "k", PIN: "p", Coin: "bitcoin", Network: "testnet"},
		{URL: "https://k:p@block.io/api/v2/", APIKey: "k", PIN: "p", Coin: "bitcoin", Network: "testnet"},
		{APIKey: "k", PIN: "p", Coin: "bitcoin", Network: "regtest"},
		{APIKey: "", PIN: "p", Coin: "bitcoin", Network: "testnet"},
		{APIKey: "k", PIN: "", Coin: "bitcoin", Network: "testnet"},
	} {
		if _, err := blockio.New(o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// The local block.io must answer with every field the recorded replies have.
func TestFakeRepliesCarryTheRecordedFields(t *testing.T) {
	ctx := context.Background()
	srv := start(t)
	c := client(t, srv)
	addr, _ := c.NewAddress(ctx, "shapes")
	if _, err := srv.Receive(addr, 100_000_000); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMany(ctx, map[string]ledger.Amount{backendtest.ExternalAddress(t, "bitcoin", "testnet"): 1000}); err != nil {
		t.Fatal(err)
	}
	q := "?api_key=" + url.QueryEscape(apiKey)
	for _, tc := range []struct{ file, method, path, body string }{
		{"get_new_address.json", "GET", "get_new_address/" + q + "&label=shape2", ""},
		{"get_transactions_received.json", "GET", "get_transactions/" + q + "&type=received", ""},
		{"get_transactions_sent.json", "GET", "get_transactions/" + q + "&type=sent", ""},
		{"withdraw_signature_request.json", "POST", "withdraw/" + q, `{"amounts":"0.0001","to_addresses":"` + backendtest.ExternalAddress(t, "bitcoin", "testnet") + `","pin":""}`},
		{"fail.json", "GET", "get_notifications/" + q, ""},
	} {
		if m := backendtest.MissingFields(t, filepath.Join("testdata", tc.file), backendtest.Fetch(t, tc.method, srv.URL()+tc.path, "application/json", tc.body)); len(m) > 0 {
			t.Errorf("%s: the local block.io lacks %v", tc.file, m)
		}
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
