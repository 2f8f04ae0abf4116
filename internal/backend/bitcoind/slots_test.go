package bitcoind

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// slowNode holds every request until open is closed, as btcwallet does while it catches up with
// its chain server, and goes on working on requests whose client has gone.
type slowNode struct {
	open           chan struct{}
	received, busy atomic.Int32
	most           atomic.Int32
}

func (n *slowNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.received.Add(1)
	busy := n.busy.Add(1)
	defer n.busy.Add(-1)
	for m := n.most.Load(); busy > m && !n.most.CompareAndSwap(m, busy); m = n.most.Load() {
	}
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	<-n.open
	reply := map[string]any{"id": req.ID, "error": nil, "result": 7}
	if req.Method == "getblockhash" {
		reply["result"] = strings.Repeat("0", 64)
	}
	_ = json.NewEncoder(w).Encode(reply)
}

// TestRequestsTheNodeHasNotAnsweredAreCounted: callers that give up on a slow node leave their
// requests with it, and they still count against the client's bound until the node answers
// them, so the client never has more than MaxRequests open at the node.
func TestRequestsTheNodeHasNotAnsweredAreCounted(t *testing.T) {
	for _, path := range []string{"read", "post"} {
		t.Run(path, func(t *testing.T) {
			node := &slowNode{open: make(chan struct{})}
			srv := httptest.NewServer(node)
			defer srv.Close()
			opened := false
			defer func() {
				if !opened {
					close(node.open) // srv.Close waits for the handlers
				}
			}()
			c, err := New(Options{URL: srv.URL, Flavor: BitcoinCore, User: "u", Password: "p", Timeout: 200 * time.Millisecond,
				MaxRequests: 2, Coin: "bitcoin", Network: "regtest"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			call := func() error {
				var n int64
				if path == "post" {
					return c.post(context.Background(), "getblockcount", &n)
				}
				return c.read(context.Background(), "getblockcount", &n)
			}

			// Five callers at once, each giving up after the timeout.
			var wg sync.WaitGroup
			errs := make([]error, 5)
			for i := range errs {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = call() }()
			}
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, backend.ErrUnreachable) {
					t.Fatalf("caller %d: %v, want unreachable", i, err)
				}
			}
			// The node is still working on the first two: a new call is not sent at all.
			err = call()
			if !errors.Is(err, backend.ErrUnreachable) || !strings.Contains(err.Error(), "2 earlier requests to the node are still unanswered") {
				t.Fatalf("a call while two are unanswered: %v", err)
			}
			if got, most := node.received.Load(), node.most.Load(); got > 2 || most > 2 || got == 0 {
				t.Fatalf("the node received %d requests, %d at once; want at most 2", got, most)
			}

			// Once the node answers them, calls go through again.
			close(node.open)
			opened = true
			testassets.Eventually(t, time.Minute, "a call after the node answered", call)
			if most := node.most.Load(); most > 2 {
				t.Errorf("%d requests at once at the node, want at most 2", most)
			}
		})
	}
}

// TestANodeThatNeverAnswersDoesNotKeepTheSlots: an abandoned request gives its slot back after
// the hold, so a connection that hangs for good does not stop the client for good.
func TestANodeThatNeverAnswersDoesNotKeepTheSlots(t *testing.T) {
	node := &slowNode{open: make(chan struct{})}
	srv := httptest.NewServer(node)
	defer srv.Close()
	defer close(node.open)
	c, err := New(Options{URL: srv.URL, Flavor: BitcoinCore, User: "u", Password: "p", Timeout: 100 * time.Millisecond,
		MaxRequests: 1, Coin: "bitcoin", Network: "regtest"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.slots = newSlots(1, 300*time.Millisecond)
	var n int64
	if err := c.post(context.Background(), "getblockcount", &n); !errors.Is(err, backend.ErrUnreachable) {
		t.Fatalf("first call: %v", err)
	}
	// After the hold, the next call reaches the node (and is held there too).
	testassets.Eventually(t, time.Minute, "a second request at the node", func() error {
		_ = c.post(context.Background(), "getblockcount", &n)
		if got := node.received.Load(); got < 2 {
			return errors.New("the node has seen one request")
		}
		return nil
	})
}
