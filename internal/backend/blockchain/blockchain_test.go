package blockchain_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/backendtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockchain"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockchain/blockchaintest"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

const (
	guid     = "9bb4c672-563e-4806-9012-a3e8f86a0eca"
	password = "wallet password 1"
)

func setup(t *testing.T, mutate ...func(*blockchain.Options)) (*blockchaintest.Server, *blockchain.Client) {
	t.Helper()
	srv := blockchaintest.Start(guid, password)
	t.Cleanup(srv.Close)
	opts := blockchain.Options{URL: srv.URL(), ExplorerURL: srv.URL(), GUID: guid, Password: password,
		Coin: "bitcoin", Network: "testnet", Timeout: 5 * time.Second}
	for _, m := range mutate {
		m(&opts)
	}
	c, err := blockchain.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func TestContract(t *testing.T) {
	ctx := context.Background()
	srv, c := setup(t)
	funding, err := c.NewAddress(ctx, "funding")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Receive(funding, 5*100_000_000); err != nil {
		t.Fatal(err)
	}
	srv.Mine(1)
	backendtest.Run(t, backendtest.Harness{
		Backend: c, Coin: "bitcoin", Network: "testnet", Amount: 1_234_567,
		Pay: func(t *testing.T, addr string, amount ledger.Amount) string {
			txid, err := srv.Receive(addr, int64(amount))
			if err != nil {
				t.Fatal(err)
			}
			return txid
		},
		Mine:     func(_ *testing.T, n int) { srv.Mine(n) },
		External: func(t *testing.T) string { return backendtest.ExternalAddress(t, "bitcoin", "testnet") },
	})
}

func TestSendsAndFees(t *testing.T) {
	ctx := context.Background()
	srv, c := setup(t)
	addr, _ := c.NewAddress(ctx, "")
	if _, err := srv.Receive(addr, 100_000_000); err != nil {
		t.Fatal(err)
	}
	srv.Mine(1)
	a, b := backendtest.ExternalAddress(t, "bitcoin", "testnet"), backendtest.ExternalAddress(t, "bitcoin", "testnet")
	since := time.Now().Add(-time.Minute)
	txid, err := c.SendMany(ctx, map[string]ledger.Amount{a: 1000, b: 2000}) // sendmany
	if err != nil {
		t.Fatal(err)
	}
	one, err := c.SendMany(ctx, map[string]ledger.Amount{a: 3000}) // payment
	if err != nil {
		t.Fatal(err)
	}
	tx, err := c.Transaction(ctx, txid)
	if err != nil || !tx.Sent || tx.Fee != blockchaintest.Fee {
		t.Fatalf("send as the explorer shows it: %+v %v", tx, err)
	}
	sends, err := c.RecentSends(ctx, since)
	if err != nil || len(sends) != 2 {
		t.Fatalf("recent sends: %+v %v", sends, err)
	}
	for _, s := range sends {
		// Change goes back to the wallet and is not part of what was paid.
		if (s.TxID == txid && (len(s.Outputs) != 2 || s.Outputs[a] != 1000 || s.Outputs[b] != 2000)) ||
			(s.TxID == one && (len(s.Outputs) != 1 || s.Outputs[a] != 3000)) {
			t.Fatalf("send %+v", s)
		}
	}
	if srv.Sends() != 2 {
		t.Fatalf("%d payments made", srv.Sends())
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	_, bad := setup(t, func(o *blockchain.Options) { o.Password = "wrong" })
	_, err := bad.NewAddress(ctx, "x")
	if !errors.Is(err, backend.ErrRejected) || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong password: %v", err)
	}
	srv, c := setup(t)
	srv.SetDown(true)
	if _, err := c.Tip(ctx); !errors.Is(err, backend.ErrUnreachable) {
		t.Fatalf("explorer down: %v", err)
	}
	if _, err := c.NewAddress(ctx, ""); !errors.Is(err, backend.ErrUnreachable) {
		t.Fatalf("wallet service down: %v", err)
	}
	srv.SetDown(false)
	srv.Close()
	_, err = c.NewAddress(ctx, "")
	if !errors.Is(err, backend.ErrUnreachable) || strings.Contains(err.Error(), password) || strings.Contains(err.Error(), url.QueryEscape(password)) {
		t.Fatalf("wallet service gone (no password in the message): %v", err)
	}
	for _, o := range []blockchain.Options{
		{URL: "ftp://x/", ExplorerURL: "https://blockchain.info/", GUID: "g", Password: "p", Coin: "bitcoin", Network: "mainnet"},
		{URL: "http://x/", ExplorerURL: "https://blockchain.info/", GUID: "", Password: "p", Coin: "bitcoin", Network: "mainnet"},
		{URL: "http://x/", ExplorerURL: "https://blockchain.info/", GUID: "g", Password: "p", Coin: "litecoin", Network: "mainnet"},
		{URL: "http://x/", ExplorerURL: "https://blockchain.info/", GUID: "g", Password: "p", Coin: "bitcoin", Network: "regtest"},
	} {
		if _, err := blockchain.New(o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// The local blockchain.info must answer with every field the recorded replies have.
func TestFakeRepliesCarryTheRecordedFields(t *testing.T) {
	ctx := context.Background()
	srv, c := setup(t)
	addr, _ := c.NewAddress(ctx, "shapes")
	txid, _ := srv.Receive(addr, 10_000_000)
	srv.Mine(2)
	tip, err := c.Tip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := srv.URL()
	m := base + "merchant/" + guid + "/"
	for _, tc := range []struct {
		file, method, url string
		form              url.Values
	}{
		{"new_address.json", "POST", m + "new_address", url.Values{"password": {password}, "label": {"l2"}}},
		{"list.json", "GET", m + "list?password=" + url.QueryEscape(password), nil},
		{"error.json", "POST", m + "new_address", url.Values{"password": {"nope"}}},
		{"rawtx.json", "GET", base + "rawtx/" + txid + "?format=json", nil},
		{"multiaddr.json", "GET", base + "multiaddr?active=" + addr, nil},
		{"latestblock.json", "GET", base + "latestblock", nil},
		{"block_height.json", "GET", base + "block-height/" + itoa(tip.Height) + "?format=json", nil},
		{"rawblock.json", "GET", base + "rawblock/" + tip.Hash, nil},
		{"payment.json", "POST", m + "payment", url.Values{"password": {password}, "to": {backendtest.ExternalAddress(t, "bitcoin", "testnet")}, "amount": {"1000"}}},
	} {
		if missing := backendtest.MissingFields(t, filepath.Join("testdata", tc.file), backendtest.Fetch(t, tc.method, tc.url, "application/x-www-form-urlencoded", tc.form.Encode())); len(missing) > 0 {
			t.Errorf("%s: the local blockchain.info lacks %v", tc.file, missing)
		}
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
