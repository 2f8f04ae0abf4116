package backoff

import (
	"testing"
	"time"
)

func TestBackoffDoublesToItsCapWithJitterAndResets(t *testing.T) {
	b := New(30 * time.Second)
	steps := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, base := range steps {
		got := b.Next()
		if got < base || got > base+base/2 {
			t.Errorf("wait %d: %v, want within [%v, %v]", i, got, base, base+base/2)
		}
	}
	b.Reset()
	if got := b.Next(); got < time.Second || got > 1500*time.Millisecond {
		t.Errorf("after a reset: %v, want about a second", got)
	}
	// Jitter spreads waits: a hundred first waits are not all equal.
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[New(time.Minute).Next()] = true
	}
	if len(seen) < 50 {
		t.Errorf("only %d distinct first waits in 100", len(seen))
	}
}
