package helper

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/backendtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockchain/blockchaintest"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// The helper on a local blockchain.info: wallet service plus explorer, found by polling.
func TestHelperOnBlockchainInfo(t *testing.T) {
	ctx := context.Background()
	srv := blockchaintest.Start("guid-4411", "wallet pass")
	defer srv.Close()
	dbURL, pool := ledgertest.DB(t, pg)
	cfg := testassets.HelperConfig(t, node, dbURL, "")
	cfg.Asset.Network = "testnet"
	cfg.Backend = config.Backend{Type: "blockchain", Blockchain: &config.BlockchainBackend{URL: srv.URL(), ExplorerURL: srv.URL(),
		GUIDFile: credential(t, "guid", "guid-4411"), PasswordFile: credential(t, "pass", "wallet pass")}}
	cfg.Notify = config.Notify{Method: "poll", PollInterval: config.Duration{Duration: 5 * time.Second}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	start(t, cfg)
	testassets.Eventually(t, 30*time.Second, "helper ready", func() error { return ready(cfg) })

	acct, addr := depositAddress(t, cfg)
	if _, err := srv.Receive(addr, 200_000_000); err != nil {
		t.Fatal(err)
	}
	srv.Mine(3)
	testassets.Eventually(t, 20*time.Second, "deposit credited by polling", balanceIs(t, cfg, acct, "2.00000000"))
	to := backendtest.ExternalAddress(t, "bitcoin", "testnet")
	if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/send", acct), testassets.APIToken, map[string]string{"to": to, "amount": "0.5"},
		map[string]string{"Idempotency-Key": "bc-1"}, nil); code != http.StatusCreated && code != http.StatusAccepted {
		t.Fatalf("send: %d", code)
	}
	testassets.Eventually(t, 20*time.Second, "payout debited", balanceIs(t, cfg, acct, "1.50000000"))
	testassets.Eventually(t, 10*time.Second, "one payment", func() error {
		if n := srv.Sends(); n != 1 {
			return fmt.Errorf("%d payments", n)
		}
		return nil
	})
	if v, err := ledger.Check(ctx, pool); err != nil || len(v) > 0 {
		t.Fatalf("ledger check: %v %v", v, err)
	}
}
