package bitcoind

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// TestReadsRetryOnlyRequestsWithoutAReply: a read is sent again when it got no reply at all,
// within its timeout, and never when the node answered, even with an error, or was still working
// on it when the timeout came.
func TestReadsRetryOnlyRequestsWithoutAReply(t *testing.T) {
	for _, tc := range []struct {
		name string
		// answer serves request n (from 1); false drops the connection without a reply.
		answer  func(n int32, w http.ResponseWriter, held <-chan struct{}) bool
		timeout time.Duration
		// requests the node must have received when the read returns; with atLeast, at least
		// that many (retries go on until the timeout, 0.5 s apart at first).
		requests int32
		atLeast  bool
		wantErr  error
		words    string
	}{
		{"two dropped connections, then an answer", func(n int32, w http.ResponseWriter, _ <-chan struct{}) bool {
			if n <= 2 {
				return false
			}
			fmt.Fprint(w, `{"result":7,"error":null,"id":1}`)
			return true
		}, 20 * time.Second, 3, false, nil, ""},
		{"the node's refusal", func(_ int32, w http.ResponseWriter, _ <-chan struct{}) bool {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"result":null,"error":{"code":-8,"message":"Block height out of range"},"id":1}`)
			return true
		}, 20 * time.Second, 1, false, backend.ErrRejected, "Block height out of range"},
		{"a proxy's error page", func(_ int32, w http.ResponseWriter, _ <-chan struct{}) bool {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, `<html>bad gateway</html>`)
			return true
		}, 20 * time.Second, 1, false, backend.ErrUnreachable, "HTTP 502"},
		{"no answer within the timeout", func(_ int32, w http.ResponseWriter, held <-chan struct{}) bool {
			<-held
			return false
		}, 2 * time.Second, 1, false, backend.ErrUnreachable, "deadline exceeded"},
		{"every connection dropped until the timeout", func(int32, http.ResponseWriter, <-chan struct{}) bool {
			return false
		}, 2 * time.Second, 2, true, backend.ErrUnreachable, "no reply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var received atomic.Int32
			held := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tc.answer(received.Add(1), w, held) {
					// Closed with no reply, as a node that stops or restarts does.
					conn, _, err := http.NewResponseController(w).Hijack()
					if err == nil {
						conn.Close()
					}
				}
			}))
			defer srv.Close()
			defer close(held)
			c, err := New(Options{URL: srv.URL, Flavor: BitcoinCore, User: "u", Password: "p", Timeout: tc.timeout,
				Coin: "bitcoin", Network: "regtest"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var n int64
			err = c.read(context.Background(), "getblockcount", &n)
			got := received.Load()
			switch {
			case tc.words == "" && (err != nil || n != 7):
				t.Fatalf("read: %d, %v; want 7", n, err)
			case tc.words != "" && (err == nil || !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.words)):
				t.Fatalf("read: %v; want %v saying %q", err, tc.wantErr, tc.words)
			}
			if got != tc.requests && !(tc.atLeast && got > tc.requests) {
				t.Errorf("the node received %d requests, want %d", got, tc.requests)
			}
		})
	}
}

// TestReadsRunAtOnceOnKeptAliveConnections: reads from several goroutines are at the node at the
// same time, up to MaxRequests, and reads one after another reuse one connection.
func TestReadsRunAtOnceOnKeptAliveConnections(t *testing.T) {
	node := &slowNode{open: make(chan struct{})}
	srv := httptest.NewUnstartedServer(node)
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	opened := false
	defer func() {
		if !opened {
			close(node.open)
		}
	}()
	c, err := New(Options{URL: srv.URL, Flavor: BitcoinCore, User: "u", Password: "p", Timeout: time.Minute,
		MaxRequests: 4, Coin: "bitcoin", Network: "regtest"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n int64
			errs[i] = c.read(context.Background(), "getblockcount", &n)
		}()
	}
	testassets.Eventually(t, time.Minute, "four reads at the node at once", func() error {
		if busy := node.busy.Load(); busy != 4 {
			return fmt.Errorf("%d at the node", busy)
		}
		return nil
	})
	close(node.open)
	opened = true
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}

	before := conns.Load()
	for range 20 {
		var n int64
		if err := c.read(context.Background(), "getblockcount", &n); err != nil {
			t.Fatal(err)
		}
	}
	if opened := conns.Load() - before; opened != 0 {
		t.Errorf("20 reads one after another opened %d new connections, want 0 (the four kept alive)", opened)
	}
}
