package helper

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"

	"github.com/cryptoassets/cryptoassets-operator/internal/backoff"
)

// supervisor runs the helper's periodic parts, each on its own goroutine: a part that fails is
// retried with backoff (and reported unhealthy meanwhile), a part that panics is restarted, and
// none can stop the others.
type supervisor struct {
	log    logr.Logger
	health *health
	// stepLimit is how long one step may run before liveness reports the part hung.
	stepLimit time.Duration
}

// loop returns the runnable that runs step now, then every period (and up to a tenth more), on
// every wake-up, and sooner after a failure (with jittered backoff from one second up to the
// period). A failing step is reported and retried, never fatal: it returns only when ctx ends.
//
// The extra tenth is random: helpers started together (a rollout, a node back from an outage)
// would otherwise poll their node together for good. Fifty helpers in step on one btcwallet,
// which serves ten clients at once, had some of every round refused ("429 Too Many Requests")
// and retried a second later (BenchmarkHelperFootprint).
func (s *supervisor) loop(name string, period time.Duration, wake <-chan struct{}, step func(context.Context) error) func(context.Context) error {
	log := s.log.WithValues("component", name)
	return func(ctx context.Context) error {
		failures := 0
		wait := backoff.New(period)
		for {
			done := s.health.start(name, s.stepLimit)
			err := s.safe(ctx, step)
			done()
			if ctx.Err() != nil {
				return nil
			}
			next := period
			if spread := int64(period / 10); spread > 0 {
				next += time.Duration(rand.Int64N(spread))
			}
			if err != nil {
				failures++
				next = min(wait.Next(), period)
				log.Error(err, "failed; retrying", "in", next, "failures", failures)
			} else {
				failures = 0
				wait.Reset()
			}
			s.health.set(name, err, "running")
			t := time.NewTimer(next)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			case <-wake:
				t.Stop()
			}
		}
	}
}

// safe turns a panic into an error, so one bug in a part does not take the helper down mid-send.
func (s *supervisor) safe(ctx context.Context, step func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			// The stack goes with it: "panic: nil map" alone says nothing about where.
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return step(ctx)
}
