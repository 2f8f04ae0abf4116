package helper

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"
)

// health collects what /readyz and the status page report: each component's last outcome.
type health struct {
	mu         sync.Mutex
	components map[string]componentState
}

type componentState struct {
	OK      bool      `json:"ok"`
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since"`
}

func newHealth() *health { return &health{components: map[string]componentState{}} }

// set records a component's state; the timestamp moves only when the state changes.
func (h *health) set(name string, err error, okMessage string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := componentState{OK: err == nil, Message: okMessage}
	if err != nil {
		st.Message = err.Error()
	}
	if old, ok := h.components[name]; ok && old.OK == st.OK && old.Message == st.Message {
		return
	}
	st.Since = time.Now().UTC()
	h.components[name] = st
}

func (h *health) snapshot() (map[string]componentState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]componentState, len(h.components))
	ready := len(h.components) > 0
	for k, v := range h.components {
		out[k] = v
		ready = ready && v.OK
	}
	return out, ready
}

// opsHandler serves /healthz (the process answers), /readyz (every component is fine) and /metrics.
func (h *health) opsHandler(metrics http.Handler, probe func(context.Context)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		probe(ctx)
		states, ready := h.snapshot()
		names := make([]string, 0, len(states))
		for n := range states {
			names = append(names, n)
		}
		sort.Strings(names)
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "components": states})
	})
	mux.Handle("GET /metrics", metrics)
	return mux
}
