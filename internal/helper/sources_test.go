package helper

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/redistest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// sourceHelper starts a helper whose only timely wake-ups come from the configured source:
// polling is set to an hour.
func sourceHelper(t *testing.T, notify config.Notify) (*config.Config, *pgxpool.Pool) {
	t.Helper()
	dbURL, pool := ledgertest.DB(t, pg)
	cfg := testassets.HelperConfig(t, node, dbURL, "")
	notify.PollInterval = config.Duration{Duration: time.Hour}
	cfg.Notify = notify
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	start(t, cfg)
	testassets.Eventually(t, 60*time.Second, "helper ready", func() error { return ready(cfg) })
	return cfg, pool
}

// depositAddress makes an account and a receiving address through the API.
func depositAddress(t *testing.T, cfg *config.Config) (int64, string) {
	t.Helper()
	var acct struct{ ID int64 }
	call(t, cfg, "POST", "/v1/accounts", testassets.APIToken, map[string]string{"name": "shop"}, nil, &acct)
	var addr struct{ Address string }
	if code := call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), testassets.APIToken, map[string]string{}, nil, &addr); code != http.StatusCreated {
		t.Fatalf("address: %d", code)
	}
	return acct.ID, addr.Address
}

func deposits(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM transactions WHERE kind = 'deposit'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPipeNotifications(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "walletnotify")
	cfg, pool := sourceHelper(t, config.Notify{Method: "pipe", Pipe: &config.PipeNotify{Path: fifo}})
	_, addr := depositAddress(t, cfg)

	// Garbage first: refused, counted, nothing booked.
	if err := os.WriteFile(fifo, []byte("not-a-txid\n"+strings.Repeat("00", 33)+"\n\n"), 0); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 10*time.Second, "refusals counted", func() error {
		if n := testassets.Metric(t, cfg.Server.MetricsListen, `cryptoassets_notifications_rejected_total{source="pipe"}`); n != 2 {
			return fmt.Errorf("%v refused", n)
		}
		return nil
	})
	if n := deposits(t, pool); n != 0 {
		t.Fatalf("%d deposits after garbage", n)
	}
	// A forged txid (well-formed, not the wallet's) changes nothing either.
	if out, err := exec.Command("sh", "-c", "echo "+strings.Repeat("ab", 32)+" >> "+fifo).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}

	txid := node.MustPay(t, addr, 40_000_000)
	if out, err := exec.Command("sh", "-c", "echo "+txid+" >> "+fifo).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	testassets.Eventually(t, 20*time.Second, "deposit booked from the pipe", func() error {
		if n := deposits(t, pool); n != 1 {
			return fmt.Errorf("%d deposits", n)
		}
		return nil
	})
}

func TestRedisNotificationsSurviveARedisRestart(t *testing.T) {
	srv, err := redistest.Start("notify-pass")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	passFile := filepath.Join(t.TempDir(), "redis-pass")
	if err := os.WriteFile(passFile, []byte("notify-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, pool := sourceHelper(t, config.Notify{Method: "redis", Redis: &config.RedisNotify{
		Address: srv.Addr(), Channel: "bitcoind_walletnotify_pubsub", PasswordFile: passFile}})
	_, addr := depositAddress(t, cfg)
	publish := func(msg string) {
		t.Helper()
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(srv.Port), "--no-auth-warning", "-a", "notify-pass",
			"publish", "bitcoind_walletnotify_pubsub", msg).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli: %v %s", err, out)
		}
	}
	publish("garbage")
	publish(strings.Repeat("ab", 32))
	first := node.MustPay(t, addr, 10_000_000)
	publish(first)
	testassets.Eventually(t, 20*time.Second, "deposit booked from redis", func() error {
		if n := deposits(t, pool); n != 1 {
			return fmt.Errorf("%d deposits", n)
		}
		return nil
	})
	if n := testassets.Metric(t, cfg.Server.MetricsListen, `cryptoassets_notifications_rejected_total{source="redis"}`); n != 1 {
		t.Errorf("%v refused, want 1", n)
	}

	// Redis dies; a payment arrives and its notification goes nowhere. When Redis is back the
	// helper subscribes again and catches up: the payment is booked without any message.
	// (Whether a catch-up woken by the first message finds it earlier depends on timing, so the
	// test does not claim it stays unbooked while Redis is down.)
	srv.Stop()
	// Redis is only a wake-up (polling goes on), so the helper stays ready and says what is down.
	testassets.Eventually(t, 20*time.Second, "redis reported down, helper still ready", func() error {
		code, comps, err := readyzBody(cfg)
		if err != nil || code != http.StatusOK || comps["notify-redis"].OK {
			return fmt.Errorf("readyz %d: %+v %v", code, comps, err)
		}
		return nil
	})
	node.MustPay(t, addr, 20_000_000)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 60*time.Second, "the gap's payment booked after resubscribing", func() error {
		if n := deposits(t, pool); n != 2 {
			return fmt.Errorf("%d deposits", n)
		}
		code, comps, err := readyzBody(cfg)
		if err != nil || code != http.StatusOK || !comps["notify-redis"].OK {
			return fmt.Errorf("readyz %d: %+v %v", code, comps, err)
		}
		return nil
	})
	// The subscription itself is back: with polling an hour apart, only the message can book this.
	third := node.MustPay(t, addr, 30_000_000)
	publish(third)
	testassets.Eventually(t, 30*time.Second, "a payment announced after the restart booked from redis", func() error {
		if n := deposits(t, pool); n != 3 {
			return fmt.Errorf("%d deposits", n)
		}
		return nil
	})
	if n := testassets.Metric(t, cfg.Server.MetricsListen, `cryptoassets_notifications_total{source="redis"}`); n != 3 {
		t.Errorf("%v notifications taken from redis, want 3 (two before the restart, one after)", n)
	}
}
