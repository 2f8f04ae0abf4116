// Package backoff is the one backoff of every loop that reconnects or retries without keeping
// its state anywhere (a subscription, a connection, a registration, a status write): from one
// second, doubling up to a cap, every wait jittered so that many helpers that lost the same
// server do not come back in step. It is apimachinery's wait.Backoff; this package only fixes
// the policy and the waiting. Retries whose state persists (event deliveries, kept in the
// ledger) and retries of serializable transactions have their own schedules.
package backoff

import (
	"context"
	"math"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Backoff hands out the waits of one retry loop.
type Backoff struct {
	max  time.Duration
	step wait.Backoff
}

// New starts a backoff at one second that doubles up to max.
func New(max time.Duration) *Backoff {
	b := &Backoff{max: max}
	b.Reset()
	return b
}

// Reset starts over from one second, after a success.
func (b *Backoff) Reset() {
	// Jitter 0.5: each wait is its step plus up to half of it again.
	b.step = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.5, Steps: math.MaxInt32, Cap: b.max}
}

// Next is the wait before the next attempt.
func (b *Backoff) Next() time.Duration { return b.step.Step() }

// Sleep waits d, or less if ctx ends first; it says whether the loop should go on.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
