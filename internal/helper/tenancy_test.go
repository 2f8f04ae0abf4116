package helper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

type apiAccount struct {
	ID      int64
	Name    string
	Kind    string
	Balance string
}

// TestTwoTenantsWithOneName: CryptoAssets called btc in namespaces shop and payroll, on one
// database and one node, each with an active helper, its own accounts, addresses and balances.
// A third helper configured for shop/btc with another network refuses to start instead of
// queueing behind shop's.
func TestTwoTenantsWithOneName(t *testing.T) {
	ctx := context.Background()
	dbURL, pool := ledgertest.DB(t, pg)
	tenants := map[string]*config.Config{}
	for _, ns := range []string{"shop", "payroll"} {
		cfg := testassets.HelperConfig(t, node, dbURL, "")
		cfg.Asset.Namespace = ns
		tenants[ns] = cfg
		start(t, cfg)
	}
	for ns, cfg := range tenants {
		testassets.Eventually(t, 60*time.Second, ns+" helper active", func() error { return ready(cfg) })
	}

	pay := map[string]string{"shop": "0.30000000", "payroll": "0.20000000"}
	accounts := map[string]apiAccount{}
	for ns, cfg := range tenants {
		var a apiAccount
		if code := call(t, cfg, "POST", "/v1/accounts", testassets.APIToken, map[string]string{"name": "treasury"}, nil, &a); code != http.StatusCreated {
			t.Fatalf("%s: creating treasury: %d", ns, code)
		}
		accounts[ns] = a
		var addr struct{ Address string }
		if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", a.ID), testassets.APIToken, nil, nil, &addr); code != http.StatusCreated {
			t.Fatalf("%s: creating an address: %d", ns, code)
		}
		amount, err := ledger.ParseAmount(pay[ns], 8)
		if err != nil {
			t.Fatal(err)
		}
		node.MustPay(t, addr.Address, int64(amount))
	}
	if _, err := node.Mine(3); err != nil {
		t.Fatal(err)
	}
	for ns, cfg := range tenants {
		testassets.Eventually(t, 60*time.Second, ns+" deposit credited", func() error {
			var a apiAccount
			call(t, cfg, "GET", fmt.Sprintf("/v1/accounts/%d", accounts[ns].ID), testassets.APIToken, nil, nil, &a)
			if a.Balance != pay[ns] {
				return fmt.Errorf("balance %q, want %s", a.Balance, pay[ns])
			}
			return nil
		})
		var all []apiAccount
		call(t, cfg, "GET", "/v1/accounts", testassets.APIToken, nil, nil, &all)
		if len(all) != 2 || all[0].Kind != "network_fees" || all[1].ID != accounts[ns].ID {
			t.Errorf("%s lists accounts %+v; want its fee account and its treasury only", ns, all)
		}
		var bal map[string]string
		call(t, cfg, "GET", "/v1/balance", testassets.APIToken, nil, nil, &bal)
		if bal["balance"] != pay[ns] {
			t.Errorf("%s wallet balance %v, want %s", ns, bal, pay[ns])
		}
	}
	// One tenant's account is not found through the other's API.
	if code := call(t, tenants["payroll"], "GET", fmt.Sprintf("/v1/accounts/%d", accounts["shop"].ID), testassets.APIToken, nil, nil, nil); code != http.StatusNotFound {
		t.Errorf("payroll reads shop's account: %d", code)
	}

	// A helper for shop/btc configured for another network refuses to start, naming what differs.
	wrong := testassets.HelperConfig(t, node, dbURL, "")
	wrong.Asset.Namespace = "shop"
	wrong.Asset.Network = "regtest"
	runCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err := Run(runCtx, wrong, testr.New(t), Options{})
	if !errors.Is(err, ledger.ErrAssetMismatch) || !strings.Contains(err.Error(), "asset shop/btc in the ledger: network is simnet, the config says regtest") {
		t.Fatalf("a helper for shop/btc on regtest: %v", err)
	}
	if v, err := ledger.Check(ctx, pool); err != nil || len(v) > 0 {
		t.Fatalf("ledger check: %v %v", v, err)
	}
}
