package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := rootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// helperConfig writes a helper config file and its credential files, as the operator's pod or a
// VM install would have them.
func helperConfig(t *testing.T, databaseURL string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	db := write("database-url", databaseURL+"\n")
	token := write("api-token", "t")
	user := write("rpc-user", "u")
	pass := write("rpc-pass", "p")
	return write("helper.yaml", `
asset: {name: btc, coin: bitcoin, network: regtest}
database: {urlFile: `+db+`}
backend:
  type: bitcoind
  bitcoind: {url: "http://127.0.0.1:18443", usernameFile: `+user+`, passwordFile: `+pass+`}
notify: {method: poll}
api: {tokenFile: `+token+`}
`)
}

func TestInitializeDBAndLedgerCheck(t *testing.T) {
	srv, err := pgtest.Start()
	if err != nil {
		if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
			t.Fatal(err)
		}
		t.Skip("no PostgreSQL:", err)
	}
	defer srv.Stop()
	url := srv.Database(t)
	cfg := helperConfig(t, url)

	out, err := run(t, "initializedb", "--config", cfg)
	if err != nil || !strings.Contains(out, "applied 0001_ledger.sql") {
		t.Fatalf("first initializedb: %v\n%s", err, out)
	}
	out, err = run(t, "initializedb", "--config", cfg)
	if err != nil || !strings.Contains(out, "up to date") {
		t.Fatalf("second initializedb: %v\n%s", err, out)
	}
	out, err = run(t, "ledger", "check", "--config", cfg)
	if err != nil || !strings.Contains(out, "all invariants hold") {
		t.Fatalf("ledger check on a fresh ledger: %v\n%s", err, out)
	}

	// Break an invariant behind the ledger's back: check must say so and fail.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO assets (name, coin, network) VALUES ('x', 'bitcoin', 'regtest');
		INSERT INTO wallets (asset_id, name, balance) SELECT id, 'default', 5 FROM assets WHERE name = 'x'`); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "ledger", "check", "--config", cfg)
	if err == nil || !strings.Contains(out, "VIOLATION wallet balance equals the sum of its accounts") {
		t.Fatalf("ledger check missed a broken wallet: %v\n%s", err, out)
	}

	// A bad URL is named without echoing it (it holds a password).
	bad := helperConfig(t, "postgres://u:hunter2@[::1")
	_, err = run(t, "initializedb", "--config", bad)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "database.urlFile") {
		t.Fatalf("bad URL: %v", err)
	}
}

func TestWalletnotifyClient(t *testing.T) {
	txid := strings.Repeat("ab", 32)
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Cryptoassets-Token") != "s3cret" {
			http.Error(w, "missing or wrong token", http.StatusUnauthorized)
			return
		}
		_ = r.ParseForm()
		got = append(got, r.PostForm.Get("txid"))
	}))
	defer hook.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "walletnotify", "--url", hook.URL, "--token-file", tokenFile, txid); err != nil || len(got) != 1 || got[0] != txid {
		t.Fatalf("notify: %v, hook got %v", err, got)
	}
	if _, err := run(t, "walletnotify", "--url", hook.URL, txid); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without the token: %v", err)
	}
	if _, err := run(t, "walletnotify", "--url", hook.URL, "--token-file", tokenFile, "xyz"); err == nil || !strings.Contains(err.Error(), "64 hex digits") || len(got) != 1 {
		t.Errorf("a malformed txid must not be posted: %v (hook got %d)", err, len(got))
	}
	// A helper that does not answer cannot hold bitcoind up.
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(3 * time.Second) }))
	defer stuck.Close()
	start := time.Now()
	if _, err := run(t, "walletnotify", "--url", stuck.URL, "--timeout", "300ms", txid); err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("stuck helper: %v after %s", err, time.Since(start))
	}
}

func TestRescanRefusesANegativeHeight(t *testing.T) {
	out, err := run(t, "rescan", "--config", "/nonexistent.yaml", "--from-height", "-5")
	if err == nil || !strings.Contains(err.Error(), "--from-height must be 0 or more, got -5") {
		t.Fatalf("got %v\n%s", err, out)
	}
}
