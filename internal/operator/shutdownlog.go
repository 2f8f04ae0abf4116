package operator

import (
	"context"

	"github.com/go-logr/logr"
)

// controller-runtime's manager cancels its leader election on shutdown, and the elector's
// OnStoppedLeading then reports "leader election lost" as an error, which the manager logs at
// ERROR with a stack trace although nothing went wrong: ReleaseOnCancel handed the Lease back
// on purpose. quietPlannedLeaseRelease wraps the manager's logger so that this one message,
// after our own context has ended, is an info line saying what happened. A real loss (the
// context still running) is logged as before.
func quietPlannedLeaseRelease(ctx context.Context, log logr.Logger) logr.Logger {
	return log.WithSink(&plannedRelease{LogSink: log.GetSink(), ctx: ctx})
}

type plannedRelease struct {
	logr.LogSink
	ctx context.Context
}

func (s *plannedRelease) Error(err error, msg string, kv ...any) {
	if s.ctx.Err() != nil && err != nil && err.Error() == "leader election lost" {
		s.LogSink.Info(0, "leader election released on shutdown", kv...)
		return
	}
	s.LogSink.Error(err, msg, kv...)
}

func (s *plannedRelease) WithValues(kv ...any) logr.LogSink {
	return &plannedRelease{LogSink: s.LogSink.WithValues(kv...), ctx: s.ctx}
}

func (s *plannedRelease) WithName(name string) logr.LogSink {
	return &plannedRelease{LogSink: s.LogSink.WithName(name), ctx: s.ctx}
}
