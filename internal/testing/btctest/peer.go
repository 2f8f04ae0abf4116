package btctest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/loopback"
)

// Peer is a second btcd on the node's simnet, with no wallet: a competing miner. Disconnect
// splits the network so each side mines its own branch; Connect joins it again, and the longer
// branch wins on both. That is how tests make reorganisations and double spends.
type Peer struct {
	n        *Node
	dir      string
	rpcPort  int
	p2pPort  int
	proc     *process
	joined   bool
	RPC      *rpcclient.Client
	payoutTo address.Address
}

// StartPeer starts a peer and joins it to the node, waiting until both have the same best block.
func (n *Node) StartPeer() (*Peer, error) {
	p := &Peer{n: n, dir: filepath.Join(n.dir, "peer")}
	var err error
	if p.rpcPort, err = loopback.FreePort(); err != nil {
		return nil, err
	}
	if p.p2pPort, err = loopback.FreePort(); err != nil {
		return nil, err
	}
	if p.payoutTo, err = someoneElse(); err != nil {
		return nil, err
	}
	if p.RPC, err = client(p.rpcPort, n.user, n.pass); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	p.proc, err = n.start("btcd", "--simnet", "--notls", "--listen=127.0.0.1:"+strconv.Itoa(p.p2pPort),
		"--rpclisten=127.0.0.1:"+strconv.Itoa(p.rpcPort), "--rpcuser="+n.user, "--rpcpass="+n.pass,
		"--datadir="+filepath.Join(p.dir, "data"), "--logdir="+filepath.Join(p.dir, "logs"), "--debuglevel=warn",
		"--miningaddr="+p.payoutTo.EncodeAddress())
	if err != nil {
		return nil, err
	}
	if err := waitFor(30*time.Second, func() error { _, err := p.RPC.GetBlockCount(); return err }); err != nil {
		p.Stop()
		return nil, fmt.Errorf("peer btcd: %w", err)
	}
	if err := p.Connect(); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// someoneElse is a simnet address nobody in the test holds the key to (and not one starting
// "Sb1", which btcd's and btcwallet's decoders take for bech32).
func someoneElse() (address.Address, error) {
	for {
		var h [20]byte
		if _, err := rand.Read(h[:]); err != nil {
			return nil, err
		}
		a, err := address.NewAddressPubKeyHash(h[:], &chaincfg.SimNetParams)
		if err != nil || !Sb1(a.EncodeAddress()) {
			return a, err
		}
	}
}

func (p *Peer) p2pAddr() string { return "127.0.0.1:" + strconv.Itoa(p.p2pPort) }

// Connect joins the peer to the node and waits until both have the same best block and the
// wallet has followed; the node reorganises to the peer's branch when it is longer.
func (p *Peer) Connect() error {
	if _, err := p.n.Node.RawRequest("node", raw("connect", p.p2pAddr(), "temp")); err != nil {
		return fmt.Errorf("connecting the node to its peer: %w", err)
	}
	p.joined = true
	var height int64
	err := waitFor(60*time.Second, func() error {
		a, err := p.n.Node.GetBestBlockHash()
		if err != nil {
			return err
		}
		b, err := p.RPC.GetBestBlockHash()
		if err != nil {
			return err
		}
		if *a != *b {
			return fmt.Errorf("node at %s, peer at %s", a, b)
		}
		height, err = p.n.Node.GetBlockCount()
		return err
	})
	if err != nil {
		return fmt.Errorf("node and peer did not agree on a best block: %w", err)
	}
	return p.n.WaitWalletHeight(height)
}

// Disconnect splits the network: from now on the node and the peer mine apart.
func (p *Peer) Disconnect() error {
	if _, err := p.n.Node.RawRequest("node", raw("disconnect", p.p2pAddr())); err != nil {
		return fmt.Errorf("disconnecting the node from its peer: %w", err)
	}
	p.joined = false
	return waitFor(30*time.Second, func() error {
		peers, err := p.RPC.GetPeerInfo()
		if err != nil {
			return err
		}
		if len(peers) > 0 {
			return fmt.Errorf("the peer still has %d connections", len(peers))
		}
		return nil
	})
}

// Mine mines blocks on the peer's branch (its rewards go to nobody in the test).
func (p *Peer) Mine(blocks uint32) ([]*chainhash.Hash, error) {
	h, err := p.RPC.Generate(blocks)
	if err != nil {
		return nil, fmt.Errorf("mining %d blocks on the peer: %w", blocks, err)
	}
	return h, nil
}

// DoubleSpend spends the inputs of the wallet's transaction txid again, to an address nobody in
// the test holds, and puts that transaction in the peer's mempool only. Call it while the network
// is split: mined on the peer's branch, it wins when that branch does.
func (p *Peer) DoubleSpend(txid string) (string, error) {
	if p.joined {
		return "", fmt.Errorf("double spend while joined: the node would refuse it")
	}
	res, err := p.n.Wallet.RawRequest("gettransaction", raw(txid))
	if err != nil {
		return "", fmt.Errorf("reading %s from the wallet: %w", txid, err)
	}
	var wtx struct{ Hex string }
	if err := json.Unmarshal(res, &wtx); err != nil {
		return "", err
	}
	b, err := hex.DecodeString(wtx.Hex)
	if err != nil {
		return "", err
	}
	var orig wire.MsgTx
	if err := orig.Deserialize(bytes.NewReader(b)); err != nil {
		return "", err
	}
	// The peer never saw txid, so it still has the inputs' outputs unspent: it tells their value
	// and script, which btcwallet needs to sign without a transaction index.
	type prevOut struct {
		TxID         string `json:"txid"`
		Vout         uint32 `json:"vout"`
		ScriptPubKey string `json:"scriptPubKey"`
	}
	var prevs []prevOut
	var total int64
	spend := wire.NewMsgTx(wire.TxVersion)
	for _, in := range orig.TxIn {
		op := in.PreviousOutPoint
		out, err := p.RPC.GetTxOut(&op.Hash, op.Index, false)
		if err != nil || out == nil {
			return "", fmt.Errorf("the peer does not have %s unspent: %v", op, err)
		}
		amt, err := satoshi(out.Value)
		if err != nil {
			return "", err
		}
		total += amt
		prevs = append(prevs, prevOut{TxID: op.Hash.String(), Vout: op.Index, ScriptPubKey: out.ScriptPubKey.Hex})
		spend.AddTxIn(wire.NewTxIn(&op, nil, nil))
	}
	script, err := txscript.PayToAddrScript(p.payoutTo)
	if err != nil {
		return "", err
	}
	const fee = 20_000
	spend.AddTxOut(wire.NewTxOut(total-fee, script))
	var unsigned bytes.Buffer
	if err := spend.Serialize(&unsigned); err != nil {
		return "", err
	}
	if err := p.n.Unlock(10 * time.Minute); err != nil {
		return "", err
	}
	signed, err := p.n.Wallet.RawRequest("signrawtransaction", raw(hex.EncodeToString(unsigned.Bytes()), prevs))
	if err != nil {
		return "", fmt.Errorf("signing the double spend: %w", err)
	}
	var sig struct {
		Hex      string
		Complete bool
	}
	if err := json.Unmarshal(signed, &sig); err != nil {
		return "", err
	}
	if !sig.Complete {
		return "", fmt.Errorf("the wallet signed the double spend only partly: %s", signed)
	}
	sent, err := p.RPC.RawRequest("sendrawtransaction", raw(sig.Hex))
	if err != nil {
		return "", fmt.Errorf("the peer refused the double spend: %w", err)
	}
	var id string
	err = json.Unmarshal(sent, &id)
	return id, err
}

// satoshi converts an RPC amount (coins, a float in rpcclient's types) to satoshi exactly: simnet
// amounts in tests have at most 8 decimals, well inside float64's exact range.
func satoshi(coins float64) (int64, error) {
	s := strconv.FormatFloat(coins*1e8, 'f', 0, 64)
	return strconv.ParseInt(s, 10, 64)
}

// Stop stops the peer; the node keeps running.
func (p *Peer) Stop() {
	if p == nil {
		return
	}
	if p.RPC != nil {
		p.RPC.Shutdown()
	}
	p.proc.stop()
}

func raw(params ...any) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(params))
	for _, p := range params {
		b, err := json.Marshal(p)
		if err != nil {
			panic(err) // only called with plain values
		}
		out = append(out, b)
	}
	return out
}
