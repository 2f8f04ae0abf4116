// Package null is a simulated backend for development and tests: a wallet and a chain that live
// in memory (and, in the helper, in one row of the ledger database so they survive restarts). It
// hands out valid-looking addresses for the configured network, accepts sends and gives them
// txids, and lets a test or a developer inject incoming payments, blocks, double-spends and
// outages through Handler. No coin is real; it says so in its logs and status, and the CRD refuses
// it on mainnet.
package null

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/amount"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
)

// Fee is what every simulated send pays.
const Fee amount.Amount = 1000

// Store keeps the simulator's state between runs. nil keeps it in memory only.
type Store interface {
	Load(ctx context.Context) ([]byte, error) // nil, nil when there is none yet
	Save(ctx context.Context, state []byte) error
}

// Options configure a Backend.
type Options struct {
	Coin, Network string
	Store         Store
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

type output struct {
	Address string        `json:"address"`
	Amount  amount.Amount `json:"amount"`
}

type tx struct {
	TxID string `json:"txid"`
	// Height of the block holding it; 0 while unconfirmed.
	Height     int64     `json:"height"`
	Conflicted bool      `json:"conflicted,omitempty"`
	Sent       bool      `json:"sent,omitempty"`
	Fee        int64     `json:"fee,omitempty"`
	Outputs    []output  `json:"outputs"`
	Time       time.Time `json:"time"`
}

type state struct {
	// Chain makes block hashes and txids unique to this simulator's life: a simulator whose
	// state was lost does not answer for the old one's blocks.
	Chain     string            `json:"chain"`
	Seq       uint64            `json:"seq"`
	Height    int64             `json:"height"`
	Addresses map[string]string `json:"addresses"`
	Txs       []*tx             `json:"txs"`
	Down      bool              `json:"down,omitempty"`
}

// Backend is the simulator.
type Backend struct {
	opts     Options
	decimals int
	mu       sync.Mutex
	st       state
	byID     map[string]*tx
}

var _ backend.Backend = (*Backend)(nil)

// New loads (or starts) a simulator.
func New(ctx context.Context, opts Options) (*Backend, error) {
	k, err := coin.LookupNetwork(opts.Coin, opts.Network)
	if err != nil {
		return nil, err
	}
	if opts.Network == "mainnet" {
		return nil, errors.New("the null backend is a simulator and refuses mainnet")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Backend{opts: opts, decimals: k.Decimals, byID: map[string]*tx{}}
	var raw []byte
	if opts.Store != nil {
		if raw, err = opts.Store.Load(ctx); err != nil {
			return nil, fmt.Errorf("loading the simulator's state: %w", err)
		}
	}
	if raw == nil {
		chain := make([]byte, 8)
		if _, err := rand.Read(chain); err != nil {
			return nil, err
		}
		b.st = state{Chain: hex.EncodeToString(chain), Height: 100, Addresses: map[string]string{}}
		if err := b.save(ctx); err != nil {
			return nil, err
		}
	} else if err := json.Unmarshal(raw, &b.st); err != nil {
		return nil, fmt.Errorf("the simulator's saved state does not parse: %w", err)
	}
	if b.st.Addresses == nil {
		b.st.Addresses = map[string]string{}
	}
	for _, t := range b.st.Txs {
		b.byID[t.TxID] = t
	}
	return b, nil
}

func (b *Backend) save(ctx context.Context) error {
	if b.opts.Store == nil {
		return nil
	}
	raw, err := json.Marshal(b.st)
	if err != nil {
		return err
	}
	if err := b.opts.Store.Save(ctx, raw); err != nil {
		return fmt.Errorf("%w: saving the simulator's state: %v", backend.ErrUnreachable, err)
	}
	return nil
}

// mutate runs f on the state and saves it; when the save fails the state is put back, so a
// caller told "failed" can rely on nothing having happened.
func (b *Backend) mutate(ctx context.Context, f func() error) error {
	before, err := json.Marshal(b.st)
	if err != nil {
		return err
	}
	if err := f(); err != nil {
		return err
	}
	if err := b.save(ctx); err != nil {
		var old state
		_ = json.Unmarshal(before, &old)
		b.st = old
		b.byID = map[string]*tx{}
		for _, t := range b.st.Txs {
			b.byID[t.TxID] = t
		}
		return err
	}
	return nil
}

func (b *Backend) up() error {
	if b.st.Down {
		return fmt.Errorf("%w: the simulator is in a simulated outage", backend.ErrUnreachable)
	}
	return nil
}

func (b *Backend) digest(kind string, n uint64) []byte {
	h := sha256.New()
	h.Write([]byte(kind + "/" + b.st.Chain + "/"))
	_ = binary.Write(h, binary.BigEndian, n)
	return h.Sum(nil)
}

func (b *Backend) blockHash(height int64) string {
	return hex.EncodeToString(b.digest("block", uint64(height)))
}

func (b *Backend) nextTxID() string {
	b.st.Seq++
	return hex.EncodeToString(b.digest("tx", b.st.Seq))
}

// NewAddress makes a segwit (P2WPKH) address where the network has them, else P2PKH.
func (b *Backend) NewAddress(ctx context.Context, label string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.up(); err != nil {
		return "", err
	}
	var addr string
	err := b.mutate(ctx, func() error {
		b.st.Seq++
		program := b.digest("address", b.st.Seq)[:20]
		var err error
		addr, err = coin.EncodeAddress(b.opts.Coin, b.opts.Network, program)
		if err != nil {
			return err
		}
		b.st.Addresses[addr] = label
		return nil
	})
	return addr, err
}

func (b *Backend) view(t *tx) backend.Transaction {
	out := backend.Transaction{TxID: t.TxID, Sent: t.Sent, Fee: amount.Amount(t.Fee)}
	switch {
	case t.Conflicted:
		out.Confirmations, out.Conflicted = -1, true
	case t.Height > 0:
		out.Confirmations = int32(b.st.Height - t.Height + 1)
		out.BlockHeight = t.Height
		out.BlockHash = b.blockHash(t.Height)
	}
	for i, o := range t.Outputs {
		if _, ours := b.st.Addresses[o.Address]; ours {
			out.Received = append(out.Received, backend.Output{Index: int32(i), Address: o.Address, Amount: o.Amount})
		}
	}
	return out
}

// Transaction looks one simulated transaction up.
func (b *Backend) Transaction(_ context.Context, txid string) (backend.Transaction, error) {
	if !backend.ValidTxID(txid) {
		return backend.Transaction{}, backend.ErrNotATxID(txid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.up(); err != nil {
		return backend.Transaction{}, err
	}
	t, ok := b.byID[txid]
	if !ok {
		return backend.Transaction{}, backend.ErrUnknownTransaction
	}
	return b.view(t), nil
}

func (b *Backend) heightOf(hash string) (int64, bool) {
	// Hashes are derived from heights; a simulated chain is short enough to search.
	for h := b.st.Height; h >= 0; h-- {
		if b.blockHash(h) == hash {
			return h, true
		}
	}
	return 0, false
}

// after lists transactions in blocks above height, unconfirmed and conflicted ones included.
func (b *Backend) after(height int64) []backend.Transaction {
	var out []backend.Transaction
	for _, t := range b.st.Txs {
		if t.Height == 0 || t.Height > height {
			out = append(out, b.view(t))
		}
	}
	return out
}

func (b *Backend) tip() backend.Tip {
	return backend.Tip{Height: b.st.Height, Hash: b.blockHash(b.st.Height)}
}

// Since lists transactions after the block blockHash ("" for all).
func (b *Backend) Since(_ context.Context, blockHash string) ([]backend.Transaction, backend.Tip, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.up(); err != nil {
		return nil, backend.Tip{}, err
	}
	height := int64(-1)
	if blockHash != "" {
		h, ok := b.heightOf(blockHash)
		if !ok {
			return nil, backend.Tip{}, fmt.Errorf("%w: block %s is not in the simulated chain", backend.ErrRejected, blockHash)
		}
		height = h
	}
	return b.after(height), b.tip(), nil
}

// Scan hands the history from fromHeight to the tip over in windows of blocks.
func (b *Backend) Scan(_ context.Context, fromHeight int64, visit func(backend.ScanBatch) error) (backend.Tip, error) {
	b.mu.Lock()
	if err := b.up(); err != nil {
		b.mu.Unlock()
		return backend.Tip{}, err
	}
	tip := b.tip()
	fromHeight = max(fromHeight, 0)
	if fromHeight > tip.Height {
		b.mu.Unlock()
		return tip, fmt.Errorf("%w: rescan from height %d is above the tip %d", backend.ErrRejected, fromHeight, tip.Height)
	}
	txs := b.after(fromHeight - 1)
	b.mu.Unlock()
	return tip, backend.ScanInWindows(txs, fromHeight, tip.Height, backend.ScanBatchOutputs, visit)
}

// Tip is the simulated best block.
func (b *Backend) Tip(context.Context) (backend.Tip, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.up(); err != nil {
		return backend.Tip{}, err
	}
	return b.tip(), nil
}

// balance is confirmed receipts less every send (confirmed or not) and its fee.
func (b *Backend) balance() amount.Amount {
	var sum amount.Amount
	for _, t := range b.st.Txs {
		if t.Conflicted {
			continue
		}
		if t.Sent {
			sum -= amount.Amount(t.Fee)
			for _, o := range t.Outputs {
				sum -= o.Amount
			}
		}
		if t.Height > 0 {
			for _, o := range t.Outputs {
				if _, ours := b.st.Addresses[o.Address]; ours {
					sum += o.Amount
				}
			}
		}
	}
	return sum
}

// SendMany records a send. Addresses must be valid for the network; the wallet must hold the
// amounts plus Fee in confirmed coins.
func (b *Backend) SendMany(ctx context.Context, outputs map[string]amount.Amount) (string, error) {
	if len(outputs) == 0 {
		return "", fmt.Errorf("%w: a send needs at least one output", backend.ErrRejected)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.up(); err != nil {
		return "", err
	}
	total := Fee
	t := &tx{Sent: true, Fee: int64(Fee), Time: b.opts.Now().UTC()}
	for addr, amount := range outputs {
		if err := coin.ValidateAddress(b.opts.Coin, b.opts.Network, addr); err != nil {
			return "", fmt.Errorf("%w: %v", backend.ErrRejected, err)
		}
		if amount <= 0 {
			return "", fmt.Errorf("%w: amount %d to %s is not positive", backend.ErrRejected, amount, addr)
		}
		var err error
		if total, err = total.Add(amount); err != nil {
			return "", fmt.Errorf("%w: %v", backend.ErrRejected, err)
		}
		t.Outputs = append(t.Outputs, output{Address: addr, Amount: amount})
	}
	if have := b.balance(); have < total {
		return "", fmt.Errorf("%w: the simulated wallet holds %s, the send needs %s", backend.ErrInsufficientFunds,
			have.Format(b.decimals), total.Format(b.decimals))
	}
	err := b.mutate(ctx, func() error {
		t.TxID = b.nextTxID()
		b.st.Txs = append(b.st.Txs, t)
		b.byID[t.TxID] = t
		return nil
	})
	if err != nil {
		return "", err
	}
	return t.TxID, nil
}

// RecentSends lists the sends made since a time.
func (b *Backend) RecentSends(_ context.Context, since time.Time) ([]backend.Send, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.up(); err != nil {
		return nil, err
	}
	var out []backend.Send
	for _, t := range b.st.Txs {
		if !t.Sent || t.Time.Before(since) {
			continue
		}
		s := backend.Send{TxID: t.TxID, Time: t.Time, Outputs: map[string]amount.Amount{}}
		for _, o := range t.Outputs {
			s.Outputs[o.Address] += o.Amount
		}
		out = append(out, s)
	}
	return out, nil
}

// Receive injects an incoming payment from outside the wallet, unconfirmed.
func (b *Backend) Receive(ctx context.Context, outputs map[string]amount.Amount) (string, error) {
	if len(outputs) == 0 {
		return "", errors.New("a payment needs at least one output")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t := &tx{Time: b.opts.Now().UTC()}
	for addr, amount := range outputs {
		if err := coin.ValidateAddress(b.opts.Coin, b.opts.Network, addr); err != nil {
			return "", err
		}
		if amount <= 0 {
			return "", fmt.Errorf("amount to %s must be positive", addr)
		}
		t.Outputs = append(t.Outputs, output{Address: addr, Amount: amount})
	}
	err := b.mutate(ctx, func() error {
		t.TxID = b.nextTxID()
		b.st.Txs = append(b.st.Txs, t)
		b.byID[t.TxID] = t
		return nil
	})
	return t.TxID, err
}

// Mine adds blocks; the first holds every unconfirmed transaction.
func (b *Backend) Mine(ctx context.Context, blocks int) (backend.Tip, error) {
	if blocks < 1 || blocks > 10_000 {
		return backend.Tip{}, fmt.Errorf("blocks must be between 1 and 10000, got %d", blocks)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.mutate(ctx, func() error {
		first := b.st.Height + 1
		for _, t := range b.st.Txs {
			if t.Height == 0 && !t.Conflicted {
				t.Height = first
			}
		}
		b.st.Height += int64(blocks)
		return nil
	})
	return b.tip(), err
}

// Conflict marks a transaction double-spent: it drops out of its block, and the wallet reports
// it with -1 confirmations, as a node does after a reorg took it away.
func (b *Backend) Conflict(ctx context.Context, txid string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.byID[txid]
	if !ok {
		return backend.ErrUnknownTransaction
	}
	return b.mutate(ctx, func() error {
		t.Conflicted, t.Height = true, 0
		return nil
	})
}

// SetOutage makes every backend call fail as unreachable (down) or work again.
func (b *Backend) SetOutage(ctx context.Context, down bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mutate(ctx, func() error { b.st.Down = down; return nil })
}

// Summary is what the simulator reports about itself.
type Summary struct {
	Simulator    bool   `json:"simulator"`
	Coin         string `json:"coin"`
	Network      string `json:"network"`
	Height       int64  `json:"height"`
	Balance      string `json:"balance"`
	Addresses    int    `json:"addresses"`
	Transactions int    `json:"transactions"`
	Outage       bool   `json:"outage"`
}

// Summary describes the simulator's state.
func (b *Backend) Summary() Summary {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Summary{Simulator: true, Coin: b.opts.Coin, Network: b.opts.Network, Height: b.st.Height,
		Balance: b.balance().Format(b.decimals), Addresses: len(b.st.Addresses), Transactions: len(b.st.Txs), Outage: b.st.Down}
}
