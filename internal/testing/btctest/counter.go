package btctest

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// RPCCounter is a reverse proxy in front of a JSON-RPC server (the wallet) that counts the calls
// it carries, by method: tests assert how many calls a piece of work cost.
type RPCCounter struct {
	mu    sync.Mutex
	calls map[string]int
	proxy *httputil.ReverseProxy
}

// CountingProxy starts an RPCCounter in front of target and returns it with the URL to call
// instead of target. It stops when the test ends.
func CountingProxy(tb testing.TB, target string) (*RPCCounter, string) {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	c := &RPCCounter{calls: map[string]int{}, proxy: httputil.NewSingleHostReverseProxy(u)}
	srv := httptest.NewServer(c)
	tb.Cleanup(srv.Close)
	return c, srv.URL
}

func (c *RPCCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req struct {
		Method string `json:"method"`
	}
	_ = json.Unmarshal(body, &req)
	c.mu.Lock()
	c.calls[req.Method]++
	c.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	c.proxy.ServeHTTP(w, r)
}

// Count is how many calls of method went through so far.
func (c *RPCCounter) Count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// Snapshot is every method's count so far.
func (c *RPCCounter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.calls)
}
