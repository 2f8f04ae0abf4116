// Package crash proves that a helper killed at the worst moment never pays twice: between the
// wallet accepting a sendmany and the ledger recording it. The helper binary is built with
// -tags faultinject, whose fault point SIGKILLs the process right there; it is restarted without
// the fault, and btcwallet's own transaction list is the judge.
package crash

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/wallettest"
)

var (
	pg   *pgtest.Server
	node *btctest.Node
)

func TestMain(m *testing.M) {
	os.Exit(testassets.Main(m, testassets.Postgres(&pg), testassets.Bitcoin(&node)))
}

func buildHelper(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cryptoassets")
	cmd := exec.Command("go", "build", "-tags", "faultinject", "-o", bin, ".")
	cmd.Dir = testassets.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the helper with the fault point: %v\n%s", err, out)
	}
	return bin
}

func waitReady(t *testing.T, addr string, proc *exec.Cmd) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if proc.ProcessState != nil {
			t.Fatalf("helper exited: %v", proc.ProcessState)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("helper not ready at %s", addr)
}

func TestKilledBetweenSendAndCommitPaysOnce(t *testing.T) {
	ctx := context.Background()
	bin := buildHelper(t)
	dbURL := pg.Database(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cfg := testassets.HelperConfig(t, node, dbURL, "")
	path := testassets.WriteConfig(t, cfg)
	if out, err := exec.Command(bin, "initializedb", "--config", path).CombinedOutput(); err != nil {
		t.Fatalf("initializedb: %v\n%s", err, out)
	}

	// First run: with the fault armed.
	marker := filepath.Join(t.TempDir(), "sent-txid")
	logs := &bytes.Buffer{}
	first := exec.Command(bin, "helper", "--config", path)
	first.Env = append(os.Environ(), "CRYPTOASSETS_FAULT=kill-after-send:"+marker)
	first.Stdout, first.Stderr = logs, logs
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	waitReady(t, cfg.Server.MetricsListen, first)

	// Fund an account with a real confirmed deposit, then queue a payout.
	var acct struct{ ID int64 }
	testassets.API(t, cfg.API.Listen, "POST", "/v1/accounts", map[string]string{"name": "merchant"}, &acct)
	var addr struct{ Address string }
	if code := testassets.API(t, cfg.API.Listen, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), map[string]string{}, &addr); code != http.StatusCreated {
		t.Fatalf("address: %d", code)
	}
	if _, err := node.Pay(addr.Address, 300_000_000); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Mine(3); err != nil {
		t.Fatal(err)
	}
	var acctView struct{ Balance string }
	deadline := time.Now().Add(30 * time.Second)
	for acctView.Balance != "3.00000000" {
		if time.Now().After(deadline) {
			t.Fatalf("deposit not credited: %q\n%s", acctView.Balance, logs)
		}
		time.Sleep(200 * time.Millisecond)
		testassets.API(t, cfg.API.Listen, "GET", fmt.Sprintf("/v1/accounts/%d", acct.ID), nil, &acctView)
	}
	payee, err := node.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	var send struct{ ID int64 }
	if code := testassets.API(t, cfg.API.Listen, "POST", fmt.Sprintf("/v1/accounts/%d/send", acct.ID),
		map[string]string{"to": payee.EncodeAddress(), "amount": "1.23456789"}, &send); code != http.StatusCreated {
		t.Fatalf("send: %d", code)
	}

	// The helper dies by SIGKILL right after the wallet accepted the send.
	select {
	case err := <-exited:
		ws, ok := first.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("helper exited with %v, want SIGKILL\n%s", err, logs)
		}
	case <-time.After(60 * time.Second):
		_ = first.Process.Kill()
		t.Fatalf("the fault point never fired\n%s", logs)
	}
	raw, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	txid := strings.TrimSpace(string(raw))
	var state string
	if err := pool.QueryRow(ctx, `SELECT state FROM transactions WHERE id = $1`, send.ID).Scan(&state); err != nil || state != "broadcasting" {
		t.Fatalf("after the kill the send is %q (%v); the crash must have come before the commit", state, err)
	}

	// Second run: no fault. It must find the payment, not make it again.
	second := exec.Command(bin, "helper", "--config", path)
	second.Stdout, second.Stderr = logs, logs
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = second.Process.Signal(syscall.SIGTERM); _ = second.Wait() }()
	waitReady(t, cfg.Server.MetricsListen, second)
	var got struct{ State, TxID string }
	deadline = time.Now().Add(60 * time.Second)
	for got.State != "broadcasted" {
		if time.Now().After(deadline) {
			t.Fatalf("send not reconciled: %+v\n%s", got, logs)
		}
		time.Sleep(200 * time.Millisecond)
		testassets.API(t, cfg.API.Listen, "GET", fmt.Sprintf("/v1/transactions/%d", send.ID), nil, &got)
	}
	if got.TxID != txid {
		t.Errorf("ledger records %s, the killed helper had sent %s", got.TxID, txid)
	}

	// The wallet's own record: exactly one payment of 1.23456789 to the payee.
	wallet := wallettest.Backend(t, node, "")
	time.Sleep(3 * time.Second) // several broadcast periods: a second payment would have gone out by now
	sends, err := wallet.RecentSends(ctx, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	paid := 0
	for _, s := range sends {
		if s.Outputs[payee.EncodeAddress()] == 123_456_789 {
			paid++
		}
	}
	if paid != 1 {
		t.Fatalf("the wallet paid the payee %d times, want exactly once\n%s", paid, logs)
	}
	if v, err := ledger.Check(ctx, pool); err != nil || len(v) > 0 {
		t.Fatalf("ledger check: %v %v", v, err)
	}
}
