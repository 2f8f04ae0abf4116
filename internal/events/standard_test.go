package events

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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
