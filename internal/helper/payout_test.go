package helper

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

type apiTransaction struct {
	ID                  int64
	Kind, State, Reason string
	TxID                string
}

// TestPayoutDesk runs a payout desk's day through the API against btcwallet: a batch with one
// dust send goes out without it; the dust send waits in the review queue with the wallet's reason;
// the desk cancels it and the amount is back; a paid send cannot be cancelled.
func TestPayoutDesk(t *testing.T) {
	dbURL, _ := ledgertest.DB(t, pg)
	cfg := testassets.HelperConfig(t, node, dbURL, "")
	cfg.Broadcast.Period.Duration = time.Hour // only the API's wake-up and the test's sends start a broadcast
	start(t, cfg)
	testassets.Eventually(t, 60*time.Second, "helper ready", func() error { return ready(cfg) })

	var desk apiAccount
	call(t, cfg, "POST", "/v1/accounts", testassets.APIToken, map[string]string{"name": "payouts"}, nil, &desk)
	var addr struct{ Address string }
	call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", desk.ID), testassets.APIToken, nil, nil, &addr)
	node.MustPay(t, addr.Address, 200_000_000)
	if _, err := node.Mine(3); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 60*time.Second, "funded", balanceIs(t, cfg, desk.ID, "2.00000000"))

	// Each send wakes the broadcaster, so the sends go out in whatever batches the wake-ups make:
	// with the dust send or without it, the outcome must be the same.
	sends := map[string]string{"dust": "0.00000100"}
	for i := range 3 {
		sends[fmt.Sprintf("good-%d", i)] = "0.10000000"
	}
	ids := map[string]int64{}
	for _, name := range []string{"dust", "good-0", "good-1", "good-2"} {
		payee, err := node.NewAddress()
		if err != nil {
			t.Fatal(err)
		}
		var tx apiTransaction
		if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/send", desk.ID), testassets.APIToken,
			map[string]any{"to": payee.EncodeAddress(), "amount": sends[name]}, nil, &tx); code != http.StatusCreated {
			t.Fatalf("send %s: %d", name, code)
		}
		ids[name] = tx.ID
	}
	for _, name := range []string{"good-0", "good-1", "good-2"} {
		testassets.Eventually(t, 60*time.Second, name+" broadcast", func() error {
			var tx apiTransaction
			call(t, cfg, "GET", fmt.Sprintf("/v1/transactions/%d", ids[name]), testassets.APIToken, nil, nil, &tx)
			if tx.State != "broadcasted" || tx.TxID == "" {
				return fmt.Errorf("%s is %s", name, tx.State)
			}
			return nil
		})
	}
	var queue []apiTransaction
	testassets.Eventually(t, 60*time.Second, "the dust send in the review queue", func() error {
		call(t, cfg, "GET", "/v1/transactions?kind=outgoing&state=needs_review", testassets.APIToken, nil, nil, &queue)
		if len(queue) != 1 || queue[0].ID != ids["dust"] {
			return fmt.Errorf("review queue %+v", queue)
		}
		return nil
	})
	if !strings.Contains(queue[0].Reason, "dust") {
		t.Errorf("the review queue's send says %q; want the wallet's reason", queue[0].Reason)
	}
	// What the alerts watch, before the desk acts.
	testassets.Eventually(t, 10*time.Second, "needs_review gauge", metricIs(t, cfg, 1, "cryptoassets_sends_needs_review"))
	testassets.Eventually(t, 10*time.Second, "pending gauge", metricIs(t, cfg, 0, "cryptoassets_sends_pending"))
	// The counter is added to when the broadcaster's run ends, which can be after the ledger
	// shows the refusal (the run goes on to send the other broadcasts).
	testassets.Eventually(t, 60*time.Second, "refused sends counter", metricIs(t, cfg, 1, "cryptoassets_sends_refused_total"))
	if v, ok := metric(t, cfg, "cryptoassets_chain_tip_height"); !ok || v < 1 {
		t.Errorf("cryptoassets_chain_tip_height %v (present %v)", v, ok)
	}
	if v, ok := metric(t, cfg, "cryptoassets_catchup_last_success_timestamp_seconds"); !ok || v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("cryptoassets_catchup_last_success_timestamp_seconds %v (present %v)", v, ok)
	}
	var cancelled apiTransaction
	if code := call(t, cfg, "POST", fmt.Sprintf("/v1/transactions/%d/cancel", ids["dust"]), testassets.APIToken, nil, nil, &cancelled); code != http.StatusOK || cancelled.State != "cancelled" {
		t.Errorf("cancelling the refused send: %d %+v", code, cancelled)
	}
	var refusal struct{ Error, Field string }
	if code := call(t, cfg, "POST", fmt.Sprintf("/v1/transactions/%d/cancel", ids["good-0"]), testassets.APIToken, nil, nil, &refusal); code != http.StatusConflict ||
		refusal.Field != "id" || !strings.Contains(refusal.Error, "is broadcasted") {
		t.Errorf("cancelling a paid send: %d %+v", code, refusal)
	}
	// 2 - 3 × 0.1 paid; the cancelled dust is back.
	testassets.Eventually(t, 10*time.Second, "balance", balanceIs(t, cfg, desk.ID, "1.70000000"))
	testassets.Eventually(t, 10*time.Second, "review queue empty", metricIs(t, cfg, 0, "cryptoassets_sends_needs_review"))
	// The wallet's balance is the accounts' sum: the desk's 1.7 less the network fees booked.
	testassets.Eventually(t, 30*time.Second, "the balance gauge says what the API says", func() error {
		var bal map[string]string
		call(t, cfg, "GET", "/v1/balance", testassets.APIToken, nil, nil, &bal)
		want, err := ledger.ParseAmount(bal["balance"], 8)
		if err != nil {
			return err
		}
		return metricIs(t, cfg, float64(want), "cryptoassets_wallet_balance_base_units")()
	})
}
