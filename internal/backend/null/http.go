package null

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/cryptoassets/cryptoassets-operator/internal/amount"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
)

// Handler serves the simulator's controls under /v1/simulator (the caller authenticates):
//
//	GET  /v1/simulator           the simulator's state
//	POST /v1/simulator/receive   {"address": "...", "amount": "0.5"}   an incoming payment -> {"txid"}
//	POST /v1/simulator/mine      {"blocks": 1}                         blocks; the first confirms what is pending
//	POST /v1/simulator/conflict  {"txid": "..."}                       a double-spend takes a transaction away
//	POST /v1/simulator/outage    {"down": true}                        every backend call fails until false
func (b *Backend) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/simulator", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, http.StatusOK, b.Summary())
	})
	mux.HandleFunc("POST /v1/simulator/receive", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Address string `json:"address"`
			Amount  string `json:"amount"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.Address == "" {
			fail(w, http.StatusBadRequest, "address: required")
			return
		}
		paid, err := amount.Parse(req.Amount, b.decimals)
		if err != nil || paid <= 0 {
			fail(w, http.StatusBadRequest, fmt.Sprintf("amount: %q is not a positive decimal amount with at most %d places", req.Amount, b.decimals))
			return
		}
		txid, err := b.Receive(r.Context(), map[string]amount.Amount{req.Address: paid})
		if err != nil {
			fail(w, http.StatusBadRequest, "address: "+err.Error())
			return
		}
		reply(w, http.StatusCreated, map[string]string{"txid": txid})
	})
	mux.HandleFunc("POST /v1/simulator/mine", func(w http.ResponseWriter, r *http.Request) {
		req := struct {
			Blocks int `json:"blocks"`
		}{Blocks: 1}
		if !decode(w, r, &req) {
			return
		}
		tip, err := b.Mine(r.Context(), req.Blocks)
		if err != nil {
			fail(w, http.StatusBadRequest, "blocks: "+err.Error())
			return
		}
		reply(w, http.StatusOK, map[string]any{"height": tip.Height, "hash": tip.Hash})
	})
	mux.HandleFunc("POST /v1/simulator/conflict", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TxID string `json:"txid"`
		}
		if !decode(w, r, &req) {
			return
		}
		err := b.Conflict(r.Context(), req.TxID)
		switch {
		case errors.Is(err, backend.ErrUnknownTransaction):
			fail(w, http.StatusNotFound, fmt.Sprintf("txid: %q is not a simulated transaction", req.TxID))
		case err != nil:
			fail(w, http.StatusInternalServerError, err.Error())
		default:
			reply(w, http.StatusOK, map[string]string{"txid": req.TxID, "state": "conflicted"})
		}
	})
	mux.HandleFunc("POST /v1/simulator/outage", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Down *bool `json:"down"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.Down == nil {
			fail(w, http.StatusBadRequest, "down: required (true or false)")
			return
		}
		if err := b.SetOutage(r.Context(), *req.Down); err != nil {
			fail(w, http.StatusInternalServerError, err.Error())
			return
		}
		reply(w, http.StatusOK, b.Summary())
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		fail(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) {
	reply(w, code, map[string]string{"error": msg})
}
