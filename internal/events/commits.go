package events

import "sync"

// Commits tells any number of waiters that events have committed: the dispatcher's targets and
// the pull API's long polls, which come and go with requests. Its Notify is what a helper passes
// as ledger.Options.OnEvents. The zero value is ready to use.
type Commits struct {
	mu sync.Mutex
	ch chan struct{} // closed by the next Notify; nil until someone waits
}

// Next returns a channel closed when events next commit. A waiter takes it before it reads the
// events, so that a commit between its read and its wait is not missed.
func (c *Commits) Next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// Notify wakes every waiter. It does not block.
func (c *Commits) Notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}
