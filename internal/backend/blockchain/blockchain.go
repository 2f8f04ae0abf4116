// Package blockchain is the blockchain.info backend: a Blockchain.com wallet reached through its
// wallet service (the merchant API: new_address, list, payment/sendmany), with transactions and
// blocks read from blockchain.info's block explorer API (rawtx, multiaddr, latestblock, rawblock,
// block-height). The wallet service holds the keys and sends; the explorer is the truth about what
// the wallet's addresses received. Response shapes are recorded under testdata/ with their sources.
package blockchain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/amount"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
)

const (
	// addressesPerQuery bounds one multiaddr call's active list.
	addressesPerQuery = 100
	// txsPerPage is multiaddr's page size (its maximum).
	txsPerPage = 100
	// addressCacheTTL is how long the wallet's address list is reused before it is read again.
	addressCacheTTL = 30 * time.Second
)

// Options configure a Client. Credentials are values here; the caller reads them from files.
type Options struct {
	// URL is the wallet service; ExplorerURL the block explorer API.
	URL, ExplorerURL string
	GUID, Password   string
	SecondPassword   string
	APIKey           string
	Coin, Network    string
	Timeout          time.Duration
}

// Client is a blockchain.info wallet.
type Client struct {
	opts     Options
	wallet   *url.URL
	explorer *url.URL
	http     *http.Client

	mu        sync.Mutex
	addresses map[string]bool
	listedAt  time.Time
}

var _ backend.Backend = (*Client)(nil)

func parseBase(field, raw string) (*url.URL, error) {
	if !strings.HasSuffix(raw, "/") {
		raw += "/"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s %q is not an http(s) URL", field, raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s must not carry credentials", field)
	}
	return u, nil
}

// New checks the options; it does not connect.
func New(opts Options) (*Client, error) {
	if opts.Coin != "bitcoin" || (opts.Network != "mainnet" && opts.Network != "testnet") {
		return nil, fmt.Errorf("blockchain.info serves bitcoin mainnet and testnet, not %s %s", opts.Coin, opts.Network)
	}
	w, err := parseBase("wallet service URL", opts.URL)
	if err != nil {
		return nil, err
	}
	e, err := parseBase("explorer URL", opts.ExplorerURL)
	if err != nil {
		return nil, err
	}
	if opts.GUID == "" || opts.Password == "" {
		return nil, errors.New("blockchain.info needs the wallet identifier (GUID) and password")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	return &Client{opts: opts, wallet: w, explorer: e, http: &http.Client{Timeout: opts.Timeout}, addresses: map[string]bool{}}, nil
}

// do makes one request and decodes the JSON reply; a reply with "error" is an error. 404s are
// returned as errNotFound for the caller to interpret.
func (c *Client) do(ctx context.Context, name, method string, u *url.URL, form url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(form.Encode())
	} else if form != nil {
		u.RawQuery = form.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", name, backend.ErrUnreachable, c.redact(err.Error()))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("%s: %w: reading the reply: %v", name, backend.ErrUnreachable, err)
	}
	text := strings.TrimSpace(string(raw))
	if resp.StatusCode == http.StatusNotFound || strings.Contains(strings.ToLower(text), "not found") && resp.StatusCode >= 400 {
		return fmt.Errorf("%s: %w", name, errNotFound)
	}
	// The wallet service answers refusals as {"error": ...}, often with HTTP 500: the message,
	// not the status, says whether retrying can help.
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return classify(name, e.Error)
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("%s: %w: HTTP %d: %.200s", name, backend.ErrUnreachable, resp.StatusCode, text)
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s: %w: HTTP %d: %.200s", name, backend.ErrRejected, resp.StatusCode, text)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: %w: the reply does not parse: %v", name, backend.ErrRejected, err)
	}
	return nil
}

var errNotFound = errors.New("not found")

func (c *Client) redact(s string) string {
	for _, secret := range []string{c.opts.Password, c.opts.SecondPassword, c.opts.GUID, c.opts.APIKey} {
		if secret != "" {
			s = strings.ReplaceAll(s, url.QueryEscape(secret), "REDACTED")
			s = strings.ReplaceAll(s, secret, "REDACTED")
		}
	}
	return s
}

func classify(name, msg string) error {
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "insufficient") || strings.Contains(lower, "no free outputs"):
		return fmt.Errorf("%s: %w: %s", name, backend.ErrInsufficientFunds, msg)
	case strings.Contains(lower, "password") || strings.Contains(lower, "guid") || strings.Contains(lower, "api code") || strings.Contains(lower, "api key"):
		return fmt.Errorf("%s: %w: authentication failed (check the wallet GUID, passwords and API key): %s", name, backend.ErrRejected, msg)
	}
	return fmt.Errorf("%s: %w: %s", name, backend.ErrRejected, msg)
}

// merchant calls the wallet service.
func (c *Client) merchant(ctx context.Context, method, call string, params url.Values, out any) error {
	u := *c.wallet
	u.Path += "merchant/" + url.PathEscape(c.opts.GUID) + "/" + call
	if params == nil {
		params = url.Values{}
	}
	params.Set("password", c.opts.Password)
	if c.opts.SecondPassword != "" {
		params.Set("second_password", c.opts.SecondPassword)
	}
	if c.opts.APIKey != "" {
		params.Set("api_code", c.opts.APIKey)
	}
	return c.do(ctx, call, method, &u, params, out)
}

// explore calls the block explorer.
func (c *Client) explore(ctx context.Context, path string, params url.Values, out any) error {
	u := *c.explorer
	u.Path += path
	if params == nil {
		params = url.Values{}
	}
	if c.opts.APIKey != "" {
		params.Set("api_code", c.opts.APIKey)
	}
	name := path
	if i := strings.IndexByte(path, '/'); i > 0 {
		name = path[:i]
	}
	return c.do(ctx, name, http.MethodGet, &u, params, out)
}

// NewAddress adds a labelled address to the wallet.
func (c *Client) NewAddress(ctx context.Context, label string) (string, error) {
	params := url.Values{}
	if label != "" {
		params.Set("label", label)
	}
	var res struct {
		Address string `json:"address"`
		Label   string `json:"label"`
	}
	if err := c.merchant(ctx, http.MethodPost, "new_address", params, &res); err != nil {
		return "", err
	}
	if err := coin.ValidateAddress(c.opts.Coin, c.opts.Network, res.Address); err != nil {
		return "", fmt.Errorf("new_address: %w: the wallet returned %q: %v", backend.ErrRejected, res.Address, err)
	}
	c.mu.Lock()
	c.addresses[res.Address] = true
	c.mu.Unlock()
	return res.Address, nil
}

// walletAddresses is the wallet's address list, read again when older than maxAge.
func (c *Client) walletAddresses(ctx context.Context, maxAge time.Duration) (map[string]bool, error) {
	c.mu.Lock()
	if time.Since(c.listedAt) < maxAge {
		out := make(map[string]bool, len(c.addresses))
		for a := range c.addresses {
			out[a] = true
		}
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	var res struct {
		Addresses []struct {
			Address string `json:"address"`
		} `json:"addresses"`
	}
	if err := c.merchant(ctx, http.MethodGet, "list", url.Values{"confirmations": {"0"}}, &res); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range res.Addresses {
		c.addresses[a.Address] = true
	}
	c.listedAt = time.Now()
	out := make(map[string]bool, len(c.addresses))
	for a := range c.addresses {
		out[a] = true
	}
	return out, nil
}

// rawTx is the explorer's transaction.
type rawTx struct {
	Hash        string `json:"hash"`
	Time        int64  `json:"time"`
	BlockHeight *int64 `json:"block_height"`
	DoubleSpend bool   `json:"double_spend"`
	Inputs      []struct {
		PrevOut *rawOut `json:"prev_out"`
	} `json:"inputs"`
	Out []rawOut `json:"out"`
}

type rawOut struct {
	N     int32  `json:"n"`
	Value int64  `json:"value"`
	Addr  string `json:"addr"`
}

type block struct {
	Hash      string `json:"hash"`
	Height    int64  `json:"height"`
	MainChain *bool  `json:"main_chain"`
}

// Tip is the explorer's latest block.
func (c *Client) Tip(ctx context.Context) (backend.Tip, error) {
	var b block
	if err := c.explore(ctx, "latestblock", nil, &b); err != nil {
		return backend.Tip{}, err
	}
	if b.Hash == "" || b.Height <= 0 {
		return backend.Tip{}, fmt.Errorf("latestblock: %w: no hash or height in the reply", backend.ErrRejected)
	}
	return backend.Tip{Height: b.Height, Hash: b.Hash}, nil
}

// blockHash is the main-chain block at a height.
func (c *Client) blockHash(ctx context.Context, height int64) (string, error) {
	var res struct {
		Blocks []block `json:"blocks"`
	}
	if err := c.explore(ctx, "block-height/"+strconv.FormatInt(height, 10), url.Values{"format": {"json"}}, &res); err != nil {
		return "", err
	}
	for _, b := range res.Blocks {
		if b.MainChain == nil || *b.MainChain {
			return b.Hash, nil
		}
	}
	return "", fmt.Errorf("block-height: %w: no main-chain block at height %d", backend.ErrRejected, height)
}

// convert builds a Transaction from the explorer's view, against the wallet's addresses; ok is
// false when the transaction neither pays nor spends from the wallet.
func (c *Client) convert(t rawTx, ours map[string]bool, tip backend.Tip, hashes map[int64]string) (backend.Transaction, bool) {
	out := backend.Transaction{TxID: strings.ToLower(t.Hash)}
	var in, paid int64
	for _, i := range t.Inputs {
		if i.PrevOut == nil {
			continue
		}
		in += i.PrevOut.Value
		if ours[i.PrevOut.Addr] {
			out.Sent = true
		}
	}
	for _, o := range t.Out {
		paid += o.Value
		if ours[o.Addr] {
			out.Received = append(out.Received, backend.Output{Index: o.N, Address: o.Addr, Amount: amount.Amount(o.Value)})
		}
	}
	if out.Sent && in > paid {
		out.Fee = amount.Amount(in - paid)
	}
	switch {
	case t.DoubleSpend:
		out.Confirmations = -1
	case t.BlockHeight != nil && *t.BlockHeight > 0 && *t.BlockHeight <= tip.Height:
		out.BlockHeight = *t.BlockHeight
		out.Confirmations = int32(tip.Height - out.BlockHeight + 1)
		out.BlockHash = hashes[out.BlockHeight]
	}
	return out, out.Sent || len(out.Received) > 0
}

// withHashes fills in the block hashes of confirmed transactions (one block-height call per
// distinct height; the tip's is known).
func (c *Client) withHashes(ctx context.Context, txs []rawTx, tip backend.Tip) (map[int64]string, error) {
	hashes := map[int64]string{tip.Height: tip.Hash}
	for _, t := range txs {
		if t.BlockHeight == nil || *t.BlockHeight <= 0 || *t.BlockHeight > tip.Height {
			continue
		}
		if _, ok := hashes[*t.BlockHeight]; ok {
			continue
		}
		h, err := c.blockHash(ctx, *t.BlockHeight)
		if err != nil {
			return nil, err
		}
		hashes[*t.BlockHeight] = h
	}
	return hashes, nil
}

// Transaction reads a transaction from the explorer; one that does not touch the wallet's
// addresses is ErrUnknownTransaction, as a node's wallet would say.
func (c *Client) Transaction(ctx context.Context, txid string) (backend.Transaction, error) {
	if !backend.ValidTxID(txid) {
		return backend.Transaction{}, backend.ErrNotATxID(txid)
	}
	tip, err := c.Tip(ctx)
	if err != nil {
		return backend.Transaction{}, err
	}
	var t rawTx
	if err := c.explore(ctx, "rawtx/"+strings.ToLower(txid), url.Values{"format": {"json"}}, &t); err != nil {
		if errors.Is(err, errNotFound) {
			return backend.Transaction{}, backend.ErrUnknownTransaction
		}
		return backend.Transaction{}, err
	}
	ours, err := c.walletAddresses(ctx, addressCacheTTL)
	if err != nil {
		return backend.Transaction{}, err
	}
	hashes, err := c.withHashes(ctx, []rawTx{t}, tip)
	if err != nil {
		return backend.Transaction{}, err
	}
	out, ok := c.convert(t, ours, tip, hashes)
	if !ok {
		return backend.Transaction{}, backend.ErrUnknownTransaction
	}
	return out, nil
}

// history walks the wallet's transactions newest first, by multiaddr over the wallet's addresses
// (in groups), until stop says a transaction is old enough.
func (c *Client) history(ctx context.Context, stop func(rawTx) bool) ([]rawTx, error) {
	ours, err := c.walletAddresses(ctx, 0)
	if err != nil {
		return nil, err
	}
	addrs := make([]string, 0, len(ours))
	for a := range ours {
		addrs = append(addrs, a)
	}
	seen := map[string]bool{}
	var out []rawTx
	for start := 0; start < len(addrs); start += addressesPerQuery {
		group := addrs[start:min(start+addressesPerQuery, len(addrs))]
		for offset := 0; ; offset += txsPerPage {
			var res struct {
				Txs []rawTx `json:"txs"`
			}
			params := url.Values{"active": {strings.Join(group, "|")}, "n": {strconv.Itoa(txsPerPage)}, "offset": {strconv.Itoa(offset)}}
			if err := c.explore(ctx, "multiaddr", params, &res); err != nil {
				return nil, err
			}
			done := len(res.Txs) < txsPerPage
			for _, t := range res.Txs {
				if !backend.ValidTxID(t.Hash) {
					return nil, fmt.Errorf("multiaddr: %w: a transaction without a hash", backend.ErrRejected)
				}
				if stop != nil && stop(t) {
					done = true
					continue
				}
				if !seen[t.Hash] {
					seen[t.Hash] = true
					out = append(out, t)
				}
			}
			if done {
				break
			}
		}
	}
	return out, nil
}

// after lists the wallet's transactions in blocks above height, and unconfirmed ones.
func (c *Client) after(ctx context.Context, height int64, tip backend.Tip) ([]backend.Transaction, error) {
	raw, err := c.history(ctx, func(t rawTx) bool { return t.BlockHeight != nil && *t.BlockHeight > 0 && *t.BlockHeight <= height })
	if err != nil {
		return nil, err
	}
	ours, err := c.walletAddresses(ctx, addressCacheTTL)
	if err != nil {
		return nil, err
	}
	hashes, err := c.withHashes(ctx, raw, tip)
	if err != nil {
		return nil, err
	}
	var out []backend.Transaction
	for _, t := range raw {
		if tx, ok := c.convert(t, ours, tip, hashes); ok {
			out = append(out, tx)
		}
	}
	return out, nil
}

// Since lists the wallet's transactions after the block blockHash ("" for all). A block no longer
// on the main chain is ErrRejected, which makes the intake start over.
func (c *Client) Since(ctx context.Context, blockHash string) ([]backend.Transaction, backend.Tip, error) {
	tip, err := c.Tip(ctx)
	if err != nil {
		return nil, backend.Tip{}, err
	}
	height := int64(-1)
	if blockHash != "" {
		var b block
		err := c.explore(ctx, "rawblock/"+blockHash, nil, &b)
		if errors.Is(err, errNotFound) || (err == nil && b.MainChain != nil && !*b.MainChain) {
			return nil, backend.Tip{}, fmt.Errorf("%w: block %s is not on the main chain", backend.ErrRejected, blockHash)
		}
		if err != nil {
			return nil, backend.Tip{}, err
		}
		height = b.Height
	}
	txs, err := c.after(ctx, height, tip)
	return txs, tip, err
}

// Scan reads the history from fromHeight and hands it over in windows of blocks.
func (c *Client) Scan(ctx context.Context, fromHeight int64, visit func(backend.ScanBatch) error) (backend.Tip, error) {
	tip, err := c.Tip(ctx)
	if err != nil {
		return backend.Tip{}, err
	}
	fromHeight = max(fromHeight, 0)
	if fromHeight > tip.Height {
		return tip, fmt.Errorf("%w: rescan from height %d is above the tip %d", backend.ErrRejected, fromHeight, tip.Height)
	}
	txs, err := c.after(ctx, fromHeight-1, tip)
	if err != nil {
		return tip, err
	}
	return tip, backend.ScanInWindows(txs, fromHeight, tip.Height, backend.ScanBatchOutputs, visit)
}

// SendMany pays through the wallet service once: payment for one recipient, sendmany for more.
func (c *Client) SendMany(ctx context.Context, outputs map[string]amount.Amount) (string, error) {
	if len(outputs) == 0 {
		return "", fmt.Errorf("%w: a send needs at least one output", backend.ErrRejected)
	}
	recipients := map[string]int64{}
	for a, v := range outputs {
		if err := coin.ValidateAddress(c.opts.Coin, c.opts.Network, a); err != nil {
			return "", fmt.Errorf("%w: %v", backend.ErrRejected, err)
		}
		recipients[a] = int64(v)
	}
	params := url.Values{}
	call := "sendmany"
	if len(recipients) == 1 {
		call = "payment"
		for a, v := range recipients {
			params.Set("to", a)
			params.Set("amount", strconv.FormatInt(v, 10))
		}
	} else {
		b, _ := json.Marshal(recipients)
		params.Set("recipients", string(b))
	}
	var res struct {
		Message string `json:"message"`
		TxHash  string `json:"tx_hash"`
	}
	if err := c.merchant(ctx, http.MethodPost, call, params, &res); err != nil {
		return "", err
	}
	if !backend.ValidTxID(res.TxHash) {
		return "", fmt.Errorf("%s: %w: no tx_hash in the reply (%q)", call, backend.ErrRejected, res.Message)
	}
	return strings.ToLower(res.TxHash), nil
}

// RecentSends lists the wallet's payments since a time: transactions spending from its
// addresses, with their outputs to other addresses (change comes back to the wallet).
func (c *Client) RecentSends(ctx context.Context, since time.Time) ([]backend.Send, error) {
	raw, err := c.history(ctx, func(t rawTx) bool { return time.Unix(t.Time, 0).Before(since) })
	if err != nil {
		return nil, err
	}
	ours, err := c.walletAddresses(ctx, addressCacheTTL)
	if err != nil {
		return nil, err
	}
	var out []backend.Send
	for _, t := range raw {
		spent := false
		for _, i := range t.Inputs {
			spent = spent || (i.PrevOut != nil && ours[i.PrevOut.Addr])
		}
		if !spent {
			continue
		}
		s := backend.Send{TxID: strings.ToLower(t.Hash), Time: time.Unix(t.Time, 0).UTC(), Outputs: map[string]amount.Amount{}}
		for _, o := range t.Out {
			if !ours[o.Addr] {
				s.Outputs[o.Addr] += amount.Amount(o.Value)
			}
		}
		out = append(out, s)
	}
	return out, nil
}
