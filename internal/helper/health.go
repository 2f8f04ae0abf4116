package helper

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"
)

// health collects each component's last outcome for the probes, the status page, the
// CryptoAsset's conditions and metrics. It is written by the parts as they work; no probe calls
// the backend or the database.
//
// The probes mean what Kubernetes does with them:
//   - readiness decides whether the Service sends traffic here. It holds the components marked
//     required: this replica holds the active-helper lock and has started its API. A backend or
//     database outage is not in it: the helper still accepts and queues sends then, and taking its
//     endpoint away would refuse them exactly when queueing matters.
//   - liveness decides whether to restart the container: it fails only when a part has been busy
//     with one step for longer than that part's limit (a hang), never because a peer is down.
type health struct {
	mu         sync.Mutex
	components map[string]componentState
	required   map[string]bool
	busy       map[string]busyState
	now        func() time.Time
	// onChange is told the name of a component whose state changed (outside the lock).
	onChange func(name string)
}

type componentState struct {
	OK      bool      `json:"ok"`
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since"`
	// Required components decide readiness.
	Required bool `json:"required,omitempty"`
}

type busyState struct {
	since time.Time
	limit time.Duration
}

func newHealth() *health {
	return &health{components: map[string]componentState{}, required: map[string]bool{}, busy: map[string]busyState{}, now: time.Now}
}

// notify makes f hear of every component whose state changes from now on.
func (h *health) notify(f func(name string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onChange = f
}

// require makes a component part of readiness.
func (h *health) require(names ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range names {
		h.required[n] = true
	}
}

// set records a component's state; the timestamp moves only when the state changes.
func (h *health) set(name string, err error, okMessage string) {
	h.mu.Lock()
	st := componentState{OK: err == nil, Message: okMessage}
	if err != nil {
		st.Message = err.Error()
	}
	if old, ok := h.components[name]; ok && old.OK == st.OK && old.Message == st.Message {
		h.mu.Unlock()
		return
	}
	st.Since = h.now().UTC()
	h.components[name] = st
	notify := h.onChange
	h.mu.Unlock()
	if notify != nil {
		notify(name)
	}
}

// get returns one component's state.
func (h *health) get(name string) (componentState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.components[name]
	return st, ok
}

// start marks a part as busy with one step that should end within limit; the returned func
// marks the step done. Liveness fails while a step runs past its limit.
func (h *health) start(name string, limit time.Duration) func() {
	h.mu.Lock()
	h.busy[name] = busyState{since: h.now(), limit: limit}
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.busy, name)
		h.mu.Unlock()
	}
}

// snapshot returns every component and whether the required ones are all fine.
func (h *health) snapshot() (map[string]componentState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]componentState, len(h.components))
	ready := len(h.required) > 0
	for name := range h.required {
		ready = ready && h.components[name].OK
	}
	for k, v := range h.components {
		v.Required = h.required[k]
		out[k] = v
	}
	return out, ready
}

// hung names the parts stuck in one step past their limit.
func (h *health) hung() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	now := h.now()
	for name, b := range h.busy {
		if d := now.Sub(b.since); d > b.limit {
			out = append(out, fmt.Sprintf("%s busy for %s (limit %s)", name, d.Round(time.Second), b.limit))
		}
	}
	sort.Strings(out)
	return out
}

// opsHandler serves /healthz (liveness), /readyz (readiness) and /metrics. Both probes answer
// from memory.
func (h *health) opsHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if hung := h.hung(); len(hung) > 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"live": false, "hung": hung})
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		states, ready := h.snapshot()
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "components": states})
	})
	mux.Handle("GET /metrics", metrics)
	return mux
}
