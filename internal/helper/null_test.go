package helper

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/backendtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// The whole helper on the null simulator: no node anywhere.
func TestHelperOnTheSimulator(t *testing.T) {
	ctx := context.Background()
	dbURL, pool := ledgertest.DB(t, pg)
	cfg := testassets.HelperConfig(t, node, dbURL, "")
	cfg.Asset.Network = "regtest"
	cfg.Backend = config.Backend{Type: "null"}
	cfg.Notify = config.Notify{Method: "poll", PollInterval: config.Duration{Duration: time.Hour}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h := start(t, cfg)
	testassets.Eventually(t, 30*time.Second, "helper ready", func() error { return ready(cfg) })
	resp, err := http.Get("http://" + cfg.Server.MetricsListen + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "SIMULATED") {
		t.Errorf("readyz does not say the backend is simulated: %s", body)
	}

	tok := testassets.APIToken
	var acct struct{ ID int64 }
	call(t, cfg, "POST", "/v1/accounts", tok, map[string]string{"name": "shop"}, nil, &acct)
	var addr struct{ Address string }
	call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), tok, map[string]string{}, nil, &addr)
	var paid struct{ TxID string }
	if code := call(t, cfg, "POST", "/v1/simulator/receive", tok, map[string]string{"address": addr.Address, "amount": "2.5"}, nil, &paid); code != http.StatusCreated {
		t.Fatalf("receive: %d", code)
	}
	if code := call(t, cfg, "POST", "/v1/simulator/mine", tok, map[string]int{"blocks": 3}, nil, nil); code != http.StatusOK {
		t.Fatalf("mine: %d", code)
	}
	testassets.Eventually(t, 20*time.Second, "simulated deposit credited", balanceIs(t, cfg, acct.ID, "2.50000000"))

	// A payout goes through the broadcaster to the simulated wallet.
	to := backendtest.ExternalAddress(t, "bitcoin", "regtest")
	if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/send", acct.ID), tok, map[string]string{"to": to, "amount": "1"},
		map[string]string{"Idempotency-Key": "payout-1"}, nil); code != http.StatusAccepted && code != http.StatusCreated {
		t.Fatalf("send: %d", code)
	}
	testassets.Eventually(t, 20*time.Second, "payout debited", balanceIs(t, cfg, acct.ID, "1.50000000"))
	var sim struct {
		Simulator    bool
		Transactions int
		Balance      string
	}
	testassets.Eventually(t, 20*time.Second, "payout in the simulated wallet", func() error {
		call(t, cfg, "GET", "/v1/simulator", tok, nil, nil, &sim)
		if !sim.Simulator || sim.Transactions != 2 {
			return fmt.Errorf("simulator %+v", sim)
		}
		return nil
	})

	// The simulator's wallet outlives the helper: after a restart nothing is taken back.
	h.stop(t)
	start(t, cfg)
	testassets.Eventually(t, 30*time.Second, "restarted helper ready", func() error { return ready(cfg) })
	call(t, cfg, "POST", "/v1/simulator/mine", tok, map[string]int{"blocks": 1}, nil, nil)
	time.Sleep(time.Second)
	if err := balanceIs(t, cfg, acct.ID, "1.50000000")(); err != nil {
		t.Fatalf("after restart: %v", err)
	}

	// Bad input to the controls is refused with the field named; none of it needs more than the token.
	for _, tc := range []struct {
		path  string
		body  any
		token string
		code  int
		want  string
	}{
		{"/v1/simulator/receive", map[string]string{"address": addr.Address, "amount": "1"}, "wrong", http.StatusUnauthorized, "bearer token"},
		{"/v1/simulator/receive", map[string]string{"address": "not-an-address", "amount": "1"}, tok, http.StatusBadRequest, "address:"},
		{"/v1/simulator/receive", map[string]string{"address": addr.Address, "amount": "-1"}, tok, http.StatusBadRequest, "amount:"},
		{"/v1/simulator/receive", map[string]string{"address": addr.Address, "amount": "0.000000001"}, tok, http.StatusBadRequest, "amount:"},
		{"/v1/simulator/receive", map[string]string{"address": addr.Address, "amount": "1", "extra": "x"}, tok, http.StatusBadRequest, "unknown field"},
		{"/v1/simulator/mine", map[string]int{"blocks": 0}, tok, http.StatusBadRequest, "blocks:"},
		{"/v1/simulator/conflict", map[string]string{"txid": strings.Repeat("ab", 32)}, tok, http.StatusNotFound, "txid:"},
		{"/v1/simulator/outage", map[string]string{}, tok, http.StatusBadRequest, "down:"},
	} {
		var out struct{ Error string }
		if code := call(t, cfg, "POST", tc.path, tc.token, tc.body, nil, &out); code != tc.code || !strings.Contains(out.Error, tc.want) {
			t.Errorf("%s %v: %d %q, want %d containing %q", tc.path, tc.body, code, out.Error, tc.code, tc.want)
		}
	}

	// A double-spent deposit that was never credited is never credited.
	call(t, cfg, "POST", "/v1/simulator/receive", tok, map[string]string{"address": addr.Address, "amount": "7"}, nil, &paid)
	call(t, cfg, "POST", "/v1/simulator/conflict", tok, map[string]string{"txid": paid.TxID}, nil, nil)
	call(t, cfg, "POST", "/v1/simulator/mine", tok, map[string]int{"blocks": 5}, nil, nil)
	time.Sleep(time.Second)
	if err := balanceIs(t, cfg, acct.ID, "1.50000000")(); err != nil {
		t.Fatalf("after a double spend: %v", err)
	}
	if v, err := ledger.Check(ctx, pool); err != nil || len(v) > 0 {
		t.Fatalf("ledger check: %v %v", v, err)
	}
}
