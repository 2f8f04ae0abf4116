package bitcoind

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

var (
	node *btctest.Node
	core *btctest.Core
)

func TestMain(m *testing.M) {
	os.Exit(testassets.Main(m, testassets.Bitcoin(&node), testassets.LitecoinCore(&core)))
}

func newClient(t *testing.T, mutate ...func(*Options)) *Client {
	t.Helper()
	user, pass := node.Credentials()
	opts := Options{URL: node.WalletURL(), Flavor: Btcwallet, User: user, Password: pass,
		WalletPassphrase: btctest.WalletPassphrase, Timeout: 20 * time.Second, Coin: "bitcoin", Network: "simnet"}
	for _, m := range mutate {
		m(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestReceiveAndConfirm(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	addr, err := c.NewAddress(ctx, "order-17")
	if err != nil {
		t.Fatal(err)
	}
	if err := coin.ValidateAddress("bitcoin", "simnet", addr); err != nil {
		t.Fatalf("new address %s: %v", addr, err)
	}
	txid := node.MustPay(t, addr, 12_345_678)

	tx, err := c.Transaction(ctx, txid)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Confirmations != 0 || len(tx.Received) != 1 || tx.Received[0].Address != addr || tx.Received[0].Amount != 12_345_678 {
		t.Fatalf("unconfirmed: %+v", tx)
	}
	node.MustMine(t, 2)
	tip, err := c.Tip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err = c.Transaction(ctx, txid)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Confirmations != 2 || tx.BlockHeight != tip.Height-1 || tx.BlockHash == "" {
		t.Errorf("after 2 blocks: %+v (tip %d)", tx, tip.Height)
	}
	block, _ := chainhash.NewHashFromStr(tx.BlockHash)
	header, err := node.Node.GetBlockHeaderVerbose(block)
	if err != nil || int64(header.Height) != tx.BlockHeight {
		t.Errorf("block %s is at height %v (%v), the backend said %d", tx.BlockHash, header, err, tx.BlockHeight)
	}
}

func TestSinceListsNewTransactionsOnly(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	_, tip, err := c.Since(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := c.NewAddress(ctx, "")
	first := node.MustPay(t, addr, 100_000)
	node.MustMine(t, 1)
	txs, tip2, err := c.Since(ctx, tip.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if tip2.Height != tip.Height+1 {
		t.Errorf("tip %d after one block on %d", tip2.Height, tip.Height)
	}
	found := false
	for _, tx := range txs {
		if tx.TxID == first {
			found = true
			if len(tx.Received) == 0 || tx.Received[0].Amount != 100_000 || tx.Confirmations != 1 {
				t.Errorf("listed as %+v", tx)
			}
		}
	}
	if !found {
		t.Fatalf("%s not listed since block %d", first, tip.Height)
	}
	second := node.MustPay(t, addr, 200_000)
	node.MustMine(t, 1)
	txs, _, err = c.Since(ctx, tip2.Hash)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tx := range txs {
		ids = append(ids, tx.TxID)
	}
	if !strings.Contains(strings.Join(ids, " "), second) || strings.Contains(strings.Join(ids, " "), first) {
		t.Errorf("since %d: %v; want %s and not %s", tip2.Height, ids, second, first)
	}
}

func TestSendMany(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	outputs := map[string]ledger.Amount{}
	for i := range 3 {
		addr, err := c.NewAddress(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		outputs[addr] = ledger.Amount(1_000_000 * (i + 1))
	}
	txid, err := c.SendMany(ctx, outputs)
	if err != nil {
		t.Fatal(err)
	}
	node.MustMine(t, 1)
	tx, err := c.Transaction(ctx, txid)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]ledger.Amount{}
	for _, o := range tx.Received {
		got[o.Address] = o.Amount
	}
	for addr, want := range outputs {
		if got[addr] != want {
			t.Errorf("output to %s: %d, want %d", addr, got[addr], want)
		}
	}
	if !tx.Sent || tx.Fee <= 0 || tx.Confirmations != 1 {
		t.Errorf("send: %+v", tx)
	}
	// The wallet's own record of the send carries the same outputs.
	sends, err := c.RecentSends(ctx, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range sends {
		if s.TxID == txid {
			found = true
			if len(s.Outputs) != len(outputs) {
				t.Errorf("recorded outputs %v, sent %v", s.Outputs, outputs)
			}
			for addr, want := range outputs {
				if s.Outputs[addr] != want {
					t.Errorf("recorded %s: %d, want %d", addr, s.Outputs[addr], want)
				}
			}
		}
	}
	if !found {
		t.Errorf("send %s not in RecentSends", txid)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	if _, err := c.Transaction(ctx, strings.Repeat("ab", 32)); !errors.Is(err, backend.ErrUnknownTransaction) {
		t.Errorf("unknown txid: %v", err)
	}
	if _, err := c.Transaction(ctx, "not-a-txid"); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("malformed txid: %v", err)
	}
	addr, _ := c.NewAddress(ctx, "")
	if _, err := c.SendMany(ctx, map[string]ledger.Amount{addr: 10_000 * 100_000_000}); !errors.Is(err, backend.ErrInsufficientFunds) {
		t.Errorf("sending more than the wallet has: %v", err)
	}
	if _, err := c.SendMany(ctx, map[string]ledger.Amount{"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa": 1000}); !errors.Is(err, backend.ErrRejected) {
		t.Errorf("a mainnet address on simnet: %v", err)
	}
	wrong := newClient(t, func(o *Options) { o.Password = "wrong" })
	if _, err := wrong.Tip(ctx); !errors.Is(err, backend.ErrRejected) || !strings.Contains(err.Error(), "authentication") {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := wrong.SendMany(ctx, map[string]ledger.Amount{addr: 1000}); !errors.Is(err, backend.ErrRejected) {
		t.Errorf("send with a wrong password: %v", err)
	}
	down := newClient(t, func(o *Options) { o.URL = "http://127.0.0.1:1"; o.Timeout = 2 * time.Second })
	start := time.Now()
	if _, err := down.Tip(ctx); !errors.Is(err, backend.ErrUnreachable) {
		t.Errorf("nothing listening: %v", err)
	}
	if _, err := down.SendMany(ctx, map[string]ledger.Amount{addr: 1000}); !errors.Is(err, backend.ErrUnreachable) {
		t.Errorf("send with nothing listening: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("an unreachable backend took %s to report", time.Since(start))
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Options)
		want   string
	}{
		{func(o *Options) { o.URL = "http://u:p@node:8332" }, "credentials"},
		{func(o *Options) { o.URL = "ftp://node" }, "http(s)://host:port"},
		{func(o *Options) { o.Flavor = "electrum" }, "unknown bitcoind flavor"},
		{func(o *Options) { o.Wallet = "w" }, "named wallets are a Bitcoin Core feature"},
		{func(o *Options) { o.Coin = "dogecoin" }, `no network "simnet"`},
	} {
		opts := Options{URL: "http://node:8332", Flavor: Btcwallet, Coin: "bitcoin", Network: "simnet"}
		tc.mutate(&opts)
		if _, err := New(opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", opts, err, tc.want)
		}
	}
}

// countedClient is a client whose calls are counted.
func countedClient(t *testing.T) (*Client, *btctest.RPCCounter) {
	t.Helper()
	counter, proxyURL := btctest.CountingProxy(t, node.WalletURL())
	return newClient(t, func(o *Options) { o.URL = proxyURL }), counter
}

func TestWalletUnlockedOncePerWindow(t *testing.T) {
	ctx := context.Background()
	c, counter := countedClient(t)
	payee, err := node.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.SendMany(ctx, map[string]ledger.Amount{payee.EncodeAddress(): 1_000_000}); err != nil {
			t.Fatal(err)
		}
	}
	if n, locks := counter.Count("walletpassphrase"), counter.Count("walletlock"); n != 1 || locks != 0 {
		t.Fatalf("three sends unlocked %d times and locked %d times, want one unlock for the window", n, locks)
	}
	// Locked behind our back: the refusal paid nothing, so the send unlocks again and pays once.
	if err := node.Wallet.WalletLock(); err != nil {
		t.Fatal(err)
	}
	before, err := node.PaymentsTo(payee.EncodeAddress())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMany(ctx, map[string]ledger.Amount{payee.EncodeAddress(): 2_000_000}); err != nil {
		t.Fatalf("send after the wallet was locked: %v", err)
	}
	after, err := node.PaymentsTo(payee.EncodeAddress())
	if err != nil || after != before+1 || counter.Count("walletpassphrase") != 2 {
		t.Fatalf("after a lock: %d payments (was %d), %d unlocks, %v", after, before, counter.Count("walletpassphrase"), err)
	}
}

// TestListingBlocksCheckedFromTheChainsHeaders pays the wallet in four blocks and lists them:
// the blocks are placed from the node's headers, read in one getheaders, with the same heights
// and confirmations as the lookup of each transaction gives, and no block is asked about on its
// own.
func TestListingBlocksCheckedFromTheChainsHeaders(t *testing.T) {
	ctx := context.Background()
	c, counter := countedClient(t)

	_, start, err := c.Since(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var txids []string
	for range 4 {
		addr, err := c.NewAddress(ctx, "")
		for err == nil && btctest.Sb1(addr) {
			addr, err = c.NewAddress(ctx, "")
		}
		if err != nil {
			t.Fatal(err)
		}
		txid, err := node.Pay(addr, 250_000)
		if err != nil {
			t.Fatal(err)
		}
		txids = append(txids, txid)
		if _, err := node.Mine(2); err != nil {
			t.Fatal(err)
		}
	}
	headerLookups := counter.Count("getblockheader")
	txs, tip, err := c.Since(ctx, start.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if n := counter.Count("getblockheader") - headerLookups; n > 1 { // one: the listing's last block, for its height
		t.Errorf("the listing asked about %d blocks one by one", n)
	}
	if counter.Count("getheaders") == 0 {
		t.Errorf("the chain's headers were not read")
	}
	listed := map[string]backend.Transaction{}
	for _, tx := range txs {
		listed[tx.TxID] = tx
	}
	for i, txid := range txids {
		one, err := c.Transaction(ctx, txid)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := listed[txid]
		if !ok || got.BlockHeight != one.BlockHeight || got.Confirmations != one.Confirmations || got.BlockHash != one.BlockHash || got.BlockHeight == 0 {
			t.Errorf("payment %d: listed %+v, looked up %+v", i, got, one)
		}
		if want := int32(tip.Height - got.BlockHeight + 1); got.Confirmations != want {
			t.Errorf("payment %d at height %d: %d confirmations, want %d at tip %d", i, got.BlockHeight, got.Confirmations, want, tip.Height)
		}
	}

	// Listing the same blocks again reads the headers only from where the first listing's read
	// ended, and places every block the same.
	headerPages, hashLookups := counter.Count("getheaders"), counter.Count("getblockhash")
	again, _, err := c.Since(ctx, start.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if n, m := counter.Count("getheaders")-headerPages, counter.Count("getblockhash")-hashLookups; n != 1 || m != 0 {
		t.Errorf("listing again read %d header pages and looked up %d block hashes, want 1 and 0", n, m)
	}
	for _, tx := range again {
		if got := listed[tx.TxID]; got.BlockHeight != tx.BlockHeight || got.Confirmations != tx.Confirmations {
			t.Errorf("%s listed again at height %d with %d confirmations, first at %d with %d", tx.TxID, tx.BlockHeight, tx.Confirmations, got.BlockHeight, got.Confirmations)
		}
	}

	var genesis string
	if err := c.read(ctx, "getblockhash", &genesis, 0); err != nil {
		t.Fatal(err)
	}
	want, byHeight := map[string]bool{}, map[string]int64{}
	for _, h := range []int64{1, tip.Height / 2, tip.Height} {
		var hash string
		if err := c.read(ctx, "getblockhash", &hash, h); err != nil {
			t.Fatal(err)
		}
		want[hash], byHeight[hash] = true, h
	}
	found := map[string]int64{}
	last, height, follows, err := c.readChain(ctx, genesis, 0, want, found)
	if err != nil || !follows || height != tip.Height || found[last] != tip.Height {
		t.Fatalf("read from genesis to %s at %d (follows %v, %v), want the tip %d", last, height, follows, err, tip.Height)
	}
	for hash, h := range byHeight {
		if found[hash] != h {
			t.Errorf("block %s: height %d from the headers, %d from the node", hash, found[hash], h)
		}
	}
	// A block the node does not have on its chain: btcd answers from the genesis block.
	if _, _, follows, err := c.readChain(ctx, strings.Repeat("11", 32), 5, want, map[string]int64{}); err != nil || follows {
		t.Errorf("reading after a block not on the chain: follows %v, %v", follows, err)
	}
}
