// Package wallettest gives tests the bitcoind backend on a btctest node's wallet. It is its own
// package because the bitcoind package's tests use testassets and btctest: neither may import
// bitcoind.
package wallettest

import (
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/bitcoind"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
)

// Backend is the bitcoind backend on a btctest node's wallet, as a helper configured for
// simnet uses it: the wallet's credentials and passphrase, and the helper's default 30 s read
// timeout, which a busy machine's btcwallet keeps within. url, when set, replaces the wallet's
// address (a proxy in front of it, or a port where nothing answers). It is closed with t.
func Backend(t testing.TB, node *btctest.Node, url string) *bitcoind.Client {
	t.Helper()
	if url == "" {
		url = node.WalletURL()
	}
	user, pass := node.Credentials()
	c, err := bitcoind.New(bitcoind.Options{URL: url, Flavor: bitcoind.Btcwallet, User: user, Password: pass,
		WalletPassphrase: btctest.WalletPassphrase, Timeout: 30 * time.Second, Coin: "bitcoin", Network: "simnet"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
