package bitcoind

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// The same backend against Litecoin Core on regtest: the bitcoin-core flavor (labels, a named
// wallet through /wallet/<name>, sendmany's dummy first argument) on a real Core-family node, and
// the litecoin coin parameters.
func coreClient(t *testing.T) *Client {
	t.Helper()
	user, pass := core.Credentials()
	c, err := New(Options{URL: core.URL(), Flavor: BitcoinCore, Wallet: btctest.CorePayments, User: user, Password: pass,
		Timeout: 20 * time.Second, Coin: "litecoin", Network: "regtest"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestCoreReceiveSendAndList(t *testing.T) {
	ctx := context.Background()
	c := coreClient(t)
	_, tip, err := c.Since(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := c.NewAddress(ctx, "order-42")
	if err != nil {
		t.Fatal(err)
	}
	if err := coin.ValidateAddress("litecoin", "regtest", addr); err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	if labels, err := core.AddressLabels(addr); err != nil || !slices.Contains(labels, "order-42") {
		t.Errorf("labels of %s: %v %v", addr, labels, err)
	}

	txid, err := core.Pay(addr, "0.12345678")
	if err != nil {
		t.Fatal(err)
	}
	// The receiving wallet learns of the payment from its node a moment after the paying wallet
	// sent it, and of blocks a moment after they are mined: wait for it, never assume it.
	testassets.Eventually(t, time.Minute, "the payment in the receiving wallet", func() error {
		tx, err := c.Transaction(ctx, txid)
		if err != nil {
			return err
		}
		if tx.Confirmations != 0 || len(tx.Received) != 1 || tx.Received[0].Amount != 12_345_678 || tx.Received[0].Address != addr {
			t.Fatalf("unconfirmed: %+v", tx)
		}
		return nil
	})
	if err := core.Mine(2); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, time.Minute, "2 confirmations in the receiving wallet", func() error {
		tx, err := c.Transaction(ctx, txid)
		if err != nil || tx.Confirmations != 2 || tx.BlockHash == "" {
			return fmt.Errorf("after 2 blocks: %+v %v", tx, err)
		}
		return nil
	})
	txs, _, err := c.Since(ctx, tip.Hash)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range txs {
		found = found || x.TxID == txid
	}
	if !found {
		t.Errorf("%s not listed since block %d", txid, tip.Height)
	}

	// Sending from the named wallet, and the wallet's own record of it.
	to, err := c.NewAddress(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	sent, err := c.SendMany(ctx, map[string]ledger.Amount{to: 5_000_000})
	if err != nil {
		t.Fatal(err)
	}
	sends, err := c.RecentSends(ctx, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	recorded := false
	for _, s := range sends {
		recorded = recorded || (s.TxID == sent && s.Outputs[to] == 5_000_000)
	}
	if !recorded {
		t.Errorf("send %s not in RecentSends: %+v", sent, sends)
	}
	if tx, err := c.Transaction(ctx, sent); err != nil || !tx.Sent || tx.Fee <= 0 {
		t.Errorf("send as the wallet sees it: %+v %v", tx, err)
	}
}

func TestCoreErrors(t *testing.T) {
	ctx := context.Background()
	c := coreClient(t)
	if _, err := c.Transaction(ctx, strings.Repeat("cd", 32)); !errors.Is(err, backend.ErrUnknownTransaction) {
		t.Errorf("unknown txid: %v", err)
	}
	to, _ := c.NewAddress(ctx, "")
	if _, err := c.SendMany(ctx, map[string]ledger.Amount{to: 1_000_000 * 100_000_000}); !errors.Is(err, backend.ErrInsufficientFunds) {
		t.Errorf("too much: %v", err)
	}
	user, _ := core.Credentials()
	wrong, err := New(Options{URL: core.URL(), Flavor: BitcoinCore, Wallet: btctest.CorePayments, User: user, Password: "wrong",
		Timeout: 5 * time.Second, Coin: "litecoin", Network: "regtest"})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if _, err := wrong.Tip(ctx); !errors.Is(err, backend.ErrRejected) {
		t.Errorf("wrong password: %v", err)
	}
	missing, err := New(Options{URL: core.URL(), Flavor: BitcoinCore, Wallet: "no-such-wallet", User: user, Password: func() string { _, p := core.Credentials(); return p }(),
		Timeout: 5 * time.Second, Coin: "litecoin", Network: "regtest"})
	if err != nil {
		t.Fatal(err)
	}
	defer missing.Close()
	if _, err := missing.NewAddress(ctx, ""); !errors.Is(err, backend.ErrRejected) {
		t.Errorf("a wallet the node does not have: %v", err)
	}
}
