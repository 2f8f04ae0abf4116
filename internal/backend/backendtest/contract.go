// Package backendtest is the contract every backend keeps: one table of scenarios, run against
// bitcoind (btcwallet and Litecoin Core), the block.io and blockchain.info clients (against local
// servers speaking their APIs) and the null simulator. The helper relies on nothing a backend
// does that is not checked here.
package backendtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// Harness is a backend plus the outside world around it.
type Harness struct {
	Backend       backend.Backend
	Coin, Network string
	// Pay pays amount to addr as a customer would and returns the txid.
	Pay func(t *testing.T, addr string, amount ledger.Amount) string
	// Mine adds n blocks and returns once the backend has seen them.
	Mine func(t *testing.T, n int)
	// External returns an address outside the wallet that a send can pay.
	External func(t *testing.T) string
	// Amount is what the scenarios pay and send; the wallet must be able to send it a few times.
	Amount ledger.Amount
	// Blockless backends (block.io) report confirmations but no block heights or hashes: their
	// tip is the newest received txid, and a rescan always starts at 0.
	Blockless bool
}

// Run runs every scenario against h, in order (they share the backend's chain).
func Run(t *testing.T, h Harness) {
	ctx := context.Background()
	for _, sc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"new addresses are valid for the network and distinct", func(t *testing.T) {
			a, err := h.Backend.NewAddress(ctx, "contract-a")
			if err != nil {
				t.Fatal(err)
			}
			b, err := h.Backend.NewAddress(ctx, "contract-b")
			if err != nil {
				t.Fatal(err)
			}
			for _, addr := range []string{a, b} {
				if err := coin.ValidateAddress(h.Coin, h.Network, addr); err != nil {
					t.Errorf("%s: %v", addr, err)
				}
			}
			if a == b {
				t.Errorf("two new addresses are both %s", a)
			}
		}},
		{"an unknown txid is ErrUnknownTransaction, a malformed one another error", func(t *testing.T) {
			if _, err := h.Backend.Transaction(ctx, randomTxID(t)); !errors.Is(err, backend.ErrUnknownTransaction) {
				t.Errorf("unknown txid: %v", err)
			}
			for _, bad := range []string{"", "xyz", "00ff", randomTxID(t) + "00"} {
				if _, err := h.Backend.Transaction(ctx, bad); err == nil || errors.Is(err, backend.ErrUnknownTransaction) {
					t.Errorf("malformed txid %q: %v", bad, err)
				}
			}
		}},
		{"an incoming payment is seen unconfirmed, then with its block", func(t *testing.T) {
			addr := newAddress(t, h)
			txid := h.Pay(t, addr, h.Amount)
			tx := lookup(t, h, txid)
			if tx.Confirmations != 0 || !pays(tx, addr, h.Amount) {
				t.Fatalf("unconfirmed payment: %+v", tx)
			}
			h.Mine(t, 1)
			tip := tipOf(t, h)
			tx = lookup(t, h, txid)
			if tx.Confirmations != 1 || !pays(tx, addr, h.Amount) || (!h.Blockless && (tx.BlockHeight != tip.Height || tx.BlockHash != tip.Hash)) {
				t.Fatalf("after one block (tip %+v): %+v", tip, tx)
			}
			h.Mine(t, 2)
			if tx = lookup(t, h, txid); tx.Confirmations != 3 || tx.BlockHeight != tip.Height {
				t.Fatalf("after three blocks: %+v", tx)
			}
		}},
		{"Since lists what came after a block; Scan walks the history in order", func(t *testing.T) {
			before := tipOf(t, h)
			addr := newAddress(t, h)
			txid := h.Pay(t, addr, h.Amount)
			h.Mine(t, 1)
			txs, tip, err := h.Backend.Since(ctx, before.Hash)
			if err != nil {
				t.Fatal(err)
			}
			if now := tipOf(t, h); tip != now {
				t.Errorf("Since's tip %+v, Tip %+v", tip, now)
			}
			if i := find(txs, txid); i < 0 || !pays(txs[i], addr, h.Amount) || txs[i].Confirmations != 1 {
				t.Fatalf("Since(%d) does not list the payment properly: %+v", before.Height, txs)
			}
			txs, _, err = h.Backend.Since(ctx, tip.Hash)
			if err != nil {
				t.Fatal(err)
			}
			if find(txs, txid) >= 0 {
				t.Errorf("Since(tip) lists a payment confirmed at the tip")
			}
			all, _, err := h.Backend.Since(ctx, "")
			if err != nil || find(all, txid) < 0 {
				t.Errorf("Since(\"\") misses the payment: %v", err)
			}
			var batches []backend.ScanBatch
			from := before.Height + 1
			if h.Blockless {
				from = 0
			}
			scanTip, err := h.Backend.Scan(ctx, from, func(b backend.ScanBatch) error {
				batches = append(batches, b)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(batches) == 0 || scanTip != tip {
				t.Fatalf("Scan: %d batches, tip %+v (want %+v)", len(batches), scanTip, tip)
			}
			var seen []backend.Transaction
			for i, b := range batches {
				if b.Total <= 0 || b.Done > b.Total || (i > 0 && b.Done <= batches[i-1].Done) {
					t.Fatalf("batch %d progress %d/%d", i, b.Done, b.Total)
				}
				seen = append(seen, b.Transactions...)
			}
			if last := batches[len(batches)-1]; last.Done != last.Total {
				t.Fatalf("the last batch ends at %d/%d", last.Done, last.Total)
			}
			if find(seen, txid) < 0 {
				t.Fatalf("Scan from %d misses the payment", from)
			}
			if _, err := h.Backend.Scan(ctx, tip.Height+5, func(backend.ScanBatch) error { return nil }); !errors.Is(err, backend.ErrRejected) {
				t.Fatalf("Scan above the tip: %v", err)
			}
		}},
		{"a send is made once and is in the wallet's record of sends", func(t *testing.T) {
			since := time.Now().Add(-time.Minute)
			to := h.External(t)
			txid, err := h.Backend.SendMany(ctx, map[string]ledger.Amount{to: h.Amount})
			if err != nil {
				t.Fatal(err)
			}
			if raw, err := hex.DecodeString(txid); err != nil || len(raw) != 32 {
				t.Fatalf("send txid %q", txid)
			}
			if tx := lookup(t, h, txid); !tx.Sent {
				t.Fatalf("the wallet does not show %s as its send: %+v", txid, tx)
			}
			sends, err := h.Backend.RecentSends(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(sends, func(s backend.Send) bool { return s.TxID == txid })
			if i < 0 || sends[i].Outputs[to] != h.Amount {
				t.Fatalf("RecentSends: %+v", sends)
			}
			h.Mine(t, 1)
		}},
		{"a send beyond the balance is ErrInsufficientFunds", func(t *testing.T) {
			huge := ledger.Amount(20_000_000) * 100_000_000
			_, err := h.Backend.SendMany(ctx, map[string]ledger.Amount{h.External(t): huge})
			if !errors.Is(err, backend.ErrInsufficientFunds) {
				t.Fatalf("got %v", err)
			}
		}},
		{"the tip follows the blocks", func(t *testing.T) {
			if h.Blockless {
				t.Skip("a blockless backend has no block tip")
			}
			before := tipOf(t, h)
			h.Mine(t, 2)
			after := tipOf(t, h)
			if after.Height != before.Height+2 || after.Hash == before.Hash || after.Hash == "" {
				t.Fatalf("tip %+v -> %+v after 2 blocks", before, after)
			}
		}},
	} {
		if !t.Run(sc.name, sc.run) {
			return
		}
	}
}

func randomTxID(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newAddress(t *testing.T, h Harness) string {
	t.Helper()
	a, err := h.Backend.NewAddress(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func lookup(t *testing.T, h Harness, txid string) backend.Transaction {
	t.Helper()
	tx, err := h.Backend.Transaction(context.Background(), txid)
	if err != nil {
		t.Fatalf("looking up %s: %v", txid, err)
	}
	return tx
}

func tipOf(t *testing.T, h Harness) backend.Tip {
	t.Helper()
	tip, err := h.Backend.Tip(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tip
}

func pays(tx backend.Transaction, addr string, amount ledger.Amount) bool {
	return slices.ContainsFunc(tx.Received, func(o backend.Output) bool { return o.Address == addr && o.Amount == amount })
}

func find(txs []backend.Transaction, txid string) int {
	return slices.IndexFunc(txs, func(t backend.Transaction) bool { return t.TxID == txid })
}

// ExternalAddress is a valid address on the network that no wallet holds.
func ExternalAddress(t *testing.T, coinName, network string) string {
	t.Helper()
	h := make([]byte, 20)
	if _, err := rand.Read(h); err != nil {
		t.Fatal(err)
	}
	a, err := coin.EncodeAddress(coinName, network, h)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
