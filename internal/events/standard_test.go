package events

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// TestStandardWebhooksVerifierAcceptsDeliveries: a receiver using the Standard Webhooks
// project's own Go library, configured with "whsec_" + base64(signing key) as its docs say,
// verifies a delivery without code of ours; a tampered body and another key are refused.
func TestStandardWebhooksVerifierAcceptsDeliveries(t *testing.T) {
	key := []byte("event-signing-key")
	var gotBody []byte
	var gotHeaders http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotBody, _ = io.ReadAll(r.Body)
		gotHeaders = r.Header.Clone()
	}))
	defer srv.Close()
	target := NewHTTPTarget("app", srv.URL, key, 5*time.Second, 1)
	d := ledger.Delivery{Seq: 7, EventID: "3f1c7a9e-0000-4000-8000-000000000007", Name: "txupdate",
		Payload: json.RawMessage(`{"amount":"0.5"}`), CreatedAt: time.Now()}
	if err := target.Deliver(context.Background(), d); err != nil {
		t.Fatal(err)
	}

	wh, err := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(gotBody, gotHeaders); err != nil {
		t.Fatalf("the Standard Webhooks library refused the delivery: %v\nheaders %v", err, gotHeaders)
	}
	if gotHeaders.Get("webhook-id") != d.EventID {
		t.Errorf("webhook-id %q, want the event id %s", gotHeaders.Get("webhook-id"), d.EventID)
	}
	if err := wh.Verify(append(gotBody, ' '), gotHeaders); err == nil {
		t.Error("a tampered body verified")
	}
	other, _ := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString([]byte("another key")))
	if err := other.Verify(gotBody, gotHeaders); err == nil {
		t.Error("another key verified")
	}
	// Our own header still verifies beside it.
	if err := Verify(key, gotHeaders.Get(SignatureHeader), gotBody, 5*time.Minute, time.Now()); err != nil {
		t.Errorf("X-Cryptoassets-Signature: %v", err)
	}
}

// TestBodyMatchesEncodingJSON: the hand-appended body is what encoding/json writes for the
// envelope (for a compact payload, as the ledger's events are built), and names that need
// escaping go through encoding/json itself.
func TestBodyMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 30, 16, 40, 5, 123456789, time.FixedZone("CET", 3600))
	for name, d := range map[string]ledger.Delivery{
		"event":          {EventID: "3f1c7a9e-0000-4000-8000-000000000007", Name: "txupdate", Payload: json.RawMessage(`{"amount":"0.5","confirmations":3}`), CreatedAt: at},
		"needs escaping": {EventID: "id\"<&>\\\n", Name: "tx\u00e9update", Payload: json.RawMessage(`{"label":"a"}`), CreatedAt: at},
		"no payload":     {EventID: "x", Name: "txupdate", CreatedAt: at},
		"whole second":   {EventID: "x", Name: "txupdate", Payload: json.RawMessage(`[1,2]`), CreatedAt: at.Truncate(time.Second)},
	} {
		want, err := json.Marshal(Envelope{ID: d.EventID, Event: d.Name, CreatedAt: d.CreatedAt.UTC(), Data: d.Payload})
		if err != nil {
			want = nil // encoding/json refuses an empty RawMessage; so must Body
		}
		got, err := Body(d)
		if (err != nil) != (want == nil) || string(got) != string(want) {
			t.Errorf("%s:\n got %s (%v)\nwant %s", name, got, err, want)
		}
		// The hand-appended body is sized beforehand: growing it on the dispatcher's hot path
		// cost a tenth of building each post.
		if plain(d.EventID) && plain(d.Name) && len(d.Payload) > 0 {
			if n := testing.AllocsPerRun(10, func() { _, _ = Body(d) }); n != 1 {
				t.Errorf("%s: %v allocations building the body, want 1", name, n)
			}
		}
	}
}

// TestRequestHeaders: every header a receiver reads is found under its documented name.
func TestRequestHeaders(t *testing.T) {
	key := []byte("k")
	target := NewHTTPTarget("app", "http://127.0.0.1:1/", key, time.Second, 1)
	now := time.Unix(1_800_000_000, 0)
	target.now = func() time.Time { return now }
	// Several requests, so the signatures of later ones come from reused HMAC states and
	// buffers, and the requests from one parsed URL: each is checked again after the last.
	type made struct {
		req  *http.Request
		body []byte
	}
	var all []made
	for i, payload := range []string{`{}`, `{"n":1}`, `{"n":2,"s":"ü"}`} {
		d := ledger.Delivery{EventID: fmt.Sprintf("e%d", i), Name: "txupdate", Payload: json.RawMessage(payload), CreatedAt: now}
		req, err := target.Request(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"Content-Type", EventIDHeader, SignatureHeader, StandardIDHeader, StandardTimestampHeader, StandardSignatureHeader} {
			if req.Header.Get(h) == "" {
				t.Errorf("no %s header in %v", h, req.Header)
			}
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := req.Header.Get(SignatureHeader), Sign(key, now, body); got != want {
			t.Errorf("request %d: signature %s, want %s", i, got, want)
		}
		if got, want := req.Header.Get(StandardSignatureHeader), StandardSignature(key, d.EventID, now, body); got != want {
			t.Errorf("request %d: webhook-signature %s, want %s", i, got, want)
		}
		if req.ContentLength != int64(len(body)) || req.GetBody == nil {
			t.Errorf("request %d: content length %d for %d bytes, GetBody set: %t", i, req.ContentLength, len(body), req.GetBody != nil)
		} else if again, err := req.GetBody(); err != nil {
			t.Error(err)
		} else if b, _ := io.ReadAll(again); string(b) != string(body) {
			// The transport sends the body again this way when a kept-alive connection was closed.
			t.Errorf("request %d: GetBody gives %s, want %s", i, b, body)
		}
		all = append(all, made{req, body})
	}
	for i, m := range all {
		if err := Verify(key, m.req.Header.Get(SignatureHeader), m.body, time.Minute, now); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		if got, want := m.req.Header.Get(StandardSignatureHeader), StandardSignature(key, fmt.Sprintf("e%d", i), now, m.body); got != want {
			t.Errorf("request %d, after the others: webhook-signature %s, want %s", i, got, want)
		}
		if got := m.req.Header.Get(StandardTimestampHeader); got != "1800000000" {
			t.Errorf("request %d: webhook-timestamp %q", i, got)
		}
		if m.req.Method != http.MethodPost || m.req.URL.String() != "http://127.0.0.1:1/" || m.req.Host != "127.0.0.1:1" {
			t.Errorf("request %d: %s %s (host %s)", i, m.req.Method, m.req.URL, m.req.Host)
		}
	}
}

// TestRequestWithABadURL: a target whose URL does not parse says so on every delivery.
func TestRequestWithABadURL(t *testing.T) {
	target := NewHTTPTarget("app", "http://[::1", []byte("k"), time.Second, 1)
	_, err := target.Request(context.Background(), ledger.Delivery{EventID: "e", Name: "txupdate", Payload: json.RawMessage(`{}`)})
	if err == nil || !strings.Contains(err.Error(), "http://[::1") {
		t.Errorf("error %v, want one naming the URL", err)
	}
}
