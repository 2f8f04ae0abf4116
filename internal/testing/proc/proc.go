// Package proc stops the servers the test harnesses start, each by its PID: asked first with
// the signal it shuts down cleanly on, killed when it has not exited after a grace period.
package proc

import (
	"os"
	"time"
)

// Stop sends sig to p and waits until exited yields (the process was reaped); after grace it
// kills p and waits again. A nil p (never started) is a no-op.
func Stop[T any](p *os.Process, sig os.Signal, grace time.Duration, exited <-chan T) {
	if p == nil {
		return
	}
	_ = p.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		_ = p.Kill()
		<-exited
	}
}
