package btctest

import (
	"os"
	"testing"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/btcutil/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
)

// TestNodeSendsAndConfirms is the harness's own check: a funded wallet that can send, and a node
// that mines the send.
func TestNodeSendsAndConfirms(t *testing.T) {
	n := startNode(t)
	bal, err := n.Wallet.GetBalance("default")
	if err != nil || bal < 500*btcutil.SatoshiPerBitcoin {
		t.Fatalf("wallet balance %v, %v: want at least 500 spendable", bal, err)
	}
	to, err := n.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := address.DecodeAddress(to.EncodeAddress(), &chaincfg.SimNetParams); err != nil {
		t.Fatal(err)
	}
	txid, err := n.Wallet.SendToAddress(to, btcutil.Amount(150_000_000))
	if err != nil {
		t.Fatalf("sending: %v", err)
	}
	if _, err := n.Mine(1); err != nil {
		t.Fatal(err)
	}
	tx, err := n.Wallet.GetTransaction(txid)
	if err != nil || tx.Confirmations != 1 {
		t.Fatalf("transaction %v: %+v %v", txid, tx, err)
	}
	// The node can go away and come back, as the network does, also once the wallet holds an
	// address btcd refuses to watch (walletAfterNodeRestart).
	for drawn := 0; ; drawn++ {
		a, err := n.Wallet.GetNewAddress("default")
		if IsSb1Quirk(err) || (err == nil && Sb1(a.EncodeAddress())) {
			t.Logf("the wallet drew an Sb1 address after %d others", drawn)
			break
		}
		if err != nil || drawn == 5000 {
			t.Fatalf("drawing addresses until an Sb1 one: %d drawn, %v", drawn, err)
		}
	}
	n.StopBtcd()
	if err := n.StartBtcd(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Mine(1); err != nil {
		t.Fatal(err)
	}
}

// startNode starts a funded node for the test and stops it afterwards; without the binaries the
// test is skipped, unless REQUIRE_TEST_ASSETS says they must be there.
func startNode(t *testing.T) *Node {
	t.Helper()
	n, err := Start()
	if err != nil {
		if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Cleanup(n.Stop)
	return n
}
