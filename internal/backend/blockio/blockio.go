// Package blockio is the block.io API v2 backend: an HD wallet hosted by block.io, reached with
// an API key, whose withdrawals are signed here with a key only the PIN unlocks (block.io never
// sees the PIN).
//
// block.io knows transactions, not blocks: it reports confirmations and times but no block heights
// or hashes. So the cursor is the newest received txid, a rescan walks pages of history rather
// than blocks, and a transaction is looked up by walking the received and sent lists (newest
// first; the ones the helper asks about are recent). Response shapes are recorded under testdata/
// with their sources.
package blockio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/amount"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockio/pincrypt"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
)

// DefaultURL is block.io's API v2.
const DefaultURL = "https://block.io/api/v2/"

// maxPages bounds one walk through a transaction list, so a server that pages forever cannot
// hold the helper: 4,000 pages are 100,000 transactions.
const maxPages = 4000

// Options configure a Client. Credentials are values here; the caller reads them from files.
type Options struct {
	URL           string
	APIKey        string
	PIN           string
	Coin, Network string
	Timeout       time.Duration
	// HTTP is the client to use (tests); default one with Timeout.
	HTTP *http.Client
}

// Client is a block.io wallet.
type Client struct {
	opts    Options
	base    *url.URL
	network string // block.io's name: BTC, BTCTEST, LTC, ...
	http    *http.Client
	// fees remembers the network fee of the withdrawals this process made: block.io reports it
	// when the withdrawal is finalised, not in its transaction lists.
	mu   sync.Mutex
	fees map[string]amount.Amount
}

var _ backend.Backend = (*Client)(nil)

// Network is block.io's name for a coin's network.
func Network(coinName, network string) (string, error) {
	codes := map[string]string{"bitcoin": "BTC", "litecoin": "LTC", "dogecoin": "DOGE"}
	code, ok := codes[coinName]
	if !ok {
		return "", fmt.Errorf("block.io does not serve %s", coinName)
	}
	switch network {
	case "mainnet":
		return code, nil
	case "testnet":
		return code + "TEST", nil
	}
	return "", fmt.Errorf("block.io serves mainnet and testnet, not %s", network)
}

// New checks the options; it does not connect.
func New(opts Options) (*Client, error) {
	if opts.URL == "" {
		opts.URL = DefaultURL
	}
	if !strings.HasSuffix(opts.URL, "/") {
		opts.URL += "/"
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("block.io URL %q is not an http(s) URL", opts.URL)
	}
	if u.User != nil || u.Query().Get("api_key") != "" {
		return nil, errors.New("the block.io URL must not carry credentials; the API key comes from its Secret")
	}
	if opts.APIKey == "" {
		return nil, errors.New("block.io needs an API key")
	}
	if opts.PIN == "" {
		return nil, errors.New("block.io needs the PIN to sign withdrawals")
	}
	if _, err := coin.LookupNetwork(opts.Coin, opts.Network); err != nil {
		return nil, err
	}
	network, err := Network(opts.Coin, opts.Network)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	hc := opts.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: opts.Timeout}
	}
	return &Client{opts: opts, base: u, network: network, http: hc, fees: map[string]amount.Amount{}}, nil
}

type envelope struct {
	Status string          `json:"status"`
	Data   json.RawMessage `json:"data"`
}

// call makes one API request. GET carries params in the query; POST sends them as JSON. A POST is
// never retried here: for a withdrawal, a lost answer may still mean money went out.
func (c *Client) call(ctx context.Context, method, name string, params map[string]string, body any, out any) error {
	u := *c.base
	u.Path += name + "/"
	q := url.Values{}
	q.Set("api_key", c.opts.APIKey)
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL holds the API key; say where without it.
		return fmt.Errorf("%s: %w: %v", name, backend.ErrUnreachable, redact(err, c.opts.APIKey))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s: %w: reading the reply: %v", name, backend.ErrUnreachable, err)
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("%s: %w: HTTP %d", name, backend.ErrUnreachable, resp.StatusCode)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s: %w: the reply (HTTP %d) is not block.io JSON: %v", name, backend.ErrRejected, resp.StatusCode, err)
	}
	if env.Status != "success" {
		var fail struct {
			ErrorMessage string `json:"error_message"`
		}
		_ = json.Unmarshal(env.Data, &fail)
		return classify(name, resp.StatusCode, fail.ErrorMessage)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("%s: %w: the reply's data does not parse: %v", name, backend.ErrRejected, err)
	}
	return nil
}

func redact(err error, secret string) string {
	s := err.Error()
	if secret != "" {
		s = strings.ReplaceAll(s, url.QueryEscape(secret), "REDACTED")
		s = strings.ReplaceAll(s, secret, "REDACTED")
	}
	return s
}

func classify(name string, code int, msg string) error {
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "insufficient") || strings.Contains(lower, "maximum withdrawable") || strings.Contains(lower, "not enough"):
		return fmt.Errorf("%s: %w: %s", name, backend.ErrInsufficientFunds, msg)
	case code == http.StatusUnauthorized || code == http.StatusForbidden || strings.Contains(lower, "api key"):
		return fmt.Errorf("%s: %w: authentication failed (check the API key): %s", name, backend.ErrRejected, msg)
	}
	if msg == "" {
		msg = fmt.Sprintf("status fail, HTTP %d", code)
	}
	return fmt.Errorf("%s: %w: %s", name, backend.ErrRejected, msg)
}

// checkNetwork refuses a reply for another network: an API key of the wrong wallet.
func (c *Client) checkNetwork(name, got string) error {
	if got != "" && !strings.EqualFold(got, c.network) {
		return fmt.Errorf("%s: %w: the API key belongs to a %s wallet, this asset is %s", name, backend.ErrRejected, got, c.network)
	}
	return nil
}

func (c *Client) amount(name, s string) (amount.Amount, error) {
	a, err := amount.Parse(s, 8)
	if err != nil {
		return 0, fmt.Errorf("%s: %w: amount %q: %v", name, backend.ErrRejected, s, err)
	}
	return a, nil
}

// NewAddress asks block.io for a new address. block.io labels must be unique and plain, so the
// label is reduced to letters, digits, - and _; an empty one lets block.io choose.
func (c *Client) NewAddress(ctx context.Context, label string) (string, error) {
	params := map[string]string{}
	if l := slug(label); l != "" {
		params["label"] = l
	}
	var res struct {
		Network string `json:"network"`
		Address string `json:"address"`
		Label   string `json:"label"`
	}
	if err := c.call(ctx, http.MethodGet, "get_new_address", params, nil, &res); err != nil {
		return "", err
	}
	if err := c.checkNetwork("get_new_address", res.Network); err != nil {
		return "", err
	}
	if err := coin.ValidateAddress(c.opts.Coin, c.opts.Network, res.Address); err != nil {
		return "", fmt.Errorf("get_new_address: %w: block.io returned %q: %v", backend.ErrRejected, res.Address, err)
	}
	return res.Address, nil
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ' || r == '.' || r == '/':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// entry is one transaction in get_transactions.
type entry struct {
	TxID            string            `json:"txid"`
	Time            int64             `json:"time"`
	Confirmations   int32             `json:"confirmations"`
	AmountsReceived []recipientAmount `json:"amounts_received"`
	AmountsSent     []recipientAmount `json:"amounts_sent"`
}

type recipientAmount struct {
	Recipient string `json:"recipient"`
	Amount    string `json:"amount"`
}

// page reads one page of received or sent transactions, newest first, before a txid.
func (c *Client) page(ctx context.Context, kind, before string) ([]entry, error) {
	params := map[string]string{"type": kind}
	if before != "" {
		params["before_tx"] = before
	}
	var res struct {
		Network string  `json:"network"`
		Txs     []entry `json:"txs"`
	}
	if err := c.call(ctx, http.MethodGet, "get_transactions", params, nil, &res); err != nil {
		return nil, err
	}
	if err := c.checkNetwork("get_transactions", res.Network); err != nil {
		return nil, err
	}
	for _, e := range res.Txs {
		if len(e.TxID) != 64 {
			return nil, fmt.Errorf("get_transactions: %w: a transaction without a txid (%q)", backend.ErrRejected, e.TxID)
		}
	}
	return res.Txs, nil
}

// pager walks one list page by page. It stops at an empty page, or when block.io answers a page
// with the same last txid again (seen with block.io's paging in 2015).
type pager struct {
	c      *Client
	kind   string
	before string
	done   bool
	pages  int
}

func (p *pager) next(ctx context.Context) ([]entry, error) {
	if p.done {
		return nil, nil
	}
	if p.pages >= maxPages {
		return nil, fmt.Errorf("get_transactions: %w: more than %d pages of %s transactions", backend.ErrRejected, maxPages, p.kind)
	}
	txs, err := p.c.page(ctx, p.kind, p.before)
	if err != nil {
		return nil, err
	}
	p.pages++
	if len(txs) == 0 || txs[len(txs)-1].TxID == p.before {
		p.done = true
		if len(txs) > 0 && txs[len(txs)-1].TxID == p.before {
			txs = txs[:len(txs)-1]
		}
		return txs, nil
	}
	p.before = txs[len(txs)-1].TxID
	return txs, nil
}

// received converts a received entry. block.io gives no output numbers, so outputs are numbered
// in a fixed order (address, then amount): the same transaction always gets the same numbers,
// which is what keeps a deposit from being booked twice.
func (c *Client) received(e entry) (backend.Transaction, error) {
	t := backend.Transaction{TxID: strings.ToLower(e.TxID), Confirmations: e.Confirmations}
	amounts := slices.Clone(e.AmountsReceived)
	slices.SortFunc(amounts, func(a, b recipientAmount) int {
		if a.Recipient != b.Recipient {
			return strings.Compare(a.Recipient, b.Recipient)
		}
		return strings.Compare(a.Amount, b.Amount)
	})
	for i, r := range amounts {
		a, err := c.amount("get_transactions", r.Amount)
		if err != nil {
			return t, err
		}
		t.Received = append(t.Received, backend.Output{Index: int32(i), Address: r.Recipient, Amount: a})
	}
	return t, nil
}

// Transaction finds a transaction in the received and sent lists, walking both newest first.
// Once it is found in one, the other is read only back to its time.
func (c *Client) Transaction(ctx context.Context, txid string) (backend.Transaction, error) {
	if !backend.ValidTxID(txid) {
		return backend.Transaction{}, backend.ErrNotATxID(txid)
	}
	txid = strings.ToLower(txid)
	lists := []*pager{{c: c, kind: "received"}, {c: c, kind: "sent"}}
	var (
		found    [2]*entry
		foundAt  int64 = -1
		finished [2]bool
	)
	for !(finished[0] && finished[1]) {
		for i, p := range lists {
			if finished[i] {
				continue
			}
			txs, err := p.next(ctx)
			if err != nil {
				return backend.Transaction{}, err
			}
			for j := range txs {
				if strings.EqualFold(txs[j].TxID, txid) {
					found[i] = &txs[j]
					if foundAt < 0 {
						foundAt = txs[j].Time
					}
				}
			}
			older := len(txs) > 0 && foundAt >= 0 && txs[len(txs)-1].Time < foundAt
			if found[i] != nil || p.done || older {
				finished[i] = true
			}
		}
	}
	if found[0] == nil && found[1] == nil {
		return backend.Transaction{}, backend.ErrUnknownTransaction
	}
	var t backend.Transaction
	if found[0] != nil {
		var err error
		if t, err = c.received(*found[0]); err != nil {
			return t, err
		}
	}
	if found[1] != nil {
		t.TxID, t.Sent, t.Confirmations = txid, true, found[1].Confirmations
		c.mu.Lock()
		t.Fee = c.fees[txid]
		c.mu.Unlock()
	}
	return t, nil
}

// Since lists received transactions newer than the cursor txid (the whole history for ""). A
// cursor txid no longer in the history is ErrRejected, which makes the intake start over.
func (c *Client) Since(ctx context.Context, cursor string) ([]backend.Transaction, backend.Tip, error) {
	p := &pager{c: c, kind: "received"}
	var out []backend.Transaction
	tip := backend.Tip{}
	for {
		txs, err := p.next(ctx)
		if err != nil {
			return nil, backend.Tip{}, err
		}
		for _, e := range txs {
			if tip.Hash == "" {
				tip.Hash = strings.ToLower(e.TxID)
			}
			if cursor != "" && strings.EqualFold(e.TxID, cursor) {
				return out, tip, nil
			}
			t, err := c.received(e)
			if err != nil {
				return nil, backend.Tip{}, err
			}
			out = append(out, t)
		}
		if p.done {
			break
		}
	}
	if cursor != "" {
		return nil, backend.Tip{}, fmt.Errorf("%w: the cursor transaction %s is not in block.io's received list", backend.ErrRejected, cursor)
	}
	return out, tip, nil
}

// Tip is block.io's stand-in for a best block: the newest received txid. It has no height.
func (c *Client) Tip(ctx context.Context) (backend.Tip, error) {
	txs, err := c.page(ctx, "received", "")
	if err != nil {
		return backend.Tip{}, err
	}
	if len(txs) == 0 {
		return backend.Tip{}, nil
	}
	return backend.Tip{Hash: strings.ToLower(txs[0].TxID)}, nil
}

// Scan walks the whole received history a page at a time. block.io has no block heights, so
// only a rescan from 0 is possible; the total is known once the last page is read.
func (c *Client) Scan(ctx context.Context, fromHeight int64, visit func(backend.ScanBatch) error) (backend.Tip, error) {
	if fromHeight != 0 {
		return backend.Tip{}, fmt.Errorf("%w: block.io has no block heights; a rescan always reads the whole history (from height 0)", backend.ErrRejected)
	}
	p := &pager{c: c, kind: "received"}
	tip := backend.Tip{}
	for done := int64(1); ; done++ {
		txs, err := p.next(ctx)
		if err != nil {
			return tip, err
		}
		batch := backend.ScanBatch{Done: done, Total: done + 1, Unit: "pages"}
		if p.done {
			batch.Total = done
		}
		for _, e := range txs {
			if tip.Hash == "" {
				tip.Hash = strings.ToLower(e.TxID)
			}
			t, err := c.received(e)
			if err != nil {
				return tip, err
			}
			batch.Transactions = append(batch.Transactions, t)
		}
		if err := visit(batch); err != nil {
			return tip, err
		}
		if p.done {
			return tip, nil
		}
	}
}

// signatureData is block.io's withdrawal to sign, and what goes back signed.
type signatureData struct {
	ReferenceID          string               `json:"reference_id"`
	MoreSignaturesNeeded bool                 `json:"more_signatures_needed"`
	UnsignedTxHex        string               `json:"unsigned_tx_hex,omitempty"`
	EncryptedPassphrase  *encryptedPassphrase `json:"encrypted_passphrase,omitempty"`
	Inputs               []signInput          `json:"inputs"`
}

type encryptedPassphrase struct {
	SignerAddress   string `json:"signer_address"`
	SignerPublicKey string `json:"signer_public_key"`
	Passphrase      string `json:"passphrase"`
}

type signInput struct {
	InputNo          int64    `json:"input_no"`
	SignaturesNeeded int64    `json:"signatures_needed"`
	DataToSign       string   `json:"data_to_sign"`
	Signers          []signer `json:"signers"`
}

type signer struct {
	SignerAddress   string `json:"signer_address"`
	SignerPublicKey string `json:"signer_public_key"`
	SignedData      any    `json:"signed_data"`
}

// SendMany withdraws to several addresses in one transaction: block.io prepares it, this client
// signs its inputs with the PIN-derived key, and block.io broadcasts it on
// sign_and_finalize_withdrawal, which is sent exactly once.
func (c *Client) SendMany(ctx context.Context, outputs map[string]amount.Amount) (string, error) {
	if len(outputs) == 0 {
		return "", fmt.Errorf("%w: a send needs at least one output", backend.ErrRejected)
	}
	addrs := make([]string, 0, len(outputs))
	for a := range outputs {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	amounts := make([]string, len(addrs))
	for i, a := range addrs {
		if err := coin.ValidateAddress(c.opts.Coin, c.opts.Network, a); err != nil {
			return "", fmt.Errorf("%w: %v", backend.ErrRejected, err)
		}
		amounts[i] = outputs[a].Format(8)
	}
	var sd signatureData
	// The PIN field is sent empty, as block.io's own clients do: it never leaves this process.
	if err := c.call(ctx, http.MethodPost, "withdraw", nil, map[string]string{
		"amounts": strings.Join(amounts, ","), "to_addresses": strings.Join(addrs, ","), "pin": "",
	}, &sd); err != nil {
		return "", err
	}
	if sd.ReferenceID == "" || sd.EncryptedPassphrase == nil || len(sd.Inputs) == 0 {
		return "", fmt.Errorf("withdraw: %w: block.io returned nothing to sign", backend.ErrRejected)
	}
	key, err := pincrypt.Key(c.opts.PIN)
	if err != nil {
		return "", err
	}
	pass, err := pincrypt.Decrypt(sd.EncryptedPassphrase.Passphrase, key)
	if err != nil {
		return "", fmt.Errorf("withdraw: %w: %v (check the PIN)", backend.ErrRejected, err)
	}
	priv, err := pincrypt.SigningKey(pass)
	if err != nil {
		return "", fmt.Errorf("withdraw: %w: %v", backend.ErrRejected, err)
	}
	pub := fmt.Sprintf("%x", priv.PubKey().SerializeCompressed())
	if !strings.EqualFold(pub, sd.EncryptedPassphrase.SignerPublicKey) {
		return "", fmt.Errorf("withdraw: %w: the PIN's key is not the signer block.io expects (wrong PIN)", backend.ErrRejected)
	}
	for i := range sd.Inputs {
		for j := range sd.Inputs[i].Signers {
			if !strings.EqualFold(sd.Inputs[i].Signers[j].SignerPublicKey, pub) {
				continue // another party's key (a multisig co-signer)
			}
			sig, err := pincrypt.Sign(priv, sd.Inputs[i].DataToSign)
			if err != nil {
				return "", fmt.Errorf("withdraw: %w: input %d: %v", backend.ErrRejected, sd.Inputs[i].InputNo, err)
			}
			sd.Inputs[i].Signers[j].SignedData = sig
		}
	}
	sd.EncryptedPassphrase = nil
	signed, err := json.Marshal(sd)
	if err != nil {
		return "", err
	}
	var res struct {
		Network    string `json:"network"`
		TxID       string `json:"txid"`
		NetworkFee string `json:"network_fee"`
	}
	if err := c.call(ctx, http.MethodPost, "sign_and_finalize_withdrawal", nil, map[string]string{"signature_data": string(signed)}, &res); err != nil {
		return "", err
	}
	if len(res.TxID) != 64 {
		return "", fmt.Errorf("sign_and_finalize_withdrawal: %w: no txid in the reply", backend.ErrRejected)
	}
	if fee, err := c.amount("sign_and_finalize_withdrawal", res.NetworkFee); err == nil {
		c.mu.Lock()
		c.fees[strings.ToLower(res.TxID)] = fee
		c.mu.Unlock()
	}
	return strings.ToLower(res.TxID), nil
}

// RecentSends lists the withdrawals made since a time, from the sent list.
func (c *Client) RecentSends(ctx context.Context, since time.Time) ([]backend.Send, error) {
	p := &pager{c: c, kind: "sent"}
	var out []backend.Send
	for {
		txs, err := p.next(ctx)
		if err != nil {
			return nil, err
		}
		for _, e := range txs {
			at := time.Unix(e.Time, 0).UTC()
			if at.Before(since) {
				return out, nil
			}
			s := backend.Send{TxID: strings.ToLower(e.TxID), Time: at, Outputs: map[string]amount.Amount{}}
			for _, r := range e.AmountsSent {
				a, err := c.amount("get_transactions", r.Amount)
				if err != nil {
					return nil, err
				}
				s.Outputs[r.Recipient] += a
			}
			out = append(out, s)
		}
		if p.done {
			return out, nil
		}
	}
}

// Notification is a webhook registration at block.io.
type Notification struct {
	ID   string `json:"notification_id"`
	Type string `json:"type"`
	URL  string `json:"url"`
}

// Notifications lists the account's webhook registrations.
func (c *Client) Notifications(ctx context.Context) ([]Notification, error) {
	var out []Notification
	err := c.call(ctx, http.MethodGet, "get_notifications", nil, nil, &out)
	if err != nil && strings.Contains(err.Error(), "No valid notifications found") {
		return nil, nil // block.io's way of saying "none"
	}
	return out, err
}

// CreateNotification registers url for new-transactions notifications.
func (c *Client) CreateNotification(ctx context.Context, url string) (Notification, error) {
	var n Notification
	err := c.call(ctx, http.MethodGet, "create_notification", map[string]string{"type": "new-transactions", "url": url}, nil, &n)
	if err == nil && n.ID == "" {
		err = fmt.Errorf("create_notification: %w: no notification_id in the reply", backend.ErrRejected)
	}
	return n, err
}

// DeleteNotification removes a registration.
func (c *Client) DeleteNotification(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodGet, "delete_notification", map[string]string{"notification_id": id}, nil, nil)
}
