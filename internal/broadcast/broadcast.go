// Package broadcast sends the ledger's pending outgoing payments: every period, the pending sends
// of the wallet go out as one network transaction.
//
// The one rule: a payment is never sent twice. A broadcast is opened in the ledger before the
// backend is asked to pay and closed with the txid after. If the helper dies in between, or the
// backend's answer is lost, the broadcast stays open; the next pass asks the wallet for its own
// record of recent sends and closes the broadcast with the matching one. Only when no such send
// exists, and enough time has passed that an unanswered request can no longer complete, does it
// pay again.
package broadcast

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// Result says what a pass did.
type Result struct {
	// TxID of the network transaction that paid the broadcast, if one was sent or found.
	TxID string
	// Sent: this pass paid; Reconciled: an earlier attempt had paid and was found.
	Sent, Reconciled bool
	// Sends is the number of ledger sends the broadcast carried.
	Sends int
	// Waiting: an interrupted broadcast is not yet known to have failed; nothing was sent.
	Waiting bool
	// Refused counts the sends the backend refused on their own (moved to needs_review).
	Refused int
	// Split counts the times a refused batch was narrowed down to the part that can go out.
	Split int
}

// Broadcaster pays pending sends.
type Broadcaster struct {
	ledger  *ledger.Ledger
	backend backend.Backend
	log     logr.Logger
	// grace is how long after an unanswered send the wallet might still complete it.
	grace time.Duration
	now   func() time.Time
	// Fence, when set, is asked right before every payment; an error stops the pass without
	// paying. The helper passes "do I still hold the active-helper lock", so a helper whose
	// database restarted under it never pays beside the one that took over.
	Fence func(context.Context) error
	// afterSend is a fault-injection point for tests: it runs between the backend's answer and
	// the ledger's record of it, where a crash is most dangerous.
	afterSend func(txid string) error
	// waitLogged rate-limits the log line of a wait for an interrupted broadcast's record.
	waitLogged time.Time
}

// waitLogEvery is how often a wait for an interrupted broadcast's record is logged.
const waitLogEvery = 30 * time.Second

// New returns a Broadcaster. grace should exceed the backend's request timeout.
func New(l *ledger.Ledger, b backend.Backend, grace time.Duration, log logr.Logger) *Broadcaster {
	return &Broadcaster{ledger: l, backend: b, log: log, grace: grace, now: time.Now, afterSend: faultHook()}
}

// clockSkew widens the window of the wallet's send records: its clock is not ours.
const clockSkew = 10 * time.Minute

// Run broadcasts until nothing is pending (a long queue goes out in several transactions of at
// most ledger.MaxBroadcastSends sends), or a pass waits or fails, and returns what the passes did.
// With nothing to send, record or follow (ledger.BroadcastWork), it returns at once.
//
// A paid broadcast's sends are recorded (ledger.SettleBroadcast) while the next broadcast is
// opened and paid: the payment itself is on record before the next opens (ledger.MarkPaid), so
// overlapping the two risks nothing. At most one broadcast is being recorded at a time, so their
// events keep the order they were paid in.
func (b *Broadcaster) Run(ctx context.Context) (Result, error) {
	var total Result
	if work, err := b.ledger.BroadcastWork(ctx); err != nil || !work {
		return total, err
	}
	if err := b.settleLeftovers(ctx); err != nil {
		return total, err
	}
	// The transactions looked up for their fees in this run: following their confirmations at
	// its end would ask the backend about each again, a moment later (a 1000-output transaction
	// is a large answer).
	fresh := lookups{}
	var settling chan error
	wait := func() error {
		if settling == nil {
			return nil
		}
		err := <-settling
		settling = nil
		return err
	}
	for {
		s, err := b.pass(ctx, fresh)
		r := s.Result
		total.Sends += r.Sends
		total.Refused += r.Refused
		total.Split += r.Split
		total.Sent = total.Sent || r.Sent
		total.Reconciled = total.Reconciled || r.Reconciled
		total.Waiting = r.Waiting
		if r.TxID != "" {
			total.TxID = r.TxID
		}
		if s.settle != nil {
			// The one before must be recorded first. If it failed, this one's record is left
			// for the next run too (both are paid and on record as such).
			if werr := wait(); werr != nil {
				return total, errors.Join(err, werr)
			}
			settling = make(chan error, 1)
			go func(settle func(context.Context) error) { settling <- settle(ctx) }(s.settle)
		}
		if err != nil || r.Waiting || (!r.Sent && !r.Reconciled && r.Refused == 0) {
			werr := wait()
			if err == nil && werr == nil && s.idle {
				err = b.followConfirmations(ctx, fresh)
			}
			return total, errors.Join(err, werr)
		}
	}
}

// Pass runs one broadcast: reconcile or send, record, book the fee, follow confirmations.
func (b *Broadcaster) Pass(ctx context.Context) (Result, error) {
	if err := b.settleLeftovers(ctx); err != nil {
		return Result{}, err
	}
	fresh := lookups{}
	s, err := b.pass(ctx, fresh)
	if s.settle != nil {
		err = errors.Join(err, s.settle(ctx))
	}
	if err == nil && s.idle {
		err = b.followConfirmations(ctx, fresh)
	}
	return s.Result, err
}

// settleLeftovers records the sends of broadcasts paid before a crash or a failed record; their
// fees are booked by followConfirmations.
func (b *Broadcaster) settleLeftovers(ctx context.Context) error {
	ids, err := b.ledger.UnsettledBroadcasts(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		b.log.Info("recording the sends of a broadcast paid before the last stop", "broadcast", id)
		if err := b.ledger.SettleBroadcast(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// lookups are the backend's answers about transactions already had in this run.
type lookups map[string]backend.Transaction

// step is what one pass did, and what is left of it to do.
type step struct {
	Result
	// settle records the sends of the broadcast the pass paid, and its fee; nil when it paid none.
	settle func(context.Context) error
	// idle: nothing was pending, so nothing was opened.
	idle bool
}

func (b *Broadcaster) pass(ctx context.Context, fresh lookups) (step, error) {
	var s step
	r := &s.Result
	bc, err := b.ledger.OpenBroadcast(ctx)
	if err != nil || bc == nil {
		s.idle = err == nil
		return s, err
	}
	r.Sends = len(bc.Sends)
	log := b.log.WithValues("broadcast", bc.ID, "sends", len(bc.Sends))

	if bc.Recovered {
		txid, err := b.findSend(ctx, bc)
		if err != nil {
			return s, fmt.Errorf("reconciling interrupted broadcast %d: %w", bc.ID, err)
		}
		if txid != "" {
			log.Info("an interrupted broadcast had gone out; recording it", "txid", txid)
			r.TxID, r.Reconciled = txid, true
			s.settle, err = b.record(ctx, bc, txid, fresh)
			return s, err
		}
		// Only a request that may still be carried out is waited for: one the backend was asked
		// (sending_at) less than the grace period ago. A broadcast interrupted before that never
		// reached the backend and is paid now.
		if bc.SendingAt != nil {
			if until := bc.SendingAt.Add(b.grace); b.now().Before(until) {
				note := fmt.Sprintf("interrupted broadcast %d: the backend was asked to pay it at %s and the wallet has no record of it yet; "+
					"paying it after %s unless the record appears", bc.ID, bc.SendingAt.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339))
				if err := b.ledger.NoteBroadcast(ctx, bc.ID, note); err != nil {
					return s, err
				}
				if b.now().Sub(b.waitLogged) >= waitLogEvery {
					b.waitLogged = b.now()
					log.Info("interrupted broadcast not found in the wallet yet; waiting before paying again", "asked", bc.SendingAt, "until", until)
				}
				r.Waiting = true
				return s, nil
			}
		}
		log.Info("interrupted broadcast is not in the wallet; sending it", "asked", bc.SendingAt, "attempts", bc.Attempts)
	}

	for {
		txid, err := b.pay(ctx, bc)
		if err == nil {
			if b.afterSend != nil {
				if err := b.afterSend(txid); err != nil {
					return s, err
				}
			}
			log.Info("broadcast sent", "txid", txid, "paid", len(bc.Sends))
			r.TxID, r.Sent, r.Sends = txid, true, len(bc.Sends)
			s.settle, err = b.record(ctx, bc, txid, fresh)
			return s, err
		}
		if errors.Is(err, errMaybePaid) || errors.Is(err, errNotAsked) {
			return s, err
		}
		// The backend answered with a refusal: nothing was paid.
		outputRefused := errors.Is(err, backend.ErrOutputRefused)
		switch {
		case outputRefused && len(bc.Sends) == 1:
			send := bc.Sends[0]
			if rerr := b.ledger.RefuseSend(ctx, bc.ID, send.ID, err.Error()); rerr != nil {
				return s, errors.Join(err, rerr)
			}
			log.Info("the backend refused a send on its own; it needs review and is not retried", "send", send.ID,
				"address", send.Address, "amount", send.Amount, "reason", err.Error())
			r.Refused++
			return s, nil
		case (outputRefused || errors.Is(err, backend.ErrInsufficientFunds)) && len(bc.Sends) > 1:
			// One bad output must not hold back the others, and a wallet short of funds should
			// pay what it can: try half the batch, and the rest in later broadcasts. A bad output
			// is found in log2(sends) refusals. For funds, the smaller sends are kept, so every
			// refusal leaves only sends the wallet cannot pay either.
			keep := half(bc.Sends, !outputRefused)
			note := fmt.Sprintf("the backend refused the batch of %d sends (%v); trying %d of them first", len(bc.Sends), err, len(keep))
			if serr := b.ledger.ShrinkBroadcast(ctx, bc.ID, sendIDs(keep), note); serr != nil {
				return s, errors.Join(err, serr)
			}
			log.Info("the backend refused the batch; narrowing it down", "batch", len(bc.Sends), "trying", len(keep), "reason", err.Error())
			bc = bc.Shrunk(keep)
			r.Split++
		default:
			// A refusal of the wallet as a whole (funds for even the smallest send, a locked
			// wallet): the sends wait for the next period.
			if ferr := b.ledger.FailBroadcast(ctx, bc.ID, err.Error()); ferr != nil {
				return s, errors.Join(err, ferr)
			}
			return s, fmt.Errorf("broadcast %d refused by the backend; its sends stay pending: %w", bc.ID, err)
		}
	}
}

// errNotAsked marks a pass that stopped before the backend was asked to pay; errMaybePaid, one
// whose request may have been carried out.
var (
	errNotAsked  = errors.New("the backend was not asked to pay")
	errMaybePaid = errors.New("the request may have been carried out")
)

// pay asks the backend to pay an open broadcast once, having recorded that it is asked.
func (b *Broadcaster) pay(ctx context.Context, bc *ledger.Broadcast) (string, error) {
	if err := b.ledger.MarkSending(ctx, bc.ID); err != nil {
		return "", fmt.Errorf("broadcast %d not sent: %w: %w", bc.ID, errNotAsked, err)
	}
	if b.Fence != nil {
		if err := b.Fence(ctx); err != nil {
			return "", fmt.Errorf("broadcast %d not sent: %w: %w", bc.ID, errNotAsked, err)
		}
	}
	txid, err := b.backend.SendMany(ctx, bc.Outputs)
	if err != nil && !errors.Is(err, backend.ErrRejected) && !errors.Is(err, backend.ErrInsufficientFunds) {
		// Not a refusal the backend answered (no answer, or one that is not a txid): the wallet
		// may have paid. The broadcast stays open for reconciliation, never paid blindly again.
		_ = b.ledger.NoteBroadcastAttempt(ctx, bc.ID, err.Error())
		return "", fmt.Errorf("broadcast %d: %w; it stays open and will be reconciled: %w", bc.ID, errMaybePaid, err)
	}
	return txid, err
}

// half returns the half of a refused batch to try first: the older sends, or, when the wallet
// lacked funds, the smaller ones.
func half(sends []ledger.BroadcastSend, smallest bool) []ledger.BroadcastSend {
	sorted := slices.Clone(sends)
	if smallest {
		slices.SortStableFunc(sorted, func(a, b ledger.BroadcastSend) int { return cmp.Compare(a.Amount, b.Amount) })
	}
	return sorted[:len(sorted)/2]
}

func sendIDs(sends []ledger.BroadcastSend) []int64 {
	ids := make([]int64, len(sends))
	for i, s := range sends {
		ids[i] = s.ID
	}
	return ids
}

// findSend looks for a wallet send paying exactly the broadcast's outputs that the ledger does not
// already know under another broadcast.
func (b *Broadcaster) findSend(ctx context.Context, bc *ledger.Broadcast) (string, error) {
	sends, err := b.backend.RecentSends(ctx, bc.OpenedAt.Add(-clockSkew))
	if err != nil {
		return "", err
	}
	txids := make([]string, len(sends))
	for i, s := range sends {
		txids[i] = s.TxID
	}
	known, err := b.ledger.KnownBroadcasts(ctx, txids)
	if err != nil {
		return "", err
	}
	var matches []string
	for _, s := range sends {
		if !known[s.TxID] && pays(s.Outputs, bc.Outputs) {
			matches = append(matches, s.TxID)
		}
	}
	switch len(matches) {
	case 0:
		return "", nil
	case 1:
		return matches[0], nil
	default:
		// Two unknown sends with the same outputs: a human must say which is ours. Sending
		// again is the one thing that is certainly wrong.
		return "", fmt.Errorf("%d wallet sends match broadcast %d (%v); resolve by hand", len(matches), bc.ID, matches)
	}
}

// pays reports whether a wallet send's outputs to others are exactly the broadcast's. Change
// outputs are not listed as sends by bitcoind wallets, so equality is exact.
func pays(sent, want map[string]ledger.Amount) bool {
	if len(sent) != len(want) {
		return false
	}
	for addr, a := range want {
		if sent[addr] != a {
			return false
		}
	}
	return true
}

// record closes the broadcast as paid by txid, and returns what is left to do: record its sends
// and book its fee. The fee lookup is a network call, made while the ledger records the broadcast
// (one is the node's work, the other the database's); if it fails, the fee is booked by a later
// pass (BookFee is idempotent).
func (b *Broadcaster) record(ctx context.Context, bc *ledger.Broadcast, txid string, fresh lookups) (func(context.Context) error, error) {
	var lookup errgroup.Group
	var tx backend.Transaction
	lookup.Go(func() (err error) {
		if tx, err = b.backend.Transaction(ctx, txid); err != nil {
			return fmt.Errorf("looking up the fee of %s: %w", txid, err)
		}
		return nil
	})
	if err := b.ledger.MarkPaid(ctx, bc.ID, txid); err != nil {
		return nil, errors.Join(err, lookup.Wait())
	}
	return func(ctx context.Context) error {
		err := b.ledger.SettleBroadcast(ctx, bc.ID)
		if err := errors.Join(err, lookup.Wait()); err != nil {
			return err
		}
		fresh[txid] = tx
		return b.ledger.BookFee(ctx, txid, tx.Fee)
	}, nil
}

// followConfirmations updates our broadcasts below the tracking horizon and books fees that an
// earlier pass could not.
func (b *Broadcaster) followConfirmations(ctx context.Context, fresh lookups) error {
	txids, err := b.ledger.OpenBroadcastTxIDs(ctx)
	if err != nil {
		return err
	}
	for _, txid := range txids {
		tx, ok := fresh[txid]
		if !ok {
			if tx, err = b.backend.Transaction(ctx, txid); err != nil {
				return fmt.Errorf("following %s: %w", txid, err)
			}
		}
		changed, err := b.ledger.RecordBroadcastConfirmations(ctx, txid, tx.Confirmations, tx.BlockHash, tx.BlockHeight, tx.Conflicted)
		if err != nil {
			return err
		}
		if changed && tx.Conflicted {
			b.log.Info("our broadcast was double-spent on the best chain; its sends need review and are not paid again", "txid", txid)
		}
		if err := b.ledger.BookFee(ctx, txid, tx.Fee); err != nil {
			return err
		}
	}
	return nil
}
