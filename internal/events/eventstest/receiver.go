// Package eventstest has an application event endpoint for tests.
package eventstest

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/events"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// EventReceiver is an application's event endpoint for tests: it keeps every event whose
// signature verifies with Key and counts the ones that do not.
type EventReceiver struct {
	Key    []byte
	mu     sync.Mutex
	events []events.Envelope
	bad    int
}

func (r *EventReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if events.Verify(r.Key, req.Header.Get(events.SignatureHeader), body, 5*time.Minute, time.Now()) != nil {
		r.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var e events.Envelope
	_ = json.Unmarshal(body, &e)
	r.events = append(r.events, e)
}

// Credited says whether a credited txupdate arrived for a deposit with txid.
func (r *EventReceiver) Credited(txid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		var u ledger.TxUpdate
		_ = json.Unmarshal(e.Data, &u)
		if u.TxID == txid && u.Kind == "deposit" && u.Credited {
			return true
		}
	}
	return false
}

// Counts are the good and the badly signed deliveries so far.
func (r *EventReceiver) Counts() (good, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events), r.bad
}

// Events are the well-signed events received so far, in arrival order.
func (r *EventReceiver) Events() []events.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Envelope(nil), r.events...)
}
