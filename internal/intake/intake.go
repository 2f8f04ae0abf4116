// Package intake books deposits. Every wake-up (a walletnotify, a poll tick, a rescan) ends here,
// and nothing here believes the wake-up: transactions are looked up at the backend, outputs are
// booked only when they pay one of our receiving addresses, and booking is idempotent, so repeated
// or forged notifications change nothing.
package intake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/go-logr/logr"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// Result counts what a pass did.
type Result struct {
	// Seen: wallet transactions looked at. Booked: deposits new to the ledger. Updated: deposits
	// whose confirmations or credit changed. Credited/Uncredited: credits given and taken back.
	Seen, Booked, Updated, Credited, Uncredited int
}

func (r *Result) add(up ledger.DepositUpdate) {
	if up.New {
		r.Booked++
	} else if up.Changed {
		r.Updated++
	}
	if up.Credited {
		r.Credited++
	}
	if up.Uncredited {
		r.Uncredited++
	}
}

// Intake connects a backend to a ledger.
type Intake struct {
	ledger  *ledger.Ledger
	backend backend.Backend
	log     logr.Logger
	// One catch-up at a time: concurrent ones would only race for the same rows.
	catchUp sync.Mutex
}

// New returns an Intake.
func New(l *ledger.Ledger, b backend.Backend, log logr.Logger) *Intake {
	return &Intake{ledger: l, backend: b, log: log}
}

// book records every output of txs that pays us, in as few ledger transactions as the ledger
// allows (see ledger.RecordDeposits). It says, per transaction, whether it pays us and whether
// the ledger learnt of it now.
func (in *Intake) book(ctx context.Context, txs []backend.Transaction, r *Result) (ours, fresh []bool, err error) {
	var obs []ledger.Observation
	var of []int // the transaction of each observation
	for i, tx := range txs {
		for _, o := range observations(tx) {
			obs, of = append(obs, o), append(of, i)
		}
	}
	return in.record(ctx, obs, of, len(txs), r)
}

// observations are what tx says of each output paying the wallet.
func observations(tx backend.Transaction) []ledger.Observation {
	obs := make([]ledger.Observation, 0, len(tx.Received))
	for _, o := range tx.Received {
		obs = append(obs, ledger.Observation{
			TxID: tx.TxID, Output: o.Index, Address: o.Address, Amount: o.Amount,
			Confirmations: tx.Confirmations, BlockHash: tx.BlockHash, BlockHeight: tx.BlockHeight,
			Conflicted: tx.Conflicted,
		})
	}
	return obs
}

// record books observations, of[j] being the transaction (of n) observation j belongs to.
func (in *Intake) record(ctx context.Context, obs []ledger.Observation, of []int, n int, r *Result) (ours, fresh []bool, err error) {
	ours, fresh = make([]bool, n), make([]bool, n)
	ups, err := in.ledger.RecordDeposits(ctx, obs)
	// Updates of batches booked before an error are committed: they count either way.
	for j, up := range ups {
		if up.Ignored || up.Transaction.ID == 0 {
			continue // change of our own sends, an address the ledger does not hand out, or not booked
		}
		o := obs[j]
		ours[of[j]], fresh[of[j]] = true, fresh[of[j]] || up.New
		r.add(up)
		if up.Uncredited {
			in.log.Info("deposit lost confirmations and was taken back", "txid", o.TxID, "output", o.Output,
				"confirmations", o.Confirmations, "conflicted", o.Conflicted, "amount", o.Amount)
		} else if up.Changed && o.Conflicted {
			in.log.Info("deposit was double-spent; it will never be credited", "txid", o.TxID, "output", o.Output, "amount", o.Amount)
		}
	}
	return ours, fresh, err
}

// Notify handles a wake-up about one transaction id.
func (in *Intake) Notify(ctx context.Context, txid string) (Result, error) {
	var r Result
	tx, err := in.backend.Transaction(ctx, txid)
	if errors.Is(err, backend.ErrUnknownTransaction) {
		in.log.V(1).Info("notification for a transaction the wallet does not have; ignored", "txid", txid)
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("looking up %s: %w", txid, err)
	}
	r.Seen = 1
	_, _, err = in.book(ctx, []backend.Transaction{tx}, &r)
	return r, err
}

// CatchUp books what the wallet saw since the cursor, re-checks every deposit still followed but
// those the listing has just booked as mined, and moves the cursor. It is what the poll timer, start-up and every notification source's
// reconnect run. The re-check does not depend on the listing: a wallet whose listing breaks (as
// btcwallet's does after some double spends) must not freeze credits that are due.
func (in *Intake) CatchUp(ctx context.Context) (Result, error) {
	in.catchUp.Lock()
	defer in.catchUp.Unlock()
	var r Result
	mined := minedNow{}
	listErr := in.list(ctx, &r, mined)
	if errors.Is(listErr, backend.ErrUnreachable) {
		// Nothing to re-check with: each lookup would wait out its own timeout, and an outage
		// would be reported that much later.
		return r, listErr
	}
	if err := in.refreshOpen(ctx, &r, mined); err != nil {
		return r, errors.Join(listErr, err)
	}
	return r, listErr
}

// recentMargin is how many blocks below the cursor the fallback listing reaches: blocks the cursor
// passed may have been replaced by a reorganisation since.
const recentMargin = 100

// list books the wallet's transactions since the cursor, adds those mined to mined, and moves the
// cursor to the tip.
func (in *Intake) list(ctx context.Context, r *Result, mined minedNow) error {
	cur, ok, err := in.ledger.Cursor(ctx)
	if err != nil {
		return fmt.Errorf("reading the cursor: %w", err)
	}
	from := ""
	if ok {
		from = cur.Hash
	} else if started, err := in.startAtTip(ctx); err != nil || started {
		return err
	}
	txs, tip, err := in.backend.Since(ctx, from)
	if errors.Is(err, backend.ErrRejected) && from != "" {
		// Most often the cursor's block is unknown to the backend (reorganised away, or a new
		// node), but the backend's own words say what happened: read the whole history again;
		// booking is idempotent.
		in.log.Info("listing since the cursor was refused; listing the wallet's whole history", "cursor", cur.Hash, "height", cur.Height,
			"reason", err.Error())
		txs, tip, err = in.backend.Since(ctx, "")
	}
	if lister, ok := in.backend.(backend.RecentLister); ok && err != nil && ctx.Err() == nil && !errors.Is(err, backend.ErrUnreachable) {
		// The wallet's listing itself is broken, not the way to it: list another way, back to a
		// little before the cursor, and say why every time.
		in.log.Error(err, "listing since the cursor failed; listing recent wallet transactions instead", "cursor", cur.Hash, "height", cur.Height)
		sinceErr := err
		txs, tip, err = lister.Recent(ctx, cur.Height-recentMargin)
		if err != nil {
			err = fmt.Errorf("%w; listing recent transactions instead failed too: %w", sinceErr, err)
		}
	}
	if err != nil {
		return fmt.Errorf("listing transactions since %q: %w", from, err)
	}
	r.Seen += len(txs)
	ours, _, err := in.book(ctx, txs, r)
	if err != nil {
		return err
	}
	mined.add(txs, ours, in.ledger.TrackedConfirmations())
	// An idle poll finds the tip where the cursor is, and rewriting the same row cost every idle
	// helper a write transaction (and its commit's WAL flush) per poll.
	if next := (ledger.Cursor{Height: tip.Height, Hash: tip.Hash}); !ok || next != cur {
		if err := in.ledger.SetCursor(ctx, next); err != nil {
			return fmt.Errorf("moving the cursor: %w", err)
		}
	}
	return nil
}

// startAtTip starts a ledger that has neither a cursor nor a receiving address at the backend's
// tip, and says whether it did. Nothing in the wallet's history can be booked to such a ledger,
// and reading it all is the one listing with no bound: a new asset on a wallet with years of
// history would wait for (or time out on) a reply of hundreds of megabytes to book nothing. The
// tip is read before the addresses are looked for: an address handed out after the look is paid
// after it, so in a block above that tip or unconfirmed, which the next listing since the tip
// returns. A ledger with an address (a restored database, say) reads the whole history as before.
func (in *Intake) startAtTip(ctx context.Context) (bool, error) {
	tip, err := in.backend.Tip(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the tip to start the cursor at: %w", err)
	}
	has, err := in.ledger.HasReceivingAddresses(ctx)
	if err != nil || has {
		return false, err
	}
	if err := in.ledger.SetCursor(ctx, ledger.Cursor{Height: tip.Height, Hash: tip.Hash}); err != nil {
		return false, fmt.Errorf("starting the cursor at the tip: %w", err)
	}
	in.log.Info("no receiving address yet: the cursor starts at the tip, without reading the wallet's history", "height", tip.Height, "hash", tip.Hash)
	return true, nil
}

// minedNow are the transactions a pass has just booked as the backend listed them, mined on its
// chain. The re-check of open deposits that ends the pass does not ask the backend about them
// again: it would hear what it was told a moment before, at the cost of a lookup per transaction
// (a paid call on some backends) and a second reading of their deposits from the ledger. A
// transaction listed unmined is asked about all the same, since a lookup can find what a listing
// does not say (btcwallet's unmined transactions are checked against the node's mempool and
// chain for double spends), as is one whose booking failed.
type minedNow map[string]bool

// add adds the transactions of txs that are mined below the tracking horizon and, as ours says
// of each, pay us: only those can have open deposits, and the re-check's listing is told to leave
// them out. One listed at the horizon or deeper has just been booked at the horizon, so the
// re-check would not list it anyway; keeping it out holds the set to the last few blocks' deposits,
// where a rescan of a long history held every transaction that ever paid us (114 MiB a million,
// measured, before the copy sent to the database).
func (m minedNow) add(txs []backend.Transaction, ours []bool, horizon int32) {
	for i, t := range txs {
		if ours[i] && t.Confirmations > 0 && t.Confirmations < horizon && !t.Conflicted {
			m[t.TxID] = true
		}
	}
}

// refreshOpen asks the backend about every deposit below the tracking horizon but those of
// transactions in mined, and books what it says in one go.
func (in *Intake) refreshOpen(ctx context.Context, r *Result, mined minedNow) error {
	open, err := in.ledger.OpenDeposits(ctx, slices.Collect(maps.Keys(mined))...)
	if err != nil {
		return fmt.Errorf("listing open deposits: %w", err)
	}
	var (
		obs []ledger.Observation
		of  []int
		n   int
	)
	looked := map[string]bool{}
	for _, o := range open {
		if looked[o.TxID] {
			continue
		}
		looked[o.TxID] = true
		tx, err := in.backend.Transaction(ctx, o.TxID)
		if errors.Is(err, backend.ErrUnknownTransaction) {
			// The wallet forgot it: treat every output we booked as gone.
			for _, gone := range open {
				if gone.TxID == o.TxID {
					gone.Confirmations = -1
					obs, of = append(obs, gone), append(of, n)
				}
			}
			n++
			continue
		}
		if err != nil {
			// What was learnt so far is booked: a backend failing half-way through a long
			// re-check must not lose the answers it gave.
			_, _, bookErr := in.record(ctx, obs, of, n, r)
			return errors.Join(fmt.Errorf("re-checking %s: %w", o.TxID, err), bookErr)
		}
		for _, o := range observations(tx) {
			obs, of = append(obs, o), append(of, n)
		}
		n++
	}
	_, _, err = in.record(ctx, obs, of, n, r)
	return err
}

// RescanProgress is how far a rescan has come.
type RescanProgress struct {
	Done, Total int64
	Unit        string
	// TxFound: wallet transactions paying our addresses. TxBooked: those the ledger did not know.
	TxFound, TxBooked int
}

// RescanResult is what a finished rescan did.
type RescanResult struct {
	Result
	RescanProgress
	Tip backend.Tip
}

// Rescan reads the wallet's history from a block height (0: all of it) and books what it finds
// through the same idempotent path as notifications, then re-checks every deposit still followed
// that the scan did not just book as mined.
// It leaves the cursor alone, so it can run beside catch-ups and notifications, and a second run
// books nothing. progress is called after every batch.
func (in *Intake) Rescan(ctx context.Context, fromHeight int64, progress func(RescanProgress)) (RescanResult, error) {
	var out RescanResult
	mined := minedNow{}
	tip, err := in.backend.Scan(ctx, fromHeight, func(b backend.ScanBatch) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		out.Seen += len(b.Transactions)
		ours, fresh, err := in.book(ctx, b.Transactions, &out.Result)
		for i := range ours {
			if ours[i] {
				out.TxFound++
			}
			if fresh[i] {
				out.TxBooked++
			}
		}
		if err != nil {
			return err
		}
		mined.add(b.Transactions, ours, in.ledger.TrackedConfirmations())
		out.Done, out.Total, out.Unit = b.Done, b.Total, b.Unit
		if progress != nil {
			progress(out.RescanProgress)
		}
		return nil
	})
	out.Tip = tip
	if err != nil {
		return out, fmt.Errorf("rescanning from height %d: %w", fromHeight, err)
	}
	if err := in.refreshOpen(ctx, &out.Result, mined); err != nil {
		return out, err
	}
	return out, nil
}
