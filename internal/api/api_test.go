package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/events"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(testassets.Main(m, testassets.Postgres(&pg)))
}

// TestRefusals sends malformed and impossible requests and checks each answer's status and the
// field it names. No request here reaches the backend, so none is configured.
func TestRefusals(t *testing.T) {
	ctx := context.Background()
	_, pool := ledgertest.DB(t, pg)
	l, err := ledger.Open(ctx, pool, ledger.Options{Asset: "btc", Coin: "bitcoin", Network: "mainnet", Confirmations: 3,
		MaxTrackedConfirmations: 6, ValidateAddress: func(a string) error { return coin.ValidateAddress("bitcoin", "mainnet", a) }})
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := l.CreateAccount(ctx, "alice")
	srv := httptest.NewServer(New(l, nil, "token").Handler())
	defer srv.Close()

	send := "/v1/accounts/" + itoa(alice.ID) + "/send"
	cases := []struct {
		name, method, path, body string
		headers                  map[string]string
		status                   int
		field, message           string
	}{
		{"no name", "POST", "/v1/accounts", `{}`, nil, 400, "name", "name is required"},
		{"unknown field", "POST", "/v1/accounts", `{"name":"x","colour":"red"}`, nil, 400, "colour", `unknown field "colour"`},
		{"not JSON", "POST", "/v1/accounts", `name=x`, nil, 400, "", "not the expected JSON"},
		{"duplicate account", "POST", "/v1/accounts", `{"name":"alice"}`, nil, 409, "", "already exists"},
		{"bad id", "GET", "/v1/accounts/abc", ``, nil, 400, "id", "positive integer"},
		{"no such account", "GET", "/v1/accounts/99999", ``, nil, 404, "", "not found"},
		{"to and to_account", "POST", send, `{"to":"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa","to_account":2,"amount":"1"}`, nil, 400, "to", "exactly one of"},
		{"neither to", "POST", send, `{"amount":"1"}`, nil, 400, "to", "exactly one of"},
		{"negative amount", "POST", send, `{"to":"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa","amount":"-1"}`, nil, 400, "amount", "greater than zero"},
		{"exponent", "POST", send, `{"to":"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa","amount":"1e8"}`, nil, 400, "amount", "want digits"},
		{"amount as a number", "POST", send, `{"to":"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa","amount":0.1}`, nil, 400, "amount", `amount must be a JSON string (amounts are decimal strings such as "0.1"`},
		{"to_account as a string", "POST", send, `{"to_account":"2","amount":"1"}`, nil, 400, "to_account", "to_account must be a JSON integer, got a JSON string"},
		{"too many decimals", "POST", send, `{"to":"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa","amount":"0.000000001"}`, nil, 400, "amount", "decimal places"},
		{"overflow", "POST", send, `{"to":"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa","amount":"99999999999999"}`, nil, 400, "amount", "out of range"},
		{"bad address", "POST", send, `{"to":"tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx","amount":"0.1"}`, nil, 400, "to", "not a bitcoin mainnet address"},
		{"insufficient balance", "POST", send, `{"to":"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa","amount":"0.1"}`, nil, 422, "amount", "insufficient balance"},
		{"to itself", "POST", send, `{"to_account":` + itoa(alice.ID) + `,"amount":"0.1"}`, nil, 422, "to", "same"},
		{"long idempotency key", "POST", send, `{"to":"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa","amount":"0.1"}`,
			map[string]string{"Idempotency-Key": strings.Repeat("k", 201)}, 400, "Idempotency-Key", "at most 200"},
		{"bad limit", "GET", "/v1/transactions?limit=0", ``, nil, 400, "limit", "1-1000"},
		{"bad account filter", "GET", "/v1/transactions?account=x", ``, nil, 400, "account", "positive integer"},
		{"before zero", "GET", "/v1/transactions?before=0", ``, nil, 400, "before", "the id the last page ended with"},
		{"before not a number", "GET", "/v1/transactions?before=latest", ``, nil, 400, "before", `got "latest"`},
		{"accounts after negative", "GET", "/v1/accounts?after=-1", ``, nil, 400, "after", "the id the last page ended with"},
		{"accounts limit too big", "GET", "/v1/accounts?limit=1001", ``, nil, 400, "limit", "1-1000"},
		{"addresses limit zero", "GET", "/v1/accounts/" + itoa(alice.ID) + "/addresses?limit=0", ``, nil, 400, "limit", "1-1000"},
		{"addresses after not a number", "GET", "/v1/accounts/" + itoa(alice.ID) + "/addresses?after=x", ``, nil, 400, "after", `got "x"`},
		{"processed, no such deposit", "POST", "/v1/transactions/424242/processed", ``, nil, 404, "", "not found"},
		{"huge body", "POST", "/v1/accounts", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, nil, 413, "", "larger than 65536 bytes"},
		{"no token", "GET", "/v1/accounts", ``, map[string]string{"Authorization": ""}, 401, "", "bearer token"},
		{"wrong token", "GET", "/v1/accounts", ``, map[string]string{"Authorization": "Bearer nope"}, 401, "", "bearer token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer token")
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body apiError
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.status || body.Field != tc.field || !strings.Contains(body.Error, tc.message) {
				t.Errorf("got %d field %q %q; want %d field %q containing %q", resp.StatusCode, body.Field, body.Error, tc.status, tc.field, tc.message)
			}
		})
	}
	// Nothing moved.
	if a, _ := l.Account(ctx, alice.ID); a.Balance != 0 {
		t.Errorf("alice %d after refused requests", a.Balance)
	}
	if v, err := ledger.Check(ctx, pool); err != nil || len(v) > 0 {
		t.Errorf("ledger check: %v %v", v, err)
	}
	// The OpenAPI document is served without a token and parses.
	resp, err := http.Get(srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc.OpenAPI == "" || len(doc.Paths) < 8 {
		t.Errorf("openapi.json: %v %+v", err, doc)
	}
}

// TestListingsPage pages through the accounts, an account's addresses and its transactions over
// HTTP, each page starting after the last one's end, and gets each listing whole and in order.
func TestListingsPage(t *testing.T) {
	ctx := context.Background()
	_, pool := ledgertest.DB(t, pg)
	l := ledgertest.Open(t, pool)
	srv := httptest.NewServer(New(l, nil, "token").Handler())
	defer srv.Close()
	get := func(path string, out any) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}

	wantAccounts := []int64{l.FeeAccountID()}
	var wantAddresses, wantTransfers []int64
	var first int64
	for i := range 7 {
		a, err := l.CreateAccount(ctx, "customer-"+itoa(int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		wantAccounts = append(wantAccounts, a.ID)
		if first == 0 {
			first = a.ID
			continue
		}
		addr, err := l.AddReceivingAddress(ctx, first, "addr-"+itoa(int64(i)), "")
		if err != nil {
			t.Fatal(err)
		}
		wantAddresses = append(wantAddresses, addr.ID)
		if _, err := l.AddReceivingAddress(ctx, a.ID, "addr-other-"+itoa(int64(i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	// A deposit to the first customer, then transfers from it: its transactions, newest first.
	up, err := l.RecordDeposit(ctx, ledger.Observation{TxID: strings.Repeat("ab", 32), Output: 0, Address: "addr-1", Amount: 1_000_000,
		Confirmations: 1, BlockHash: strings.Repeat("cd", 32), BlockHeight: 101})
	if err != nil || !up.Credited {
		t.Fatalf("deposit: %+v %v", up, err)
	}
	wantTransfers = append(wantTransfers, up.Transaction.ID)
	for i := range 4 {
		tx, err := l.SendInternal(ctx, first, wantAccounts[2+i], 1000, "")
		if err != nil {
			t.Fatal(err)
		}
		wantTransfers = append([]int64{tx.ID}, wantTransfers...)
	}

	type item struct{ ID int64 }
	pages := func(path string, next func(last int64) string) []int64 {
		t.Helper()
		var ids []int64
		for p := path; len(ids) <= 100; {
			var page []item
			get(p, &page)
			if len(page) == 0 {
				return ids
			}
			if len(page) > 2 {
				t.Fatalf("GET %s: %d rows in a page of 2", p, len(page))
			}
			for _, it := range page {
				ids = append(ids, it.ID)
			}
			p = next(page[len(page)-1].ID)
		}
		t.Fatalf("paging %s does not end", path)
		return nil
	}
	check := func(what string, got, want []int64) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	var all []item
	get("/v1/accounts", &all)
	var allIDs []int64
	for _, a := range all {
		allIDs = append(allIDs, a.ID)
	}
	check("all accounts", allIDs, wantAccounts)
	check("accounts paged", pages("/v1/accounts?limit=2", func(last int64) string { return "/v1/accounts?limit=2&after=" + itoa(last) }), wantAccounts)
	addresses := "/v1/accounts/" + itoa(first) + "/addresses"
	check("addresses paged", pages(addresses+"?limit=2", func(last int64) string { return addresses + "?limit=2&after=" + itoa(last) }), wantAddresses)
	transactions := "/v1/transactions?account=" + itoa(first)
	check("transactions paged", pages(transactions+"&limit=2", func(last int64) string { return transactions + "&limit=2&before=" + itoa(last) }), wantTransfers)
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// creditedAlice makes the account alice, with a receiving address and a credited deposit of
// 1,000,000 to it: the balance a send draws on, and the events a long poll reads past.
func creditedAlice(t *testing.T, l *ledger.Ledger) ledger.Account {
	t.Helper()
	ctx := context.Background()
	alice, err := l.CreateAccount(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddReceivingAddress(ctx, alice.ID, "addr-alice", ""); err != nil {
		t.Fatal(err)
	}
	if up, err := l.RecordDeposit(ctx, ledger.Observation{TxID: strings.Repeat("ab", 32), Address: "addr-alice", Amount: 1_000_000,
		Confirmations: 1, BlockHash: strings.Repeat("cd", 32), BlockHeight: 101}); err != nil || !up.Credited {
		t.Fatalf("deposit: %+v %v", up, err)
	}
	return alice
}

// TestEventsLongPollIsWoken: a long poll on GET /v1/events answers with an event this process
// commits when the commit wakes it (events.Commits), though its poll is an hour; and with one
// another process commits, which nothing wakes it for, at its poll.
func TestEventsLongPollIsWoken(t *testing.T) {
	for _, tc := range []struct {
		name         string
		otherProcess bool
		pollWoken    time.Duration
	}{
		{name: "this process's event, woken", pollWoken: time.Hour},
		{name: "another process's event, polled", otherProcess: true, pollWoken: 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			_, pool := ledgertest.DB(t, pg)
			commits := &events.Commits{}
			opts := ledger.Options{Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 1, MaxTrackedConfirmations: 6,
				ValidateAddress: func(string) error { return nil }}
			hooked := opts
			hooked.OnEvents = commits.Notify
			l, err := ledger.Open(ctx, pool, hooked)
			if err != nil {
				t.Fatal(err)
			}
			writer := l
			if tc.otherProcess { // the same asset through a ledger the server is not told of
				if writer, err = ledger.Open(ctx, pool, opts); err != nil {
					t.Fatal(err)
				}
			}
			alice := creditedAlice(t, l)
			bob, _ := l.CreateAccount(ctx, "bob")
			past, err := l.Events(ctx, 0, 1000)
			if err != nil || len(past) == 0 {
				t.Fatalf("the deposit's events: %v %v", past, err)
			}
			last := past[len(past)-1].Position

			s := New(l, nil, "token")
			s.pollWoken = tc.pollWoken
			waits := make(chan struct{}, 100)
			s.EventsCommitted = func() <-chan struct{} { waits <- struct{}{}; return commits.Next() }
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			acquired := pool.Stat().AcquireCount()
			got := make(chan []Event, 1)
			go func() { // not through t: t.Fatal belongs to the test's goroutine
				var page []Event
				req, _ := http.NewRequest("GET", srv.URL+"/v1/events?wait=30s&after="+itoa(last), nil)
				req.Header.Set("Authorization", "Bearer token")
				if resp, err := http.DefaultClient.Do(req); err == nil {
					_ = json.NewDecoder(resp.Body).Decode(&page)
					resp.Body.Close()
				}
				got <- page
			}()
			// Write only once the long poll has read, found nothing and released its connection,
			// so that what answers it is the wake or the poll, not its first read.
			<-waits
			testassets.Eventually(t, 30*time.Second, "the long poll's first read done", func() error {
				if st := pool.Stat(); st.AcquireCount() == acquired || st.AcquiredConns() > 0 {
					return fmt.Errorf("%d acquires since the request, %d connections held", st.AcquireCount()-acquired, st.AcquiredConns())
				}
				return nil
			})
			if _, err := writer.SendInternal(ctx, alice.ID, bob.ID, 1_000, "move-1"); err != nil {
				t.Fatal(err)
			}
			if page := <-got; len(page) != 1 || page[0].Position != last+1 || page[0].Event != "txupdate" {
				t.Errorf("long poll after %d answered %+v, want the transfer's event at %d", last, page, last+1)
			}
		})
	}
}

// TestRequestsFinishWhenTheirClientLeaves: a send whose client gives up while the database makes
// it wait is still booked, once, on the connection it waited on, which stays open for the next
// request; the client's retry with the same idempotency key finds it. A long poll whose client
// leaves stops waiting.
func TestRequestsFinishWhenTheirClientLeaves(t *testing.T) {
	ctx := context.Background()
	url, pool := ledgertest.DB(t, pg)
	l := ledgertest.Open(t, pool)
	alice := creditedAlice(t, l)
	// Each request the server takes hands the test two channels: left is closed once the server
	// has seen its client go (or the handler has returned: the request's context ends at either),
	// returned once the handler has returned.
	type served struct{ left, returned chan struct{} }
	requests := make(chan served, 10)
	api := New(l, nil, "token").Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := served{make(chan struct{}), make(chan struct{})}
		requests <- req
		go func() { <-r.Context().Done(); close(req.left) }()
		defer close(req.returned)
		api.ServeHTTP(w, r)
	}))
	defer srv.Close()
	// start sends a request that the returned function abandons; it returns once the server
	// has the request.
	start := func(t *testing.T, method, path, key, body string) (abandon func(), req served) {
		t.Helper()
		client, leave := context.WithCancel(ctx)
		answered := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(client, method, srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer token")
			if key != "" {
				req.Header.Set("Idempotency-Key", key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			answered <- err
		}()
		select {
		case req = <-requests:
		case err := <-answered:
			t.Fatalf("%s %s answered before the test left it: %v", method, path, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s %s never reached the server", method, path)
		}
		return func() {
			leave()
			if err := <-answered; err == nil {
				t.Errorf("the client that left %s %s got an answer", method, path)
			}
		}, req
	}
	ended := func(t *testing.T, what string, ended chan struct{}) {
		t.Helper()
		select {
		case <-ended:
		case <-time.After(30 * time.Second):
			t.Fatal(what)
		}
	}
	send := "/v1/accounts/" + itoa(alice.ID) + "/send"
	body := `{"to":"addr-payee","amount":"0.001"}`

	t.Run("a send", func(t *testing.T) {
		// Another session holds the transactions table, so the send's first read waits on it.
		locker, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer locker.Close(ctx)
		hold, err := locker.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hold.Exec(ctx, "LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		abandon, req := start(t, "POST", send, "leave-1", body)
		var pid int32
		testassets.Eventually(t, 30*time.Second, "the send waiting for the table", func() error {
			return locker.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&pid)
		})
		abandon()
		// Only now may the send go on: the server has seen its client leave.
		ended(t, "the server did not see the client leave", req.left)
		if err := hold.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, 30*time.Second, "the send booked and its connection back in the pool", func() error {
			var booked int
			var state string
			if err := locker.QueryRow(ctx, `SELECT (SELECT count(*) FROM transactions WHERE idempotency_key = 'leave-1'),
				coalesce((SELECT state FROM pg_stat_activity WHERE pid = $1), 'gone')`, pid).Scan(&booked, &state); err != nil {
				return err
			}
			if booked != 1 || state != "idle" {
				return fmt.Errorf("%d sends booked, want 1; the session that waited (pid %d) is %s, want idle", booked, pid, state)
			}
			return nil
		})
		retry, _ := http.NewRequest("POST", srv.URL+send, strings.NewReader(body))
		retry.Header.Set("Authorization", "Bearer token")
		retry.Header.Set("Idempotency-Key", "leave-1")
		resp, err := http.DefaultClient.Do(retry)
		<-requests
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get(ReplayedHeader) != "true" {
			t.Errorf("the retry: %s, %s %q; want 200 and true, the send booked when its client left", resp.Status, ReplayedHeader, resp.Header.Get(ReplayedHeader))
		}
		if a, err := l.Account(ctx, alice.ID); err != nil || a.Balance != 1_000_000-100_000 {
			t.Errorf("alice: %+v %v, want a balance of 900000 after one send of 100000", a, err)
		}
	})

	t.Run("a long poll", func(t *testing.T) {
		evs, err := l.Events(ctx, 0, 1000)
		if err != nil || len(evs) == 0 {
			t.Fatalf("events so far: %v %v", evs, err)
		}
		abandon, req := start(t, "GET", "/v1/events?wait=60s&after="+itoa(evs[len(evs)-1].Position), "", "")
		abandon()
		// The poll would wait 60 s for its client; it stops well before.
		ended(t, "the long poll still waits for a client that left", req.returned)
	})
}
