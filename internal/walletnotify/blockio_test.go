package walletnotify

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-logr/logr/testr"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/backendtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockio"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockio/blockiotest"
)

const (
	bioKey = "0266-c2b6-c2c8-ee07"
	bioPIN = "a secret pin"
)

func blockIOFake(t *testing.T) (*blockiotest.Server, *blockio.Client) {
	t.Helper()
	srv, err := blockiotest.Start(bioKey, bioPIN, "bitcoin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	c, err := blockio.New(blockio.Options{URL: srv.URL(), APIKey: bioKey, PIN: bioPIN, Coin: "bitcoin", Network: "testnet"})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func TestBlockIOWebsocket(t *testing.T) {
	srv, c := blockIOFake(t)
	addr, err := c.NewAddress(context.Background(), "ws")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	src := &BlockIOWebsocket{URL: srv.WebsocketURL(), APIKey: bioKey, Notify: s.notify, Rejected: s.reject, Log: testr.New(t),
		Connected: func() { s.mu.Lock(); s.connected++; s.mu.Unlock() },
		Health:    func(err error) { s.mu.Lock(); s.healthErr = err; s.mu.Unlock() }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	waitFor(t, "subscribed", func() bool { _, _, n, h := s.snapshot(); return n == 1 && h == nil })

	srv.Ping()
	first, err := srv.Receive(addr, 50_000)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first txid", func() bool { got, _, _, _ := s.snapshot(); return len(got) == 1 && got[0] == first })

	// block.io drops the connection: the source reconnects, subscribes and asks for a catch-up.
	srv.DropSockets()
	waitFor(t, "resubscribed", func() bool { _, _, n, _ := s.snapshot(); return n == 2 })
	second, _ := srv.Receive(addr, 60_000)
	waitFor(t, "the second txid", func() bool { got, _, _, _ := s.snapshot(); return len(got) == 2 && got[1] == second })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A wrong API key is refused by block.io and reported.
	s2 := &sink{}
	wrong := &BlockIOWebsocket{URL: srv.WebsocketURL(), APIKey: "wrong", Notify: s2.notify, Log: testr.New(t),
		Health: func(err error) { s2.mu.Lock(); s2.healthErr = err; s2.mu.Unlock() }}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { _ = wrong.Run(ctx2) }()
	waitFor(t, "the refusal", func() bool { _, _, _, h := s2.snapshot(); return h != nil && strings.Contains(h.Error(), "refused") })
}

// A stream that says odd things and then goes quiet.
func TestBlockIOWebsocketBadInputAndSilence(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		conns++
		mu.Unlock()
		ctx := r.Context()
		_, _, _ = c.Read(ctx) // the subscription
		for _, m := range []string{`{"status":"success"}`, `not json`, `{"type":"address","data":{"txid":"zz"}}`,
			`{"type":"address","data":{"txid":"` + strings.Repeat("0", 63) + `"}}`, `{"type":"ping"}`} {
			_ = c.Write(ctx, websocket.MessageText, []byte(m))
		}
		<-ctx.Done() // then silence
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	s := &sink{}
	src := &BlockIOWebsocket{URL: "ws://" + ln.Addr().String() + "/", APIKey: "k", IdleTimeout: 300 * time.Millisecond,
		Notify: s.notify, Rejected: s.reject, Log: testr.New(t),
		Health: func(err error) { s.mu.Lock(); s.healthErr = err; s.mu.Unlock() }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = src.Run(ctx) }()
	waitFor(t, "three refusals and a silence noticed", func() bool {
		_, rej, _, h := s.snapshot()
		return len(rej) >= 3 && h != nil && strings.Contains(h.Error(), "no message from block.io")
	})
	waitFor(t, "a reconnect after the silence", func() bool { mu.Lock(); defer mu.Unlock(); return conns >= 2 })
	if got, _, _, _ := s.snapshot(); len(got) != 0 {
		t.Fatalf("bad messages passed on: %v", got)
	}
}

func TestBlockIOWebhook(t *testing.T) {
	srv, c := blockIOFake(t)
	addr, _ := c.NewAddress(context.Background(), "hook")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + ln.Addr().String() + "/blockio/5e1f0c9a7d2b"
	s := &sink{}
	hook := &BlockIOWebhook{PublicURL: public, Registrar: c, Notify: s.notify, Rejected: s.reject, Log: testr.New(t)}
	h, err := hook.Handler()
	if err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	var mu sync.Mutex
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		h.ServeHTTP(w, r)
	})}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	ctx, cancel := context.WithCancel(context.Background())
	registered := make(chan error, 1)
	go func() { registered <- hook.Register(ctx) }()
	waitFor(t, "registration", func() bool { n := srv.Notifications(); return len(n) == 1 && n[0] == public })
	// A second instance with the same URL reuses the registration instead of adding one.
	other := &BlockIOWebhook{PublicURL: public, Registrar: c, Notify: s.notify, Log: testr.New(t)}
	if id, err := other.register(context.Background()); err != nil || id == "" || len(srv.Notifications()) != 1 {
		t.Fatalf("second registration: %q %v %v", id, err, srv.Notifications())
	}

	txid, err := srv.Receive(addr, 70_000)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the webhook's txid", func() bool { got, _, _, _ := s.snapshot(); return len(got) == 1 && got[0] == txid })

	// block.io's post carries the recorded fields.
	mu.Lock()
	first := bodies[0]
	mu.Unlock()
	if lacking := backendtest.MissingFields(t, filepath.Join("..", "backend", "blockio", "testdata", "webhook_new_transactions.json"), first); len(lacking) > 0 {
		t.Errorf("the local block.io's webhook lacks %v", lacking)
	}

	post := func(method, path, body string) int {
		req, _ := http.NewRequest(method, "http://"+ln.Addr().String()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/blockio/guess", `{"type":"ping"}`, http.StatusNotFound},
		{"GET", "/blockio/5e1f0c9a7d2b", "", http.StatusMethodNotAllowed},
		{"POST", "/blockio/5e1f0c9a7d2b", `{"type":"ping"}`, http.StatusOK},
		{"POST", "/blockio/5e1f0c9a7d2b/", `garbage`, http.StatusBadRequest},
		{"POST", "/blockio/5e1f0c9a7d2b", `{"data":{"txid":"` + txid + `"}}`, http.StatusBadRequest},
		{"POST", "/blockio/5e1f0c9a7d2b", `{"type":"new-transactions","data":{"txid":"nothex"}}`, http.StatusBadRequest},
		{"POST", "/blockio/5e1f0c9a7d2b", `{"type":"new-transactions","data":{}}`, http.StatusBadRequest},
		{"POST", "/blockio/5e1f0c9a7d2b", strings.Repeat("x", 70<<10), http.StatusBadRequest},
	} {
		if code := post(tc.method, tc.path, tc.body); code != tc.code {
			t.Errorf("%s %s %.40q: %d, want %d", tc.method, tc.path, tc.body, code, tc.code)
		}
	}
	if got, rej, _, _ := s.snapshot(); len(got) != 1 || len(rej) != 5 {
		t.Errorf("after bad posts: txids %v, refusals %v", got, rej)
	}

	cancel()
	if err := <-registered; err != nil {
		t.Fatal(err)
	}
	if n := srv.Notifications(); len(n) != 0 {
		t.Fatalf("registration left behind: %v", n)
	}
	if _, err := (&BlockIOWebhook{PublicURL: "https://pay.example.com/"}).Handler(); err == nil {
		t.Fatal("a webhook at the root was accepted")
	}
}
