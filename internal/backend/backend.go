// Package backend defines what the helper needs from the service that holds its coins: a
// bitcoind-compatible wallet, block.io, blockchain.info, or the null simulator. The backend is the
// truth about transactions; notifications only say when to ask it.
package backend

import (
	"context"
	"errors"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// Errors callers can test for with errors.Is.
var (
	// ErrUnreachable: the backend could not be asked (connection refused, timeout, 5xx). Retry later.
	ErrUnreachable = errors.New("backend unreachable")
	// ErrUnknownTransaction: the backend's wallet has no such transaction (a notification about
	// someone else's txid, or a forged one).
	ErrUnknownTransaction = errors.New("transaction not in the backend's wallet")
	// ErrInsufficientFunds: the backend's wallet cannot pay the send.
	ErrInsufficientFunds = errors.New("backend wallet has insufficient funds")
	// ErrRejected: the backend refused the request for a reason retrying will not fix.
	ErrRejected = errors.New("backend rejected the request")
)

// Output is one output of a wallet transaction that pays one of the wallet's addresses.
type Output struct {
	Index   int32
	Address string
	Amount  ledger.Amount
}

// Transaction is what the backend knows of a wallet transaction.
type Transaction struct {
	TxID string
	// Confirmations: 0 unconfirmed; -1 when the backend considers it conflicted or gone
	// (double-spent, reorganised out).
	Confirmations int32
	BlockHash     string
	BlockHeight   int64
	// Received lists outputs paying the wallet; Sent is true when the wallet paid for it.
	Received []Output
	Sent     bool
	// Fee is what the wallet paid in fees, for sends.
	Fee ledger.Amount
}

// Tip is a block: where catch-up resumes.
type Tip struct {
	Height int64
	Hash   string
}

// Send is a payment the wallet made, as the wallet recorded it.
type Send struct {
	TxID    string
	Outputs map[string]ledger.Amount
	Time    time.Time
}

// Backend is the service holding the asset's coins.
type Backend interface {
	// NewAddress creates a receiving address in the backend's wallet.
	NewAddress(ctx context.Context, label string) (string, error)
	// Transaction looks one wallet transaction up.
	Transaction(ctx context.Context, txid string) (Transaction, error)
	// Since lists the wallet transactions seen since the block with the given hash ("" for the
	// wallet's whole history) and returns the tip to resume from.
	Since(ctx context.Context, blockHash string) ([]Transaction, Tip, error)
	// SendMany pays several addresses in one transaction, exactly once: it never retries on its
	// own, because a send whose answer was lost may still have gone out.
	SendMany(ctx context.Context, outputs map[string]ledger.Amount) (txid string, err error)
	// Tip is the best block.
	Tip(ctx context.Context) (Tip, error)
	// RecentSends lists the wallet's own record of the payments it made since a time. The
	// broadcaster uses it to learn whether a send whose answer was lost went out.
	RecentSends(ctx context.Context, since time.Time) ([]Send, error)
}
