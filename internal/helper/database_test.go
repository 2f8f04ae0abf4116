package helper

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// TestHelpersSurviveTheirDatabase restarts PostgreSQL under two helpers of one asset (one active,
// one standby), then takes it away for a minute: neither exits, both say what is down, exactly one
// takes the lock again, and deposits and sends go on, each paid once.
func TestHelpersSurviveTheirDatabase(t *testing.T) {
	ctx := context.Background()
	db, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Stop)
	dbURL, pool := ledgertest.DB(t, db)
	helpers := []*config.Config{testassets.HelperConfig(t, node, dbURL, ""), testassets.HelperConfig(t, node, dbURL, "")}
	running := make([]*running, len(helpers))
	for i, cfg := range helpers {
		running[i] = start(t, cfg)
	}
	notExited := func() {
		t.Helper()
		for i, r := range running {
			select {
			case err := <-r.done:
				r.done <- err
				t.Fatalf("helper %d exited: %v", i, err)
			default:
			}
		}
	}
	// active waits until exactly one helper is ready (holds the lock) and returns it.
	active := func(what string) *config.Config {
		t.Helper()
		var got *config.Config
		testassets.Eventually(t, 120*time.Second, what, func() error {
			got = nil
			var states []string
			for _, cfg := range helpers {
				code, comps, err := readyzBody(cfg)
				if err != nil {
					return err
				}
				states = append(states, fmt.Sprintf("%d %s", code, comps["active"].Message))
				if code == http.StatusOK {
					if got != nil {
						return fmt.Errorf("two helpers ready at once: %v", states)
					}
					got = cfg
				}
			}
			if got == nil {
				return fmt.Errorf("no helper active: %v", states)
			}
			return nil
		})
		return got
	}
	a := active("one helper active")
	var acct struct{ ID int64 }
	call(t, a, "POST", "/v1/accounts", testassets.APIToken, map[string]string{"name": "shop"}, nil, &acct)
	var addr struct{ Address string }
	call(t, a, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), testassets.APIToken, map[string]string{}, nil, &addr)
	node.MustPay(t, addr.Address, 300_000_000)
	node.MustMine(t, 3)
	testassets.Eventually(t, 60*time.Second, "first deposit credited", balanceIs(t, a, acct.ID, "3.00000000"))

	// down takes the database away for `outage` and checks what the helpers say meanwhile.
	down := func(outage time.Duration) {
		t.Helper()
		db.Down()
		testassets.Eventually(t, 60*time.Second, "both helpers not ready, the ledger reported unreachable", func() error {
			for i, cfg := range helpers {
				code, comps, err := readyzBody(cfg)
				if err != nil {
					return fmt.Errorf("helper %d: %w", i, err)
				}
				if code != http.StatusServiceUnavailable || comps["ledger"].OK {
					return fmt.Errorf("helper %d: readyz %d, ledger %+v", i, code, comps["ledger"])
				}
			}
			return nil
		})
		if n := testassets.Metric(t, helpers[0].Server.MetricsListen, "cryptoassets_ledger_up"); n != 0 {
			t.Errorf("cryptoassets_ledger_up %v while the database is down", n)
		}
		// The outage itself: how long the database stays away is the scenario, not a guess.
		time.Sleep(outage)
		notExited()
		if err := db.Up(); err != nil {
			t.Fatal(err)
		}
	}

	// A restart (pg_ctl stop -m fast, then start).
	down(0)
	b := active("one helper active again after a restart")
	notExited()
	// A minute without the database.
	down(time.Minute)
	c := active("one helper active again after a minute's outage")
	notExited()
	t.Logf("active helper: %s, then %s, then %s", a.API.Listen, b.API.Listen, c.API.Listen)

	// Deposits and sends go on, each paid once.
	node.MustPay(t, addr.Address, 50_000_000)
	node.MustMine(t, 3)
	testassets.Eventually(t, 60*time.Second, "deposit after the outages credited", balanceIs(t, c, acct.ID, "3.50000000"))
	payee, err := node.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	var sent struct{ ID int64 }
	if code := call(t, c, "POST", fmt.Sprintf("/v1/accounts/%d/send", acct.ID), testassets.APIToken,
		map[string]string{"to": payee.EncodeAddress(), "amount": "1.25"}, nil, &sent); code != http.StatusCreated && code != http.StatusAccepted {
		t.Fatalf("send: %d", code)
	}
	testassets.Eventually(t, 60*time.Second, "send broadcast", func() error {
		var tx struct{ State, TxID string }
		call(t, c, "GET", fmt.Sprintf("/v1/transactions/%d", sent.ID), testassets.APIToken, nil, nil, &tx)
		if tx.TxID == "" {
			return fmt.Errorf("send %s", tx.State)
		}
		return nil
	})
	if n, err := node.PaymentsTo(payee.EncodeAddress()); err != nil || n != 1 {
		t.Fatalf("%d payments to the payee (%v), want 1", n, err)
	}
	if v, err := ledger.Check(ctx, pool); err != nil || len(v) > 0 {
		t.Fatalf("ledger check: %v %v", v, err)
	}
	notExited()
}
