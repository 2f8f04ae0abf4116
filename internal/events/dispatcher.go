package events

import (
	"context"
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
	// OnResult, if set, sees every attempt (for metrics).
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

// DeliverDue makes one attempt at every due event of a target and returns how many it tried.
// Successes are recorded together at the end of the batch: a crash in between only means those
// events are delivered again, which at-least-once allows and receivers deduplicate.
func (d *Dispatcher) DeliverDue(ctx context.Context, t Target) (int, error) {
	due, err := d.ledger.DueDeliveries(ctx, t.Name(), 500)
	if err != nil {
		return 0, err
	}
	var delivered []int64
	defer func() {
		if len(delivered) > 0 {
			if err := d.ledger.MarkDelivered(context.WithoutCancel(ctx), t.Name(), delivered...); err != nil {
				d.log.Error(err, "recording deliveries; they will be repeated", "target", t.Name(), "events", len(delivered))
			}
		}
	}()
	for _, ev := range due {
		err := t.Deliver(ctx, ev)
		if d.OnResult != nil {
			d.OnResult(t.Name(), err)
		}
		if err == nil {
			delivered = append(delivered, ev.Seq)
			continue
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		now := d.now()
		next := d.backoff.next(now, ev.Attempts)
		if now.Sub(ev.CreatedAt) > d.backoff.GiveUpAfter {
			next = time.Time{}
			d.log.Error(err, "giving up on an event", "target", t.Name(), "event", ev.EventID, "attempts", ev.Attempts+1)
		}
		if err := d.ledger.MarkAttemptFailed(ctx, ev.Seq, t.Name(), err.Error(), next); err != nil {
			return 0, err
		}
	}
	return len(due), nil
}
