// Package api is the helper's application API: JSON over HTTP, a bearer token on every request,
// amounts as decimal strings. The ledger stays the source of truth; this is a door to it.
package api

import (
	"cmp"
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// Server serves the API.
type Server struct {
	ledger  *ledger.Ledger
	backend backend.Backend
	token   []byte
	// Wake is called after a send is queued, so the broadcaster need not wait a full period.
	Wake func()
	// EventsCommitted, if set, returns a channel closed when events next commit
	// (events.Commits.Next). A long poll then waits on it, and looks at the database otherwise
	// only every eventsPollWoken instead of every eventsPoll.
	EventsCommitted func() <-chan struct{}
	// pollWoken is eventsPollWoken; tests lengthen it to show that the wake alone answers.
	pollWoken time.Duration
}

// New returns an API server; token is the bearer token applications present.
func New(l *ledger.Ledger, b backend.Backend, token string) *Server {
	return &Server{ledger: l, backend: b, token: []byte(token), pollWoken: eventsPollWoken}
}

// apiError is the JSON error body: what went wrong, and the request field when one is to blame.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, field, format string, args ...any) {
	writeJSON(w, status, apiError{Error: fmt.Sprintf(format, args...), Field: field})
}

// ledgerError maps ledger and backend errors to HTTP answers.
func ledgerError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		fail(w, http.StatusNotFound, "", "%v", err)
	case errors.Is(err, ledger.ErrExists), errors.Is(err, ledger.ErrIdempotencyConflict):
		fail(w, http.StatusConflict, "", "%v", err)
	case errors.Is(err, ledger.ErrInsufficientBalance):
		fail(w, http.StatusUnprocessableEntity, "amount", "%v", err)
	case errors.Is(err, ledger.ErrSameAccount):
		fail(w, http.StatusUnprocessableEntity, "to", "%v", err)
	case errors.Is(err, ledger.ErrInvalidAddress):
		fail(w, http.StatusBadRequest, "to", "%v", err)
	case errors.Is(err, ledger.ErrFeeAccount):
		fail(w, http.StatusUnprocessableEntity, "id", "%v", err)
	case errors.Is(err, ledger.ErrNotCancellable):
		fail(w, http.StatusConflict, "id", "%v", err)
	case errors.Is(err, ledger.ErrEventsPruned):
		fail(w, http.StatusGone, "after", "%v", err)
	case errors.Is(err, ledger.ErrInvalidAmount), errors.Is(err, ledger.ErrOverflow):
		fail(w, http.StatusBadRequest, "amount", "%v", err)
	case errors.Is(err, backend.ErrUnreachable):
		fail(w, http.StatusServiceUnavailable, "", "the backend is unreachable; try again: %v", err)
	default:
		fail(w, http.StatusInternalServerError, "", "%v", err)
	}
}

// route is one method and path pattern of the API: the one list both the mux and the test that
// compares the API with its OpenAPI document read.
type route struct {
	method, path string
	handler      http.HandlerFunc
}

func (s *Server) routes() []route {
	return []route{
		{"GET", "/v1/accounts", s.listAccounts},
		{"POST", "/v1/accounts", s.createAccount},
		{"GET", "/v1/accounts/{id}", s.getAccount},
		{"GET", "/v1/accounts/{id}/addresses", s.listAddresses},
		{"POST", "/v1/accounts/{id}/addresses", s.createAddress},
		{"POST", "/v1/accounts/{id}/send", s.send},
		{"GET", "/v1/transactions", s.listTransactions},
		{"GET", "/v1/transactions/{id}", s.onTransaction(s.ledger.Transaction)},
		// Marks a deposit as handled by the application; confirmations keep being reported.
		{"POST", "/v1/transactions/{id}/processed", s.onTransaction(s.ledger.MarkProcessed)},
		// Cancels a send that has not gone out; its amount goes back to the account.
		{"POST", "/v1/transactions/{id}/cancel", s.onTransaction(s.ledger.CancelSend)},
		{"GET", "/v1/events", s.events},
		{"GET", "/v1/balance", s.balance},
		{"GET", "/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(openAPI)
		}},
	}
}

// Handler returns the API's routes behind the token check.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.routes() {
		mux.HandleFunc(r.method+" "+r.path, finish(r.handler))
	}
	return s.authenticate(mux)
}

// requestWork bounds what a request may still do once its client has left: the longest wait
// (a long poll's) and a margin for the database.
const requestWork = maxEventsWait + 30*time.Second

// clientKey holds, in a finished request's context, the context the client's leaving cancels.
type clientKey struct{}

// finish runs a request to its end even when its client leaves first. Cut off mid-statement, the
// request would cost more than it saves: pgx closes a connection whose statement is cancelled,
// so the next request opens a new session (a backend start on a database that many helpers
// share, and under a slow database every client timeout would add one). And a send whose client
// gave up would be booked or not depending on the moment it left; finished, it is booked, and
// the client's retry with the same idempotency key finds it. A long poll still stops waiting
// when its client leaves (clientGone).
func finish(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		client := r.Context()
		ctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(client), clientKey{}, client), requestWork)
		defer cancel()
		h(w, r.WithContext(ctx))
	}
}

// clientGone is closed when the request's client has left.
func clientGone(r *http.Request) <-chan struct{} {
	if client, ok := r.Context().Value(clientKey{}).(context.Context); ok {
		return client.Done()
	}
	return r.Context().Done()
}

// Protect puts another handler (the simulator's controls) behind the API's token check.
func (s *Server) Protect(next http.Handler) http.Handler { return s.authenticate(next) }

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openapi.json" {
			next.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), s.token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cryptoassets"`)
			fail(w, http.StatusUnauthorized, "", "a valid bearer token is required")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next.ServeHTTP(w, r)
	})
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		fail(w, http.StatusBadRequest, "id", "id must be a positive integer, got %q", r.PathValue("id"))
		return 0, false
	}
	return id, true
}

// maxPage is the most rows a listing (or an events read) returns at once.
const maxPage = 1000

// queryLimit reads a listing's limit, 1 to maxPage; 0 when it is left out.
func queryLimit(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPage {
		fail(w, http.StatusBadRequest, "limit", "limit must be 1-%d, got %q", maxPage, v)
		return 0, false
	}
	return n, true
}

// queryPage reads a listing's after and limit: the page of rows after the id after (0 or left
// out: from the first), at most limit of them. Without limit, all the rest, as before listings
// were paged; a client with many accounts or addresses should page.
func queryPage(w http.ResponseWriter, r *http.Request) (ledger.Page, bool) {
	var p ledger.Page
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, "after", "after must be the id the last page ended with (an integer >= 0), got %q", v)
			return p, false
		}
		p.After = n
	}
	var ok bool
	p.Limit, ok = queryLimit(w, r)
	return p, ok
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool { return decodeBody(w, r, v, false) }

// decodeOptional is decode for a body that may be left out.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeBody(w, r, v, true)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil || (optional && errors.Is(err, io.EOF)) {
		return true
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &typeErr):
		want := typeErr.Type.String()
		switch typeErr.Type.Kind() {
		case reflect.String:
			want = "string"
		case reflect.Int, reflect.Int32, reflect.Int64:
			want = "integer"
		case reflect.Bool:
			want = "boolean"
		}
		hint := ""
		if typeErr.Field == "amount" {
			hint = ` (amounts are decimal strings such as "0.1", so no precision is lost)`
		}
		fail(w, http.StatusBadRequest, typeErr.Field, "%s must be a JSON %s%s, got a JSON %s", typeErr.Field, want, hint, typeErr.Value)
	case errors.As(err, &syntaxErr):
		fail(w, http.StatusBadRequest, "", "request body is not the expected JSON: %v (at byte %d)", err, syntaxErr.Offset)
	case errors.As(err, &tooBig):
		fail(w, http.StatusRequestEntityTooLarge, "", "request body is larger than %d bytes", tooBig.Limit)
	default:
		field := ""
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			field = strings.Trim(name, `"`)
		}
		fail(w, http.StatusBadRequest, field, "request body is not the expected JSON: %v", err)
	}
	return false
}

// Account is an account in API form.
type Account struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Balance string `json:"balance"`
}

func (s *Server) account(a ledger.Account) Account {
	return Account{ID: a.ID, Name: a.Name, Kind: a.Kind, Balance: a.Balance.Format(s.ledger.Coin().Decimals)}
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) {
	p, ok := queryPage(w, r)
	if !ok {
		return
	}
	accounts, err := s.ledger.Accounts(r.Context(), p)
	if err != nil {
		ledgerError(w, err)
		return
	}
	out := make([]Account, 0, len(accounts))
	for _, a := range accounts {
		out = append(out, s.account(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Name) == "" {
		fail(w, http.StatusBadRequest, "name", "name is required")
		return
	}
	a, err := s.ledger.CreateAccount(r.Context(), req.Name)
	if err != nil {
		ledgerError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.account(a))
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	a, err := s.ledger.Account(r.Context(), id)
	if err != nil {
		ledgerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.account(a))
}

// Address is a receiving address in API form.
type Address struct {
	// ID orders an account's addresses, oldest first; a page of them ends with the highest.
	ID        int64  `json:"id"`
	Address   string `json:"address"`
	AccountID int64  `json:"account_id"`
	Label     string `json:"label,omitempty"`
}

func (s *Server) listAddresses(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	p, ok := queryPage(w, r)
	if !ok {
		return
	}
	if _, err := s.ledger.Account(r.Context(), id); err != nil {
		ledgerError(w, err)
		return
	}
	addrs, err := s.ledger.ReceivingAddresses(r.Context(), id, p)
	if err != nil {
		ledgerError(w, err)
		return
	}
	out := make([]Address, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, Address{ID: a.ID, Address: a.Address, AccountID: id, Label: a.Label})
	}
	writeJSON(w, http.StatusOK, out)
}

// createAddress asks the backend for a new address (synchronously: a caller wants the address
// to show a customer) and records it for the account.
func (s *Server) createAddress(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req struct {
		Label string `json:"label"`
	}
	if !decodeOptional(w, r, &req) {
		return
	}
	if _, err := s.ledger.Account(r.Context(), id); err != nil {
		ledgerError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	addr, err := s.backend.NewAddress(ctx, req.Label)
	if err != nil {
		ledgerError(w, err)
		return
	}
	a, err := s.ledger.AddReceivingAddress(r.Context(), id, addr, req.Label)
	if errors.Is(err, ledger.ErrInvalidAddress) {
		fail(w, http.StatusBadGateway, "", "%v", err) // the backend's answer, not the request, is wrong
		return
	}
	if err != nil {
		ledgerError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, Address{ID: a.ID, Address: a.Address, AccountID: id, Label: a.Label})
}

// Transaction is a ledger transaction in API form.
type Transaction struct {
	ID                 int64      `json:"id"`
	Kind               string     `json:"kind"`
	State              string     `json:"state"`
	SendingAccountID   *int64     `json:"sending_account_id,omitempty"`
	ReceivingAccountID *int64     `json:"receiving_account_id,omitempty"`
	Address            string     `json:"address,omitempty"`
	Amount             string     `json:"amount"`
	TxID               string     `json:"txid,omitempty"`
	OutputIndex        *int32     `json:"output_index,omitempty"`
	Confirmations      int32      `json:"confirmations"`
	Credited           bool       `json:"credited"`
	ProcessedAt        *time.Time `json:"processed_at,omitempty"`
	CreatedAt          time.Time  `json:"created_at"`
	// Note says why a send in state broadcasting is waiting.
	Note string `json:"note,omitempty"`
	// Reason says why a send is in needs_review.
	Reason string `json:"reason,omitempty"`
}

func (s *Server) transaction(t ledger.Transaction) Transaction {
	return Transaction{ID: t.ID, Kind: t.Kind, State: t.State, SendingAccountID: t.SendingAccountID,
		ReceivingAccountID: t.ReceivingAccountID, Address: t.Address, Amount: t.Amount.Format(s.ledger.Coin().Decimals),
		TxID: t.TxID, OutputIndex: t.OutputIndex, Confirmations: t.Confirmations, Credited: t.Credited,
		ProcessedAt: t.ProcessedAt, CreatedAt: t.CreatedAt, Note: t.Note, Reason: t.Reason}
}

// ReplayedHeader marks the answer to a send whose Idempotency-Key was used before.
const ReplayedHeader = "Idempotent-Replayed"

// send queues a payment. "to" is an address (queued for the broadcaster, or booked internally
// when it is one of ours and force_external is false) or, with to_account, another account.
func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req struct {
		To            string `json:"to"`
		ToAccount     int64  `json:"to_account"`
		Amount        string `json:"amount"`
		ForceExternal bool   `json:"force_external"`
	}
	if !decode(w, r, &req) {
		return
	}
	if (req.To == "") == (req.ToAccount == 0) {
		fail(w, http.StatusBadRequest, "to", "give exactly one of to (an address) and to_account")
		return
	}
	amount, err := ledger.ParseAmount(req.Amount, s.ledger.Coin().Decimals)
	if err != nil {
		fail(w, http.StatusBadRequest, "amount", "%v", err)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 200 {
		fail(w, http.StatusBadRequest, "Idempotency-Key", "at most 200 characters")
		return
	}
	var t ledger.Transaction
	if req.ToAccount != 0 {
		t, err = s.ledger.SendInternal(r.Context(), id, req.ToAccount, amount, key)
	} else {
		t, err = s.ledger.SendExternal(r.Context(), id, req.To, amount, key, req.ForceExternal)
	}
	if err != nil {
		ledgerError(w, err)
		return
	}
	if t.Replayed {
		// The key's first request created this transaction; this one created nothing. The
		// answer is the transaction as it is now, which may have moved on since.
		w.Header().Set(ReplayedHeader, "true")
		writeJSON(w, http.StatusOK, s.transaction(t))
		return
	}
	if t.Kind == "outgoing" && s.Wake != nil {
		s.Wake()
	}
	writeJSON(w, http.StatusCreated, s.transaction(t))
}

func (s *Server) listTransactions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := ledger.TransactionFilter{State: q.Get("state"), Kind: q.Get("kind")}
	if f.State != "" && !slices.Contains(ledger.States, f.State) {
		fail(w, http.StatusBadRequest, "state", "state must be one of %s, got %q", strings.Join(ledger.States, ", "), f.State)
		return
	}
	if f.Kind != "" && !slices.Contains(ledger.Kinds, f.Kind) {
		fail(w, http.StatusBadRequest, "kind", "kind must be one of %s, got %q", strings.Join(ledger.Kinds, ", "), f.Kind)
		return
	}
	if v := q.Get("account"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			fail(w, http.StatusBadRequest, "account", "account must be a positive integer")
			return
		}
		f.AccountID = id
	}
	if v := q.Get("before"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			fail(w, http.StatusBadRequest, "before", "before must be the id the last page ended with (a positive integer), got %q", v)
			return
		}
		f.Before = id
	}
	var ok bool
	if f.Limit, ok = queryLimit(w, r); !ok {
		return
	}
	txs, err := s.ledger.Transactions(r.Context(), f)
	if err != nil {
		ledgerError(w, err)
		return
	}
	out := make([]Transaction, 0, len(txs))
	for _, t := range txs {
		out = append(out, s.transaction(t))
	}
	writeJSON(w, http.StatusOK, out)
}

// onTransaction serves a route that reads or acts on the transaction its path names.
func (s *Server) onTransaction(do func(context.Context, int64) (ledger.Transaction, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		t, err := do(r.Context(), id)
		if err != nil {
			ledgerError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, s.transaction(t))
	}
}

// Event is an event as pulled: the push delivery's envelope plus its position, the cursor to
// pass as after= for the next page.
type Event struct {
	Position  int64           `json:"position"`
	ID        string          `json:"id"`
	Event     string          `json:"event"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// Bounds of GET /v1/events.
const (
	maxEventsWait = 60 * time.Second
	// eventsPoll is how often a long poll looks for new events when nothing tells it of them.
	eventsPoll = 250 * time.Millisecond
	// eventsPollWoken is how often it looks when EventsCommitted tells it of new events (the
	// helper's own, and those another process tells it of): a backstop, as the event
	// dispatcher's idle poll is, for a notification lost with a connection. It is maxEventsWait,
	// so a long poll reads when it starts, when woken, and at most once more. At eventsPoll, each
	// waiting client cost the database four queries a second.
	eventsPollWoken = maxEventsWait
)

// events returns the asset's events after a position, in order, waiting up to wait= for the
// first one when there is none yet.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, "after", "after must be a position (an integer >= 0), got %q", v)
			return
		}
		after = n
	}
	limit, ok := queryLimit(w, r)
	if !ok {
		return
	}
	limit = cmp.Or(limit, 100)
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxEventsWait {
			fail(w, http.StatusBadRequest, "wait", "wait must be a duration from 0s to %s such as \"30s\", got %q", maxEventsWait, v)
			return
		}
		wait = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	poll, committed := eventsPoll, func() <-chan struct{} { return nil }
	if s.EventsCommitted != nil {
		poll, committed = s.pollWoken, s.EventsCommitted
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		woken := committed() // before the read: a commit after it wakes the wait below
		evs, err := s.ledger.Events(r.Context(), after, limit)
		if err != nil {
			ledgerError(w, err)
			return
		}
		if len(evs) > 0 || wait == 0 {
			out := make([]Event, 0, len(evs))
			for _, e := range evs {
				out = append(out, Event{Position: e.Position, ID: e.EventID, Event: e.Name, CreatedAt: e.CreatedAt.UTC(), Data: e.Payload})
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		select {
		case <-clientGone(r):
			return
		case <-ctx.Done():
			writeJSON(w, http.StatusOK, []Event{})
			return
		case <-tick.C:
		case <-woken:
		}
	}
}

func (s *Server) balance(w http.ResponseWriter, r *http.Request) {
	b, err := s.ledger.WalletBalance(r.Context())
	if err != nil {
		ledgerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"balance": b.Format(s.ledger.Coin().Decimals), "coin": s.ledger.Coin().Code})
}

//go:embed openapi.json
var openAPI []byte
