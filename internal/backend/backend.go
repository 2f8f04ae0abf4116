// Package backend defines what the helper needs from the service that holds its coins: a
// bitcoind-compatible wallet, block.io, blockchain.info, or the null simulator. The backend is the
// truth about transactions; notifications only say when to ask it.
package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/amount"
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
	// ErrOutputRefused: the backend refused a send because of one of its outputs (an amount
	// below the dust limit, an address it will not pay). Nothing was paid; the other outputs
	// would be accepted on their own. It is also ErrRejected.
	ErrOutputRefused = fmt.Errorf("%w: an output was refused", ErrRejected)
)

// Output is one output of a wallet transaction that pays one of the wallet's addresses.
type Output struct {
	Index   int32
	Address string
	Amount  amount.Amount
}

// Transaction is what the backend knows of a wallet transaction.
type Transaction struct {
	TxID string
	// Confirmations: 0 unconfirmed; -1 when the backend considers it conflicted or gone
	// (double-spent, reorganised out).
	Confirmations int32
	// Conflicted: another transaction spending the same inputs is on the best chain, so this
	// one can never confirm. Confirmations is -1 then.
	Conflicted  bool
	BlockHash   string
	BlockHeight int64
	// Received lists outputs paying the wallet; Sent is true when the wallet paid for it.
	Received []Output
	Sent     bool
	// Fee is what the wallet paid in fees, for sends.
	Fee amount.Amount
}

// Tip is a block: where catch-up resumes.
type Tip struct {
	Height int64
	Hash   string
}

// Send is a payment the wallet made, as the wallet recorded it.
type Send struct {
	TxID    string
	Outputs map[string]amount.Amount
	Time    time.Time
}

// ScanBatch is one step of a rescan: the wallet transactions of a stretch of blocks (or of a page
// of an API's history) and how far the scan has come, in Unit ("blocks" or "pages").
type ScanBatch struct {
	Transactions []Transaction
	Done, Total  int64
	Unit         string
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
	SendMany(ctx context.Context, outputs map[string]amount.Amount) (txid string, err error)
	// Tip is the best block.
	Tip(ctx context.Context) (Tip, error)
	// Scan walks the wallet's history from a block height (0: from its beginning) to the tip,
	// handing visit one batch at a time in order, so a long rescan can show progress and stop
	// between batches. It returns the tip the scan ran to. A height above the tip is
	// ErrRejected.
	Scan(ctx context.Context, fromHeight int64, visit func(ScanBatch) error) (Tip, error)
	// RecentSends lists the wallet's own record of the payments it made since a time. The
	// broadcaster uses it to learn whether a send whose answer was lost went out.
	RecentSends(ctx context.Context, since time.Time) ([]Send, error)
}

// RecentLister is a backend with a second way to list the wallet's transactions, for when Since
// fails for a reason other than an unknown cursor.
type RecentLister interface {
	// Recent lists the wallet's transactions mined at downToHeight or later, and the unconfirmed
	// ones, and returns the tip it listed to.
	Recent(ctx context.Context, downToHeight int64) ([]Transaction, Tip, error)
}

// ScanBatchOutputs is about how many outputs paying the wallet one rescan batch carries: each
// batch is booked in one ledger transaction.
const ScanBatchOutputs = 1000

// ScanInWindows hands txs (all from heights fromHeight..tipHeight, or unconfirmed) to visit in
// height order, in batches of whole blocks that carry about perBatch outputs paying the wallet,
// with the unconfirmed and conflicted ones in the last batch. A backend whose history comes in one
// piece uses it to give a rescan its progress (each batch reports the blocks it covers) and the
// ledger transactions a size: a batch per block range would book an empty or nearly empty range
// in a transaction of its own, and most of a rescan's time would be their round trips.
func ScanInWindows(txs []Transaction, fromHeight, tipHeight int64, perBatch int, visit func(ScanBatch) error) error {
	perBatch = max(perBatch, 1)
	confirmed := make([]Transaction, 0, len(txs))
	var pending []Transaction
	for _, t := range txs {
		if t.Confirmations > 0 && t.BlockHeight > 0 {
			confirmed = append(confirmed, t)
		} else {
			pending = append(pending, t)
		}
	}
	slices.SortStableFunc(confirmed, func(a, b Transaction) int { return cmp.Compare(a.BlockHeight, b.BlockHeight) })
	total := tipHeight - fromHeight + 1
	for i := 0; ; {
		j, outputs := i, 0
		for j < len(confirmed) && (outputs < perBatch || confirmed[j].BlockHeight == confirmed[j-1].BlockHeight) {
			outputs += len(confirmed[j].Received)
			j++
		}
		batch := ScanBatch{Transactions: confirmed[i:j], Total: total, Unit: "blocks"}
		end := tipHeight
		if j < len(confirmed) {
			// Up to the block before the next batch's first; anything the tip-relative heights
			// put past the tip (a block mined meanwhile) goes with the last batch.
			end = min(confirmed[j].BlockHeight-1, tipHeight)
		} else {
			batch.Transactions = append(batch.Transactions, pending...)
		}
		batch.Done = end - fromHeight + 1
		if err := visit(batch); err != nil {
			return err
		}
		if j == len(confirmed) {
			return nil
		}
		i = j
	}
}

// ValidTxID says whether s is a transaction id: 64 hex digits.
func ValidTxID(s string) bool {
	return len(s) == 64 && strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}

// ErrNotATxID is the error for a malformed transaction id; it is never ErrUnknownTransaction,
// because nothing was looked up.
func ErrNotATxID(s string) error {
	return fmt.Errorf("%q is not a transaction id (64 hex digits)", s)
}
