// Package config is the helper's configuration file: the contract between the operator, which
// renders it into a ConfigMap, and the helper, which loads it (in a pod or standalone on a VM).
//
// Secret values never appear in the file. Every credential is a path to a file holding it (in a
// pod, a projected Secret volume; on a VM, any file readable only by the helper's user).
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/cryptoassets/cryptoassets-operator/internal/coin"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
)

// Version of the file format; bumped on incompatible changes so an old helper refuses a new file.
const Version = 1

// Default listen addresses and intervals, shared by the renderer and by standalone use.
const (
	DefaultAPIPort         = 8080
	DefaultNotifyHTTPPort  = 28882
	DefaultWebhookPort     = 28883
	DefaultMetricsPort     = 9090
	DefaultPollInterval    = 60 * time.Second
	DefaultBroadcastPeriod = 30 * time.Second
	DefaultRPCTimeout      = 30 * time.Second
	// DefaultEventRetention is how long events stay in the outbox for pulling (GET /v1/events).
	DefaultEventRetention = 30 * 24 * time.Hour
	// MinEventRetention outlasts the push delivery's retry window (seven days), so no event is
	// deleted while a target is still being retried.
	MinEventRetention   = 8 * 24 * time.Hour
	DefaultEventTimeout = 10 * time.Second
	// DefaultEventsInFlight is how many posts to one HTTP target may be under way at once.
	DefaultEventsInFlight   = 4
	DefaultScriptTimeout    = 30 * time.Second
	DefaultMaxTracked       = 15
	DefaultMaxConnections   = 10
	DefaultRedisChannel     = "bitcoind_walletnotify_pubsub"
	DefaultEventChannel     = "cryptoassets_events"
	DefaultPipePath         = "/run/cryptoassets/walletnotify/fifo"
	DefaultBlockIOURL       = "https://block.io/api/v2"
	DefaultBlockIOSocketURL = "wss://n.block.io/"
	// The block explorer API the blockchain.info backend reads transactions from.
	DefaultBlockchainExplorerURL        = "https://blockchain.info/"
	DefaultBlockchainTestnetExplorerURL = "https://testnet.blockchain.info/"
)

// Config is the whole helper configuration.
type Config struct {
	Version  int           `json:"version"`
	Asset    Asset         `json:"asset"`
	Database Database      `json:"database"`
	Backend  Backend       `json:"backend"`
	Notify   Notify        `json:"notify"`
	Events   []EventTarget `json:"events,omitempty"`
	// EventRetention is how long events are kept for applications to pull, whether or not they
	// were delivered; older ones are deleted. Default 720h (30 days), at least 192h.
	EventRetention Duration         `json:"eventRetention,omitempty"`
	API            API              `json:"api"`
	Broadcast      Broadcast        `json:"broadcast"`
	Server         Server           `json:"server"`
	Kubernetes     *KubernetesOwner `json:"kubernetes,omitempty"`
	Log            Log              `json:"log"`
}

// Asset is the coin this helper serves.
type Asset struct {
	// Namespace and Name identify the asset in the ledger, so several assets, also of several
	// teams, share one database. The operator sets the CryptoAsset's namespace and name; a
	// standalone helper leaves namespace empty.
	Namespace               string `json:"namespace,omitempty"`
	Name                    string `json:"name"`
	Coin                    string `json:"coin"`
	Network                 string `json:"network"`
	Confirmations           int32  `json:"confirmations"`
	MaxTrackedConfirmations int32  `json:"maxTrackedConfirmations"`
}

// Database is the PostgreSQL ledger.
type Database struct {
	URLFile        string `json:"urlFile"`
	MaxConnections int32  `json:"maxConnections"`
}

// Backend selects and configures the backend.
type Backend struct {
	Type       v1alpha1.BackendType `json:"type"`
	Bitcoind   *BitcoindBackend     `json:"bitcoind,omitempty"`
	BlockIO    *BlockIOBackend      `json:"blockio,omitempty"`
	Blockchain *BlockchainBackend   `json:"blockchain,omitempty"`
}

// BitcoindBackend is a bitcoind-compatible JSON-RPC wallet.
type BitcoindBackend struct {
	URL                  string                  `json:"url"`
	Flavor               v1alpha1.BitcoindFlavor `json:"flavor"`
	Wallet               string                  `json:"wallet,omitempty"`
	UsernameFile         string                  `json:"usernameFile"`
	PasswordFile         string                  `json:"passwordFile"`
	WalletPassphraseFile string                  `json:"walletPassphraseFile,omitempty"`
	Timeout              Duration                `json:"timeout"`
	// MaxRequests is how many requests may be open at the node at once; 0 leaves it to the
	// client (bitcoind.DefaultMaxRequests). Omitted when unset, so configs rendered before it
	// existed hash the same.
	MaxRequests int `json:"maxRequests,omitempty"`
}

// MaxRPCRequests bounds backend.bitcoind.maxRequests.
const MaxRPCRequests = 64

// BlockIOBackend is the block.io API.
type BlockIOBackend struct {
	URL        string `json:"url"`
	APIKeyFile string `json:"apiKeyFile"`
	PINFile    string `json:"pinFile"`
}

// BlockchainBackend is the blockchain.info wallet service.
type BlockchainBackend struct {
	URL                string `json:"url"`
	GUIDFile           string `json:"guidFile"`
	PasswordFile       string `json:"passwordFile"`
	SecondPasswordFile string `json:"secondPasswordFile,omitempty"`
	APIKeyFile         string `json:"apiKeyFile,omitempty"`
	// ExplorerURL is the block explorer API transactions and blocks are read from.
	ExplorerURL string `json:"explorerURL,omitempty"`
}

// Notify selects the wake-up source; polling always runs too.
type Notify struct {
	Method           v1alpha1.NotifyMethod   `json:"method"`
	PollInterval     Duration                `json:"pollInterval"`
	HTTP             *HTTPNotify             `json:"http,omitempty"`
	Pipe             *PipeNotify             `json:"pipe,omitempty"`
	Redis            *RedisNotify            `json:"redis,omitempty"`
	BlockIOWebsocket *BlockIOWebsocketNotify `json:"blockioWebsocket,omitempty"`
	BlockIOWebhook   *BlockIOWebhookNotify   `json:"blockioWebhook,omitempty"`
}

// HTTPNotify is the walletnotify HTTP hook.
type HTTPNotify struct {
	Listen    string `json:"listen"`
	TokenFile string `json:"tokenFile,omitempty"`
	// AllowUnauthenticated takes notifications without a token. It must be said explicitly: a
	// hook anyone can call lets anyone make the helper poll its backend.
	AllowUnauthenticated bool `json:"allowUnauthenticated,omitempty"`
}

// PipeNotify is the walletnotify named pipe.
type PipeNotify struct {
	Path string `json:"path"`
}

// RedisNotify is the walletnotify Redis channel.
type RedisNotify struct {
	Address      string `json:"address"`
	Channel      string `json:"channel"`
	DB           int32  `json:"db,omitempty"`
	PasswordFile string `json:"passwordFile,omitempty"`
	TLS          bool   `json:"tls,omitempty"`
}

// BlockIOWebsocketNotify is block.io's websocket stream.
type BlockIOWebsocketNotify struct {
	URL string `json:"url"`
}

// BlockIOWebhookNotify is block.io's webhook.
type BlockIOWebhookNotify struct {
	PublicURL string `json:"publicURL"`
	Listen    string `json:"listen"`
}

// EventTarget is one application notification target.
type EventTarget struct {
	Name     string                   `json:"name"`
	Type     v1alpha1.EventTargetType `json:"type"`
	HTTP     *HTTPEventTarget         `json:"http,omitempty"`
	Redis    *RedisEventTarget        `json:"redis,omitempty"`
	PGNotify *PGNotifyEventTarget     `json:"pgNotify,omitempty"`
	Script   *ScriptEventTarget       `json:"script,omitempty"`
}

// HTTPEventTarget posts signed JSON.
type HTTPEventTarget struct {
	URL            string   `json:"url"`
	SigningKeyFile string   `json:"signingKeyFile"`
	Timeout        Duration `json:"timeout"`
	// MaxInFlight is how many posts may be under way at once (DefaultEventsInFlight; 1 posts
	// in order).
	MaxInFlight int `json:"maxInFlight,omitempty"`
}

// MaxEventsInFlight bounds an HTTP target's maxInFlight.
const MaxEventsInFlight = 64

// RedisEventTarget publishes on a channel.
type RedisEventTarget struct {
	Address      string `json:"address"`
	Channel      string `json:"channel"`
	PasswordFile string `json:"passwordFile,omitempty"`
}

// PGNotifyEventTarget sends NOTIFY on the ledger database.
type PGNotifyEventTarget struct {
	Channel string `json:"channel"`
}

// ScriptEventTarget runs a command per event.
type ScriptEventTarget struct {
	Command []string `json:"command"`
	Timeout Duration `json:"timeout"`
}

// API is the application API.
type API struct {
	Listen    string `json:"listen"`
	TokenFile string `json:"tokenFile"`
}

// Broadcast configures the broadcaster.
type Broadcast struct {
	Period Duration `json:"period"`
}

// Server carries the operational endpoints: /metrics, /healthz, /readyz.
type Server struct {
	MetricsListen string `json:"metricsListen"`
}

// KubernetesOwner names the CryptoAsset the helper belongs to, when it runs in a cluster; the helper
// watches it for rescan requests and reports rescans in its status.
type KubernetesOwner struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Log configures logging.
type Log struct {
	Level string `json:"level"`
}

// Duration is a time.Duration written as a Go duration string ("30s") in the file.
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "30s" or "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: write it like \"30s\" or \"1m30s\"", s)
	}
	d.Duration = v
	return nil
}

// Load reads, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a config from YAML or JSON, rejecting unknown fields, then defaults and validates it.
func Parse(data []byte) (*Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Marshal writes the config as YAML, its fields in the order the types declare them, so the
// same config always makes the same bytes and the same hash.
func (c *Config) Marshal() ([]byte, error) {
	// Without HTML's escapes, so a URL's & stays readable in the ConfigMap.
	var j bytes.Buffer
	enc := json.NewEncoder(&j)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("writing the config: %w", err)
	}
	return blockYAML(j.Bytes())
}

// SetDefaults fills every optional field that is unset.
func (c *Config) SetDefaults() {
	if c.Version == 0 {
		c.Version = Version
	}
	if c.Asset.MaxTrackedConfirmations == 0 {
		c.Asset.MaxTrackedConfirmations = DefaultMaxTracked
	}
	if c.Asset.Confirmations == 0 {
		if k, err := coin.Lookup(c.Asset.Coin); err == nil {
			c.Asset.Confirmations = k.DefaultConfirmations
		}
	}
	if c.Database.MaxConnections == 0 {
		c.Database.MaxConnections = DefaultMaxConnections
	}
	if b := c.Backend.Bitcoind; b != nil {
		if b.Flavor == "" {
			b.Flavor = v1alpha1.FlavorBitcoinCore
		}
		if b.Timeout.Duration == 0 {
			b.Timeout.Duration = DefaultRPCTimeout
		}
	}
	if b := c.Backend.Blockchain; b != nil && b.ExplorerURL == "" {
		b.ExplorerURL = DefaultBlockchainExplorerURL
		if c.Asset.Network == "testnet" {
			b.ExplorerURL = DefaultBlockchainTestnetExplorerURL
		}
	}
	if b := c.Backend.BlockIO; b != nil && b.URL == "" {
		b.URL = DefaultBlockIOURL
	}
	if c.Notify.PollInterval.Duration == 0 {
		c.Notify.PollInterval.Duration = DefaultPollInterval
	}
	if c.EventRetention.Duration == 0 {
		c.EventRetention.Duration = DefaultEventRetention
	}
	switch c.Notify.Method {
	case v1alpha1.NotifyHTTP:
		if c.Notify.HTTP == nil {
			c.Notify.HTTP = &HTTPNotify{}
		}
		if c.Notify.HTTP.Listen == "" {
			c.Notify.HTTP.Listen = ":" + strconv.Itoa(DefaultNotifyHTTPPort)
		}
	case v1alpha1.NotifyPipe:
		if c.Notify.Pipe == nil {
			c.Notify.Pipe = &PipeNotify{}
		}
		if c.Notify.Pipe.Path == "" {
			c.Notify.Pipe.Path = DefaultPipePath
		}
	case v1alpha1.NotifyRedis:
		if c.Notify.Redis != nil && c.Notify.Redis.Channel == "" {
			c.Notify.Redis.Channel = DefaultRedisChannel
		}
	case v1alpha1.NotifyBlockIOWebsocket:
		if c.Notify.BlockIOWebsocket == nil {
			c.Notify.BlockIOWebsocket = &BlockIOWebsocketNotify{}
		}
		if c.Notify.BlockIOWebsocket.URL == "" {
			c.Notify.BlockIOWebsocket.URL = DefaultBlockIOSocketURL
		}
	case v1alpha1.NotifyBlockIOWebhook:
		if c.Notify.BlockIOWebhook != nil && c.Notify.BlockIOWebhook.Listen == "" {
			c.Notify.BlockIOWebhook.Listen = ":" + strconv.Itoa(DefaultWebhookPort)
		}
	}
	for i := range c.Events {
		e := &c.Events[i]
		if e.Type == v1alpha1.EventPGNotify && e.PGNotify == nil {
			e.PGNotify = &PGNotifyEventTarget{}
		}
		if e.HTTP != nil && e.HTTP.Timeout.Duration == 0 {
			e.HTTP.Timeout.Duration = DefaultEventTimeout
		}
		if e.HTTP != nil && e.HTTP.MaxInFlight == 0 {
			e.HTTP.MaxInFlight = DefaultEventsInFlight
		}
		if e.Redis != nil && e.Redis.Channel == "" {
			e.Redis.Channel = DefaultEventChannel
		}
		if e.PGNotify != nil && e.PGNotify.Channel == "" {
			e.PGNotify.Channel = DefaultEventChannel
		}
		if e.Script != nil && e.Script.Timeout.Duration == 0 {
			e.Script.Timeout.Duration = DefaultScriptTimeout
		}
	}
	if c.API.Listen == "" {
		c.API.Listen = ":" + strconv.Itoa(DefaultAPIPort)
	}
	if c.Broadcast.Period.Duration == 0 {
		c.Broadcast.Period.Duration = DefaultBroadcastPeriod
	}
	if c.Server.MetricsListen == "" {
		c.Server.MetricsListen = ":" + strconv.Itoa(DefaultMetricsPort)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

var (
	assetNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	pgChannelRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
)

// validator collects every problem so a user fixes a file in one go, not one error per run.
type validator struct{ errs []error }

func (v *validator) fail(field, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (v *validator) required(field, value string) bool {
	if strings.TrimSpace(value) == "" {
		v.fail(field, "is required")
		return false
	}
	return true
}

func (v *validator) file(field, value string) {
	if v.required(field, value) && !filepath.IsAbs(value) {
		v.fail(field, "must be an absolute path, got %q", value)
	}
}

func (v *validator) optionalFile(field, value string) {
	if value != "" {
		v.file(field, value)
	}
}

func (v *validator) url(field, value string, schemes ...string) {
	if !v.required(field, value) {
		return
	}
	u, err := url.Parse(value)
	if err != nil {
		v.fail(field, "is not a URL: %v", err)
		return
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		v.fail(field, "must use scheme %s, got %q", strings.Join(schemes, " or "), u.Scheme)
	}
	if u.Host == "" {
		v.fail(field, "has no host")
	}
	if u.User != nil {
		v.fail(field, "must not carry credentials; use the *File fields")
	}
}

func (v *validator) listen(field, value string) {
	if !v.required(field, value) {
		return
	}
	if _, port, err := net.SplitHostPort(value); err != nil {
		v.fail(field, "must be host:port or :port, got %q", value)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		v.fail(field, "port must be 1-65535, got %q", port)
	}
}

func (v *validator) hostPort(field, value string) {
	if !v.required(field, value) {
		return
	}
	if host, _, err := net.SplitHostPort(value); err != nil || host == "" {
		v.fail(field, "must be host:port, got %q", value)
	}
}

func (v *validator) duration(field string, d Duration, min, max time.Duration) {
	if d.Duration < min || d.Duration > max {
		v.fail(field, "must be between %s and %s, got %s", min, max, d.Duration)
	}
}

// Validate checks the whole config and returns every problem found, each naming its field.
func (c *Config) Validate() error {
	v := &validator{}
	if c.Version != Version {
		v.fail("version", "this helper reads version %d, got %d", Version, c.Version)
	}

	if v.required("asset.name", c.Asset.Name) && !assetNameRE.MatchString(c.Asset.Name) {
		v.fail("asset.name", "must be lower-case letters, digits and '-', got %q", c.Asset.Name)
	}
	if _, err := coin.LookupNetwork(c.Asset.Coin, c.Asset.Network); err != nil {
		v.fail("asset.coin", "%v", err)
	}
	if c.Asset.Confirmations < 1 || c.Asset.Confirmations > 1000 {
		v.fail("asset.confirmations", "must be 1-1000, got %d", c.Asset.Confirmations)
	}
	if c.Asset.MaxTrackedConfirmations < c.Asset.Confirmations || c.Asset.MaxTrackedConfirmations > 1000 {
		v.fail("asset.maxTrackedConfirmations", "must be between confirmations (%d) and 1000, got %d",
			c.Asset.Confirmations, c.Asset.MaxTrackedConfirmations)
	}

	v.file("database.urlFile", c.Database.URLFile)
	if c.Database.MaxConnections < 2 || c.Database.MaxConnections > 200 {
		v.fail("database.maxConnections", "must be 2-200, got %d", c.Database.MaxConnections)
	}

	c.validateBackend(v)
	c.validateNotify(v)

	v.duration("eventRetention", c.EventRetention, MinEventRetention, 10*365*24*time.Hour)
	names := map[string]bool{}
	for i, e := range c.Events {
		field := fmt.Sprintf("events[%d]", i)
		if v.required(field+".name", e.Name) {
			if names[e.Name] {
				v.fail(field+".name", "duplicate target name %q", e.Name)
			}
			names[e.Name] = true
		}
		blocks := map[v1alpha1.EventTargetType]bool{v1alpha1.EventHTTP: e.HTTP != nil, v1alpha1.EventRedis: e.Redis != nil,
			v1alpha1.EventPGNotify: e.PGNotify != nil, v1alpha1.EventScript: e.Script != nil}
		if _, known := blocks[e.Type]; !known {
			v.fail(field+".type", "must be http, redis, pg-notify or script, got %q", e.Type)
		}
		for t, set := range blocks {
			if set != (t == e.Type) {
				v.fail(field, "the %s block is required with type %s and only allowed there", t, t)
			}
		}
		if e.HTTP != nil {
			v.url(field+".http.url", e.HTTP.URL, "http", "https")
			v.file(field+".http.signingKeyFile", e.HTTP.SigningKeyFile)
			v.duration(field+".http.timeout", e.HTTP.Timeout, time.Second, 5*time.Minute)
			if e.HTTP.MaxInFlight < 1 || e.HTTP.MaxInFlight > MaxEventsInFlight {
				v.fail(field+".http.maxInFlight", "must be between 1 and %d, got %d", MaxEventsInFlight, e.HTTP.MaxInFlight)
			}
		}
		if e.Redis != nil {
			v.hostPort(field+".redis.address", e.Redis.Address)
			v.optionalFile(field+".redis.passwordFile", e.Redis.PasswordFile)
		}
		if e.PGNotify != nil && !pgChannelRE.MatchString(e.PGNotify.Channel) {
			v.fail(field+".pgNotify.channel", "must be a lower-case SQL identifier, got %q", e.PGNotify.Channel)
		}
		if e.Script != nil && len(e.Script.Command) == 0 {
			v.fail(field+".script.command", "must name a command")
		}
	}

	v.listen("api.listen", c.API.Listen)
	v.file("api.tokenFile", c.API.TokenFile)
	v.duration("broadcast.period", c.Broadcast.Period, time.Second, 24*time.Hour)
	v.listen("server.metricsListen", c.Server.MetricsListen)
	if k := c.Kubernetes; k != nil {
		v.required("kubernetes.namespace", k.Namespace)
		v.required("kubernetes.name", k.Name)
	}
	switch c.Log.Level {
	case "debug", "info", "error":
	default:
		v.fail("log.level", "must be debug, info or error, got %q", c.Log.Level)
	}
	return errors.Join(v.errs...)
}

func (c *Config) validateBackend(v *validator) {
	b := c.Backend
	blocks := map[v1alpha1.BackendType]bool{v1alpha1.BackendBitcoind: b.Bitcoind != nil, v1alpha1.BackendBlockIO: b.BlockIO != nil,
		v1alpha1.BackendBlockchain: b.Blockchain != nil, v1alpha1.BackendNull: false}
	if _, known := blocks[b.Type]; !known {
		v.fail("backend.type", "must be bitcoind, blockio, blockchain or null, got %q", b.Type)
	}
	for t, set := range blocks {
		if set != (t == b.Type) && t != v1alpha1.BackendNull {
			v.fail("backend."+string(t), "is required with backend type %s and only allowed there", t)
		}
	}
	if b.Type == v1alpha1.BackendNull && c.Asset.Network == "mainnet" {
		v.fail("backend.type", "the null backend is a simulator and cannot run on mainnet")
	}
	if x := b.Bitcoind; x != nil {
		v.url("backend.bitcoind.url", x.URL, "http", "https")
		switch x.Flavor {
		case v1alpha1.FlavorBitcoinCore:
		case v1alpha1.FlavorBtcwallet:
			if x.Wallet != "" {
				v.fail("backend.bitcoind.wallet", "named wallets are a Bitcoin Core feature")
			}
			if x.WalletPassphraseFile == "" {
				v.fail("backend.bitcoind.walletPassphraseFile", "is required with flavor btcwallet (its wallets are always encrypted)")
			}
		default:
			v.fail("backend.bitcoind.flavor", "must be bitcoin-core or btcwallet, got %q", x.Flavor)
		}
		v.file("backend.bitcoind.usernameFile", x.UsernameFile)
		v.file("backend.bitcoind.passwordFile", x.PasswordFile)
		v.optionalFile("backend.bitcoind.walletPassphraseFile", x.WalletPassphraseFile)
		v.duration("backend.bitcoind.timeout", x.Timeout, time.Second, 10*time.Minute)
		if x.MaxRequests < 0 || x.MaxRequests > MaxRPCRequests {
			v.fail("backend.bitcoind.maxRequests", "must be between 1 and %d, got %d", MaxRPCRequests, x.MaxRequests)
		}
	}
	if x := b.BlockIO; x != nil {
		v.url("backend.blockio.url", x.URL, "http", "https")
		v.file("backend.blockio.apiKeyFile", x.APIKeyFile)
		v.file("backend.blockio.pinFile", x.PINFile)
	}
	if x := b.Blockchain; x != nil {
		v.url("backend.blockchain.url", x.URL, "http", "https")
		v.file("backend.blockchain.guidFile", x.GUIDFile)
		v.file("backend.blockchain.passwordFile", x.PasswordFile)
		v.optionalFile("backend.blockchain.secondPasswordFile", x.SecondPasswordFile)
		v.optionalFile("backend.blockchain.apiKeyFile", x.APIKeyFile)
		v.url("backend.blockchain.explorerURL", x.ExplorerURL, "http", "https")
	}
}

func (c *Config) validateNotify(v *validator) {
	n := c.Notify
	blocks := map[v1alpha1.NotifyMethod]bool{
		v1alpha1.NotifyHTTP: n.HTTP != nil, v1alpha1.NotifyPipe: n.Pipe != nil, v1alpha1.NotifyRedis: n.Redis != nil,
		v1alpha1.NotifyBlockIOWebsocket: n.BlockIOWebsocket != nil, v1alpha1.NotifyBlockIOWebhook: n.BlockIOWebhook != nil, v1alpha1.NotifyPoll: false,
	}
	if _, known := blocks[n.Method]; !known {
		v.fail("notify.method", "must be http, pipe, redis, blockio-websocket, blockio-webhook or poll, got %q", n.Method)
	}
	for m, set := range blocks {
		if set && m != n.Method {
			v.fail("notify", "the %s block is only allowed with notify method %s", m, m)
		}
	}
	switch n.Method {
	case v1alpha1.NotifyHTTP, v1alpha1.NotifyPipe, v1alpha1.NotifyRedis:
		if c.Backend.Type != v1alpha1.BackendBitcoind && c.Backend.Type != v1alpha1.BackendNull {
			v.fail("notify.method", "%s notifications need backend bitcoind or null, not %s", n.Method, c.Backend.Type)
		}
	case v1alpha1.NotifyBlockIOWebsocket, v1alpha1.NotifyBlockIOWebhook:
		if c.Backend.Type != v1alpha1.BackendBlockIO {
			v.fail("notify.method", "%s notifications need backend blockio, not %s", n.Method, c.Backend.Type)
		}
	}
	v.duration("notify.pollInterval", n.PollInterval, 5*time.Second, 24*time.Hour)
	if x := n.HTTP; x != nil {
		v.listen("notify.http.listen", x.Listen)
		v.optionalFile("notify.http.tokenFile", x.TokenFile)
		if x.TokenFile == "" && !x.AllowUnauthenticated {
			v.fail("notify.http.tokenFile", "is required; to take wallet notifications without a token (a hook anyone who reaches it can call), set notify.http.allowUnauthenticated: true")
		}
	}
	if x := n.Pipe; x != nil {
		v.file("notify.pipe.path", x.Path)
	}
	if n.Method == v1alpha1.NotifyRedis && n.Redis == nil {
		v.fail("notify.redis", "is required with notify method redis")
	}
	if x := n.Redis; x != nil {
		v.hostPort("notify.redis.address", x.Address)
		v.required("notify.redis.channel", x.Channel)
		v.optionalFile("notify.redis.passwordFile", x.PasswordFile)
	}
	if x := n.BlockIOWebsocket; x != nil {
		v.url("notify.blockioWebsocket.url", x.URL, "ws", "wss")
	}
	if n.Method == v1alpha1.NotifyBlockIOWebhook && n.BlockIOWebhook == nil {
		v.fail("notify.blockioWebhook", "is required with notify method blockio-webhook")
	}
	if x := n.BlockIOWebhook; x != nil {
		// block.io posts to https only; plain http is accepted for a loopback address, where
		// a local stand-in for block.io (tests, a laptop) does the posting.
		if u, err := url.Parse(x.PublicURL); err == nil && u.Scheme == "http" && isLoopback(u.Hostname()) {
			v.url("notify.blockioWebhook.publicURL", x.PublicURL, "http")
		} else {
			v.url("notify.blockioWebhook.publicURL", x.PublicURL, "https")
		}
		v.listen("notify.blockioWebhook.listen", x.Listen)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ReadSecretFile reads a credential file, dropping one trailing newline (as editors and
// `echo` leave one), and refuses an empty value.
func ReadSecretFile(field, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", field, err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("%s: file %s is empty", field, path)
	}
	return s, nil
}
