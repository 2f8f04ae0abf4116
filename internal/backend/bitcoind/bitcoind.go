// Package bitcoind is the backend for bitcoind-compatible wallets over JSON-RPC: Bitcoin Core
// (labels, named wallets), btcwallet (accounts, always encrypted), and the litecoin and dogecoin
// daemons that speak the same RPC.
//
// Requests are JSON-RPC POSTs on the client's own kept-alive connections, at most MaxRequests at
// once (see slots), and replies are read with fastjson (see listjson.go). Reads are posted again
// when no reply came at all, within the caller's timeout (see read). Sends are not: a sendmany
// whose reply was lost may already have paid, so a retry could pay twice. A send is one POST with
// the caller's context; the helper's broadcaster reconciles an unanswered send against the wallet
// before trying again.
//
// Not btcd's rpcclient, which the helper used for reads until it was measured. In HTTP POST mode
// it sends a client's requests one at a time from one goroutine, each on a new TCP connection
// (Request.Close), and retries a request that got no reply ten times over 25 seconds with no
// context of ours: a caller that gave up at its timeout left the request retrying in that queue,
// and every read after it waited behind it. It also parses each reply whole to hand the result
// back as raw JSON, which was then parsed again. Its btcjson package still gives the error type.
//
// Differences handled here:
//   - Bitcoin Core: getnewaddress takes a label; sendmany's first argument is a dummy "".
//   - btcwallet: getnewaddress and sendmany take an account, and it sends only from "default";
//     labels are not supported; the wallet is always encrypted (walletpassphrase for a window
//     that covers the sends, see unlock);
//     it refuses send comments (none are sent); listsinceblock does not report reorganised
//     transactions, so the helper re-checks tracked transactions with gettransaction.
//   - Amounts arrive as JSON numbers; they are parsed as decimal text, never through float64.
package bitcoind

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/valyala/fastjson"

	"github.com/cryptoassets/cryptoassets-operator/internal/amount"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
)

// Flavors of wallet.
const (
	BitcoinCore = "bitcoin-core"
	Btcwallet   = "btcwallet"
)

// Options configure a Client. Credentials are values here; the caller reads them from files.
type Options struct {
	URL              string
	Flavor           string
	Wallet           string
	User, Password   string
	WalletPassphrase string
	Timeout          time.Duration
	Coin, Network    string
	// MaxRequests bounds the requests open at the node at once (DefaultMaxRequests when 0);
	// see slots.
	MaxRequests int
}

// Client is a bitcoind-compatible wallet.
type Client struct {
	opts     Options
	decimals int
	// http has no timeout of its own (see request).
	http          *http.Client
	postURL       string
	ids           atomic.Uint64
	unlockMu      sync.Mutex
	unlockedUntil time.Time
	// lastTip is the tip the last listing ended at, so a listing that ends at the same block
	// needs no second call to learn its height: an idle poll is one call.
	tipMu   sync.Mutex
	lastTip backend.Tip
	// chain is what earlier listings learned of the node's best chain (btcwallet only).
	chain chainMemo
	// slots bounds the requests open at the node, abandoned ones included.
	slots *slots
	// parsers read the listings; a parser keeps the memory of its largest piece (a listing's
	// entry, a page of headers, a broadcast's transaction) for the next.
	parsers fastjson.ParserPool
}

var _ backend.Backend = (*Client)(nil)

// New checks the options and prepares the clients; it does not connect.
func New(opts Options) (*Client, error) {
	k, err := coin.LookupNetwork(opts.Coin, opts.Network)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bitcoind url %q must be http(s)://host:port", opts.URL)
	}
	if u.User != nil {
		return nil, errors.New("bitcoind url must not carry credentials")
	}
	switch opts.Flavor {
	case BitcoinCore:
	case Btcwallet:
		if opts.Wallet != "" {
			return nil, errors.New("named wallets are a Bitcoin Core feature")
		}
	default:
		return nil, fmt.Errorf("unknown bitcoind flavor %q", opts.Flavor)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxRequests <= 0 {
		opts.MaxRequests = DefaultMaxRequests
	}
	path := strings.TrimSuffix(u.Path, "/")
	if opts.Wallet != "" {
		path += "/wallet/" + url.PathEscape(opts.Wallet)
	}
	// One kept-alive connection per request that may be open at once (the default keeps two per
	// host, and closes the rest after each use). Idle ones are closed before the node would close
	// them: Bitcoin Core drops an RPC connection idle for 30 seconds (-rpcservertimeout), and a
	// request sent on a connection the node is closing fails without an answer.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = opts.MaxRequests
	transport.IdleConnTimeout = idleConnTimeout
	return &Client{
		opts:     opts,
		decimals: k.Decimals,
		http:     &http.Client{Transport: transport},
		postURL:  u.Scheme + "://" + u.Host + path,
		// An abandoned request is counted until the node answers it, or for four timeouts
		// (two minutes by default) if it never does.
		slots: newSlots(opts.MaxRequests, max(4*opts.Timeout, unlockTimeout)),
	}, nil
}

// idleConnTimeout is how long a kept-alive connection to the node stays open unused.
const idleConnTimeout = 20 * time.Second

// Close releases the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// classify maps the node's error answer to the backend's errors, keeping the node's message.
func classify(method string, rpcErr *btcjson.RPCError) error {
	switch {
	case method == "sendmany" && outputRefusal(rpcErr):
		return &refusal{method: method, as: backend.ErrOutputRefused, rpc: rpcErr}
	case rpcErr.Code == btcjson.ErrRPCWalletInsufficientFunds || strings.Contains(strings.ToLower(rpcErr.Message), "insufficient funds"):
		return fmt.Errorf("%s: %w: %s", method, backend.ErrInsufficientFunds, rpcErr.Message)
	case method == "gettransaction" && rpcErr.Code == btcjson.ErrRPCInvalidAddressOrKey:
		return fmt.Errorf("%s: %w", method, backend.ErrUnknownTransaction)
	case rpcErr.Code == btcjson.ErrRPCInWarmup:
		return fmt.Errorf("%s: %w: node is warming up: %s", method, backend.ErrUnreachable, rpcErr.Message)
	}
	return &refusal{method: method, as: backend.ErrRejected, rpc: rpcErr}
}

// outputRefusal reports a sendmany refusal caused by one output rather than the wallet: an
// invalid address or amount, or an amount below the dust limit. Bitcoin Core answers dust with
// "Transaction amount too small" under the insufficient-funds code (-6), btcwallet with
// "transaction output is dust" under an internal error code, so the message decides.
func outputRefusal(e *btcjson.RPCError) bool {
	msg := strings.ToLower(e.Message)
	return e.Code == btcjson.ErrRPCInvalidAddressOrKey ||
		strings.Contains(msg, "dust") || strings.Contains(msg, "amount too small") || strings.Contains(msg, "amount out of range") ||
		strings.Contains(msg, "invalid amount") || strings.Contains(msg, "invalid address")
}

// refusal is an RPC error the node answered: backend.ErrRejected, or backend.ErrOutputRefused
// for a payment refused because of one of its outputs, with the node's error kept for callers
// that tell one refusal from another (a block the node does not know, a transaction it has not,
// a change address btcwallet refused).
type refusal struct {
	method string
	as     error
	rpc    *btcjson.RPCError
}

func (r *refusal) Error() string {
	return fmt.Sprintf("%s: %v: %s (code %d)", r.method, r.as, r.rpc.Message, r.rpc.Code)
}

func (r *refusal) Unwrap() []error { return []error{r.as, r.rpc} }

// read calls a read-only method. A request that got no reply at all (the node down or
// restarting, or a kept-alive connection it closed as the request left) is sent again 0.5 s
// later, then 1 s, 1.5 s and so on (at most 5 s) after each failure, for as long as the caller's
// context and the configured timeout allow. A reply, even an error, is not retried, nor is a
// request the node has not answered in time: it is still the node's to finish.
func (c *Client) read(ctx context.Context, method string, result any, params ...any) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := c.call(ctx, method, result, params)
		if !errors.Is(err, errNoReply) {
			return err
		}
		retry := time.NewTimer(min(time.Duration(attempt)*readRetryInterval, readRetryMax))
		select {
		case <-ctx.Done():
			retry.Stop()
			return err
		case <-retry.C:
		}
	}
}

// The pauses between the attempts of a read that got no reply.
const (
	readRetryInterval = 500 * time.Millisecond
	readRetryMax      = 5 * time.Second
)

// errNoReply: the request got no reply (it may not have reached the node).
var errNoReply = errors.New("no reply")

func decode(method string, msg json.RawMessage, result any) error {
	if result == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	if err := dec.Decode(result); err != nil {
		return fmt.Errorf("%s: the node's reply does not parse: %w", method, err)
	}
	return nil
}

// post calls a method exactly once.
func (c *Client) post(ctx context.Context, method string, result any, params ...any) error {
	return c.postWith(ctx, c.opts.Timeout, method, result, params...)
}

// postWith is post with a given timeout (the unlock has its own).
func (c *Client) postWith(ctx context.Context, timeout time.Duration, method string, result any, params ...any) error {
	resp, err := c.request(ctx, timeout, method, params)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s: %w: reading the reply: %v", method, backend.ErrUnreachable, err)
	}
	var reply struct {
		Result json.RawMessage   `json:"result"`
		Error  *btcjson.RPCError `json:"error"`
	}
	if err := json.Unmarshal(data, &reply); err != nil {
		// Bitcoin Core answers RPC errors with HTTP 500 and a JSON body; anything else is the
		// server or a proxy failing.
		return fmt.Errorf("%s: %w: HTTP %d", method, backend.ErrUnreachable, resp.StatusCode)
	}
	if reply.Error != nil {
		return classify(method, reply.Error)
	}
	return decode(method, reply.Result, result)
}

// call posts a method once and reads the reply with fastjson: the listings, whose replies run to
// megabytes (see listjson.go), straight into result; any other result through encoding/json from
// the result's text, as small replies are.
func (c *Client) call(ctx context.Context, method string, result any, params []any) error {
	resp, err := c.request(ctx, c.opts.Timeout, method, params)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Read to its end, so the connection is kept for the next request.
	body, err := readReply(resp)
	if err != nil {
		return fmt.Errorf("%s: %w: reading the reply: %v", method, backend.ErrUnreachable, err)
	}
	into := result
	switch result.(type) {
	case listResult, streamedResult:
	default:
		into = anyResult{v: result}
	}
	p := c.parsers.Get()
	defer c.parsers.Put(p)
	rpcErr, err := decodeReply(p, body, into)
	switch {
	case err == nil && rpcErr != nil:
		return classify(method, rpcErr)
	case err == nil:
		return nil
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: %w: HTTP %d", method, backend.ErrUnreachable, resp.StatusCode)
	case cutShort(body):
		return fmt.Errorf("%s: %w: reading the reply: %v", method, backend.ErrUnreachable, io.ErrUnexpectedEOF)
	default:
		return fmt.Errorf("%s: the node's reply does not parse: %w", method, err)
	}
}

// request posts one JSON-RPC request; the caller reads and closes the reply within timeout (and
// ctx), after which the reply is closed under it.
//
// The request itself is not cancelled when the caller stops waiting: the node would go on
// working on it all the same (btcwallet holds every request while it catches up with its chain
// server), and only an open connection tells when it is done and its slot free again. It is
// cancelled after the slots' hold.
func (c *Client) request(ctx context.Context, timeout time.Duration, method string, params []any) (*http.Response, error) {
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "1.0", "id": c.ids.Add(1), "method": method, "params": params})
	if err != nil {
		return nil, err
	}
	wait, cancelWait := context.WithTimeout(ctx, timeout)
	slot, err := c.slots.acquire(wait, method)
	if err != nil {
		cancelWait()
		return nil, err
	}
	reqCtx, cancelReq := context.WithTimeout(context.WithoutCancel(ctx), c.slots.hold)
	finish := func() { cancelReq(); slot.done() }
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.postURL, bytes.NewReader(body))
	if err != nil {
		cancelWait()
		finish()
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(c.opts.User, c.opts.Password)
	type reply struct {
		resp *http.Response
		err  error
	}
	replied := make(chan reply, 1)
	go func() {
		resp, err := c.http.Do(req)
		replied <- reply{resp, err}
	}()
	var r reply
	select {
	case r = <-replied:
	case <-wait.Done():
		go func() {
			// Given up on: the reply, when it comes, is read to its end so the node is done.
			if r := <-replied; r.err == nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(r.resp.Body, 16<<20))
				r.resp.Body.Close()
			}
			finish()
		}()
		cancelWait()
		return nil, fmt.Errorf("%s: %w: %v", method, backend.ErrUnreachable, wait.Err())
	}
	if r.err != nil {
		cancelWait()
		finish()
		return nil, fmt.Errorf("%s: %w: %w: %v", method, backend.ErrUnreachable, errNoReply, r.err)
	}
	// Past the caller's bound, closing the reply ends a read that is still under way.
	stop := context.AfterFunc(wait, func() { r.resp.Body.Close() })
	r.resp.Body = &replyBody{ReadCloser: r.resp.Body, done: func() { stop(); cancelWait(); finish() }}
	if r.resp.StatusCode == http.StatusUnauthorized || r.resp.StatusCode == http.StatusForbidden {
		r.resp.Body.Close()
		return nil, fmt.Errorf("%s: %w: authentication failed (check the RPC user and password)", method, backend.ErrRejected)
	}
	return r.resp, nil
}

// replyBody frees its request's slot and timers when the reply is closed: the node has answered.
type replyBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *replyBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// NewAddress creates a receiving address. Bitcoin Core records the label; btcwallet has accounts,
// not labels, and receives into "default", the only account it sends from.
func (c *Client) NewAddress(ctx context.Context, label string) (string, error) {
	var addr string
	arg := label
	if c.opts.Flavor == Btcwallet {
		arg = "default"
	}
	// btcwallet v0.15 takes simnet base58 addresses that start "Sb1" for bech32 and refuses to
	// pay them, so a customer paying from such a wallet could not pay this one. Simnet only (no
	// other network's base58 prefix collides with its bech32 one): hand out the next address.
	// Sometimes it refuses to return such an address at all ("Invalid address or key: Sb1...",
	// having drawn it): the next call draws the one after.
	for attempt := 0; ; attempt++ {
		err := c.read(ctx, "getnewaddress", &addr, arg)
		retry := err == nil && sb1(addr) || c.refusedOwnChange(err, nil)
		if !retry || c.opts.Network != "simnet" || attempt == 10 {
			if err != nil {
				return "", err
			}
			break
		}
	}
	if err := coin.ValidateAddress(c.opts.Coin, c.opts.Network, addr); err != nil {
		return "", fmt.Errorf("getnewaddress: the node returned an address for another network: %w", err)
	}
	return addr, nil
}

type detail struct {
	Address  string      `json:"address"`
	Category string      `json:"category"`
	Amount   json.Number `json:"amount"`
	Vout     int32       `json:"vout"`
}

type walletTx struct {
	TxID          string      `json:"txid"`
	Confirmations int32       `json:"confirmations"`
	BlockHash     string      `json:"blockhash"`
	Fee           json.Number `json:"fee"`
	Details       []detail    `json:"details"`
	Hex           string      `json:"hex"`
	// WalletBlockHeight is Bitcoin Core's own word on the block's height (btcwallet has none).
	WalletBlockHeight int64 `json:"blockheight"`
	// blockHeight is the block's height on the node's best chain, once onChain has looked.
	blockHeight int64
	// listsinceblock entries carry one detail each, flattened into the entry.
	detail
}

func (c *Client) amount(method string, n json.Number) (amount.Amount, error) {
	if n == "" {
		return 0, nil
	}
	s := n.String()
	// Nodes print amounts with up to `decimals` places; an exponent ("1e-08") would be a node
	// quirk worth refusing loudly rather than guessing.
	a, err := amount.Parse(strings.TrimPrefix(s, "-"), c.decimals)
	if err != nil {
		return 0, fmt.Errorf("%s: amount %s from the node: %w", method, s, err)
	}
	return a, nil
}

// convert builds a Transaction from a wallet transaction's details, after onChain has put its
// block on the node's chain.
func (c *Client) convert(method string, t walletTx, details []detail) (backend.Transaction, error) {
	out := backend.Transaction{TxID: t.TxID, Confirmations: t.Confirmations, BlockHash: t.BlockHash}
	if out.Confirmations < 0 {
		// Bitcoin Core: conflicted with a transaction that many blocks deep.
		out.Confirmations, out.Conflicted = -1, true
	}
	if out.Confirmations > 0 {
		out.BlockHeight = t.blockHeight
	}
	fee, err := c.amount(method, t.Fee)
	if err != nil {
		return backend.Transaction{}, err
	}
	out.Fee = fee
	for _, d := range details {
		switch d.Category {
		case "receive":
			a, err := c.amount(method, d.Amount)
			if err != nil {
				return backend.Transaction{}, err
			}
			out.Received = append(out.Received, backend.Output{Index: d.Vout, Address: d.Address, Amount: a})
		case "send":
			out.Sent = true
		}
	}
	return out, nil
}

// Transaction looks up a wallet transaction and checks the wallet's word against the node's
// chain: where its block stands, and, when it is not mined, whether it can still be.
func (c *Client) Transaction(ctx context.Context, txid string) (backend.Transaction, error) {
	if !backend.ValidTxID(txid) {
		return backend.Transaction{}, backend.ErrNotATxID(txid)
	}
	// Bitcoin Core's wallet runs in the node's process and counts confirmations (negative for a
	// conflict) on the node's own chain, with the block's height: one call, taken as it is.
	// btcwallet counts confirmations from its own sync state, which can hold a block the node
	// left: its height is read first, to put the transaction's block where its numbers claim.
	core := c.opts.Flavor == BitcoinCore
	var walletHeight int64
	if !core {
		var err error
		if walletHeight, err = c.walletHeight(ctx); err != nil {
			return backend.Transaction{}, err
		}
	}
	var t walletTx
	if err := c.read(ctx, "gettransaction", &t, txid); err != nil {
		return backend.Transaction{}, err
	}
	if t.TxID == "" {
		t.TxID = txid
	}
	if err := c.onChain(ctx, places{}, &t, walletHeight-int64(t.Confirmations)+1); err != nil {
		return backend.Transaction{}, err
	}
	conflicted := false
	if !core && t.Confirmations == 0 {
		var err error
		if conflicted, err = c.unmined(ctx, &t); err != nil {
			return backend.Transaction{}, fmt.Errorf("looking for %s on the node's chain: %w", txid, err)
		}
	}
	out, err := c.convert("gettransaction", t, t.Details)
	if err != nil {
		return backend.Transaction{}, err
	}
	if conflicted {
		out.Confirmations, out.Conflicted = -1, true
	}
	return out, nil
}

// walletHeight is the height the wallet counts its confirmations from.
func (c *Client) walletHeight(ctx context.Context) (int64, error) {
	var h int64
	err := c.read(ctx, "getblockcount", &h)
	return h, err
}

// Since lists wallet transactions since a block with one listsinceblock, and resumes from the
// block the wallet says the listing ends at (lastblock): the listing covers at least that block,
// so nothing mined meanwhile is skipped, and a block listed twice is booked once. The height of
// that block is asked only when it is not the block the previous listing ended at, so an idle
// poll costs the backend one call.
func (c *Client) Since(ctx context.Context, blockHash string) ([]backend.Transaction, backend.Tip, error) {
	res, err := c.listSince(ctx, blockHash)
	if err != nil {
		return nil, backend.Tip{}, err
	}
	tip, err := c.tipAt(ctx, res.LastBlock)
	if err != nil {
		return nil, backend.Tip{}, err
	}
	txs, err := c.collect(ctx, res.Transactions, tip)
	return txs, tip, err
}

// tipAt is the tip the wallet's listing ended at: its block, with the height from the node.
func (c *Client) tipAt(ctx context.Context, hash string) (backend.Tip, error) {
	c.tipMu.Lock()
	last := c.lastTip
	c.tipMu.Unlock()
	if hash != "" && hash == last.Hash {
		return last, nil
	}
	var tip backend.Tip
	if hash == "" {
		// A wallet that does not say where its listing ends: the tip, read after the listing,
		// is the block to resume from.
		var err error
		if tip, err = c.Tip(ctx); err != nil {
			return backend.Tip{}, err
		}
	} else {
		var hdr struct {
			Height int64 `json:"height"`
		}
		if err := c.read(ctx, "getblockheader", &hdr, hash, true); err != nil {
			return backend.Tip{}, fmt.Errorf("the height of the listing's last block %s: %w", hash, err)
		}
		tip = backend.Tip{Height: hdr.Height, Hash: hash}
	}
	c.tipMu.Lock()
	c.lastTip = tip
	c.tipMu.Unlock()
	return tip, nil
}

// listing is listsinceblock's answer.
type listing struct {
	Transactions []walletTx `json:"transactions"`
	LastBlock    string     `json:"lastblock"`
}

func (c *Client) listSince(ctx context.Context, blockHash string) (listing, error) {
	var res listing
	var params []any
	if blockHash != "" {
		params = append(params, blockHash)
	}
	err := c.read(ctx, "listsinceblock", &res, params...)
	return res, err
}

func (c *Client) since(ctx context.Context, blockHash string, tip backend.Tip) ([]backend.Transaction, error) {
	res, err := c.listSince(ctx, blockHash)
	if err != nil {
		return nil, err
	}
	return c.collect(ctx, res.Transactions, tip)
}

// collect turns a listing into Transactions, tip being the block it was listed to.
func (c *Client) collect(ctx context.Context, entries []walletTx, tip backend.Tip) ([]backend.Transaction, error) {
	col := newCollector(c, "listsinceblock", tip.Height, len(entries))
	col.adopt(entries)
	return col.finish(ctx)
}

// collector turns wallet listing entries, one per transaction detail, into Transactions, with
// each block checked on the node's chain once.
//
// It keeps the entries where they are and links them by index: a transaction is its first
// entry, and each entry leads to the next of the same transaction. Copying each entry with a
// slice of its details, and the transactions that pay the wallet once more for the chain check,
// made Since allocate 2.8 KB a listing entry where it now allocates 1.6 KB (a scratch test on
// 100,000 entries), and a listing of the whole history has no bound.
type collector struct {
	c         *Client
	method    string
	tipHeight int64
	byTx      map[string]int32
	details   map[detailKey]bool
	entries   []walletTx
	// txs holds each transaction's first entry; last, its last entry so far (while adding).
	txs, last []int32
	// next is, for each entry, the next entry of its transaction, or -1.
	next []int32
}

// detailKey names one entry of a wallet listing: a transaction's output, received or sent.
type detailKey struct {
	txid, category string
	vout           int32
}

// newCollector makes a collector for about n entries.
func newCollector(c *Client, method string, tipHeight int64, n int) *collector {
	return &collector{c: c, method: method, tipHeight: tipHeight, byTx: make(map[string]int32, n), details: make(map[detailKey]bool, n),
		txs: make([]int32, 0, n), last: make([]int32, 0, n), next: make([]int32, 0, n)}
}

// add takes a copy of e, an entry of a page that is not kept.
func (col *collector) add(e walletTx) {
	col.entries = append(col.entries, e)
	col.link(int32(len(col.entries) - 1))
}

// adopt takes a whole listing's entries as they are, without copying them; nothing else may
// change them.
func (col *collector) adopt(entries []walletTx) {
	col.entries = entries
	for i := range entries {
		col.link(int32(i))
	}
}

// link puts entry i with its transaction's other entries.
func (col *collector) link(i int32) {
	col.next = append(col.next, -1)
	e := &col.entries[i]
	// A paged listing can show an entry twice when the wallet gains entries between pages.
	key := detailKey{e.TxID, e.Category, e.Vout}
	if col.details[key] {
		return
	}
	col.details[key] = true
	t, known := col.byTx[e.TxID]
	if !known {
		col.byTx[e.TxID] = int32(len(col.txs))
		col.txs, col.last = append(col.txs, i), append(col.last, i)
		return
	}
	col.next[col.last[t]], col.last[t] = i, i
}

// finish checks the blocks of the transactions that pay the wallet on the node's chain and
// converts every transaction. Only received outputs are booked, so the blocks of the wallet's
// other entries (its own sends, a miner's coinbase outputs: a block each) are not looked up;
// those transactions keep the wallet's word.
func (col *collector) finish(ctx context.Context) ([]backend.Transaction, error) {
	// What finding duplicates took is not needed any more; dropped now, it is not held beside
	// the Transactions made below (a listing of the whole history makes them by the 100,000).
	col.byTx, col.details, col.last = nil, nil, nil
	seen := places{}
	receives := make([]bool, len(col.txs))
	var paying []*walletTx
	for k, first := range col.txs {
		for i := first; i >= 0; i = col.next[i] {
			if col.entries[i].Category == "receive" {
				receives[k] = true
				paying = append(paying, &col.entries[first])
				break
			}
		}
	}
	col.c.placeOnMainChain(ctx, seen, paying, col.tipHeight)
	paying = nil
	out := make([]backend.Transaction, 0, len(col.txs))
	var details []detail // one transaction's at a time
	for k, first := range col.txs {
		t := col.entries[first]
		if receives[k] {
			if err := col.c.onChain(ctx, seen, &t, col.tipHeight-int64(t.Confirmations)+1); err != nil {
				return nil, err
			}
		}
		details = details[:0]
		for i := first; i >= 0; i = col.next[i] {
			details = append(details, col.entries[i].detail)
		}
		tx, err := col.c.convert(col.method, t, details)
		if err != nil {
			return nil, err
		}
		out = append(out, tx)
	}
	return out, nil
}

// recentPage is how many entries one listtransactions call reads.
const recentPage = 500

// Recent lists the wallet's transactions from listtransactions, newest first, a page at a time,
// back to those mined at downToHeight. It is the way around a listsinceblock that fails:
// btcwallet's can fail on every call after some double spends ("missing transaction ... for
// block"), and deposits must still be seen.
func (c *Client) Recent(ctx context.Context, downToHeight int64) ([]backend.Transaction, backend.Tip, error) {
	tip, err := c.Tip(ctx)
	if err != nil {
		return nil, backend.Tip{}, err
	}
	col := newCollector(c, "listtransactions", tip.Height, recentPage)
	for skip := 0; ; skip += recentPage {
		var entries walletTxs
		if err := c.read(ctx, "listtransactions", &entries, "*", recentPage, skip); err != nil {
			return nil, tip, err
		}
		older := false
		for _, e := range entries {
			if e.Confirmations > 0 && tip.Height-int64(e.Confirmations)+1 < downToHeight {
				older = true
				continue
			}
			col.add(e)
		}
		if older || len(entries) < recentPage {
			txs, err := col.finish(ctx)
			return txs, tip, err
		}
	}
}

// Scan lists the wallet's transactions in blocks from fromHeight on with one listsinceblock (the
// wallet's own index; a node has no cheaper way to ask) and hands them over in height order, a
// window of blocks at a time, then the unconfirmed ones.
func (c *Client) Scan(ctx context.Context, fromHeight int64, visit func(backend.ScanBatch) error) (backend.Tip, error) {
	tip, err := c.Tip(ctx)
	if err != nil {
		return backend.Tip{}, err
	}
	if fromHeight < 0 {
		fromHeight = 0
	}
	if fromHeight > tip.Height {
		return tip, fmt.Errorf("%w: rescan from height %d is above the tip %d", backend.ErrRejected, fromHeight, tip.Height)
	}
	after := ""
	if fromHeight > 0 {
		if err := c.read(ctx, "getblockhash", &after, fromHeight-1); err != nil {
			return tip, err
		}
	}
	txs, err := c.since(ctx, after, tip)
	if err != nil {
		return tip, err
	}
	return tip, backend.ScanInWindows(txs, fromHeight, tip.Height, backend.ScanBatchOutputs, visit)
}

// Tip is the wallet's best block.
func (c *Client) Tip(ctx context.Context) (backend.Tip, error) {
	var height int64
	if err := c.read(ctx, "getblockcount", &height); err != nil {
		return backend.Tip{}, err
	}
	var hash string
	if err := c.read(ctx, "getblockhash", &hash, height); err != nil {
		return backend.Tip{}, err
	}
	return backend.Tip{Height: height, Hash: hash}, nil
}

// SendMany pays outputs in one transaction. It unlocks an encrypted wallet when needed (see
// unlock) and sends no comment (btcwallet refuses them).
func (c *Client) SendMany(ctx context.Context, outputs map[string]amount.Amount) (string, error) {
	if len(outputs) == 0 {
		return "", errors.New("sendmany: nothing to send")
	}
	amounts := make(map[string]json.Number, len(outputs))
	for addr, a := range outputs {
		if a <= 0 {
			return "", fmt.Errorf("sendmany: amount for %s must be positive", addr)
		}
		if err := coin.ValidateAddress(c.opts.Coin, c.opts.Network, addr); err != nil {
			return "", fmt.Errorf("sendmany: %w: %v", backend.ErrOutputRefused, err)
		}
		amounts[addr] = json.Number(a.Format(c.decimals))
	}
	if err := c.unlock(ctx, false); err != nil {
		return "", err
	}
	from := ""
	if c.opts.Flavor == Btcwallet {
		from = "default"
	}
	var txid string
	err := c.post(ctx, "sendmany", &txid, from, amounts, 1)
	if code, isRPC := rpcCode(err); isRPC && code == int(btcjson.ErrRPCWalletUnlockNeeded) && c.opts.WalletPassphrase != "" {
		// Locked before our window ended (someone ran walletlock, or the wallet restarted): the
		// refusal paid nothing, so unlock and ask once more.
		if err := c.unlock(ctx, true); err != nil {
			return "", err
		}
		err = c.post(ctx, "sendmany", &txid, from, amounts, 1)
	}
	if c.refusedOwnChange(err, outputs) {
		// The refusal paid nothing, and the wallet would draw the same change address on every
		// attempt: move it past that address and ask once more.
		if err := c.skipChangeAddress(ctx); err != nil {
			return "", err
		}
		err = c.post(ctx, "sendmany", &txid, from, amounts, 1)
	}
	if err != nil {
		return "", err
	}
	if !backend.ValidTxID(txid) {
		return "", fmt.Errorf("sendmany: the node answered %q, not a transaction id", txid)
	}
	return txid, nil
}

// refusedOwnChange reports btcwallet v0.15 refusing its own change address (or, with no outputs,
// any address of its own it drew, as getnewaddress can): on simnet btcd reads base58 addresses
// that start "Sb1" as bech32, and refuses the wallet's request to watch one it drew with
// "Invalid address or key: <address>" (code -5). getnewaddress and getrawchangeaddress pass that
// refusal on as it is; sendmany wraps it in an internal error, code -32603 and the message
// "-5: Invalid address or key: <address>" (recorded from btcwallet v0.15.1). Such a refusal says
// nothing about the outputs, and must not be taken for an output refusal (the broadcaster would
// set sends aside for review); an output that is itself such an address is refused as usual.
func (c *Client) refusedOwnChange(err error, outputs map[string]amount.Amount) bool {
	var rpcErr *btcjson.RPCError
	if c.opts.Flavor != Btcwallet || c.opts.Network != "simnet" || !errors.As(err, &rpcErr) {
		return false
	}
	msg := rpcErr.Message
	switch rpcErr.Code {
	case btcjson.ErrRPCInvalidAddressOrKey:
	case btcjson.ErrRPCInternal.Code:
		var wrapped bool
		if msg, wrapped = strings.CutPrefix(msg, fmt.Sprintf("%d: ", btcjson.ErrRPCInvalidAddressOrKey)); !wrapped {
			return false
		}
	default:
		return false
	}
	addr, ok := strings.CutPrefix(msg, "Invalid address or key: ")
	if !ok || !sb1(addr) {
		return false
	}
	_, isOutput := outputs[addr]
	return !isOutput
}

// sb1 says whether a simnet address has the prefix btcwallet v0.15 takes for bech32.
func sb1(addr string) bool { return strings.HasPrefix(strings.ToLower(addr), "sb1") }

// skipChangeAddress moves btcwallet past a change address it refused. A refused payment does not
// keep the change address it drew; getrawchangeaddress does, even though it then fails to
// return it for the same reason (seen against btcwallet v0.15, paying until the refusal came).
func (c *Client) skipChangeAddress(ctx context.Context) error {
	err := c.post(ctx, "getrawchangeaddress", nil, "default")
	var rpcErr *btcjson.RPCError
	if err != nil && !(errors.As(err, &rpcErr) && rpcErr.Code == btcjson.ErrRPCInvalidAddressOrKey) {
		return fmt.Errorf("sendmany: moving the wallet past a change address it refused: %w", err)
	}
	return nil
}

// unlockWindow is how long one walletpassphrase keeps the wallet unlocked. It covers a broadcast
// and the passes after it, so a busy payout queue unlocks once per window instead of on every
// pass (scrypt is slow on a loaded machine), and the wallet locks itself when it ends rather
// than staying unlocked for hours.
const unlockWindow = 5 * time.Minute

// unlockTimeout bounds one walletpassphrase. It is its own bound, not the read timeout: under
// load btcwallet's scrypt took more than 10 s, and a broadcast must not stall on that.
const unlockTimeout = 2 * time.Minute

// unlock unlocks an encrypted wallet unless our last unlock still has a minute to run; force
// unlocks anyway (the wallet said it is locked).
func (c *Client) unlock(ctx context.Context, force bool) error {
	if c.opts.WalletPassphrase == "" {
		return nil
	}
	c.unlockMu.Lock()
	defer c.unlockMu.Unlock()
	if !force && time.Until(c.unlockedUntil) > time.Minute {
		return nil
	}
	started := time.Now()
	if err := c.postWith(ctx, max(c.opts.Timeout, unlockTimeout), "walletpassphrase", nil, c.opts.WalletPassphrase, int(unlockWindow/time.Second)); err != nil {
		c.unlockedUntil = time.Time{}
		return fmt.Errorf("unlocking the wallet: %w", err)
	}
	c.unlockedUntil = started.Add(unlockWindow)
	return nil
}

// recentSendsWindow is how many wallet entries RecentSends reads: the broadcaster asks about the
// last few minutes, and a wallet does not make a thousand payments in that time.
const recentSendsWindow = 1000

// RecentSends lists the wallet's sends since a time, from listtransactions. The wallet's clock
// may differ from ours; the caller passes a time with margin.
func (c *Client) RecentSends(ctx context.Context, since time.Time) ([]backend.Send, error) {
	var entries sendEntries
	if err := c.read(ctx, "listtransactions", &entries, "*", recentSendsWindow, 0); err != nil {
		return nil, err
	}
	byTx := map[string]*backend.Send{}
	var order []string
	for _, e := range entries {
		if e.Category != "send" || time.Unix(e.Time, 0).Before(since) {
			continue
		}
		a, err := c.amount("listtransactions", e.Amount)
		if err != nil {
			return nil, err
		}
		s, ok := byTx[e.TxID]
		if !ok {
			s = &backend.Send{TxID: e.TxID, Outputs: map[string]amount.Amount{}, Time: time.Unix(e.Time, 0)}
			byTx[e.TxID] = s
			order = append(order, e.TxID)
		}
		if s.Outputs[e.Address], err = s.Outputs[e.Address].Add(a); err != nil {
			return nil, err
		}
	}
	out := make([]backend.Send, 0, len(order))
	for _, id := range order {
		out = append(out, *byTx[id])
	}
	return out, nil
}
