package bitcoind

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/wire/v2"
)

// A wallet's word on where a transaction is mined is not always the chain's: btcwallet rolls back only
// the tip block of a reorganisation, and keeps reporting a block hash that left the best chain,
// with confirmations still rising. So every block a wallet transaction claims is looked up at the
// node (through the wallet's endpoint: btcwallet passes chain methods on to btcd), and
// confirmations come from the node's best chain. Bitcoin Core's wallet lives in the node's process
// and follows its chain, reorganisations included, so its word (with the height it gives) is
// taken as the chain's, and a lookup costs one call.

// place is where a block stands on the node's best chain.
type place struct {
	onChain       bool
	height        int64
	confirmations int32
}

// places remembers the blocks looked up during one call, so a listing of many transactions
// from the same blocks asks once per block.
type places map[string]place

// rpcCode is the node's error code, if err is an RPC error.
func rpcCode(err error) (int, bool) {
	var rpcErr *btcjson.RPCError
	if errors.As(err, &rpcErr) {
		return int(rpcErr.Code), true
	}
	return 0, false
}

// blockPlace looks a block up on the node's best chain. claimedHeight is what the wallet's
// numbers put it at; it is only used with nodes whose getblockheader refuses blocks off the best
// chain (btcd answers those with an internal error rather than Bitcoin Core's confirmations -1).
func (c *Client) blockPlace(ctx context.Context, seen places, hash string, claimedHeight int64) (place, error) {
	if p, ok := seen[hash]; ok {
		return p, nil
	}
	var hdr struct {
		Confirmations int64 `json:"confirmations"`
		Height        int64 `json:"height"`
	}
	var p place
	err := c.read(ctx, "getblockheader", &hdr, hash, true)
	code, isRPC := rpcCode(err)
	switch {
	case err == nil:
		// Bitcoin Core: -1 for a block it knows off the best chain.
		if hdr.Confirmations >= 1 {
			p = place{onChain: true, height: hdr.Height, confirmations: int32(min(hdr.Confirmations, 1<<30))}
		}
	case isRPC && code == int(btcjson.ErrRPCBlockNotFound):
		// A block the node never saw (another node's chain, or a node rebuilt): not ours to count.
	case isRPC:
		// btcd: "block ... is not in the main chain". Whatever the node's reason, the block at the
		// claimed height decides.
		var atHeight string
		if claimedHeight > 0 {
			if err := c.read(ctx, "getblockhash", &atHeight, claimedHeight); err != nil {
				if _, isRPC := rpcCode(err); !isRPC {
					return place{}, err
				}
			}
		}
		if atHeight == hash {
			tip, err := c.nodeHeight(ctx)
			if err != nil {
				return place{}, err
			}
			p = place{onChain: true, height: claimedHeight, confirmations: int32(tip - claimedHeight + 1)}
		}
	default:
		return place{}, err
	}
	seen[hash] = p
	return p, nil
}

// headersPage is how many headers btcd's getheaders answers at most.
const headersPage = 2000

// bulkBlocks is from how many distinct blocks on a listing is checked against the node's chain
// by reading the chain's headers in pages rather than each block on its own.
const bulkBlocks = 3

// chainMemo remembers, from one listing to the next, the listed blocks found on the node's best
// chain and the last header read (the anchor). While the anchor stays on the best chain so do
// they, at the same heights: each header names its parent, so none of the anchor's ancestors can
// change without the anchor leaving the chain. A listing whose blocks were checked before then
// costs one getheaders from the anchor, which also reads whatever was mined since, rather than
// the whole range again. A reorganisation below the anchor shows as getheaders not following it,
// and the memo starts over.
//
// It also remembers the listed blocks a read from below them did not find (missed): blocks that
// left the chain, which btcwallet goes on naming. Those are asked about one by one (blockPlace)
// on every listing, and do not make it read the headers from their height again.
type chainMemo struct {
	mu      sync.Mutex
	anchor  string
	height  int64
	heights map[string]int64
	missed  map[string]bool
}

// memoBlocks bounds how many blocks the memo keeps; past it, it keeps only the last listing's.
const memoBlocks = 100_000

// readChain reads the node's best chain after block prev (at height prevHeight) to its tip with
// btcd's getheaders (btcwallet passes it on to btcd; Bitcoin Core has no such call, and needs
// none). It records in found the heights of the blocks in want, and returns the last block read
// and its height. follows is false when prev is not on the best chain: btcd then answers from
// the genesis block. Pages are chained by their previous-block hashes, so a reorganisation while
// reading is an error, not a mixed chain.
func (c *Client) readChain(ctx context.Context, prev string, prevHeight int64, want map[string]bool, found map[string]int64) (last string, height int64, follows bool, err error) {
	height = prevHeight
	for first := true; ; first = false {
		var headers stringList
		if err := c.read(ctx, "getheaders", &headers, []string{prev}, ""); err != nil {
			return "", 0, false, err
		}
		for _, h := range headers {
			raw, err := hex.DecodeString(h)
			if err != nil {
				return "", 0, false, fmt.Errorf("getheaders: a header that is not hex: %w", err)
			}
			var hdr wire.BlockHeader
			if err := hdr.Deserialize(bytes.NewReader(raw)); err != nil {
				return "", 0, false, fmt.Errorf("getheaders: a header that does not parse: %w", err)
			}
			if hdr.PrevBlock.String() != prev {
				if first && height == prevHeight {
					return "", 0, false, nil
				}
				return "", 0, false, fmt.Errorf("getheaders: the chain changed while it was read (block %d does not follow %s)", height+1, prev)
			}
			prev = hdr.BlockHash().String()
			height++
			if want[prev] {
				found[prev] = height
			}
		}
		if len(headers) < headersPage {
			return prev, height, true, nil
		}
	}
}

// placeOnMainChain looks up, in one pass over the node's headers, the blocks of txs (listing
// entries whose wallet numbers put them at tipHeight-confirmations+1) that are on the node's
// best chain, and records them in seen. Blocks the memo holds cost only the read from its anchor
// on; the others are searched for from the lowest height the wallet's numbers give them. Blocks it
// does not find are left to blockPlace, which asks about each: a wallet's numbers can put a block
// below the range read. It is an optimisation only; when the headers cannot be read, every block
// is asked about on its own.
func (c *Client) placeOnMainChain(ctx context.Context, seen places, txs []*walletTx, tipHeight int64) {
	if c.opts.Flavor != Btcwallet {
		return
	}
	want := map[string]bool{}
	claimed := map[string]int64{} // the height the wallet's numbers give each block
	for _, t := range txs {
		if t.BlockHash == "" || t.Confirmations <= 0 || want[t.BlockHash] {
			continue
		}
		want[t.BlockHash] = true
		claimed[t.BlockHash] = tipHeight - int64(t.Confirmations) + 1
	}
	if len(want) < bulkBlocks {
		return
	}
	// One reader at a time: a second listing in flight waits and finds the memo extended.
	m := &c.chain
	m.mu.Lock()
	defer m.mu.Unlock()
	// Where a read would have to start: at the lowest block not missed before. A block a read
	// already missed is asked about on its own (blockPlace) each time; reading the headers from
	// its height again would find nothing more.
	lowest := func() int64 {
		from := tipHeight
		for hash, h := range claimed {
			if !m.missed[hash] {
				from = min(from, h)
			}
		}
		return from
	}
	from := lowest()
	found := map[string]int64{}
	if m.anchor != "" {
		for hash := range want {
			if h, ok := m.heights[hash]; ok {
				found[hash] = h
			}
		}
		last, height, follows, err := c.readChain(ctx, m.anchor, m.height, want, found)
		if err != nil {
			return
		}
		if follows {
			// Blocks still missing can only be on the chain below the anchor, where this read
			// did not look.
			below := from <= m.height
			c.remember(found, last, height)
			unplaced := 0
			for hash := range want {
				if _, ok := found[hash]; ok {
					delete(m.missed, hash) // off the chain once, on it now
				} else if !m.missed[hash] {
					unplaced++
				}
			}
			if unplaced == 0 || !below {
				c.placeFound(seen, found, height)
				return
			}
		} else {
			m.anchor, m.heights, m.missed = "", nil, nil
			from = lowest()
		}
	}
	// Blocks not seen before, or a chain that moved under the anchor: read from the lowest. The
	// memo's blocks stay only if its anchor is on the chain this read finds.
	from = max(from, 1)
	var prev string
	if err := c.read(ctx, "getblockhash", &prev, from-1); err != nil {
		return
	}
	keep, anchorWanted := m.anchor != "", want[m.anchor]
	if keep {
		want[m.anchor] = true
	}
	read := map[string]int64{}
	last, height, follows, err := c.readChain(ctx, prev, from-1, want, read)
	if err != nil || !follows {
		return
	}
	if keep {
		keep = read[m.anchor] == m.height
		if !anchorWanted {
			delete(read, m.anchor)
		}
	}
	if keep {
		for hash, h := range found {
			read[hash] = h
		}
	}
	if !keep || len(m.heights)+len(read) > memoBlocks {
		m.heights, m.missed = nil, nil
	}
	c.remember(read, last, height)
	if m.missed == nil {
		m.missed = map[string]bool{}
	}
	for hash := range claimed {
		if _, ok := read[hash]; ok {
			delete(m.missed, hash)
		} else {
			m.missed[hash] = true
		}
	}
	c.placeFound(seen, read, height)
}

// remember adds found to the memo, anchored at last (at height). The caller holds the lock.
func (c *Client) remember(found map[string]int64, last string, height int64) {
	m := &c.chain
	if m.heights == nil {
		m.heights = make(map[string]int64, len(found))
	}
	for hash, h := range found {
		m.heights[hash] = h
	}
	m.anchor, m.height = last, height
}

// placeFound records the blocks found on the best chain, nodeTip being its height.
func (c *Client) placeFound(seen places, found map[string]int64, nodeTip int64) {
	for hash, h := range found {
		seen[hash] = place{onChain: true, height: h, confirmations: int32(min(nodeTip-h+1, 1<<30))}
	}
}

// nodeHeight is the node's best height. btcwallet answers getblockcount from its own sync state,
// which trails the node; getbestblock is btcd's and btcwallet's extension, getblockchaininfo
// Bitcoin Core's.
func (c *Client) nodeHeight(ctx context.Context) (int64, error) {
	var info struct {
		Blocks int64 `json:"blocks"`
		Height int64 `json:"height"`
	}
	if c.opts.Flavor == Btcwallet {
		if err := c.read(ctx, "getbestblock", &info); err != nil {
			return 0, err
		}
		return info.Height, nil
	}
	if err := c.read(ctx, "getblockchaininfo", &info); err != nil {
		return 0, err
	}
	return info.Blocks, nil
}

// onChain replaces what the wallet says of t's block with what the node says.
func (c *Client) onChain(ctx context.Context, seen places, t *walletTx, claimedHeight int64) error {
	if t.BlockHash == "" || t.Confirmations <= 0 {
		return nil
	}
	if c.opts.Flavor == BitcoinCore && t.WalletBlockHeight > 0 {
		// Bitcoin Core's wallet is the node's: its block and height are the chain's.
		t.blockHeight = t.WalletBlockHeight
		return nil
	}
	p, err := c.blockPlace(ctx, seen, t.BlockHash, claimedHeight)
	if err != nil {
		return fmt.Errorf("checking block %s of %s on the node's chain: %w", t.BlockHash, t.TxID, err)
	}
	if !p.onChain {
		t.BlockHash, t.Confirmations = "", 0
		return nil
	}
	t.Confirmations = p.confirmations
	t.blockHeight = p.height
	return nil
}

// unmined re-examines a wallet transaction the node's chain does not have where the wallet says
// (or that the wallet calls unconfirmed), from its raw form:
//   - Every input's output still unspent on the chain: it is simply not mined yet.
//   - Otherwise, an output of it in the chain's unspent set means it is mined after all (a wallet
//     that kept a stale block for it after a reorganisation): t gets the node's confirmations and
//     block.
//   - Otherwise, an input spent on the chain whose parent is not waiting in the mempool was spent
//     by another transaction on the best chain: t can never confirm.
//
// Inputs come first because they are few, and the common case (waiting in the mempool) ends
// there; a broadcast can have hundreds of outputs. The node's mempool is not asked about t
// itself: btcd puts a reorganised-out transaction back into its mempool even when the winning
// branch spent its inputs.
func (c *Client) unmined(ctx context.Context, t *walletTx) (conflicted bool, err error) {
	if t.Hex == "" {
		return false, nil
	}
	raw, err := hex.DecodeString(t.Hex)
	if err != nil {
		return false, fmt.Errorf("gettransaction %s: the node's hex does not decode: %w", t.TxID, err)
	}
	var msg wire.MsgTx
	if err := msg.Deserialize(bytes.NewReader(raw)); err != nil {
		return false, fmt.Errorf("gettransaction %s: the node's transaction does not parse: %w", t.TxID, err)
	}
	var spent []wire.OutPoint
	for _, in := range msg.TxIn {
		out, err := c.txOut(ctx, in.PreviousOutPoint)
		if err != nil {
			return false, err
		}
		if out == nil {
			spent = append(spent, in.PreviousOutPoint)
		}
	}
	if len(spent) == 0 {
		return false, nil
	}
	self := msg.TxHash()
	for i := range msg.TxOut {
		out, err := c.txOut(ctx, wire.OutPoint{Hash: self, Index: uint32(i)})
		if err != nil {
			return false, err
		}
		if out != nil && out.Confirmations > 0 {
			return false, c.minedAt(ctx, t, out.Confirmations)
		}
	}
	for _, prev := range spent {
		parentPending, err := c.inMempool(ctx, prev.Hash.String())
		if err != nil {
			return false, err
		}
		if !parentPending {
			return true, nil
		}
	}
	return false, nil
}

// minedAt puts t at the block the node's chain has it in, confirmations deep.
func (c *Client) minedAt(ctx context.Context, t *walletTx, confirmations int64) error {
	tip, err := c.nodeHeight(ctx)
	if err != nil {
		return err
	}
	height := tip - confirmations + 1
	var hash string
	if err := c.read(ctx, "getblockhash", &hash, height); err != nil {
		return err
	}
	t.BlockHash, t.Confirmations, t.blockHeight = hash, int32(min(confirmations, 1<<30)), height
	return nil
}

// inMempool asks the node for a transaction without a transaction index: it finds it only in the
// mempool (a node with an index also finds confirmed ones, which then report confirmations).
func (c *Client) inMempool(ctx context.Context, txid string) (bool, error) {
	var res struct {
		Confirmations int64 `json:"confirmations"`
	}
	// btcd takes the verbose flag as a number, Bitcoin Core as a boolean.
	var verbose any = true
	if c.opts.Flavor == Btcwallet {
		verbose = 1
	}
	err := c.read(ctx, "getrawtransaction", &res, txid, verbose)
	if code, isRPC := rpcCode(err); isRPC && code == int(btcjson.ErrRPCNoTxInfo) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return res.Confirmations == 0, nil
}

// unspent is what gettxout tells of an output in the chain's unspent set.
type unspent struct {
	Confirmations int64 `json:"confirmations"`
}

// txOut looks an output up in the chain's unspent set (not the mempool's): nil when the chain
// does not have it unspent.
func (c *Client) txOut(ctx context.Context, op wire.OutPoint) (*unspent, error) {
	var out *unspent
	if err := c.read(ctx, "gettxout", &out, op.Hash.String(), op.Index, false); err != nil {
		return nil, err
	}
	return out, nil
}
