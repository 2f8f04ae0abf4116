package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(testassets.Main(m, testassets.Postgres(&pg)))
}

func TestSignAndVerify(t *testing.T) {
	key := []byte("signing-key")
	body := []byte(`{"id":"x"}`)
	now := time.Unix(1_795_323_000, 0)
	sig := Sign(key, now, body)
	if err := Verify(key, sig, body, 5*time.Minute, now.Add(time.Minute)); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	for name, tc := range map[string]struct {
		key, body []byte
		header    string
		at        time.Time
		want      string
	}{
		"tampered body": {key, []byte(`{"id":"y"}`), sig, now, "does not match"},
		"wrong key":     {[]byte("other"), body, sig, now, "does not match"},
		"replayed":      {key, body, sig, now.Add(10 * time.Minute), "away from now"},
		"malformed":     {key, body, "sha256=abc", now, "must look like"},
	} {
		if err := Verify(tc.key, tc.header, tc.body, 5*time.Minute, tc.at); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// receiver is an application endpoint that verifies signatures and records event ids.
type receiver struct {
	key     []byte
	failing atomic.Bool
	mu      sync.Mutex
	ids     []string
	bad     int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if r.failing.Load() {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := Verify(r.key, req.Header.Get(SignatureHeader), body, 5*time.Minute, time.Now()); err != nil {
		r.bad++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil || env.ID != req.Header.Get(EventIDHeader) || env.Event != "txupdate" {
		r.bad++
		http.Error(w, "bad envelope", http.StatusBadRequest)
		return
	}
	r.ids = append(r.ids, env.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) unique() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, id := range r.ids {
		seen[id] = true
	}
	return len(seen)
}

// ledgerWithEvents opens a ledger and produces n txupdate events from deposit confirmations.
func ledgerWithEvents(t *testing.T, targets []string, n int) (*ledger.Ledger, *pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	url, pool := ledgertest.DB(t, pg)
	l, err := ledger.Open(ctx, pool, ledger.Options{Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 3,
		MaxTrackedConfirmations: 100, ValidateAddress: func(string) error { return nil }, EventTargets: targets})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := l.CreateAccount(ctx, "alice")
	if _, err := l.AddReceivingAddress(ctx, a.ID, "addr-1", ""); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.RecordDeposit(ctx, ledger.Observation{TxID: strings.Repeat("ab", 32), Address: "addr-1", Amount: 1000, Confirmations: int32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	return l, pool, url
}

func TestFailingTargetDoesNotBlockOthers(t *testing.T) {
	ctx := context.Background()
	l, pool, _ := ledgerWithEvents(t, []string{"good", "flaky"}, 5)
	good, flaky := &receiver{key: []byte("k1")}, &receiver{key: []byte("k2")}
	flaky.failing.Store(true)
	gs, fs := httptest.NewServer(good), httptest.NewServer(flaky)
	defer gs.Close()
	defer fs.Close()
	// A backoff far longer than the test: "nothing is due yet" must not depend on how fast a
	// busy machine runs the lines between. Time passing is then simulated in the database.
	d := NewDispatcher(l, nil, Backoff{Base: time.Hour, Max: time.Hour, GiveUpAfter: 24 * time.Hour}, testr.New(t))
	gt := NewHTTPTarget("good", gs.URL, good.key, 5*time.Second, 4)
	ft := NewHTTPTarget("flaky", fs.URL, flaky.key, 5*time.Second, 4)

	if n, err := d.DeliverDue(ctx, ft); err != nil || n != 5 {
		t.Fatalf("flaky: %d %v", n, err)
	}
	if n, err := d.DeliverDue(ctx, gt); err != nil || n != 5 || good.unique() != 5 {
		t.Fatalf("good: %d %v, received %d", n, err, good.unique())
	}
	var pending int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_deliveries WHERE target = 'flaky' AND delivered_at IS NULL AND attempts = 1 AND last_error LIKE '%503%'`).Scan(&pending); err != nil || pending != 5 {
		t.Fatalf("flaky deliveries recorded: %d %v", pending, err)
	}
	// Nothing is due before the backoff passes.
	if n, _ := d.DeliverDue(ctx, ft); n != 0 {
		t.Errorf("%d retries before the backoff elapsed", n)
	}
	flaky.failing.Store(false)
	// The backoff has passed.
	if _, err := pool.Exec(ctx, `UPDATE outbox_deliveries SET next_attempt_at = now() - interval '1 second' WHERE target = 'flaky' AND delivered_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	if n, err := d.DeliverDue(ctx, ft); err != nil || n != 5 || flaky.unique() != 5 {
		t.Fatalf("after recovery: %d %v, received %d", n, err, flaky.unique())
	}
	if good.bad+flaky.bad != 0 {
		t.Errorf("%d deliveries failed signature or envelope checks", good.bad+flaky.bad)
	}
	if n, _ := d.DeliverDue(ctx, gt); n != 0 {
		t.Errorf("delivered events are delivered again: %d", n)
	}
}

// TestPostsUnderWayAtOnceAreBounded: a target with maxInFlight 4 gets exactly 4 posts at once
// (the first four are held until all four have arrived), never more, and every event once.
func TestPostsUnderWayAtOnceAreBounded(t *testing.T) {
	ctx := context.Background()
	l, pool, _ := ledgerWithEvents(t, []string{"web"}, 20)
	rec := &receiver{key: []byte("k")}
	var inflight, peak atomic.Int32
	allFour := make(chan struct{})
	var once sync.Once
	// Past this, nothing is held: a dispatcher posting one at a time fails the peak check below
	// instead of hanging.
	hold, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if n == 4 {
			once.Do(func() { close(allFour) })
		}
		select {
		case <-allFour:
		case <-hold.Done():
		}
		rec.ServeHTTP(w, r)
	}))
	defer srv.Close()
	d := NewDispatcher(l, nil, DefaultBackoff(), testr.New(t))
	if n, err := d.DeliverDue(ctx, NewHTTPTarget("web", srv.URL, rec.key, 2*time.Minute, 4)); err != nil || n != 20 {
		t.Fatalf("delivered %d: %v", n, err)
	}
	if p := peak.Load(); p != 4 {
		t.Errorf("at most %d posts were under way at once, want 4", p)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d deliveries not recorded (%v)", left, err)
	}
	if len(rec.ids) != 20 || rec.unique() != 20 || rec.bad != 0 {
		t.Errorf("received %d posts of %d events, %d bad", len(rec.ids), rec.unique(), rec.bad)
	}
}

// TestDeliveriesPageThroughTheOutbox: a backlog longer than a page is read, posted and
// recorded page by page in one DeliverDue call, every event once, and in event order when the
// target takes one post at a time.
func TestDeliveriesPageThroughTheOutbox(t *testing.T) {
	for _, tc := range []struct {
		name           string
		inFlight, page int
	}{
		{"one at a time", 1, 7},
		{"four at once", 4, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			l, pool, _ := ledgerWithEvents(t, []string{"web"}, 20)
			rec := &receiver{key: []byte("k")}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			d := NewDispatcher(l, nil, DefaultBackoff(), testr.New(t))
			d.page = tc.page
			target := NewHTTPTarget("web", srv.URL, rec.key, 2*time.Minute, tc.inFlight)
			if n, err := d.DeliverDue(ctx, target); err != nil || n != 20 {
				t.Fatalf("tried %d: %v", n, err)
			}
			if len(rec.ids) != 20 || rec.unique() != 20 || rec.bad != 0 {
				t.Errorf("received %d posts of %d events, %d bad", len(rec.ids), rec.unique(), rec.bad)
			}
			var left int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL`).Scan(&left); err != nil || left != 0 {
				t.Errorf("%d deliveries not recorded (%v)", left, err)
			}
			if n, err := d.DeliverDue(ctx, target); err != nil || n != 0 {
				t.Errorf("a second pass tried %d: %v", n, err)
			}
			if tc.inFlight > 1 {
				return
			}
			rows, _ := pool.Query(ctx, `SELECT event_id::text FROM outbox_events ORDER BY id`)
			order, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(order, ",") != strings.Join(rec.ids, ",") {
				t.Errorf("received out of order:\n got %v\nwant %v", rec.ids, order)
			}
		})
	}
}

func TestGivingUp(t *testing.T) {
	ctx := context.Background()
	l, pool, _ := ledgerWithEvents(t, []string{"dead"}, 1)
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer dead.Close()
	d := NewDispatcher(l, nil, Backoff{Base: time.Millisecond, Max: time.Millisecond, GiveUpAfter: 0}, testr.New(t))
	if _, err := d.DeliverDue(ctx, NewHTTPTarget("dead", dead.URL, []byte("k"), time.Second, 1)); err != nil {
		t.Fatal(err)
	}
	var infinite bool
	if err := pool.QueryRow(ctx, `SELECT next_attempt_at = 'infinity' FROM outbox_deliveries WHERE target = 'dead'`).Scan(&infinite); err != nil || !infinite {
		t.Errorf("abandoned delivery not parked: %v %v", infinite, err)
	}
}

func TestRunDeliversToPGNotifyAndHTTP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, _, url := ledgerWithEvents(t, []string{"web", "pg"}, 3)
	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	if _, err := listener.Exec(ctx, "LISTEN cryptoassets_events"); err != nil {
		t.Fatal(err)
	}
	web := &receiver{key: []byte("k")}
	srv := httptest.NewServer(web)
	defer srv.Close()
	d := NewDispatcher(l, []Target{NewHTTPTarget("web", srv.URL, web.key, 5*time.Second, 1), NewPGNotifyTarget("pg", "cryptoassets_events", l)},
		DefaultBackoff(), testr.New(t))
	go func() { _ = d.Run(ctx) }()

	got := map[string]bool{}
	deadline, stop := context.WithTimeout(ctx, 20*time.Second)
	defer stop()
	for len(got) < 3 {
		n, err := listener.WaitForNotification(deadline)
		if err != nil {
			t.Fatalf("waiting for NOTIFY: %v (got %d)", err, len(got))
		}
		var env Envelope
		if err := json.Unmarshal([]byte(n.Payload), &env); err != nil {
			t.Fatal(err)
		}
		got[env.ID] = true
	}
	testassets.Eventually(t, 20*time.Second, "the HTTP target's three events", func() error {
		if n := web.unique(); n < 3 {
			return fmt.Errorf("HTTP target received %d of 3", n)
		}
		return nil
	})
}

// TestRunIsWokenByWhatTheLedgerCommits: with a poll far longer than the test, events are
// delivered because the ledger says it committed them (Options.OnEvents), one commit wakes every
// target, and a failed delivery is retried when its backoff ends, not at the next poll.
func TestRunIsWokenByWhatTheLedgerCommits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, pool := ledgertest.DB(t, pg)
	commits := &Commits{}
	l, err := ledger.Open(ctx, pool, ledger.Options{Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 3,
		MaxTrackedConfirmations: 100, ValidateAddress: func(string) error { return nil }, EventTargets: []string{"web", "other"},
		OnEvents: commits.Notify})
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.CreateAccount(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddReceivingAddress(ctx, a.ID, "addr-1", ""); err != nil {
		t.Fatal(err)
	}
	web := &receiver{key: []byte("k")}
	web.failing.Store(true)
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if web.failing.Load() {
			refused.Add(1)
		}
		web.ServeHTTP(w, r)
	}))
	defer srv.Close()
	other := &receiver{key: []byte("o")}
	otherSrv := httptest.NewServer(other)
	defer otherSrv.Close()
	d := NewDispatcher(l, []Target{NewHTTPTarget("web", srv.URL, web.key, 5*time.Second, 1),
		NewHTTPTarget("other", otherSrv.URL, other.key, 5*time.Second, 1)},
		Backoff{Base: 200 * time.Millisecond, Max: time.Second, GiveUpAfter: time.Hour}, testr.New(t))
	d.IdlePoll = time.Hour
	d.Commits = commits
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The deposit's event is refused, and retried when its backoff ends.
	if _, err := l.RecordDeposit(ctx, ledger.Observation{TxID: strings.Repeat("ab", 32), Address: "addr-1", Amount: 1000, Confirmations: 3}); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 30*time.Second, "the event posted and refused", func() error {
		if refused.Load() == 0 {
			return errors.New("not posted")
		}
		return nil
	})
	web.failing.Store(false)
	testassets.Eventually(t, 30*time.Second, "the refused event retried and delivered", func() error {
		if n := web.unique(); n != 1 {
			return fmt.Errorf("%d events received", n)
		}
		return nil
	})
	// An internal transfer commits its event in a statement on the pool, not in a transaction.
	b, err := l.CreateAccount(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.SendInternal(ctx, a.ID, b.ID, 400, ""); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 30*time.Second, "the transfer's event delivered to both targets", func() error {
		if n, m := web.unique(), other.unique(); n != 2 || m != 2 {
			return fmt.Errorf("%d events received by one target and %d by the other", n, m)
		}
		return nil
	})
}

// TestCommitsWakesEveryWaiterOnce: Notify closes the channel every waiter took before it, and
// only that one: a waiter that takes the channel afterwards waits for the next Notify.
func TestCommitsWakesEveryWaiterOnce(t *testing.T) {
	var c Commits
	c.Notify() // nobody waits: nothing to wake, nothing remembered
	before := []<-chan struct{}{c.Next(), c.Next()}
	for i, ch := range before {
		select {
		case <-ch:
			t.Fatalf("waiter %d woken before any commit", i)
		default:
		}
	}
	c.Notify()
	for i, ch := range before {
		select {
		case <-ch:
		default:
			t.Errorf("waiter %d not woken by the commit", i)
		}
	}
	after := c.Next()
	select {
	case <-after:
		t.Error("a waiter that came after the commit was woken by it")
	default:
	}
	c.Notify()
	select {
	case <-after:
	default:
		t.Error("the waiter that came after the first commit was not woken by the second")
	}
}

// TestRunPicksUpRetriesScheduledBeforeItStarted: retries an earlier run's failures scheduled are
// delivered when they fall due, though no pass of this run scheduled them and its poll is longer
// than the test.
func TestRunPicksUpRetriesScheduledBeforeItStarted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, pool, _ := ledgerWithEvents(t, []string{"web"}, 3)
	// The earlier run: every event refused, retried in 2 s (longer than a busy machine takes to
	// start the dispatcher, so that its first pass finds none of them due).
	if _, err := pool.Exec(ctx, `UPDATE outbox_deliveries SET attempts = 1, last_error = 'down',
		next_attempt_at = now() + interval '2 seconds' WHERE target = 'web'`); err != nil {
		t.Fatal(err)
	}
	web := &receiver{key: []byte("k")}
	srv := httptest.NewServer(web)
	defer srv.Close()
	d := NewDispatcher(l, []Target{NewHTTPTarget("web", srv.URL, web.key, 5*time.Second, 1)}, DefaultBackoff(), testr.New(t))
	d.IdlePoll = time.Hour
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testassets.Eventually(t, 60*time.Second, "the retries scheduled before the start delivered", func() error {
		if n := web.unique(); n != 3 {
			return fmt.Errorf("%d of 3 events received", n)
		}
		return nil
	})
}
