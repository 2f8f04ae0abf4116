package bitcoind

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
)

// DefaultMaxRequests is how many requests a client has open at the node at once, unless
// Options.MaxRequests says otherwise.
const DefaultMaxRequests = 4

// slots bounds the requests a client has open at the node, counting the ones its callers gave up
// on. A node serves few at once: btcwallet ten clients (more are answered "429 Too Many
// Requests"), Bitcoin Core four threads and a queue of sixteen. A caller that stops waiting does
// not stop the node, which goes on working on the request (btcwallet holds every request while it
// catches up with its chain server); without the bound, a helper polling a slow wallet would add
// a request every poll until the wallet refused everyone else, the application's own calls
// included.
type slots struct {
	free chan struct{}
	// hold is the longest an abandoned request keeps its slot: a node that never answers (a
	// connection that hangs) must not take the client's slots for good.
	hold time.Duration
}

func newSlots(n int, hold time.Duration) *slots {
	s := &slots{free: make(chan struct{}, n), hold: hold}
	for range n {
		s.free <- struct{}{}
	}
	return s
}

// slot is one request's place; done and abandon may both be called, the first release counts.
type slot struct {
	once sync.Once
	s    *slots
}

// acquire waits for a free slot as long as ctx lets it.
func (s *slots) acquire(ctx context.Context, method string) (*slot, error) {
	select {
	case <-s.free:
		return &slot{s: s}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w: the client's %d earlier requests to the node are still unanswered", method, backend.ErrUnreachable, cap(s.free))
	}
}

// done gives the slot back: the node has answered, or the request never reached it.
func (sl *slot) done() { sl.once.Do(func() { sl.s.free <- struct{}{} }) }

// abandon gives the slot back when the node is done with the request (done) or after the hold,
// whichever comes first: the caller stopped waiting, the node did not.
func (sl *slot) abandon() { time.AfterFunc(sl.s.hold, sl.done) }
