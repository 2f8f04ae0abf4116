package events

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// Backoff bounds retries of one event at one target.
type Backoff struct {
	Base, Max time.Duration
	// GiveUpAfter: an event older than this that still fails is abandoned (and logged).
	GiveUpAfter time.Duration
}

// DefaultBackoff retries within seconds at first and hourly at most, for seven days.
func DefaultBackoff() Backoff {
	return Backoff{Base: 2 * time.Second, Max: time.Hour, GiveUpAfter: 7 * 24 * time.Hour}
}

// next is when to retry after `attempts` failures: exponential with full jitter, capped.
func (b Backoff) next(now time.Time, attempts int) time.Time {
	d := b.Max
	if attempts < 30 {
		if e := b.Base << attempts; e > 0 && e < b.Max {
			d = e
		}
	}
	return now.Add(d/2 + time.Duration(rand.Int64N(int64(d/2)+1)))
}

// Dispatcher delivers each target's due events on a goroutine of its own, so a slow or failing
// target never holds back the others.
type Dispatcher struct {
	ledger  *ledger.Ledger
	targets []Target
	backoff Backoff
	log     logr.Logger
	poll    time.Duration
	wake    chan struct{}
	now     func() time.Time
	// page overrides defaultPage (tests page through a few events).
	page int
	// OnResult, if set, sees every attempt (for metrics). Posts to one target can be under way
	// at once, so it may be called from several goroutines at a time.
	OnResult func(target string, err error)
}

// NewDispatcher returns a dispatcher for the targets.
func NewDispatcher(l *ledger.Ledger, targets []Target, backoff Backoff, log logr.Logger) *Dispatcher {
	return &Dispatcher{ledger: l, targets: targets, backoff: backoff, log: log, poll: time.Second,
		wake: make(chan struct{}, 1), now: time.Now}
}

// Wake makes the dispatcher look for new events now instead of at its next poll.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wakes := make([]chan struct{}, len(d.targets))
	for i, t := range d.targets {
		wakes[i] = make(chan struct{}, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.runTarget(ctx, t, wakes[i])
		}()
	}
	// Fan one wake-up out to every target.
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-d.wake:
			for _, w := range wakes {
				select {
				case w <- struct{}{}:
				default:
				}
			}
		}
	}
}

func (d *Dispatcher) runTarget(ctx context.Context, t Target, wake <-chan struct{}) {
	log := d.log.WithValues("target", t.Name())
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-wake:
		}
		n, err := d.DeliverDue(ctx, t)
		if err != nil && ctx.Err() == nil {
			log.Error(err, "reading the outbox")
		}
		next := d.poll
		if n > 0 {
			next = 0 // a full batch: there may be more
		}
		timer.Reset(next)
	}
}

// concurrent is a target that takes several deliveries at once.
type concurrent interface {
	MaxInFlight() int
}

// DeliverDue makes one attempt at every event due at a target and returns how many it tried.
//
// It is a pipeline, so that the outbox's round trips overlap the posts instead of standing
// between them: one goroutine reads the due events a page ahead of the posts, paging on past
// the events it took (the retries that are due first, in the order they fell due, then the
// events never tried); up to the target's MaxInFlight workers deliver them in that order; and
// successes are recorded a page at a time while later posts go on. A crash before a success is
// recorded only means that event is delivered again, which at-least-once allows and receivers
// deduplicate.
//
// With several workers a receiver sees events slightly out of order, as it may after any retry
// (the README tells receivers to deduplicate and trust the payload's state over arrival order).
// Posting one at a time, a backlog drains at one round trip per event: with a receiver 50 ms
// away, 20 events a second.
func (d *Dispatcher) DeliverDue(ctx context.Context, t Target) (int, error) {
	workers := 1
	if c, ok := t.(concurrent); ok {
		workers = max(1, c.MaxInFlight())
	}
	page := cmp.Or(d.page, defaultPage)
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	due := make(chan ledger.Delivery, page)
	var read int
	go func() {
		defer close(due)
		var from ledger.DueCursor
		for {
			evs, next, err := d.ledger.DueDeliveries(ctx, t.Name(), from, page)
			if err != nil {
				stop(err)
				return
			}
			read += len(evs)
			for _, ev := range evs {
				select {
				case due <- ev:
				case <-ctx.Done():
					return
				}
			}
			if len(evs) < page {
				return
			}
			from = next
		}
	}()

	delivered := make(chan int64, page)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		d.recordDeliveries(context.WithoutCancel(ctx), t.Name(), delivered, page)
	}()

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range due {
				if ctx.Err() != nil {
					continue // drain: the reader stops at ctx's end
				}
				switch err := d.attempt(ctx, t, ev); {
				case err == nil:
					delivered <- ev.Seq
				case !errors.Is(err, errAttemptFailed):
					// The ledger could not record the failure, or ctx ended: stop here.
					stop(err)
				}
			}
		}()
	}
	wg.Wait()
	close(delivered)
	<-recorded
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	// The reader has closed due, so read is its last word.
	return read, nil
}

// defaultPage is how many events the dispatcher reads, and records as delivered, at a time.
const defaultPage = 500

// recordDeliveries marks the delivered events a page at a time until delivered is closed. A
// page that cannot be recorded is logged and will be delivered again.
func (d *Dispatcher) recordDeliveries(ctx context.Context, target string, delivered <-chan int64, page int) {
	seqs := make([]int64, 0, page)
	flush := func() {
		if len(seqs) == 0 {
			return
		}
		if err := d.ledger.MarkDelivered(ctx, target, seqs...); err != nil {
			d.log.Error(err, "recording deliveries; they will be repeated", "target", target, "events", len(seqs))
		}
		seqs = seqs[:0]
	}
	for seq := range delivered {
		seqs = append(seqs, seq)
		if len(seqs) == page {
			flush()
		}
	}
	flush()
}

// errAttemptFailed: the target refused an event or did not answer, and the retry is recorded.
var errAttemptFailed = errors.New("delivery failed; retry recorded")

// attempt delivers one event, recording a failure and its next attempt. It returns
// errAttemptFailed after a recorded failure, and any other error when the ledger could not be
// told or ctx ended.
func (d *Dispatcher) attempt(ctx context.Context, t Target, ev ledger.Delivery) error {
	err := t.Deliver(ctx, ev)
	if d.OnResult != nil {
		d.OnResult(t.Name(), err)
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	now := d.now()
	next := d.backoff.next(now, ev.Attempts)
	if now.Sub(ev.CreatedAt) > d.backoff.GiveUpAfter {
		next = time.Time{}
		d.log.Error(err, "giving up on an event", "target", t.Name(), "event", ev.EventID, "attempts", ev.Attempts+1)
	}
	if err := d.ledger.MarkAttemptFailed(ctx, ev.Seq, t.Name(), err.Error(), next); err != nil {
		return err
	}
	return errAttemptFailed
}
