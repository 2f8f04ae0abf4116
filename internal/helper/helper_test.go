package helper

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/btcutil/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/go-logr/logr/testr"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/events/eventstest"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

var (
	pg   *pgtest.Server
	node *btctest.Node
)

func TestMain(m *testing.M) {
	os.Exit(testassets.Main(m, testassets.Postgres(&pg), testassets.Bitcoin(&node)))
}

type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	return startWith(t, cfg, Options{})
}

func startWith(t *testing.T, cfg *config.Config, opts Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, cfg, testr.New(t), opts) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("helper stopped with %v", err)
		}
		r.done <- nil // later stops see a clean exit
	case <-time.After(30 * time.Second):
		t.Errorf("helper did not stop within 30s")
	}
}

func ready(cfg *config.Config) error {
	resp, err := http.Get("http://" + cfg.Server.MetricsListen + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
	}
	return nil
}

// call makes an API request and decodes the answer into out.
func call(t *testing.T, cfg *config.Config, method, path, token string, body any, headers map[string]string, out any) int {
	t.Helper()
	return testassets.APIRequest(t, cfg.API.Listen, token, method, path, headers, body, out)
}

func hook(t *testing.T, cfg *config.Config, token, body string) int {
	t.Helper()
	resp, err := http.Post("http://"+cfg.Notify.HTTP.Listen+"/?token="+url.QueryEscape(token), "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHelperServesDepositsSendsAndEvents(t *testing.T) {
	ctx := context.Background()
	dbURL, pool := ledgertest.DB(t, pg)
	app := &eventstest.EventReceiver{Key: []byte(testassets.SigningKey)}
	appSrv := &http.Server{Handler: app}
	appAddr := testassets.FreeAddr(t)
	ln, err := net.Listen("tcp", appAddr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = appSrv.Serve(ln) }()
	defer appSrv.Close()

	cfg := testassets.HelperConfig(t, node, dbURL, "http://"+appAddr+"/events")
	a := start(t, cfg)
	testassets.Eventually(t, 60*time.Second, "helper A ready", func() error { return ready(cfg) })

	// A second helper for the same asset waits, not ready, while the first is active.
	standby := testassets.HelperConfig(t, node, dbURL, "http://"+appAddr+"/events")
	start(t, standby)
	testassets.Eventually(t, 60*time.Second, "standby helper waiting for the lock", func() error {
		if err := ready(standby); err == nil || !strings.Contains(err.Error(), "waiting for the advisory lock") {
			return fmt.Errorf("standby helper: %v", err)
		}
		return nil
	})

	// API: authentication and field-naming errors.
	if code := call(t, cfg, "GET", "/v1/accounts", "", nil, nil, nil); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
	var acct struct {
		ID      int64
		Balance string
	}
	if code := call(t, cfg, "POST", "/v1/accounts", testassets.APIToken, map[string]string{"name": "alice"}, nil, &acct); code != http.StatusCreated {
		t.Fatalf("create account: %d", code)
	}
	var addr struct{ Address string }
	if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), testassets.APIToken, map[string]string{"label": "order-1"}, nil, &addr); code != http.StatusCreated {
		t.Fatalf("create address: %d", code)
	}
	var apiErr struct{ Error, Field string }
	if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/send", acct.ID), testassets.APIToken, map[string]any{"to": addr.Address, "amount": "1.123456789"}, nil, &apiErr); code != http.StatusBadRequest || apiErr.Field != "amount" {
		t.Errorf("too many decimals: %d %+v", code, apiErr)
	}

	// A deposit: bitcoind's walletnotify posts the txid; the catch-up follows confirmations.
	to, _ := address.DecodeAddress(addr.Address, &chaincfg.SimNetParams)
	if err := node.Unlock(10 * time.Minute); err != nil {
		t.Fatal(err)
	}
	h, err := node.Wallet.SendToAddress(to, btcutil.Amount(50_000_000))
	if err != nil {
		t.Fatal(err)
	}
	txid := h.String()
	if code := hook(t, cfg, "wrong", "txid="+txid); code != http.StatusUnauthorized {
		t.Errorf("hook with a wrong token: %d", code)
	}
	if code := hook(t, cfg, testassets.HookToken, "txid=not-hex"); code != http.StatusBadRequest {
		t.Errorf("hook with a bad txid: %d", code)
	}
	if code := hook(t, cfg, testassets.HookToken, "txid="+txid); code != http.StatusOK {
		t.Fatalf("hook: %d", code)
	}
	var txs []struct {
		Kind, State, TxID string
		Confirmations     int32
	}
	call(t, cfg, "GET", fmt.Sprintf("/v1/transactions?account=%d", acct.ID), testassets.APIToken, nil, nil, &txs)
	if len(txs) != 1 || txs[0].Kind != "deposit" || txs[0].State != "incoming" || txs[0].TxID != txid {
		t.Fatalf("after the notification: %+v", txs)
	}
	if _, err := node.Mine(3); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 30*time.Second, "deposit credited by the poll timer", func() error {
		call(t, cfg, "GET", fmt.Sprintf("/v1/accounts/%d", acct.ID), testassets.APIToken, nil, nil, &acct)
		if acct.Balance != "0.50000000" {
			return fmt.Errorf("balance %s", acct.Balance)
		}
		return nil
	})
	testassets.Eventually(t, 30*time.Second, "signed event for the credit", func() error {
		if !app.Credited(txid) {
			good, _ := app.Counts()
			return fmt.Errorf("no credited txupdate among %d events", good)
		}
		return nil
	})

	// A send, twice with the same Idempotency-Key: one ledger send, one payment.
	payee, err := node.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	var sent, again struct {
		ID          int64
		State, TxID string
	}
	body := map[string]any{"to": payee.EncodeAddress(), "amount": "0.10000000"}
	key := map[string]string{"Idempotency-Key": "payout-7"}
	if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/send", acct.ID), testassets.APIToken, body, key, &sent); code != http.StatusCreated || sent.State != "pending" {
		t.Fatalf("send: %d %+v", code, sent)
	}
	call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/send", acct.ID), testassets.APIToken, body, key, &again)
	if again.ID != sent.ID {
		t.Errorf("repeated Idempotency-Key made send %d besides %d", again.ID, sent.ID)
	}
	testassets.Eventually(t, 30*time.Second, "send broadcast", func() error {
		call(t, cfg, "GET", "/v1/transactions/"+strconv.FormatInt(sent.ID, 10), testassets.APIToken, nil, nil, &sent)
		if sent.State != "broadcasted" || sent.TxID == "" {
			return fmt.Errorf("send is %s", sent.State)
		}
		return nil
	})
	sentHash, _ := chainhash.NewHashFromStr(sent.TxID)
	if _, err := node.Wallet.GetTransaction(sentHash); err != nil {
		t.Errorf("the wallet does not know the broadcast %s: %v", sent.TxID, err)
	}

	// The status page: authenticated, and escaping what it shows.
	call(t, cfg, "POST", "/v1/accounts", testassets.APIToken, map[string]string{"name": "<script>alert(1)</script>"}, nil, nil)
	statusURL := "http://" + cfg.API.Listen + "/status"
	if resp, err := http.Get(statusURL); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status page without credentials: %v %v", resp.StatusCode, err)
	}
	req, _ := http.NewRequest("GET", statusURL, nil)
	req.SetBasicAuth("ops", testassets.APIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "0.50000000", sent.TxID, txid, "Last broadcast: #1 broadcasted"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(string(page), "<script>alert") {
		t.Errorf("status page does not escape account names")
	}

	// Metrics are served. The broadcast pass counts itself after it has recorded the broadcast
	// the API already shows, so the count is waited for (a loaded CI run scraped in between).
	testassets.Eventually(t, 60*time.Second, "metrics with the notification and the broadcast", func() error {
		resp, err := http.Get("http://" + cfg.Server.MetricsListen + "/metrics")
		if err != nil {
			return err
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(m), `cryptoassets_notifications_total{source="http"} 1`) || !strings.Contains(string(m), `cryptoassets_broadcast_passes_total{result="sent"} 1`) {
			return fmt.Errorf("metrics lack the notification or the broadcast:\n%s", grep(string(m), "cryptoassets_"))
		}
		return nil
	})

	// The active helper stops (SIGTERM): the standby takes over.
	a.stop(t)
	testassets.Eventually(t, 60*time.Second, "standby takes over", func() error { return ready(standby) })

	if v, err := ledger.Check(ctx, pool); err != nil || len(v) > 0 {
		t.Fatalf("ledger check: %v %v", v, err)
	}
	if _, bad := app.Counts(); bad != 0 {
		t.Errorf("%d event deliveries had bad signatures", bad)
	}
}

func grep(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
