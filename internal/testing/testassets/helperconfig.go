package testassets

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/loopback"
)

// Credentials the helper configs made here use.
const (
	APIToken   = "api-token-for-tests"
	HookToken  = "hook-token-for-tests"
	SigningKey = "event-signing-key"
)

// FreeAddr is a free loopback address to listen on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := loopback.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// HelperConfig writes credential files and returns a helper config for the simnet node, as the
// operator would render it: bitcoind (btcwallet) backend, HTTP walletnotify hook, an HTTP event
// target at eventsURL (none when empty), one-second broadcasts, free loopback ports.
func HelperConfig(t testing.TB, node *btctest.Node, dbURL, eventsURL string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user, pass := node.Credentials()
	cfg := &config.Config{
		Asset:    config.Asset{Name: "btc", Coin: "bitcoin", Network: "simnet", Confirmations: 3, MaxTrackedConfirmations: 6},
		Database: config.Database{URLFile: file("db", dbURL)},
		Backend: config.Backend{Type: "bitcoind", Bitcoind: &config.BitcoindBackend{URL: node.WalletURL(), Flavor: "btcwallet",
			UsernameFile: file("user", user), PasswordFile: file("pass", pass), WalletPassphraseFile: file("phrase", btctest.WalletPassphrase),
			Timeout: config.Duration{Duration: 10 * time.Second}}},
		Notify: config.Notify{Method: "http", PollInterval: config.Duration{Duration: 5 * time.Second},
			HTTP: &config.HTTPNotify{Listen: FreeAddr(t), TokenFile: file("hook", HookToken)}},
		API:       config.API{Listen: FreeAddr(t), TokenFile: file("api", APIToken)},
		Broadcast: config.Broadcast{Period: config.Duration{Duration: time.Second}},
		Server:    config.Server{MetricsListen: FreeAddr(t)},
	}
	if eventsURL != "" {
		cfg.Events = []config.EventTarget{{Name: "app", Type: "http", HTTP: &config.HTTPEventTarget{URL: eventsURL,
			SigningKeyFile: file("sign", SigningKey), Timeout: config.Duration{Duration: 5 * time.Second}}}}
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// WriteConfig writes cfg to a file for a helper process and returns its path.
func WriteConfig(t testing.TB, cfg *config.Config) string {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "helper.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
