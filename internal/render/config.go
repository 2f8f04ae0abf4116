// Package render turns a CryptoAsset into the objects that run its helper. Every function here is
// pure: same input, same output, no API calls, so the reconciler stays thin and the output is
// unit-tested without a cluster.
package render

import (
	"fmt"
	"net"
	"path"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
)

// Paths inside the helper pod.
const (
	ConfigDir     = "/etc/cryptoassets"
	ConfigKey     = "config.yaml"
	ConfigPath    = ConfigDir + "/" + ConfigKey
	SecretsDir    = "/var/run/secrets/cryptoassets"
	TmpDir        = "/tmp"
	HelperUID     = 65532
	ContainerName = "helper"
)

// SecretPath is where the helper finds the value of a referenced Secret key.
func SecretPath(purpose string) string { return SecretsDir + "/" + purpose }

// Config renders the helper's config file for ca. It contains file paths for credentials, never
// their values.
func Config(ca *v1alpha1.CryptoAsset) (*config.Config, error) {
	spec := &ca.Spec
	k, err := coin.LookupNetwork(string(spec.Coin), string(spec.Network))
	if err != nil {
		return nil, fmt.Errorf("spec.coin: %w", err)
	}
	files := map[string]string{}
	for _, u := range spec.SecretUses() {
		files[u.Field] = SecretPath(u.Purpose)
	}

	confirmations := k.DefaultConfirmations
	if spec.Confirmations != nil {
		confirmations = *spec.Confirmations
	}
	cfg := &config.Config{
		Version: config.Version,
		Asset: config.Asset{
			Namespace:               ca.Namespace,
			Name:                    ca.Name,
			Coin:                    string(spec.Coin),
			Network:                 string(spec.Network),
			Confirmations:           confirmations,
			MaxTrackedConfirmations: spec.MaxTrackedConfirmations,
		},
		Database: config.Database{
			URLFile:        files["spec.database.urlSecretRef"],
			MaxConnections: spec.Database.MaxConnections,
		},
		Backend: config.Backend{Type: spec.Backend.Type},
		Notify: config.Notify{
			Method:       spec.Notify.Method,
			PollInterval: duration(spec.Notify.PollInterval),
		},
		API: config.API{
			Listen:    listen(spec.API.Port, config.DefaultAPIPort),
			TokenFile: files["spec.api.tokenSecretRef"],
		},
		Broadcast:  config.Broadcast{Period: duration(spec.Broadcast.Period)},
		Server:     config.Server{MetricsListen: listen(0, config.DefaultMetricsPort)},
		Kubernetes: &config.KubernetesOwner{Namespace: ca.Namespace, Name: ca.Name},
		Log:        config.Log{Level: string(spec.Helper.LogLevel)},
	}

	if b := spec.Backend.Bitcoind; b != nil {
		cfg.Backend.Bitcoind = &config.BitcoindBackend{
			URL:                  b.URL,
			Flavor:               b.Flavor,
			Wallet:               b.Wallet,
			UsernameFile:         files["spec.backend.bitcoind.usernameSecretRef"],
			PasswordFile:         files["spec.backend.bitcoind.passwordSecretRef"],
			WalletPassphraseFile: files["spec.backend.bitcoind.walletPassphraseSecretRef"],
			Timeout:              duration(b.Timeout),
		}
		if b.MaxRequests != nil {
			cfg.Backend.Bitcoind.MaxRequests = int(*b.MaxRequests)
		}
	}
	if b := spec.Backend.BlockIO; b != nil {
		cfg.Backend.BlockIO = &config.BlockIOBackend{
			URL:        b.URL,
			APIKeyFile: files["spec.backend.blockio.apiKeySecretRef"],
			PINFile:    files["spec.backend.blockio.pinSecretRef"],
		}
	}
	if b := spec.Backend.Blockchain; b != nil {
		cfg.Backend.Blockchain = &config.BlockchainBackend{
			URL:                b.URL,
			GUIDFile:           files["spec.backend.blockchain.guidSecretRef"],
			PasswordFile:       files["spec.backend.blockchain.passwordSecretRef"],
			SecondPasswordFile: files["spec.backend.blockchain.secondPasswordSecretRef"],
			APIKeyFile:         files["spec.backend.blockchain.apiKeySecretRef"],
			ExplorerURL:        b.ExplorerURL,
		}
	}

	n := spec.Notify
	switch n.Method {
	case v1alpha1.NotifyHTTP:
		cfg.Notify.HTTP = &config.HTTPNotify{Listen: listen(NotifyHTTPPort(ca), config.DefaultNotifyHTTPPort)}
		if n.HTTP != nil {
			cfg.Notify.HTTP.TokenFile = files["spec.notify.http.tokenSecretRef"]
		}
		// The CRD documents a hook without tokenSecretRef as open to any caller in the
		// cluster: leaving the reference out is the CryptoAsset's opt-in.
		cfg.Notify.HTTP.AllowUnauthenticated = cfg.Notify.HTTP.TokenFile == ""
	case v1alpha1.NotifyPipe:
		cfg.Notify.Pipe = &config.PipeNotify{Path: PipePath(ca)}
	case v1alpha1.NotifyRedis:
		if r := n.Redis; r != nil {
			cfg.Notify.Redis = &config.RedisNotify{
				Address:      r.Address,
				Channel:      r.Channel,
				DB:           r.DB,
				PasswordFile: files["spec.notify.redis.passwordSecretRef"],
				TLS:          r.TLS,
			}
		}
	case v1alpha1.NotifyBlockIOWebsocket:
		cfg.Notify.BlockIOWebsocket = &config.BlockIOWebsocketNotify{}
		if n.BlockIOWebsocket != nil {
			cfg.Notify.BlockIOWebsocket.URL = n.BlockIOWebsocket.URL
		}
	case v1alpha1.NotifyBlockIOWebhook:
		if w := n.BlockIOWebhook; w != nil {
			cfg.Notify.BlockIOWebhook = &config.BlockIOWebhookNotify{
				PublicURL: w.PublicURL,
				Listen:    listen(w.Port, config.DefaultWebhookPort),
			}
		}
	}

	if spec.EventRetention != nil {
		cfg.EventRetention = config.Duration{Duration: spec.EventRetention.Duration}
	}
	for _, e := range spec.Events {
		t := config.EventTarget{Name: e.Name, Type: e.Type}
		prefix := "spec.events[" + e.Name + "]"
		if e.HTTP != nil {
			t.HTTP = &config.HTTPEventTarget{
				URL:            e.HTTP.URL,
				SigningKeyFile: files[prefix+".http.signingSecretRef"],
				Timeout:        duration(e.HTTP.Timeout),
			}
			if e.HTTP.MaxInFlight != nil {
				t.HTTP.MaxInFlight = int(*e.HTTP.MaxInFlight)
			}
		}
		if e.Redis != nil {
			t.Redis = &config.RedisEventTarget{
				Address:      e.Redis.Address,
				Channel:      e.Redis.Channel,
				PasswordFile: files[prefix+".redis.passwordSecretRef"],
			}
		}
		if e.PGNotify != nil {
			t.PGNotify = &config.PGNotifyEventTarget{Channel: e.PGNotify.Channel}
		}
		if e.Script != nil {
			t.Script = &config.ScriptEventTarget{
				Command: append([]string(nil), e.Script.Command...),
				Timeout: duration(e.Script.Timeout),
			}
		}
		cfg.Events = append(cfg.Events, t)
	}

	// Objects created before defaulting (or by a client that skipped it) still get a full config;
	// then the same validation the helper runs at start-up catches anything CEL could not.
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ConfigData renders the config file's bytes.
func ConfigData(ca *v1alpha1.CryptoAsset) ([]byte, error) {
	cfg, err := Config(ca)
	if err != nil {
		return nil, err
	}
	return cfg.Marshal()
}

// NotifyHTTPPort is the walletnotify hook's port, or 0 when the method is not http.
func NotifyHTTPPort(ca *v1alpha1.CryptoAsset) int32 {
	if ca.Spec.Notify.Method != v1alpha1.NotifyHTTP {
		return 0
	}
	if h := ca.Spec.Notify.HTTP; h != nil && h.Port != 0 {
		return h.Port
	}
	return config.DefaultNotifyHTTPPort
}

// WebhookPort is the block.io webhook's port, or 0 when the method is not blockio-webhook.
func WebhookPort(ca *v1alpha1.CryptoAsset) int32 {
	if ca.Spec.Notify.Method != v1alpha1.NotifyBlockIOWebhook {
		return 0
	}
	if w := ca.Spec.Notify.BlockIOWebhook; w != nil && w.Port != 0 {
		return w.Port
	}
	return config.DefaultWebhookPort
}

// APIPort is the application API's port.
func APIPort(ca *v1alpha1.CryptoAsset) int32 {
	if ca.Spec.API.Port != 0 {
		return ca.Spec.API.Port
	}
	return config.DefaultAPIPort
}

// PipePath is the FIFO's path, or "" when the method is not pipe.
func PipePath(ca *v1alpha1.CryptoAsset) string {
	if ca.Spec.Notify.Method != v1alpha1.NotifyPipe {
		return ""
	}
	if p := ca.Spec.Notify.Pipe; p != nil && p.Path != "" {
		return path.Clean(p.Path)
	}
	return config.DefaultPipePath
}

func listen(port int32, def int) string {
	if port == 0 {
		port = int32(def)
	}
	return net.JoinHostPort("", strconv.Itoa(int(port)))
}

// duration converts an optional API duration; zero lets config.SetDefaults fill in the default.
func duration(d *metav1.Duration) config.Duration {
	if d == nil {
		return config.Duration{}
	}
	return config.Duration{Duration: d.Duration}
}
