// Package events delivers the ledger's outbox to the application: at least once, each target on
// its own, with exponential backoff, signed.
//
// # What a receiver gets
//
// An HTTP target receives POST requests with a JSON body:
//
//	{"id": "3f1c…-uuid", "event": "txupdate", "created_at": "2026-11-22T04:50:00Z", "data": {…}}
//
// and the headers
//
//	X-Cryptoassets-Event-Id:  the same id
//	X-Cryptoassets-Signature: t=1795323000,v1=<hex>
//
// where v1 is HMAC-SHA256 with the target's signing key over "<t>.<body>". The same request also
// carries the Standard Webhooks headers (https://www.standardwebhooks.com), so a receiver using a
// Standard Webhooks library verifies it with the secret "whsec_" + base64(signing key):
//
//	webhook-id:         the event id
//	webhook-timestamp:  unix seconds
//	webhook-signature:  v1,<base64 of HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>">
//
// To verify the first form: recompute
// the HMAC over the timestamp, a dot and the raw body, compare in constant time, and reject a t
// more than five minutes from your clock (replays). Respond 2xx once the event is stored; any
// other answer, or none within the timeout, is retried with exponential backoff (capped at an
// hour, for seven days). Deliveries can repeat and arrive out of order: deduplicate on id, and use
// data.confirmations rather than arrival order.
package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// Envelope is the JSON body of a delivered event.
type Envelope struct {
	ID        string          `json:"id"`
	Event     string          `json:"event"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// Body encodes a delivery as the JSON every target sends. The payload is the ledger's json
// column, which PostgreSQL checked when it was written, and goes in as stored; the rest is
// appended by hand when no character needs escaping (ids and names always), which costs a
// fraction of encoding/json's reflection on the dispatcher's hot path.
func Body(d ledger.Delivery) ([]byte, error) {
	if !plain(d.EventID) || !plain(d.Name) || len(d.Payload) == 0 {
		return json.Marshal(Envelope{ID: d.EventID, Event: d.Name, CreatedAt: d.CreatedAt.UTC(), Data: d.Payload})
	}
	// The exact size but for the time, whose longest RFC 3339 form is 35 bytes: one allocation.
	b := make([]byte, 0, len(`{"id":"","event":"","created_at":"","data":}`)+35+len(d.EventID)+len(d.Name)+len(d.Payload))
	b = append(b, `{"id":"`...)
	b = append(b, d.EventID...)
	b = append(b, `","event":"`...)
	b = append(b, d.Name...)
	b = append(b, `","created_at":"`...)
	b = d.CreatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	b = append(b, d.Payload...)
	return append(b, '}'), nil
}

// plain: s goes into a JSON string as it is, with nothing encoding/json would escape.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// Headers of signed deliveries.
const (
	SignatureHeader = "X-Cryptoassets-Signature"
	EventIDHeader   = "X-Cryptoassets-Event-Id"
	// The Standard Webhooks headers.
	StandardIDHeader        = "webhook-id"
	StandardTimestampHeader = "webhook-timestamp"
	StandardSignatureHeader = "webhook-signature"
)

// StandardSignature is the webhook-signature value of the Standard Webhooks format for an event
// id, time and body: "v1," and the base64 HMAC-SHA256 of "<id>.<unix seconds>.<body>".
func StandardSignature(key []byte, id string, t time.Time, body []byte) string {
	return string(newSigner(key).appendStandard(nil, id, strconv.AppendInt(nil, t.Unix(), 10), body))
}

// Sign returns the signature header value for body at time t.
func Sign(key []byte, t time.Time, body []byte) string {
	return string(newSigner(key).appendSign(nil, strconv.AppendInt(nil, t.Unix(), 10), body))
}

// signer is an HMAC-SHA256 state keyed with a target's signing key, and room to build what it
// signs and the header values, so that the three header values a post's signing makes cost one
// allocation between them: keying a new HMAC costs two SHA-256 blocks and seven allocations,
// and building each value from strings five more.
type signer struct {
	mac hash.Hash
	sum [sha256.Size]byte
	// buf holds what is signed ahead of the body, out the header values.
	buf, out []byte
}

func newSigner(key []byte) *signer { return &signer{mac: hmac.New(sha256.New, key)} }

// hmac returns the HMAC of the text in s.buf followed by body, in s.sum.
func (s *signer) hmac(body []byte) []byte {
	s.mac.Reset()
	s.mac.Write(s.buf)
	s.mac.Write(body)
	return s.mac.Sum(s.sum[:0])
}

// appendSign appends our signature header value for body at ts (unix seconds) to dst:
// "t=<ts>,v1=<hex>".
func (s *signer) appendSign(dst, ts, body []byte) []byte {
	s.buf = append(append(s.buf[:0], ts...), '.')
	dst = append(append(append(dst, "t="...), ts...), ",v1="...)
	return hex.AppendEncode(dst, s.hmac(body))
}

// appendStandard appends the Standard Webhooks signature of event id's body at ts to dst:
// "v1,<base64>".
func (s *signer) appendStandard(dst []byte, id string, ts, body []byte) []byte {
	s.buf = append(append(append(append(s.buf[:0], id...), '.'), ts...), '.')
	return base64.StdEncoding.AppendEncode(append(dst, "v1,"...), s.hmac(body))
}

// headers returns a post's timestamp header value (unix seconds) and its two signatures,
// substrings of one string.
func (s *signer) headers(id string, unix int64, body []byte) (ts, signature, standard string) {
	s.out = strconv.AppendInt(s.out[:0], unix, 10)
	n := len(s.out)
	s.out = s.appendSign(s.out, s.out[:n], body)
	m := len(s.out)
	s.out = s.appendStandard(s.out, id, s.out[:n], body)
	all := string(s.out)
	return all[:n], all[n:m], all[m:]
}

// Verify checks a signature header against body, refusing timestamps further than tolerance from now.
func Verify(key []byte, header string, body []byte, tolerance time.Duration, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("signature header must look like t=<unix seconds>,v1=<hex>")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature timestamp is %s away from now", d.Round(time.Second))
	}
	want := Sign(key, time.Unix(sec, 0), body)
	if !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return errors.New("signature does not match")
	}
	return nil
}

// Target delivers events to one place.
type Target interface {
	Name() string
	Deliver(ctx context.Context, d ledger.Delivery) error
}

// HTTPTarget posts signed events.
type HTTPTarget struct {
	name        string
	url         string
	client      *http.Client
	now         func() time.Time
	maxInFlight int
	// signers, keyed with the signing key, are reused from post to post.
	signers sync.Pool
	// post is the request every delivery copies, its URL parsed once (or why it could not be):
	// http.NewRequestWithContext parsed it and made a header map, soon replaced, on every post.
	post    *http.Request
	postErr error
}

// NewHTTPTarget returns a target posting to url, signing with key, with at most maxInFlight posts
// under way at once (1, or less, posts one event at a time, in order).
func NewHTTPTarget(name, url string, key []byte, timeout time.Duration, maxInFlight int) *HTTPTarget {
	maxInFlight = max(maxInFlight, 1)
	// Keep a connection per post in flight: the default transport keeps two per host, and a
	// third post would open and close a connection every time.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = maxInFlight
	h := &HTTPTarget{name: name, url: url, client: &http.Client{Timeout: timeout, Transport: transport},
		now: time.Now, maxInFlight: maxInFlight}
	h.signers.New = func() any { return newSigner(key) }
	h.post, h.postErr = http.NewRequest(http.MethodPost, url, nil)
	return h
}

// MaxInFlight is how many posts may be under way at once.
func (h *HTTPTarget) MaxInFlight() int { return h.maxInFlight }

// Name is the target's name from the config.
func (h *HTTPTarget) Name() string { return h.name }

// Request is the signed POST of one event.
func (h *HTTPTarget) Request(ctx context.Context, d ledger.Delivery) (*http.Request, error) {
	if h.postErr != nil {
		return nil, h.postErr
	}
	body, err := Body(d)
	if err != nil {
		return nil, err
	}
	// A shallow copy: the posts under way share the URL, which the client only reads.
	req := h.post.WithContext(ctx)
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	// The transport sends a post again, body and all, when the kept-alive connection it took
	// turns out closed by the receiver.
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	s := h.signers.Get().(*signer)
	ts, signature, standard := s.headers(d.EventID, h.now().Unix(), body)
	h.signers.Put(s)
	// Keys in canonical form, set directly: Header.Set would canonicalise each on every post. The
	// values share one array: one allocation, not seven.
	v := [...]string{"application/json", "cryptoassets-helper", d.EventID, signature, ts, standard}
	req.Header = http.Header{
		"Content-Type":             v[0:1:1],
		"User-Agent":               v[1:2:2],
		"X-Cryptoassets-Event-Id":  v[2:3:3],
		"X-Cryptoassets-Signature": v[3:4:4],
		"Webhook-Id":               v[2:3:3],
		"Webhook-Timestamp":        v[4:5:5],
		"Webhook-Signature":        v[5:6:6],
	}
	return req, nil
}

// Deliver posts one event; only a 2xx answer counts as delivered.
func (h *HTTPTarget) Deliver(ctx context.Context, d ledger.Delivery) error {
	req, err := h.Request(ctx, d)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered HTTP %d", h.url, resp.StatusCode)
	}
	return nil
}

// PGNotifyTarget sends events with NOTIFY on the ledger database, for applications that LISTEN.
type PGNotifyTarget struct {
	name, channel string
	ledger        *ledger.Ledger
}

// NewPGNotifyTarget returns a NOTIFY target.
func NewPGNotifyTarget(name, channel string, l *ledger.Ledger) *PGNotifyTarget {
	return &PGNotifyTarget{name: name, channel: channel, ledger: l}
}

// Name is the target's name from the config.
func (p *PGNotifyTarget) Name() string { return p.name }

// Deliver notifies the channel. NOTIFY payloads are limited to 8000 bytes; txupdate events are a
// few hundred.
func (p *PGNotifyTarget) Deliver(ctx context.Context, d ledger.Delivery) error {
	body, err := Body(d)
	if err != nil {
		return err
	}
	if len(body) >= 8000 {
		return fmt.Errorf("event %s is %d bytes, over NOTIFY's 8000", d.EventID, len(body))
	}
	return p.ledger.Notify(ctx, p.channel, body)
}
