package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/null"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
)

// TestOpenAPIDocumentMatchesTheAPI checks the served document against the API itself: it is a
// valid OpenAPI 3 document, it lists exactly the routes the server serves, and every request and
// answer of a session that uses each route (and is refused on several) conforms to it.
func TestOpenAPIDocumentMatchesTheAPI(t *testing.T) {
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromData(openAPI)
	if err != nil {
		t.Fatalf("loading openapi.json: %v", err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}

	_, pool := ledgertest.DB(t, pg)
	l, err := ledger.Open(ctx, pool, ledger.Options{Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 1,
		MaxTrackedConfirmations: 6, ValidateAddress: func(a string) error { return coin.ValidateAddress("bitcoin", "regtest", a) }})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := null.New(ctx, null.Options{Coin: "bitcoin", Network: "regtest", Store: null.PGStore{Pool: pool, Asset: "btc"}})
	if err != nil {
		t.Fatal(err)
	}
	s := New(l, sim, "token")

	// The routes, both ways.
	var served []string
	for _, r := range s.routes() {
		served = append(served, r.method+" "+r.path)
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	if !slices.Equal(served, documented) {
		t.Fatalf("served routes %v\ndocumented %v", served, documented)
	}

	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	used := map[string]bool{}
	var headers map[string]string // of the next call only
	call := func(method, path, body string, auth bool, wantStatus int, out any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		headers = nil
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth {
			req.Header.Set("Authorization", "Bearer token")
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("%s %s is not in the document: %v", method, path, err)
		}
		used[method+" "+route.Path] = true
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if wantStatus < 400 {
			if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
				t.Fatalf("%s %s: the request does not conform: %v", method, path, err)
			}
		}
		req.Body = io.NopCloser(strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, got, wantStatus)
		}
		if err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(got)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		}); err != nil {
			t.Errorf("%s %s: the %d answer does not conform to the document: %v\n%s", method, path, resp.StatusCode, err, got)
		}
		if out != nil {
			if err := json.Unmarshal(got, out); err != nil {
				t.Fatal(err)
			}
		}
	}

	var alice, bob struct{ ID int64 }
	call("POST", "/v1/accounts", `{"name":"alice"}`, true, 201, &alice)
	call("POST", "/v1/accounts", `{"name":"bob"}`, true, 201, &bob)
	call("POST", "/v1/accounts", `{"name":"alice"}`, true, 409, nil)
	call("POST", "/v1/accounts", `{}`, true, 400, nil)
	call("GET", "/v1/accounts", "", true, 200, nil)
	call("GET", fmt.Sprintf("/v1/accounts?after=%d&limit=1", alice.ID), "", true, 200, nil)
	call("GET", "/v1/accounts?limit=0", "", true, 400, nil)
	call("GET", "/v1/accounts", "", false, 401, nil)
	call("GET", fmt.Sprintf("/v1/accounts/%d", alice.ID), "", true, 200, nil)
	call("GET", "/v1/accounts/99999", "", true, 404, nil)
	var addr struct{ Address string }
	call("POST", fmt.Sprintf("/v1/accounts/%d/addresses", alice.ID), `{"label":"order-1"}`, true, 201, &addr)
	call("GET", fmt.Sprintf("/v1/accounts/%d/addresses", alice.ID), "", true, 200, nil)
	call("GET", fmt.Sprintf("/v1/accounts/%d/addresses?after=0&limit=10", alice.ID), "", true, 200, nil)

	// A deposit as the intake books it, credited at once (threshold 1).
	up, err := l.RecordDeposit(ctx, ledger.Observation{TxID: strings.Repeat("ab", 32), Output: 0, Address: addr.Address, Amount: 150_000_000,
		Confirmations: 1, BlockHash: strings.Repeat("cd", 32), BlockHeight: 101})
	if err != nil || !up.Credited {
		t.Fatalf("deposit: %+v %v", up, err)
	}
	call("GET", fmt.Sprintf("/v1/transactions/%d", up.Transaction.ID), "", true, 200, nil)
	call("POST", fmt.Sprintf("/v1/transactions/%d/processed", up.Transaction.ID), "", true, 200, nil)
	call("POST", fmt.Sprintf("/v1/accounts/%d/send", alice.ID), fmt.Sprintf(`{"to_account":%d,"amount":"0.25"}`, bob.ID), true, 201, nil)
	var queued struct{ ID int64 }
	headers = map[string]string{"Idempotency-Key": "payout-1"}
	call("POST", fmt.Sprintf("/v1/accounts/%d/send", alice.ID), `{"to":"mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn","amount":"0.5"}`, true, 201, &queued)
	headers = map[string]string{"Idempotency-Key": "payout-1"}
	call("POST", fmt.Sprintf("/v1/accounts/%d/send", alice.ID), `{"to":"mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn","amount":"0.5"}`, true, 200, nil)
	call("POST", fmt.Sprintf("/v1/transactions/%d/cancel", queued.ID), "", true, 200, nil)
	call("POST", fmt.Sprintf("/v1/transactions/%d/cancel", queued.ID), "", true, 409, nil)
	call("POST", fmt.Sprintf("/v1/accounts/%d/addresses", l.FeeAccountID()), "", true, 422, nil)
	call("POST", fmt.Sprintf("/v1/accounts/%d/send", l.FeeAccountID()), `{"to":"mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn","amount":"0.5"}`, true, 422, nil)
	call("GET", "/v1/transactions?kind=outgoing&state=cancelled", "", true, 200, nil)
	call("GET", "/v1/events?after=0&limit=10", "", true, 200, nil)
	call("GET", "/v1/events?wait=forever", "", true, 400, nil)
	call("POST", fmt.Sprintf("/v1/accounts/%d/send", alice.ID), `{"to":"mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn","amount":"99"}`, true, 422, nil)
	call("POST", fmt.Sprintf("/v1/accounts/%d/send", alice.ID), `{"amount":"0.5"}`, true, 400, nil)
	call("GET", "/v1/transactions", "", true, 200, nil)
	call("GET", fmt.Sprintf("/v1/transactions?account=%d&before=%d&limit=5", alice.ID, queued.ID), "", true, 200, nil)
	call("GET", "/v1/transactions/99999", "", true, 404, nil)
	call("GET", "/v1/balance", "", true, 200, nil)
	call("GET", "/openapi.json", "", false, 200, nil)

	for _, r := range documented {
		if !used[r] {
			t.Errorf("%s: documented and served, but this test never called it", r)
		}
	}
}
