// Package blockchaintest is a local blockchain.info for tests: the wallet service's merchant API
// and the block explorer calls the backend makes, over one simulated wallet and chain. Its replies
// carry the fields of the real ones recorded under ../testdata (see SOURCE.md there).
package blockchaintest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
)

// Fee is what every payment pays, in satoshi.
const Fee = 10_000

type out struct {
	N     int    `json:"n"`
	Value int64  `json:"value"`
	Addr  string `json:"addr"`
	spent bool
}

type tx struct {
	Hash   string
	Time   int64
	Height int64 // 0: unconfirmed
	Index  int64
	Inputs []out // prev_outs
	Out    []*out
	seq    int
}

// Server is the fake: a wallet service and a block explorer sharing one chain.
type Server struct {
	GUID, Password string

	srv       *httptest.Server
	mu        sync.Mutex
	network   string
	addresses map[string]string // address -> label
	order     []string
	txs       map[string]*tx
	seq       int
	blocks    []string // hash by height - base
	base      int64
	down      bool
	sends     int
}

// Start starts the fake for bitcoin testnet.
func Start(guid, password string) *Server {
	s := &Server{GUID: guid, Password: password, network: "testnet", addresses: map[string]string{}, txs: map[string]*tx{}, base: 100}
	s.blocks = []string{randomHex(32)}
	mux := http.NewServeMux()
	mux.HandleFunc("/merchant/{guid}/{call}", s.merchant)
	mux.HandleFunc("GET /latestblock", s.latest)
	mux.HandleFunc("GET /rawtx/{hash}", s.rawtx)
	mux.HandleFunc("GET /rawblock/{hash}", s.rawblock)
	mux.HandleFunc("GET /block-height/{height}", s.blockHeight)
	mux.HandleFunc("GET /multiaddr", s.multiaddr)
	s.srv = httptest.NewServer(mux)
	return s
}

// URL serves both the wallet service and the explorer.
func (s *Server) URL() string { return s.srv.URL + "/" }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetDown makes every call answer 503 (true) or work again.
func (s *Server) SetDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

// Sends counts the payments the wallet service made.
func (s *Server) Sends() int { s.mu.Lock(); defer s.mu.Unlock(); return s.sends }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (s *Server) tip() int64 { return s.base + int64(len(s.blocks)) - 1 }

func (s *Server) add(t *tx) {
	s.seq++
	t.seq, t.Index, t.Hash, t.Time = s.seq, int64(1000+s.seq), randomHex(32), time.Now().Unix()
	s.txs[t.Hash] = t
}

// Receive records a customer's payment to an address, unconfirmed.
func (s *Server) Receive(address string, value int64) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := coin.ValidateAddress("bitcoin", s.network, address); err != nil {
		return "", err
	}
	from, _ := coin.EncodeAddress("bitcoin", s.network, []byte(randomHex(10))[:20])
	t := &tx{Inputs: []out{{N: 0, Value: value + 1000, Addr: from}}, Out: []*out{{N: 0, Value: value, Addr: address}}}
	s.add(t)
	return t.Hash, nil
}

// Mine adds blocks; the first confirms every unconfirmed transaction.
func (s *Server) Mine(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		s.blocks = append(s.blocks, randomHex(32))
		if i == 0 {
			for _, t := range s.txs {
				if t.Height == 0 {
					t.Height = s.tip()
				}
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) gate(w http.ResponseWriter) bool {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
	}
	return !down
}

func (s *Server) merchant(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w) {
		return
	}
	_ = r.ParseForm()
	if r.PathValue("guid") != s.GUID {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "Wallet identifier not found"})
		return
	}
	if r.Form.Get("password") != s.Password {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "Main wallet password incorrect"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch call := r.PathValue("call"); call {
	case "new_address":
		addr, _ := coin.EncodeAddress("bitcoin", s.network, []byte(randomHex(10))[:20])
		s.addresses[addr] = r.Form.Get("label")
		s.order = append(s.order, addr)
		var label any
		if l := r.Form.Get("label"); l != "" {
			label = l
		}
		writeJSON(w, http.StatusOK, map[string]any{"address": addr, "label": label})
	case "list":
		var list []map[string]any
		for _, a := range s.order {
			bal, recv := s.balanceOf(a)
			list = append(list, map[string]any{"balance": bal, "address": a, "label": s.addresses[a], "total_received": recv})
		}
		writeJSON(w, http.StatusOK, map[string]any{"addresses": list})
	case "payment", "sendmany":
		recipients := map[string]int64{}
		if call == "payment" {
			v, err := strconv.ParseInt(r.Form.Get("amount"), 10, 64)
			if err != nil || v <= 0 {
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "Invalid amount"})
				return
			}
			recipients[r.Form.Get("to")] = v
		} else if err := json.Unmarshal([]byte(r.Form.Get("recipients")), &recipients); err != nil || len(recipients) == 0 {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "Invalid recipients JSON"})
			return
		}
		s.pay(w, recipients)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Unknown method " + call})
	}
}

// balanceOf sums the unspent outputs to an address, and everything it ever received.
func (s *Server) balanceOf(addr string) (bal, received int64) {
	for _, t := range s.txs {
		for _, o := range t.Out {
			if o.Addr == addr {
				received += o.Value
				if !o.spent {
					bal += o.Value
				}
			}
		}
	}
	return bal, received
}

func (s *Server) pay(w http.ResponseWriter, recipients map[string]int64) {
	var total int64 = Fee
	for a, v := range recipients {
		if coin.ValidateAddress("bitcoin", s.network, a) != nil || v <= 0 {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "Invalid Bitcoin Address " + a})
			return
		}
		total += v
	}
	// Spend the wallet's unspent outputs, oldest first.
	all := make([]*tx, 0, len(s.txs))
	for _, t := range s.txs {
		all = append(all, t)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	var picked []*out
	var have int64
	for _, t := range all {
		for _, o := range t.Out {
			if _, ours := s.addresses[o.Addr]; ours && !o.spent && have < total {
				picked, have = append(picked, o), have+o.Value
			}
		}
	}
	if have < total {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "Insufficient funds. Value Needed " + strconv.FormatInt(total, 10) + " satoshi"})
		return
	}
	t := &tx{}
	for _, o := range picked {
		o.spent = true
		t.Inputs = append(t.Inputs, *o)
	}
	addrs := make([]string, 0, len(recipients))
	for a := range recipients {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		t.Out = append(t.Out, &out{N: len(t.Out), Value: recipients[a], Addr: a})
	}
	if change := have - total; change > 0 {
		t.Out = append(t.Out, &out{N: len(t.Out), Value: change, Addr: picked[0].Addr})
	}
	s.add(t)
	s.sends++
	writeJSON(w, http.StatusOK, map[string]any{"message": "Sent To Multiple Recipients", "tx_hash": t.Hash, "notice": ""})
}

func (s *Server) blockJSON(height int64) map[string]any {
	return map[string]any{"hash": s.blocks[height-s.base], "height": height, "main_chain": true, "time": time.Now().Unix(),
		"block_index": height, "ver": 1, "prev_block": "", "mrkl_root": "", "n_tx": 0, "tx": []any{}}
}

func (s *Server) latest(w http.ResponseWriter, _ *http.Request) {
	if !s.gate(w) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.tip()
	writeJSON(w, http.StatusOK, map[string]any{"hash": s.blocks[h-s.base], "time": time.Now().Unix(), "block_index": h, "height": h, "txIndexes": []int64{}})
}

func (s *Server) txJSON(t *tx) map[string]any {
	var inputs, outs []map[string]any
	for _, i := range t.Inputs {
		inputs = append(inputs, map[string]any{"sequence": 4294967295, "script": "",
			"prev_out": map[string]any{"n": i.N, "value": i.Value, "addr": i.Addr, "tx_index": 1, "script": "", "spent": true, "type": 0}})
	}
	for _, o := range t.Out {
		outs = append(outs, map[string]any{"n": o.N, "value": o.Value, "addr": o.Addr, "tx_index": t.Index, "script": "0014", "spent": o.spent, "type": 0})
	}
	m := map[string]any{"hash": t.Hash, "ver": 1, "vin_sz": len(inputs), "vout_sz": len(outs), "size": 225, "time": t.Time,
		"tx_index": t.Index, "double_spend": false, "relayed_by": "0.0.0.0", "lock_time": 0, "inputs": inputs, "out": outs}
	if t.Height > 0 {
		m["block_height"] = t.Height
	}
	return m
}

func (s *Server) rawtx(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.txs[strings.ToLower(r.PathValue("hash"))]
	if !ok {
		http.Error(w, "Transaction not found", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, s.txJSON(t))
}

func (s *Server) rawblock(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, h := range s.blocks {
		if h == r.PathValue("hash") {
			writeJSON(w, http.StatusOK, s.blockJSON(s.base+int64(i)))
			return
		}
	}
	http.Error(w, "Block Not Found", http.StatusNotFound)
}

func (s *Server) blockHeight(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := strconv.ParseInt(r.PathValue("height"), 10, 64)
	if err != nil || h < s.base || h > s.tip() {
		http.Error(w, "Unknown Block Height", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"blocks": []any{s.blockJSON(h)}})
}

func (s *Server) multiaddr(w http.ResponseWriter, r *http.Request) {
	if !s.gate(w) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	active := map[string]bool{}
	for _, a := range strings.Split(r.URL.Query().Get("active"), "|") {
		if a != "" {
			active[a] = true
		}
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	if n <= 0 || n > 100 {
		n = 50
	}
	offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	var touching []*tx
	for _, t := range s.txs {
		hit := false
		for _, i := range t.Inputs {
			hit = hit || active[i.Addr]
		}
		for _, o := range t.Out {
			hit = hit || active[o.Addr]
		}
		if hit {
			touching = append(touching, t)
		}
	}
	sort.Slice(touching, func(i, j int) bool { return touching[i].seq > touching[j].seq }) // newest first
	page := []map[string]any{}
	for i := offset; i < len(touching) && i < offset+n; i++ {
		m := s.txJSON(touching[i])
		m["result"], m["balance"] = 0, 0
		page = append(page, m)
	}
	var addrs []map[string]any
	for a := range active {
		bal, recv := s.balanceOf(a)
		addrs = append(addrs, map[string]any{"address": a, "n_tx": 0, "total_received": recv, "total_sent": recv - bal, "final_balance": bal})
	}
	h := s.tip()
	writeJSON(w, http.StatusOK, map[string]any{"addresses": addrs, "wallet": map[string]any{"n_tx": len(touching), "final_balance": 0},
		"txs": page, "info": map[string]any{"latest_block": map[string]any{"hash": s.blocks[h-s.base], "height": h, "block_index": h, "time": time.Now().Unix()}}})
}
