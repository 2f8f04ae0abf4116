package helper

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/events/eventstest"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

type pulledEvent struct {
	Position int64           `json:"position"`
	ID       string          `json:"id"`
	Event    string          `json:"event"`
	Data     json.RawMessage `json:"data"`
}

// TestEventsArePulledAfterAnOutageLongerThanTheRetryWindow: the application's receiver takes
// the first events by push, then is down while more happen, for longer than push delivery
// retries (played by giving the deliveries up, as the dispatcher does after seven days). Pulling
// from position 0, a page at a time, returns every event once, in order, with the ids and
// payloads push delivered; a long poll then returns the next event as it happens.
func TestEventsArePulledAfterAnOutageLongerThanTheRetryWindow(t *testing.T) {
	ctx := context.Background()
	dbURL, pool := ledgertest.DB(t, pg)
	app := &eventstest.EventReceiver{Key: []byte(testassets.SigningKey)}
	appAddr := testassets.FreeAddr(t)
	ln, err := net.Listen("tcp", appAddr)
	if err != nil {
		t.Fatal(err)
	}
	appSrv := &http.Server{Handler: app}
	go func() { _ = appSrv.Serve(ln) }()
	defer appSrv.Close()

	cfg := testassets.HelperConfig(t, node, dbURL, "http://"+appAddr+"/events")
	start(t, cfg)
	testassets.Eventually(t, 60*time.Second, "helper ready", func() error { return ready(cfg) })

	var alice, bob apiAccount
	call(t, cfg, "POST", "/v1/accounts", testassets.APIToken, map[string]string{"name": "alice"}, nil, &alice)
	call(t, cfg, "POST", "/v1/accounts", testassets.APIToken, map[string]string{"name": "bob"}, nil, &bob)
	var addr struct{ Address string }
	call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", alice.ID), testassets.APIToken, nil, nil, &addr)
	txid := node.MustPay(t, addr.Address, 100_000_000)
	if _, err := node.Mine(3); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 60*time.Second, "the credit pushed", func() error {
		if !app.Credited(txid) {
			good, _ := app.Counts()
			return fmt.Errorf("no credited txupdate among %d events pushed", good)
		}
		return nil
	})

	// The receiver goes away; transfers happen; the push gives up on them.
	appSrv.Close()
	for i := range 5 {
		body := map[string]any{"to_account": bob.ID, "amount": fmt.Sprintf("0.0%d", i+1)}
		if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/send", alice.ID), testassets.APIToken, body, nil, nil); code != http.StatusCreated {
			t.Fatalf("transfer %d: %d", i, code)
		}
	}
	testassets.Eventually(t, 30*time.Second, "the backlog gauge", func() error {
		if v, ok := metric(t, cfg, "cryptoassets_outbox_undelivered_events", "target", "app"); !ok || v < 5 {
			return fmt.Errorf("cryptoassets_outbox_undelivered_events{target=app} = %v (present %v), want at least the 5 transfers", v, ok)
		}
		if v, _ := metric(t, cfg, "cryptoassets_outbox_oldest_undelivered_age_seconds", "target", "app"); v <= 0 {
			return fmt.Errorf("oldest undelivered age %v", v)
		}
		return nil
	})
	var total int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE outbox_deliveries SET next_attempt_at = 'infinity', last_error = 'gave up after seven days'
		WHERE delivered_at IS NULL`); err != nil {
		t.Fatal(err)
	}

	testassets.Eventually(t, 10*time.Second, "backlog given up", metricIs(t, cfg, 0, "cryptoassets_outbox_undelivered_events", "target", "app"))
	if v, ok := metric(t, cfg, "cryptoassets_outbox_given_up_events", "target", "app"); !ok || v < 5 {
		t.Errorf("cryptoassets_outbox_given_up_events{target=app} = %v, want at least 5", v)
	}

	// Pull everything, two at a time.
	var pulled []pulledEvent
	after := int64(0)
	for {
		var page []pulledEvent
		path := fmt.Sprintf("/v1/events?after=%d&limit=2", after)
		if code := call(t, cfg, "GET", path, testassets.APIToken, nil, nil, &page); code != http.StatusOK {
			t.Fatalf("%s: %d", path, code)
		}
		if len(page) == 0 {
			break
		}
		pulled = append(pulled, page...)
		after = page[len(page)-1].Position
	}
	if len(pulled) != total {
		t.Fatalf("pulled %d events, the outbox holds %d", len(pulled), total)
	}
	seen := map[string]bool{}
	for i, e := range pulled {
		if e.Position != int64(i+1) || seen[e.ID] {
			t.Fatalf("event %d: position %d, id %s seen before: %v", i, e.Position, e.ID, seen[e.ID])
		}
		seen[e.ID] = true
	}
	for _, pushed := range app.Events() {
		var same *pulledEvent
		for i := range pulled {
			if pulled[i].ID == pushed.ID {
				same = &pulled[i]
			}
		}
		if same == nil || same.Event != pushed.Event || !jsonEqual(same.Data, pushed.Data) {
			t.Errorf("pushed event %s (%s) is not pulled the same: %+v", pushed.ID, pushed.Data, same)
		}
	}
	var transfers int
	for _, e := range pulled {
		var u struct{ Kind, State string }
		_ = json.Unmarshal(e.Data, &u)
		if u.Kind == "internal" && u.State == "done" {
			transfers++
		}
	}
	if transfers != 5 {
		t.Errorf("%d internal transfer events pulled, want 5", transfers)
	}

	// A long poll returns the next event when it happens.
	got := make(chan []pulledEvent, 1)
	go func() { // not through call: t.Fatal belongs to the test's goroutine
		var page []pulledEvent
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/v1/events?after=%d&wait=60s", cfg.API.Listen, after), nil)
		req.Header.Set("Authorization", "Bearer "+testassets.APIToken)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
		}
		got <- page
	}()
	select {
	case page := <-got:
		t.Fatalf("the long poll answered before anything happened: %+v", page)
	case <-time.After(500 * time.Millisecond): // waiting, as it should; not a timing assertion on the answer
	}
	call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/send", bob.ID), testassets.APIToken, map[string]any{"to_account": alice.ID, "amount": "0.001"}, nil, nil)
	select {
	case page := <-got:
		if len(page) != 1 || page[0].Position != after+1 {
			t.Errorf("long poll: %+v", page)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the long poll did not return the new event")
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ax, _ := json.Marshal(x)
	bx, _ := json.Marshal(y)
	return bytes.Equal(ax, bx)
}
