// Package blockiotest is a local block.io for tests: the API v2 calls the backend makes, the
// withdrawal signing round trip (it checks the client's signatures against the key its PIN
// unlocks), the websocket notification stream and webhook notifications. Its replies carry the
// fields of the real ones recorded under ../testdata (see SOURCE.md there); a test checks that.
package blockiotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockio/pincrypt"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// NetworkFee is what every withdrawal pays.
const NetworkFee ledger.Amount = 10_000

type tx struct {
	TxID          string
	Time          int64
	Confirmations int32
	Received      map[string]ledger.Amount // our addresses
	Sent          map[string]ledger.Amount // withdrawals
}

type notification struct {
	ID  string `json:"notification_id"`
	URL string `json:"url"`
}

type pending struct {
	outputs map[string]ledger.Amount
	inputs  []string // data_to_sign
}

// Server is the fake block.io.
type Server struct {
	APIKey, PIN   string
	Coin, Network string // bitcoin, testnet
	// PageSize of get_transactions (block.io: 25).
	PageSize int

	srv        *httptest.Server
	mu         sync.Mutex
	network    string
	labels     map[string]string // label -> address
	addresses  map[string]string // address -> label
	txs        []*tx             // oldest first
	balance    ledger.Amount
	passphrase []byte // hex text
	pending    map[string]*pending
	notes      []notification
	sockets    map[*websocket.Conn]bool
	down       bool
	calls      map[string]int
}

// Start starts a fake block.io for coin on testnet with the given credentials.
func Start(apiKey, pin, coinName string) (*Server, error) {
	codes := map[string]string{"bitcoin": "BTCTEST", "litecoin": "LTCTEST", "dogecoin": "DOGETEST"}
	s := &Server{APIKey: apiKey, PIN: pin, Coin: coinName, Network: "testnet", PageSize: 25, network: codes[coinName],
		labels: map[string]string{}, addresses: map[string]string{}, pending: map[string]*pending{},
		sockets: map[*websocket.Conn]bool{}, calls: map[string]int{}}
	s.passphrase = []byte(hex.EncodeToString(random(16)))
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v2/{method}/", s.api)
	mux.HandleFunc("/ws/", s.websocket)
	s.srv = httptest.NewServer(mux)
	return s, nil
}

// URL is the API base, as the backend's url option takes it.
func (s *Server) URL() string { return s.srv.URL + "/api/v2/" }

// WebsocketURL is the notification stream (block.io's is wss://n.block.io/).
func (s *Server) WebsocketURL() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws/" }

// Close stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	for c := range s.sockets {
		_ = c.Close(websocket.StatusGoingAway, "server closing")
	}
	s.mu.Unlock()
	s.srv.Close()
}

// SetDown makes every API call answer 503 (true) or work again.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Calls counts the API calls made, by method.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Notifications are the webhook registrations.
func (s *Server) Notifications() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, n := range s.notes {
		out = append(out, n.URL)
	}
	return out
}

func random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// Receive records a payment from outside to an address of the wallet, unconfirmed, and tells the
// websocket subscribers and webhooks about it, as block.io does.
func (s *Server) Receive(address string, amount ledger.Amount) (string, error) {
	s.mu.Lock()
	if _, ok := s.addresses[address]; !ok {
		s.mu.Unlock()
		return "", fmt.Errorf("%s is not an address of this wallet", address)
	}
	t := &tx{TxID: hex.EncodeToString(random(32)), Time: time.Now().Unix(), Received: map[string]ledger.Amount{address: amount}}
	s.txs = append(s.txs, t)
	s.balance += amount
	notes := append([]notification(nil), s.notes...)
	socks := make([]*websocket.Conn, 0, len(s.sockets))
	for c := range s.sockets {
		socks = append(socks, c)
	}
	s.mu.Unlock()

	data := map[string]any{"network": s.network, "address": address, "balance_change": amount.Format(8),
		"amount_sent": "0.00000000", "amount_received": amount.Format(8), "txid": t.TxID, "confirmations": 0, "is_green": false}
	msg, _ := json.Marshal(map[string]any{"type": "address", "data": data})
	for _, c := range socks {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Write(ctx, websocket.MessageText, msg)
		cancel()
	}
	for _, n := range notes {
		body, _ := json.Marshal(map[string]any{"notification_id": n.ID, "delivery_attempt": 1, "type": "new-transactions",
			"created_at": time.Now().Unix(), "data": map[string]any{"network": s.network, "txid": t.TxID, "confirmations": 0,
				"amount_received": amount.Format(8), "is_green": false, "received_at": t.Time}})
		resp, err := http.Post(n.URL, "application/json", bytes.NewReader(body))
		if err == nil {
			resp.Body.Close()
		}
	}
	return t.TxID, nil
}

// Confirm adds n confirmations to every transaction (n blocks were found).
func (s *Server) Confirm(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.txs {
		t.Confirmations += int32(n)
	}
}

// Ping sends a websocket ping message to every subscriber.
func (s *Server) Ping() {
	s.mu.Lock()
	socks := make([]*websocket.Conn, 0, len(s.sockets))
	for c := range s.sockets {
		socks = append(socks, c)
	}
	s.mu.Unlock()
	for _, c := range socks {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","data":{"timestamp":`+strconv.FormatInt(time.Now().Unix(), 10)+`}}`))
		cancel()
	}
}

// DropSockets closes every websocket, as a block.io restart would.
func (s *Server) DropSockets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.sockets {
		_ = c.Close(websocket.StatusGoingAway, "restarting")
		delete(s.sockets, c)
	}
}

func reply(w http.ResponseWriter, code int, status string, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "data": data})
}

func fail(w http.ResponseWriter, code int, msg string) {
	reply(w, code, "fail", map[string]string{"error_message": msg})
}

func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	method := r.PathValue("method")
	s.mu.Lock()
	s.calls[method]++
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Query().Get("api_key") != s.APIKey {
		fail(w, http.StatusUnauthorized, "API Key invalid or you have not enabled API access for this machine's IP address(es).")
		return
	}
	params := map[string]string{}
	for k := range r.URL.Query() {
		params[k] = r.URL.Query().Get(k)
	}
	if r.Method == http.MethodPost {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			fail(w, http.StatusBadRequest, "Invalid JSON body")
			return
		}
		for k, v := range body {
			if str, ok := v.(string); ok {
				params[k] = str
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch method {
	case "get_new_address":
		s.newAddress(w, params["label"])
	case "get_transactions":
		s.transactions(w, params["type"], params["before_tx"])
	case "withdraw":
		s.withdraw(w, params)
	case "sign_and_finalize_withdrawal":
		s.finalize(w, params["signature_data"])
	case "get_notifications":
		var out []map[string]any
		for _, n := range s.notes {
			out = append(out, map[string]any{"notification_id": n.ID, "type": "new-transactions", "url": n.URL, "enabled": true, "network": s.network})
		}
		if len(out) == 0 {
			fail(w, http.StatusNotFound, "Failed: No valid notifications found for Network="+s.network+".")
			return
		}
		reply(w, http.StatusOK, "success", out)
	case "create_notification":
		if params["type"] != "new-transactions" || !strings.HasPrefix(params["url"], "http") {
			fail(w, http.StatusBadRequest, "Invalid notification type or URL.")
			return
		}
		n := notification{ID: hex.EncodeToString(random(12)), URL: params["url"]}
		s.notes = append(s.notes, n)
		reply(w, http.StatusOK, "success", map[string]any{"network": s.network, "notification_id": n.ID, "type": "new-transactions", "enabled": true, "url": n.URL})
	case "delete_notification":
		for i, n := range s.notes {
			if n.ID == params["notification_id"] {
				s.notes = append(s.notes[:i], s.notes[i+1:]...)
				reply(w, http.StatusOK, "success", map[string]any{"network": s.network, "notification_id": n.ID, "type": "new-transactions", "enabled": false, "url": n.URL})
				return
			}
		}
		fail(w, http.StatusNotFound, "Notification not found.")
	default:
		fail(w, http.StatusNotFound, "Unknown method: "+method)
	}
}

func (s *Server) newAddress(w http.ResponseWriter, label string) {
	if label == "" {
		label = "label" + strconv.Itoa(len(s.labels)+1)
	}
	if _, taken := s.labels[label]; taken {
		fail(w, http.StatusBadRequest, "Label must be unique. You already have an address with label="+label+".")
		return
	}
	addr, err := coin.EncodeAddress(s.Coin, s.Network, random(20))
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.labels[label], s.addresses[addr] = addr, label
	reply(w, http.StatusOK, "success", map[string]any{"network": s.network, "user_id": len(s.labels), "address": addr, "label": label})
}

func (s *Server) transactions(w http.ResponseWriter, kind, before string) {
	if kind != "received" && kind != "sent" {
		fail(w, http.StatusBadRequest, "Type must be one of: sent, received.")
		return
	}
	var list []map[string]any
	started := before == ""
	for i := len(s.txs) - 1; i >= 0 && len(list) < s.PageSize; i-- {
		t := s.txs[i]
		if !started {
			started = t.TxID == before
			continue
		}
		e := map[string]any{"txid": t.TxID, "from_green_address": false, "time": t.Time, "confirmations": t.Confirmations,
			"senders": []string{}, "confidence": 1.0, "propagated_by_nodes": nil}
		switch {
		case kind == "received" && t.Received != nil:
			var amounts []map[string]string
			for a, v := range t.Received {
				amounts = append(amounts, map[string]string{"recipient": a, "amount": v.Format(8)})
			}
			e["amounts_received"] = amounts
		case kind == "sent" && t.Sent != nil:
			var amounts []map[string]string
			var total ledger.Amount
			for a, v := range t.Sent {
				amounts = append(amounts, map[string]string{"recipient": a, "amount": v.Format(8)})
				total += v
			}
			e["amounts_sent"], e["total_amount_sent"] = amounts, total.Format(8)
		default:
			continue
		}
		list = append(list, e)
	}
	if list == nil {
		list = []map[string]any{}
	}
	reply(w, http.StatusOK, "success", map[string]any{"network": s.network, "txs": list})
}

func (s *Server) signer() (pub string, addr string) {
	key, _ := pincrypt.SigningKey(s.passphrase)
	return hex.EncodeToString(key.PubKey().SerializeCompressed()), "2N" + hex.EncodeToString(random(8))
}

func (s *Server) withdraw(w http.ResponseWriter, p map[string]string) {
	if p["pin"] != "" {
		fail(w, http.StatusBadRequest, "The PIN must not be sent to block.io.")
		return
	}
	amounts, addrs := strings.Split(p["amounts"], ","), strings.Split(p["to_addresses"], ",")
	if len(amounts) != len(addrs) || p["amounts"] == "" {
		fail(w, http.StatusBadRequest, "Number of amounts must match number of to_addresses.")
		return
	}
	outputs := map[string]ledger.Amount{}
	total := NetworkFee
	for i, a := range addrs {
		if err := coin.ValidateAddress(s.Coin, s.Network, a); err != nil {
			fail(w, http.StatusBadRequest, "Invalid address: "+a)
			return
		}
		v, err := ledger.ParseAmount(amounts[i], 8)
		if err != nil || v <= 0 {
			fail(w, http.StatusBadRequest, "Invalid amount: "+amounts[i])
			return
		}
		outputs[a] += v
		total += v
	}
	if total > s.balance {
		fail(w, http.StatusBadRequest, fmt.Sprintf("Cannot withdraw funds without Network Fee of %s %s. Maximum withdrawable balance is %s.",
			NetworkFee.Format(8), s.network, max(0, s.balance-NetworkFee).Format(8)))
		return
	}
	key, err := pincrypt.Key(s.PIN)
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	enc, err := pincrypt.Encrypt(s.passphrase, key)
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	pub, signerAddr := s.signer()
	ref := hex.EncodeToString(random(16))
	pend := &pending{outputs: outputs}
	var inputs []map[string]any
	for i := range 2 {
		data := hex.EncodeToString(random(32))
		pend.inputs = append(pend.inputs, data)
		inputs = append(inputs, map[string]any{"input_no": i, "signatures_needed": 1, "data_to_sign": data,
			"signers": []map[string]any{{"signer_address": signerAddr, "signer_public_key": pub, "signed_data": nil}}})
	}
	s.pending[ref] = pend
	reply(w, http.StatusOK, "success", map[string]any{"reference_id": ref, "more_signatures_needed": true,
		"unsigned_tx_hex": hex.EncodeToString(random(60)), "inputs": inputs,
		"encrypted_passphrase": map[string]string{"signer_address": signerAddr, "signer_public_key": pub, "passphrase": enc}})
}

func (s *Server) finalize(w http.ResponseWriter, raw string) {
	var sd struct {
		ReferenceID         string `json:"reference_id"`
		EncryptedPassphrase any    `json:"encrypted_passphrase"`
		Inputs              []struct {
			InputNo    int    `json:"input_no"`
			DataToSign string `json:"data_to_sign"`
			Signers    []struct {
				SignerPublicKey string `json:"signer_public_key"`
				SignedData      string `json:"signed_data"`
			} `json:"signers"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal([]byte(raw), &sd); err != nil {
		fail(w, http.StatusBadRequest, "Invalid signature_data.")
		return
	}
	pend, ok := s.pending[sd.ReferenceID]
	if !ok {
		fail(w, http.StatusBadRequest, "Invalid or expired reference_id.")
		return
	}
	if sd.EncryptedPassphrase != nil {
		fail(w, http.StatusBadRequest, "Do not send the encrypted passphrase back.")
		return
	}
	if len(sd.Inputs) != len(pend.inputs) {
		fail(w, http.StatusBadRequest, "Missing inputs.")
		return
	}
	for i, in := range sd.Inputs {
		if in.DataToSign != pend.inputs[i] || len(in.Signers) != 1 || !pincrypt.Verify(in.Signers[0].SignerPublicKey, in.DataToSign, in.Signers[0].SignedData) {
			fail(w, http.StatusBadRequest, fmt.Sprintf("Invalid signature for input %d.", in.InputNo))
			return
		}
	}
	delete(s.pending, sd.ReferenceID)
	t := &tx{TxID: hex.EncodeToString(random(32)), Time: time.Now().Unix(), Sent: pend.outputs}
	var total ledger.Amount
	for a, v := range pend.outputs {
		total += v
		if _, ours := s.addresses[a]; ours {
			if t.Received == nil {
				t.Received = map[string]ledger.Amount{}
			}
			t.Received[a] += v
		}
	}
	s.txs = append(s.txs, t)
	s.balance -= total + NetworkFee
	for _, v := range t.Received {
		s.balance += v
	}
	reply(w, http.StatusOK, "success", map[string]any{"network": s.network, "txid": t.TxID, "amount_withdrawn": (total + NetworkFee).Format(8),
		"amount_sent": total.Format(8), "network_fee": NetworkFee.Format(8), "blockio_fee": "0.00000000"})
}

// websocket speaks block.io's notification stream: a greeting, then after the client sends
// {"api_key": ..., "type": "account"} a success reply and the account's transactions as they come.
func (s *Server) websocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ctx := r.Context()
	_ = c.Write(ctx, websocket.MessageText, []byte(`{"status":"success","data":{"message":"Welcome! Subscribe to notifications by sending a JSON request."}}`))
	subscribed := false
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			s.mu.Lock()
			delete(s.sockets, c)
			s.mu.Unlock()
			return
		}
		var req struct {
			APIKey string `json:"api_key"`
			Type   string `json:"type"`
		}
		if json.Unmarshal(msg, &req) != nil || req.Type != "account" || req.APIKey != s.APIKey {
			_ = c.Write(ctx, websocket.MessageText, []byte(`{"status":"fail","data":{"error_message":"Invalid subscription request or API key."}}`))
			_ = c.Close(websocket.StatusPolicyViolation, "invalid subscription")
			return
		}
		if !subscribed {
			subscribed = true
			s.mu.Lock()
			s.sockets[c] = true
			s.mu.Unlock()
		}
		_ = c.Write(ctx, websocket.MessageText, []byte(`{"status":"success","data":{"type":"account","network":"`+s.network+`"}}`))
	}
}
