package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cryptoassets/cryptoassets-operator/internal/pgtest"
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
