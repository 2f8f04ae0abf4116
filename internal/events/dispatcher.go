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
	now     func() time.Time
	// IdlePoll is how often a target looks for events nothing told it of (idlePoll unless
	// changed before Run; tests lengthen it to show what wakes the targets).
	IdlePoll time.Duration
	// Commits, if set, wakes every target when events commit (the helper's ledger hook notifies
	// it), so that they are delivered at once rather than at the next poll. Without it the
	// targets only poll.
	Commits *Commits
	// page overrides defaultPage (tests page through a few events).
	page int
	// OnResult, if set, sees every attempt (for metrics). Posts to one target can be under way
	// at once, so it may be called from several goroutines at a time.
	OnResult func(target string, err error)
}

// NewDispatcher returns a dispatcher for the targets.
func NewDispatcher(l *ledger.Ledger, targets []Target, backoff Backoff, log logr.Logger) *Dispatcher {
	return &Dispatcher{ledger: l, targets: targets, backoff: backoff, log: log, IdlePoll: idlePoll, now: time.Now}
}

// idlePoll is how often a target looks for due events when nothing woke it and no retry it
// knows of is due. What the helper commits wakes it (Commits), and so do events that another
// process commits (the `cryptoassets rescan` command notifies the helper's lock connection);
// retries scheduled before the helper started are read when it starts. So the poll is only a
// backstop, for a notification lost with a connection. Polling every second, an idle helper cost
// its database 60 queries a minute per target, a thousand a second for a thousand assets on one
// database; every 10 s, 6.
const idlePoll = time.Minute

// Run delivers until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range d.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.runTarget(ctx, t)
		}()
	}
	wg.Wait()
	return nil
}

// runTarget looks for a target's due events when woken (new events committed), when a retry it
// scheduled falls due, and otherwise every poll.
func (d *Dispatcher) runTarget(ctx context.Context, t Target) {
	log := d.log.WithValues("target", t.Name())
	timer := time.NewTimer(0)
	defer timer.Stop()
	// retryAt is the earliest retry this target's passes scheduled that no pass has taken yet;
	// at first, the earliest one an earlier run scheduled.
	retryAt, err := d.ledger.NextRetry(ctx, t.Name())
	if err != nil && ctx.Err() == nil {
		log.Error(err, "reading the outbox; retries scheduled before this start wait for the idle poll")
	}
	// A wake-up is taken before the pass that follows it reads the outbox, so that events
	// committed while a pass reads wake the next wait instead of waiting for the poll.
	woken := d.committed()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-woken:
		}
		woken = d.committed()
		began := d.now()
		n, failedUntil, err := d.deliverDue(ctx, t)
		if err != nil && ctx.Err() == nil {
			log.Error(err, "reading the outbox")
		}
		if !retryAt.After(began) {
			retryAt = time.Time{} // it was due when the pass began, so the pass took it
		}
		if !failedUntil.IsZero() && (retryAt.IsZero() || failedUntil.Before(retryAt)) {
			retryAt = failedUntil
		}
		next := d.IdlePoll
		switch {
		case n > 0:
			next = 0 // a full batch: there may be more
		case !retryAt.IsZero():
			next = min(next, max(0, retryAt.Sub(d.now())))
		}
		timer.Reset(next)
	}
}

// committed is closed when events next commit; nil (never ready) without Commits.
func (d *Dispatcher) committed() <-chan struct{} {
	if d.Commits == nil {
		return nil
	}
	return d.Commits.Next()
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
// The stages hand each other whole pages (a feed and a tally under a lock), not events on
// channels: an event-at-a-time channel woke the reader and the recorder once per event each,
// since the one was always blocked on a full channel and the other on an empty one.
//
// With several workers a receiver sees events slightly out of order, as it may after any retry
// (the README tells receivers to deduplicate and trust the payload's state over arrival order).
// Posting one at a time, a backlog drains at one round trip per event: with a receiver 50 ms
// away, 20 events a second.
func (d *Dispatcher) DeliverDue(ctx context.Context, t Target) (int, error) {
	n, _, err := d.deliverDue(ctx, t)
	return n, err
}

// deliverDue is DeliverDue, also returning the earliest retry its failures scheduled (zero if
// none failed, or those that did were given up on).
func (d *Dispatcher) deliverDue(ctx context.Context, t Target) (int, time.Time, error) {
	workers := 1
	if c, ok := t.(concurrent); ok {
		workers = max(1, c.MaxInFlight())
	}
	page := cmp.Or(d.page, defaultPage)
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	// One page waits while the workers take from the one before.
	pages := make(chan []ledger.Delivery, 1)
	var read int
	go func() {
		defer close(pages)
		var from ledger.DueCursor
		// A short first page, so that the first posts of a backlog go out while the next page
		// is read rather than after a whole page is: 1.5-2 ms for a page of 500.
		limit := min(page, firstPage)
		for {
			evs, next, err := d.ledger.DueDeliveries(ctx, t.Name(), from, limit)
			if err != nil {
				stop(err)
				return
			}
			read += len(evs)
			if len(evs) > 0 {
				select {
				case pages <- evs:
				case <-ctx.Done():
					return
				}
			}
			if len(evs) < limit {
				return
			}
			from, limit = next, page
		}
	}()
	in := &feed{pages: pages}

	delivered := make(chan []int64, 1)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		for seqs := range delivered {
			if err := d.ledger.MarkDelivered(context.WithoutCancel(ctx), t.Name(), seqs...); err != nil {
				d.log.Error(err, "recording deliveries; they will be repeated", "target", t.Name(), "events", len(seqs))
			}
		}
	}()
	out := &tally{page: page, full: delivered}
	var (
		retriesMu sync.Mutex
		retryAt   time.Time
	)

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ev, ok := in.next()
				if !ok {
					return
				}
				if ctx.Err() != nil {
					continue // drain: the reader stops at ctx's end
				}
				switch next, err := d.attempt(ctx, t, ev); {
				case err == nil:
					out.add(ev.Seq)
				case errors.Is(err, errAttemptFailed):
					if !next.IsZero() {
						retriesMu.Lock()
						if retryAt.IsZero() || next.Before(retryAt) {
							retryAt = next
						}
						retriesMu.Unlock()
					}
				default:
					// The ledger could not record the failure, or ctx ended: stop here.
					stop(err)
				}
			}
		}()
	}
	wg.Wait()
	out.flush()
	close(delivered)
	<-recorded
	if err := context.Cause(ctx); err != nil {
		return 0, time.Time{}, err
	}
	// The reader has closed pages, so read is its last word.
	return read, retryAt, nil
}

// defaultPage is how many events the dispatcher reads, and records as delivered, at a time;
// firstPage how many it reads first.
const (
	defaultPage = 500
	firstPage   = 50
)

// feed gives the workers the events of the reader's pages in order, taking a page from the
// reader only when the one before is used up.
type feed struct {
	mu    sync.Mutex
	pages <-chan []ledger.Delivery
	page  []ledger.Delivery
}

// next returns the next event, or false once the reader has closed its pages.
func (f *feed) next() (ledger.Delivery, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.page) == 0 {
		p, ok := <-f.pages
		if !ok {
			return ledger.Delivery{}, false
		}
		f.page = p
	}
	ev := f.page[0]
	f.page = f.page[1:]
	return ev, true
}

// tally collects the delivered events' sequence numbers and hands them to the recorder a page
// at a time.
type tally struct {
	mu   sync.Mutex
	page int
	seqs []int64
	full chan<- []int64
}

func (t *tally) add(seq int64) {
	t.mu.Lock()
	t.seqs = append(t.seqs, seq)
	var full []int64
	if len(t.seqs) >= t.page {
		full, t.seqs = t.seqs, nil
	}
	t.mu.Unlock()
	if full != nil {
		t.full <- full
	}
}

// flush hands over what is left; the workers must have stopped.
func (t *tally) flush() {
	if len(t.seqs) > 0 {
		t.full <- t.seqs
		t.seqs = nil
	}
}

// errAttemptFailed: the target refused an event or did not answer, and the retry is recorded.
var errAttemptFailed = errors.New("delivery failed; retry recorded")

// attempt delivers one event, recording a failure and its next attempt. It returns
// errAttemptFailed after a recorded failure, with the time of the next attempt (zero when it
// gave up), and any other error when the ledger could not be told or ctx ended.
func (d *Dispatcher) attempt(ctx context.Context, t Target, ev ledger.Delivery) (time.Time, error) {
	err := t.Deliver(ctx, ev)
	if d.OnResult != nil {
		d.OnResult(t.Name(), err)
	}
	if err == nil {
		return time.Time{}, nil
	}
	if ctx.Err() != nil {
		return time.Time{}, ctx.Err()
	}
	now := d.now()
	next := d.backoff.next(now, ev.Attempts)
	if now.Sub(ev.CreatedAt) > d.backoff.GiveUpAfter {
		next = time.Time{}
		d.log.Error(err, "giving up on an event", "target", t.Name(), "event", ev.EventID, "attempts", ev.Attempts+1)
	}
	if err := d.ledger.MarkAttemptFailed(ctx, ev.Seq, t.Name(), err.Error(), next); err != nil {
		return time.Time{}, err
	}
	return next, errAttemptFailed
}
