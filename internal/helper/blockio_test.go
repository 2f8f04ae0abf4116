package helper

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/backendtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockio/blockiotest"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// blockIOHelper runs the helper on a local block.io with the given notify method.
func blockIOHelper(t *testing.T, notify func(srv *blockiotest.Server) config.Notify) (*config.Config, *blockiotest.Server, *running, *pgxpool.Pool) {
	t.Helper()
	srv, err := blockiotest.Start("4f1e-aa20-7c3b-90d1", "helper pin 1", "bitcoin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dbURL, pool := ledgertest.DB(t, pg)
	cfg := testassets.HelperConfig(t, node, dbURL, "")
	cfg.Asset.Network = "testnet"
	cfg.Backend = config.Backend{Type: "blockio", BlockIO: &config.BlockIOBackend{URL: srv.URL(),
		APIKeyFile: credential(t, "key", "4f1e-aa20-7c3b-90d1"), PINFile: credential(t, "pin", "helper pin 1")}}
	cfg.Notify = notify(srv)
	cfg.Notify.PollInterval = config.Duration{Duration: 5 * time.Second}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg)
	testassets.Eventually(t, 30*time.Second, "helper ready", func() error { return ready(cfg) })
	return cfg, srv, r, pool
}

func TestHelperOnBlockIOWebsocket(t *testing.T) {
	cfg, srv, _, pool := blockIOHelper(t, func(srv *blockiotest.Server) config.Notify {
		return config.Notify{Method: "blockio-websocket", BlockIOWebsocket: &config.BlockIOWebsocketNotify{URL: srv.WebsocketURL()}}
	})
	acct, addr := depositAddress(t, cfg)
	if _, err := srv.Receive(addr, 300_000_000); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 10*time.Second, "deposit booked from the websocket", func() error {
		if n := deposits(t, pool); n != 1 {
			return fmt.Errorf("%d deposits", n)
		}
		return nil
	})
	srv.Confirm(3)
	testassets.Eventually(t, 20*time.Second, "credited after 3 confirmations (poll)", balanceIs(t, cfg, acct, "3.00000000"))

	// A payout is signed here with the PIN and finalised at block.io once.
	to := backendtest.ExternalAddress(t, "bitcoin", "testnet")
	if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/send", acct), testassets.APIToken, map[string]string{"to": to, "amount": "1.25"},
		map[string]string{"Idempotency-Key": "bio-1"}, nil); code != http.StatusCreated && code != http.StatusAccepted {
		t.Fatalf("send: %d", code)
	}
	testassets.Eventually(t, 20*time.Second, "payout debited", balanceIs(t, cfg, acct, "1.75000000"))
	testassets.Eventually(t, 10*time.Second, "one finalised withdrawal", func() error {
		if n := srv.Calls("sign_and_finalize_withdrawal"); n != 1 {
			return fmt.Errorf("%d finalised", n)
		}
		return nil
	})
}

func TestHelperOnBlockIOWebhook(t *testing.T) {
	listen := testassets.FreeAddr(t)
	public := "http://" + listen + "/blockio/" + strings.Repeat("7f", 8)
	cfg, srv, r, pool := blockIOHelper(t, func(*blockiotest.Server) config.Notify {
		return config.Notify{Method: "blockio-webhook", BlockIOWebhook: &config.BlockIOWebhookNotify{PublicURL: public, Listen: listen}}
	})
	testassets.Eventually(t, 10*time.Second, "webhook registered", func() error {
		if n := srv.Notifications(); len(n) != 1 || n[0] != public {
			return fmt.Errorf("registrations %v", n)
		}
		return nil
	})
	_, addr := depositAddress(t, cfg)
	if _, err := srv.Receive(addr, 40_000_000); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 10*time.Second, "deposit booked from the webhook", func() error {
		if n := deposits(t, pool); n != 1 {
			return fmt.Errorf("%d deposits", n)
		}
		return nil
	})
	r.stop(t)
	if n := srv.Notifications(); len(n) != 0 {
		t.Fatalf("the stopped helper left its registration: %v", n)
	}
}
