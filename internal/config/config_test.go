package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
asset: {name: btc, coin: bitcoin, network: regtest}
database: {urlFile: /s/db}
backend:
  type: bitcoind
  bitcoind: {url: "http://127.0.0.1:18443", usernameFile: /s/u, passwordFile: /s/p}
notify: {method: http, http: {tokenFile: /s/hook}}
api: {tokenFile: /s/api}
`

func TestParseAppliesDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	for name, ok := range map[string]bool{
		"version":         cfg.Version == Version,
		"confirmations":   cfg.Asset.Confirmations == 3,
		"max tracked":     cfg.Asset.MaxTrackedConfirmations == DefaultMaxTracked,
		"flavor":          cfg.Backend.Bitcoind.Flavor == "bitcoin-core",
		"rpc timeout":     cfg.Backend.Bitcoind.Timeout.Duration == DefaultRPCTimeout,
		"poll interval":   cfg.Notify.PollInterval.Duration == DefaultPollInterval,
		"hook listen":     cfg.Notify.HTTP.Listen == ":28882",
		"api listen":      cfg.API.Listen == ":8080",
		"metrics listen":  cfg.Server.MetricsListen == ":9090",
		"broadcast":       cfg.Broadcast.Period.Duration == DefaultBroadcastPeriod,
		"log level":       cfg.Log.Level == "info",
		"max connections": cfg.Database.MaxConnections == DefaultMaxConnections,
		"event retention": cfg.EventRetention.Duration == DefaultEventRetention,
	} {
		if !ok {
			t.Errorf("default %s not applied: %+v", name, cfg)
		}
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown field", minimal + "\nbogus: 1\n", []string{`unknown field "bogus"`}},
		{"misspelled nested field", strings.Replace(minimal, "urlFile", "url_file", 1), []string{`unknown field "url_file"`}},
		{"bad duration", minimal + "broadcast: {period: soon}\n", []string{`duration "soon": write it like "30s" or "1m30s"`}},
		{"newer file version", minimal + "version: 2\n", []string{"version: this helper reads version 1, got 2"}},
		{"hook without a token and no opt-in", strings.Replace(minimal, ", http: {tokenFile: /s/hook}", "", 1),
			[]string{"notify.http.tokenFile: is required; to take wallet notifications without a token", "notify.http.allowUnauthenticated: true"}},
		{"retention shorter than the push retry window", minimal + "eventRetention: 72h\n", []string{"eventRetention: must be between 192h0m0s"}},
		{"several problems at once", `
asset: {name: BTC, coin: bitcoin, network: moon}
database: {urlFile: relative/path}
backend: {type: bitcoind}
notify: {method: carrier-pigeon}
api: {tokenFile: /s/api, listen: "8080"}
`, []string{"asset.name: must be lower-case", `asset.coin: coin bitcoin has no network "moon"`, "database.urlFile: must be an absolute path",
			"backend.bitcoind: is required with backend type bitcoind", "notify.method: must be http, pipe", "api.listen: must be host:port"}},
		{"credentials in URL", strings.Replace(minimal, "http://127.0.0.1:18443", "http://u:p@127.0.0.1:18443", 1),
			[]string{"backend.bitcoind.url: must not carry credentials"}},
		{"null on mainnet", `
asset: {name: btc, coin: bitcoin, network: mainnet}
database: {urlFile: /s/db}
backend: {type: "null"}
notify: {method: poll}
api: {tokenFile: /s/api}
`, []string{"the null backend is a simulator and cannot run on mainnet"}},
		{"blockio notify on bitcoind", strings.Replace(minimal, "notify: {method: http, http: {tokenFile: /s/hook}}", "notify: {method: blockio-websocket}", 1),
			[]string{"blockio-websocket notifications need backend blockio"}},
		{"redis without block", strings.Replace(minimal, "notify: {method: http, http: {tokenFile: /s/hook}}", "notify: {method: redis}", 1),
			[]string{"notify.redis: is required with notify method redis"}},
		{"btcwallet without passphrase", strings.Replace(minimal, "passwordFile: /s/p}", "passwordFile: /s/p, flavor: btcwallet}", 1),
			[]string{"walletPassphraseFile: is required with flavor btcwallet"}},
		{"duplicate event targets", minimal + `events:
- {name: a, type: pg-notify}
- {name: a, type: pg-notify}
`, []string{`events[1].name: duplicate target name "a"`}},
		{"event block mismatch", minimal + `events:
- {name: a, type: http, script: {command: [x]}}
`, []string{"the http block is required with type http", "the script block is required with type script and only allowed there"}},
		{"too many posts in flight", minimal + `events:
- {name: a, type: http, http: {url: "https://app/ev", signingKeyFile: /s/k, maxInFlight: 65}}
- {name: b, type: http, http: {url: "https://app/ev", signingKeyFile: /s/k, maxInFlight: -1}}
`, []string{"events[0].http.maxInFlight: must be between 1 and 64, got 65", "events[1].http.maxInFlight: must be between 1 and 64, got -1"}},
		{"too many requests at the node", strings.Replace(minimal, "passwordFile: /s/p}", "passwordFile: /s/p, maxRequests: 65}", 1),
			[]string{"backend.bitcoind.maxRequests: must be between 1 and 64, got 65"}},
		{"negative requests at the node", strings.Replace(minimal, "passwordFile: /s/p}", "passwordFile: /s/p, maxRequests: -2}", 1),
			[]string{"backend.bitcoind.maxRequests: must be between 1 and 64, got -2"}},
		{"poll too fast", strings.Replace(minimal, "notify: {method: http, http: {tokenFile: /s/hook}}", "notify: {method: http, http: {tokenFile: /s/hook}, pollInterval: 1s}", 1),
			[]string{"notify.pollInterval: must be between 5s and 24h0m0s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("accepted; want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "helper.yaml")
	if err := os.WriteFile(p, []byte(minimal+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("error %v does not name the file", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "reading config file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		content, want string
	}{{"pw\n", "pw"}, {"pw\r\n", "pw"}, {"pw", "pw"}, {" pw \n", " pw "}, {"a\nb\n", "a\nb"}} {
		got, err := ReadSecretFile("f", write("s", tc.content))
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
	if _, err := ReadSecretFile("backend.bitcoind.passwordFile", write("e", "\n")); err == nil || !strings.Contains(err.Error(), "backend.bitcoind.passwordFile") {
		t.Errorf("empty secret: %v", err)
	}
}

func TestDurationJSON(t *testing.T) {
	d := Duration{90 * time.Second}
	b, err := d.MarshalJSON()
	if err != nil || string(b) != `"1m30s"` {
		t.Fatalf("%s %v", b, err)
	}
	var back Duration
	if err := back.UnmarshalJSON(b); err != nil || back.Duration != d.Duration {
		t.Fatalf("%v %v", back, err)
	}
	if err := back.UnmarshalJSON([]byte("30")); err == nil {
		t.Errorf("a bare number must be refused: units are not guessed")
	}
}

// TestStandaloneExampleIsValid: the example config the README points VM users at parses and
// validates as it is written.
func TestStandaloneExampleIsValid(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "helper", "standalone.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(raw)
	if err != nil {
		t.Fatalf("config/helper/standalone.yaml: %v", err)
	}
	if cfg.Asset.Namespace != "" || cfg.Notify.HTTP.Listen != "127.0.0.1:28882" || cfg.EventRetention.Duration != 720*time.Hour {
		t.Errorf("parsed as %+v", cfg)
	}
}
