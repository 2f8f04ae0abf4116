package bitcoind

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire/v2"
)

// fakeChain answers the chain and listing calls as btcwallet in front of btcd does, over a chain
// of headers the test replaces to reorganise it, and a listing that names blocks the way
// btcwallet can after a reorganisation: including blocks no longer on the chain.
type fakeChain struct {
	mu      sync.Mutex
	chain   []wire.BlockHeader // by height; 0 is the genesis block
	listed  []fakeEntry
	calls   map[string]int
	branchy uint32 // makes the blocks of a new branch differ from the old
}

type fakeEntry struct {
	txid   string
	block  string
	height int64 // where the wallet's numbers put it
}

func (f *fakeChain) hashAt(h int64) string { return f.chain[h].BlockHash().String() }

// extend mines n blocks on the chain from height from (dropping the blocks above it).
func (f *fakeChain) extend(from int64, n int) {
	f.chain = f.chain[:from+1]
	f.branchy++
	for range n {
		prev := f.chain[len(f.chain)-1].BlockHash()
		f.chain = append(f.chain, wire.BlockHeader{Version: 1, PrevBlock: prev, Timestamp: time.Unix(int64(len(f.chain)), 0), Nonce: f.branchy})
	}
}

func (f *fakeChain) height(hash string) (int64, bool) {
	for h := range f.chain {
		if f.hashAt(int64(h)) == hash {
			return int64(h), true
		}
	}
	return 0, false
}

func (f *fakeChain) answer(method string, params []json.RawMessage) (any, map[string]any) {
	tip := int64(len(f.chain) - 1)
	switch method {
	case "listsinceblock":
		var txs []map[string]any
		for _, e := range f.listed {
			txs = append(txs, map[string]any{"txid": e.txid, "category": "receive", "address": "SZnvB5hxHe3ZCrbE1DnjC5ZsRo7HumJWCF",
				"amount": 0.5, "vout": 0, "blockhash": e.block, "confirmations": tip - e.height + 1})
		}
		return map[string]any{"transactions": txs, "lastblock": f.hashAt(tip)}, nil
	case "getblockheader":
		var hash string
		_ = json.Unmarshal(params[0], &hash)
		if h, ok := f.height(hash); ok {
			return map[string]any{"height": h, "confirmations": tip - h + 1}, nil
		}
		return nil, map[string]any{"code": -1, "message": "block " + hash + " is not in the main chain"}
	case "getblockhash":
		var h int64
		_ = json.Unmarshal(params[0], &h)
		if h < 0 || h > tip {
			return nil, map[string]any{"code": -1, "message": "out of range"}
		}
		return f.hashAt(h), nil
	case "getbestblock":
		return map[string]any{"hash": f.hashAt(tip), "height": tip}, nil
	case "getheaders":
		// btcd: from the first locator block on the best chain, else from the genesis block.
		var locator []string
		_ = json.Unmarshal(params[0], &locator)
		start := int64(0)
		if h, ok := f.height(locator[0]); ok {
			start = h
		}
		var out []string
		for h := start + 1; h <= tip && len(out) < headersPage; h++ {
			var buf bytes.Buffer
			_ = f.chain[h].Serialize(&buf)
			out = append(out, hex.EncodeToString(buf.Bytes()))
		}
		return out, nil
	}
	return nil, map[string]any{"code": -32601, "message": "Method not found"}
}

func (f *fakeChain) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var req struct {
		ID     json.RawMessage   `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls[req.Method]++
	result, rpcErr := f.answer(req.Method, req.Params)
	f.mu.Unlock()
	_ = json.NewEncoder(rw).Encode(map[string]any{"id": req.ID, "result": result, "error": rpcErr})
}

// TestChainMemoFollowsReorganisations: a listing's blocks are found from the node's headers and
// remembered with the last header read. A second listing reads only what was mined after it; one
// after a reorganisation below it reads the chain again, so blocks that left the chain are not
// counted, the ones still on it are, and blocks of the new branch are found.
func TestChainMemoFollowsReorganisations(t *testing.T) {
	ctx := context.Background()
	f := &fakeChain{chain: []wire.BlockHeader{{Version: 1, Nonce: 1}}, calls: map[string]int{}}
	f.extend(0, 20)
	for i, h := range []int64{3, 5, 7, 9} {
		f.listed = append(f.listed, fakeEntry{txid: strings.Repeat(fmt.Sprint(i), 64), block: f.hashAt(h), height: h})
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := New(Options{URL: srv.URL, Flavor: Btcwallet, User: "u", Password: "p", Timeout: 10 * time.Second, Coin: "bitcoin", Network: "simnet"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// placed lists the transactions and reports, by txid's first character, the height each is
	// placed at and its confirmations (0: not on the chain).
	placed := func() map[byte][2]int64 {
		t.Helper()
		txs, _, err := c.Since(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		out := map[byte][2]int64{}
		for _, tx := range txs {
			out[tx.TxID[0]] = [2]int64{tx.BlockHeight, int64(tx.Confirmations)}
		}
		return out
	}
	calls := func() map[string]int {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := f.calls
		f.calls = map[string]int{}
		return out
	}
	check := func(when string, got map[byte][2]int64, want map[byte][2]int64, wantCalls map[string]int) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: placed %v, want %v", when, got, want)
		}
		if c := calls(); c["getheaders"] != wantCalls["getheaders"] || c["getblockheader"] != wantCalls["getblockheader"] {
			t.Errorf("%s: calls %v, want %v", when, c, wantCalls)
		}
	}

	check("first listing", placed(), map[byte][2]int64{'0': {3, 18}, '1': {5, 16}, '2': {7, 14}, '3': {9, 12}},
		map[string]int{"getheaders": 1, "getblockheader": 1}) // the header: the listing's last block
	f.mu.Lock()
	f.extend(20, 2)
	f.mu.Unlock()
	check("two blocks later", placed(), map[byte][2]int64{'0': {3, 20}, '1': {5, 18}, '2': {7, 16}, '3': {9, 14}},
		map[string]int{"getheaders": 1, "getblockheader": 1})

	// A reorganisation from height 6 on: the blocks at 7 and 9 leave the chain, though the
	// wallet goes on naming them. Each is then asked about on its own.
	f.mu.Lock()
	oldBranch := append([]wire.BlockHeader(nil), f.chain...)
	f.extend(6, 18)
	f.mu.Unlock()
	reorganised := map[byte][2]int64{'0': {3, 22}, '1': {5, 20}, '2': {0, 0}, '3': {0, 0}}
	check("after the reorganisation", placed(), reorganised,
		// the read from the old last header, which no longer follows, and the read from height 3
		map[string]int{"getheaders": 2, "getblockheader": 3})
	// The blocks that left are asked about on their own again, but the headers below them are
	// not read again: the read from height 3 missed them, and the chain under it has not moved.
	check("and again", placed(), reorganised, map[string]int{"getheaders": 1, "getblockheader": 2})
	f.mu.Lock()
	f.extend(24, 5)
	f.mu.Unlock()
	check("five blocks later", placed(), map[byte][2]int64{'0': {3, 27}, '1': {5, 25}, '2': {0, 0}, '3': {0, 0}},
		map[string]int{"getheaders": 1, "getblockheader": 3})

	// Back to the first branch, longer now: the blocks at 7 and 9 are on the chain again.
	f.mu.Lock()
	saved := f.chain
	f.chain = oldBranch
	f.extend(22, 10)
	f.mu.Unlock()
	check("back on the first branch", placed(), map[byte][2]int64{'0': {3, 30}, '1': {5, 28}, '2': {7, 26}, '3': {9, 24}},
		map[string]int{"getheaders": 2, "getblockheader": 1})
	f.mu.Lock()
	f.chain = saved
	f.extend(29, 3) // and the second branch wins after all
	f.mu.Unlock()
	check("the second branch wins", placed(), map[byte][2]int64{'0': {3, 30}, '1': {5, 28}, '2': {0, 0}, '3': {0, 0}},
		map[string]int{"getheaders": 2, "getblockheader": 3})

	// The deposit that was at 9 is mined again at 8 on the new branch.
	f.mu.Lock()
	f.listed[3] = fakeEntry{txid: f.listed[3].txid, block: f.hashAt(8), height: 8}
	f.mu.Unlock()
	check("mined again", placed(), map[byte][2]int64{'0': {3, 30}, '1': {5, 28}, '2': {0, 0}, '3': {8, 25}},
		map[string]int{"getheaders": 2, "getblockheader": 1})
}
