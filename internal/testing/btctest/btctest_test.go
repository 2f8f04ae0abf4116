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
	//
	// About one simnet pay-to-pubkey-hash address in 1,300 begins "Sb1" (the version byte 0x3f
	// and a random hash, in base58). A bound of 5,000 draws was missed in about 2% of runs
	// ((1-1/1300)^5000), and was: a loaded CI run drew 5,000 without one. At 20,000 a run misses
	// about once in four million; a draw takes a few milliseconds, and it stops at the first.
	const maxDraws = 20_000
	for drawn := 0; ; drawn++ {
		a, err := n.Wallet.GetNewAddress("default")
		if IsSb1Quirk(err) || (err == nil && Sb1(a.EncodeAddress())) {
			t.Logf("the wallet drew an Sb1 address after %d others", drawn)
			break
		}
		if err != nil || drawn == maxDraws {
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
