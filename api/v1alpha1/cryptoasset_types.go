package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Coin names a coin in the registry (internal/coin).
// +kubebuilder:validation:Enum=bitcoin;litecoin;dogecoin
type Coin string

// Network is the chain a coin runs on.
// +kubebuilder:validation:Enum=mainnet;testnet;regtest;simnet
type Network string

// BackendType names the service the helper talks to for addresses, sends and transaction lookups.
// +kubebuilder:validation:Enum=bitcoind;blockio;blockchain;null
type BackendType string

const (
	BackendBitcoind   BackendType = "bitcoind"
	BackendBlockIO    BackendType = "blockio"
	BackendBlockchain BackendType = "blockchain"
	BackendNull       BackendType = "null"
)

// NotifyMethod names how the backend wakes the helper up when a wallet transaction appears.
// +kubebuilder:validation:Enum=http;pipe;redis;blockio-websocket;blockio-webhook;poll
type NotifyMethod string

const (
	NotifyHTTP             NotifyMethod = "http"
	NotifyPipe             NotifyMethod = "pipe"
	NotifyRedis            NotifyMethod = "redis"
	NotifyBlockIOWebsocket NotifyMethod = "blockio-websocket"
	NotifyBlockIOWebhook   NotifyMethod = "blockio-webhook"
	NotifyPoll             NotifyMethod = "poll"
)

// SecretKeyRef selects one key of a Secret in the CryptoAsset's own namespace. Credentials are only
// ever taken from Secrets: they never appear in the spec, the rendered ConfigMap, arguments or logs.
type SecretKeyRef struct {
	// Name of the Secret, in the same namespace as the CryptoAsset.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key within the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// CryptoAssetSpec declares one coin served by one helper: its backend, how the helper is told about
// new transactions, the ledger database and where the application is notified.
// +kubebuilder:validation:XValidation:rule="!has(self.confirmations) || self.maxTrackedConfirmations >= self.confirmations",message="maxTrackedConfirmations must be at least confirmations"
// +kubebuilder:validation:XValidation:rule="self.network != 'mainnet' || self.backend.type != 'null'",message="the null backend is a simulator and cannot run on mainnet"
// +kubebuilder:validation:XValidation:rule="!(self.notify.method in ['blockio-websocket', 'blockio-webhook']) || self.backend.type == 'blockio'",message="block.io notifications (blockio-websocket, blockio-webhook) need backend type blockio"
// +kubebuilder:validation:XValidation:rule="!(self.notify.method in ['http', 'pipe', 'redis']) || self.backend.type in ['bitcoind', 'null']",message="walletnotify methods http, pipe and redis need backend type bitcoind or null"
// +kubebuilder:validation:XValidation:rule="self.backend.type != 'blockio' || self.network in ['mainnet', 'testnet']",message="block.io serves only mainnet and testnet"
// +kubebuilder:validation:XValidation:rule="self.backend.type != 'blockchain' || (self.coin == 'bitcoin' && self.network == 'mainnet')",message="the blockchain.info wallet API serves only bitcoin mainnet"
type CryptoAssetSpec struct {
	// Coin served by this asset. Immutable: the ledger's amounts and addresses belong to one coin.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="coin is immutable"
	Coin Coin `json:"coin"`

	// Network of the coin. Immutable: addresses of one network are worthless on another.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="network is immutable"
	Network Network `json:"network"`

	// Confirmations a deposit needs before it is credited to its account. Defaults to the coin's
	// registry value (bitcoin 3, litecoin 6, dogecoin 6).
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 1 && self <= 1000",message="confirmations must be between 1 and 1000: a deposit is credited once its block is this deep, and with 0 a payment still in the mempool, which can vanish or be double-spent, would be credited"
	Confirmations *int32 `json:"confirmations,omitempty"`

	// MaxTrackedConfirmations is how many confirmations the helper follows a transaction for,
	// reporting each change to the application; after that it is considered final.
	// +optional
	// +kubebuilder:default=15
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxTrackedConfirmations int32 `json:"maxTrackedConfirmations,omitempty"`

	// Backend the helper uses to create addresses, send and look transactions up.
	Backend BackendSpec `json:"backend"`

	// Notify says how the backend tells the helper about new wallet transactions. A notification
	// is only a wake-up: the helper always asks the backend for the truth.
	Notify NotifySpec `json:"notify"`

	// Database holds the ledger: accounts, addresses, transactions and the event outbox.
	Database DatabaseSpec `json:"database"`

	// Events lists where the application is told about deposits and sends. Delivery is at least
	// once, from a durable outbox, with a stable event id to deduplicate on.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Events []EventTarget `json:"events,omitempty"`

	// EventRetention is how long events stay in the outbox for applications to pull
	// (GET /v1/events), delivered or not. Older ones are deleted; asking for them is refused.
	// At least 192h, so push delivery's seven days of retries always end first.
	// +optional
	// +kubebuilder:default="720h0m0s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('192h') && duration(self) <= duration('87600h')",message="eventRetention must be between 192h (8 days, longer than push delivery's 7 days of retries) and 87600h"
	EventRetention *metav1.Duration `json:"eventRetention,omitempty"`

	// API configures the application API (accounts, addresses, sends, balances).
	API APISpec `json:"api"`

	// Broadcast configures how queued outgoing sends are sent to the network.
	// +optional
	// +kubebuilder:default={}
	Broadcast BroadcastSpec `json:"broadcast,omitempty"`

	// Helper adjusts the helper pod: image, resources and scheduling.
	// +optional
	// +kubebuilder:default={}
	Helper HelperSpec `json:"helper,omitempty"`
}

// BackendSpec selects a backend and carries exactly the settings block that matches its type.
// +kubebuilder:validation:XValidation:rule="self.type != 'bitcoind' || has(self.bitcoind)",message="backend type bitcoind needs the bitcoind block"
// +kubebuilder:validation:XValidation:rule="self.type == 'bitcoind' || !has(self.bitcoind)",message="the bitcoind block is only allowed with backend type bitcoind"
// +kubebuilder:validation:XValidation:rule="self.type != 'blockio' || has(self.blockio)",message="backend type blockio needs the blockio block"
// +kubebuilder:validation:XValidation:rule="self.type == 'blockio' || !has(self.blockio)",message="the blockio block is only allowed with backend type blockio"
// +kubebuilder:validation:XValidation:rule="self.type != 'blockchain' || has(self.blockchain)",message="backend type blockchain needs the blockchain block"
// +kubebuilder:validation:XValidation:rule="self.type == 'blockchain' || !has(self.blockchain)",message="the blockchain block is only allowed with backend type blockchain"
type BackendSpec struct {
	// Type of the backend:
	// bitcoind - a bitcoind-compatible node's wallet JSON-RPC (Bitcoin Core, btcwallet, litecoind, dogecoind);
	// blockio - the block.io API v2;
	// blockchain - the blockchain.info wallet API (through its wallet service);
	// null - a simulator for development and tests that needs no network (never on mainnet).
	Type BackendType `json:"type"`

	// Bitcoind settings; required when type is bitcoind.
	// +optional
	Bitcoind *BitcoindBackend `json:"bitcoind,omitempty"`

	// BlockIO settings; required when type is blockio.
	// +optional
	BlockIO *BlockIOBackend `json:"blockio,omitempty"`

	// Blockchain settings; required when type is blockchain.
	// +optional
	Blockchain *BlockchainBackend `json:"blockchain,omitempty"`
}

// BitcoindFlavor names the wallet implementation behind a bitcoind-compatible RPC endpoint.
// +kubebuilder:validation:Enum=bitcoin-core;btcwallet
type BitcoindFlavor string

const (
	FlavorBitcoinCore BitcoindFlavor = "bitcoin-core"
	FlavorBtcwallet   BitcoindFlavor = "btcwallet"
)

// BitcoindBackend reaches a bitcoind-compatible wallet over JSON-RPC.
// +kubebuilder:validation:XValidation:rule="self.flavor != 'btcwallet' || has(self.walletPassphraseSecretRef)",message="btcwallet wallets are always encrypted: walletPassphraseSecretRef is required with flavor btcwallet"
// +kubebuilder:validation:XValidation:rule="self.flavor == 'bitcoin-core' || !has(self.wallet)",message="named wallets are a Bitcoin Core feature: wallet is only allowed with flavor bitcoin-core"
type BitcoindBackend struct {
	// URL of the JSON-RPC endpoint, for example http://bitcoind.btc.svc:8332. No credentials in it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="url must be an http or https URL with a host"
	// +kubebuilder:validation:XValidation:rule="!self.contains('@')",message="url must not carry credentials; use usernameSecretRef and passwordSecretRef"
	URL string `json:"url"`

	// Flavor of the wallet behind the endpoint. bitcoin-core uses labels and named wallets;
	// btcwallet uses accounts, needs walletpassphrase before sends and refuses send comments.
	// +optional
	// +kubebuilder:default=bitcoin-core
	Flavor BitcoindFlavor `json:"flavor,omitempty"`

	// Wallet is the name of a Bitcoin Core wallet (the RPC goes to /wallet/<name>).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Wallet string `json:"wallet,omitempty"`

	// UsernameSecretRef selects the RPC user name.
	UsernameSecretRef SecretKeyRef `json:"usernameSecretRef"`

	// PasswordSecretRef selects the RPC password.
	PasswordSecretRef SecretKeyRef `json:"passwordSecretRef"`

	// WalletPassphraseSecretRef selects the passphrase that unlocks an encrypted wallet for sends.
	// +optional
	WalletPassphraseSecretRef *SecretKeyRef `json:"walletPassphraseSecretRef,omitempty"`

	// Timeout of one RPC call.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('10m')",message="timeout must be between 1s and 10m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// MaxRequests is how many requests the helper has open at the node at once (4 when
	// unset); a call finding them all open waits, within its timeout. Bitcoin Core serves
	// rpcthreads requests at once (4 unless configured) and queues rpcworkqueue more (16);
	// btcwallet serves 10 clients and refuses more with HTTP 429. With several helpers on one
	// node, keep the sum of theirs within what the node serves.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	MaxRequests *int32 `json:"maxRequests,omitempty"`
}

// BlockIOBackend uses the block.io API v2.
type BlockIOBackend struct {
	// APIKeySecretRef selects the block.io API key of the coin's network.
	APIKeySecretRef SecretKeyRef `json:"apiKeySecretRef"`

	// PINSecretRef selects the secret PIN that signs withdrawals.
	PINSecretRef SecretKeyRef `json:"pinSecretRef"`

	// URL of the API; change it only to go through a proxy.
	// +optional
	// +kubebuilder:default="https://block.io/api/v2"
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https']",message="url must be an http or https URL"
	URL string `json:"url,omitempty"`
}

// BlockchainBackend uses the blockchain.info wallet API through its wallet service.
type BlockchainBackend struct {
	// URL of the blockchain.info wallet service (service-my-wallet-v3), for example http://blockchain-wallet:3000.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="url must be an http or https URL with a host"
	URL string `json:"url"`

	// GUIDSecretRef selects the wallet identifier.
	GUIDSecretRef SecretKeyRef `json:"guidSecretRef"`

	// PasswordSecretRef selects the wallet's main password.
	PasswordSecretRef SecretKeyRef `json:"passwordSecretRef"`

	// SecondPasswordSecretRef selects the second password, for wallets that have one.
	// +optional
	SecondPasswordSecretRef *SecretKeyRef `json:"secondPasswordSecretRef,omitempty"`

	// APIKeySecretRef selects the API key for the wallet service.
	// +optional
	APIKeySecretRef *SecretKeyRef `json:"apiKeySecretRef,omitempty"`

	// ExplorerURL is blockchain.info's block explorer API, which the helper reads transactions
	// and blocks from (the wallet service only holds keys and sends); defaults to
	// https://blockchain.info/ on mainnet and https://testnet.blockchain.info/ on testnet.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="explorerURL must be an http or https URL with a host"
	ExplorerURL string `json:"explorerURL,omitempty"`
}

// NotifySpec selects a notification method and carries its settings block. Polling always runs
// too, at pollInterval, as a safety net for lost notifications.
// +kubebuilder:validation:XValidation:rule="self.method != 'redis' || has(self.redis)",message="notify method redis needs the redis block"
// +kubebuilder:validation:XValidation:rule="self.method != 'blockio-webhook' || has(self.blockioWebhook)",message="notify method blockio-webhook needs the blockioWebhook block"
// +kubebuilder:validation:XValidation:rule="!has(self.http) || self.method == 'http'",message="the http block is only allowed with notify method http"
// +kubebuilder:validation:XValidation:rule="!has(self.pipe) || self.method == 'pipe'",message="the pipe block is only allowed with notify method pipe"
// +kubebuilder:validation:XValidation:rule="!has(self.redis) || self.method == 'redis'",message="the redis block is only allowed with notify method redis"
// +kubebuilder:validation:XValidation:rule="!has(self.blockioWebsocket) || self.method == 'blockio-websocket'",message="the blockioWebsocket block is only allowed with notify method blockio-websocket"
// +kubebuilder:validation:XValidation:rule="!has(self.blockioWebhook) || self.method == 'blockio-webhook'",message="the blockioWebhook block is only allowed with notify method blockio-webhook"
type NotifySpec struct {
	// Method the backend uses to wake the helper:
	// http - bitcoind's walletnotify posts the txid (curl --data "txid=%s" http://HELPER:28882);
	// pipe - walletnotify writes one txid per line into a named pipe (echo %s >> FIFO);
	// redis - walletnotify publishes the txid (redis-cli publish bitcoind_walletnotify_pubsub %s);
	// blockio-websocket - block.io's websocket stream;
	// blockio-webhook - block.io posts to a public URL;
	// poll - only the timer.
	Method NotifyMethod `json:"method"`

	// PollInterval is how often the helper asks the backend for new transactions, whatever the method.
	// +optional
	// +kubebuilder:default="1m0s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5s') && duration(self) <= duration('24h')",message="pollInterval must be between 5s and 24h"
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`

	// HTTP settings for method http.
	// +optional
	HTTP *HTTPNotify `json:"http,omitempty"`

	// Pipe settings for method pipe.
	// +optional
	Pipe *PipeNotify `json:"pipe,omitempty"`

	// Redis settings for method redis.
	// +optional
	Redis *RedisNotify `json:"redis,omitempty"`

	// BlockIOWebsocket settings for method blockio-websocket.
	// +optional
	BlockIOWebsocket *BlockIOWebsocketNotify `json:"blockioWebsocket,omitempty"`

	// BlockIOWebhook settings for method blockio-webhook.
	// +optional
	BlockIOWebhook *BlockIOWebhookNotify `json:"blockioWebhook,omitempty"`
}

// HTTPNotify is the walletnotify HTTP hook.
type HTTPNotify struct {
	// Port the hook listens on.
	// +optional
	// +kubebuilder:default=28882
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// TokenSecretRef selects a token callers must present (?token= or the X-Cryptoassets-Token header).
	// Without it the hook accepts any caller, which is harmless (notifications are only wake-ups)
	// but lets anyone make the helper poll.
	// +optional
	TokenSecretRef *SecretKeyRef `json:"tokenSecretRef,omitempty"`
}

// PipeNotify is a named pipe that walletnotify writes txids into.
type PipeNotify struct {
	// Path of the FIFO inside the helper pod; its directory is an emptyDir a bitcoind sidecar can share.
	// +optional
	// +kubebuilder:default="/run/cryptoassets/walletnotify/fifo"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/') && !self.contains('/../') && !self.endsWith('/') && self.split('/').size() >= 3",message="path must be an absolute file path below a directory (like /run/walletnotify/fifo) without ..; its directory becomes a shared volume"
	Path string `json:"path,omitempty"`
}

// RedisNotify subscribes to a Redis pub/sub channel.
type RedisNotify struct {
	// Address of the Redis server, host:port.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^[^\s/:]+:[0-9]{1,5}$`
	Address string `json:"address"`

	// Channel to subscribe to.
	// +optional
	// +kubebuilder:default=bitcoind_walletnotify_pubsub
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Channel string `json:"channel,omitempty"`

	// DB index to select.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=15
	DB int32 `json:"db,omitempty"`

	// PasswordSecretRef selects the Redis password.
	// +optional
	PasswordSecretRef *SecretKeyRef `json:"passwordSecretRef,omitempty"`

	// TLS connects with TLS.
	// +optional
	TLS bool `json:"tls,omitempty"`
}

// BlockIOWebsocketNotify subscribes to block.io's websocket notifications.
type BlockIOWebsocketNotify struct {
	// URL of the websocket endpoint.
	// +optional
	// +kubebuilder:default="wss://n.block.io/"
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['ws', 'wss']",message="url must be a ws or wss URL"
	URL string `json:"url,omitempty"`
}

// BlockIOWebhookNotify lets block.io post notifications to the helper.
type BlockIOWebhookNotify struct {
	// PublicURL is where block.io reaches the helper's webhook (through your ingress); it is
	// registered with block.io when the helper starts. The helper serves the URL's path.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",message="publicURL must be an https URL with a host"
	PublicURL string `json:"publicURL"`

	// Port the webhook listens on inside the pod.
	// +optional
	// +kubebuilder:default=28883
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
}

// DatabaseSpec points at the PostgreSQL ledger database.
type DatabaseSpec struct {
	// URLSecretRef selects a PostgreSQL connection URL (postgres://user:password@host:5432/db?sslmode=...).
	URLSecretRef SecretKeyRef `json:"urlSecretRef"`

	// MaxConnections the helper opens.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=200
	MaxConnections int32 `json:"maxConnections,omitempty"`
}

// EventTargetType names a kind of application notification target.
// +kubebuilder:validation:Enum=http;redis;pg-notify;script
type EventTargetType string

const (
	EventHTTP     EventTargetType = "http"
	EventRedis    EventTargetType = "redis"
	EventPGNotify EventTargetType = "pg-notify"
	EventScript   EventTargetType = "script"
)

// EventTarget is one place the application is told about transaction updates.
// +kubebuilder:validation:XValidation:rule="(self.type == 'http') == has(self.http)",message="the http block is required with type http and only allowed there"
// +kubebuilder:validation:XValidation:rule="(self.type == 'redis') == has(self.redis)",message="the redis block is required with type redis and only allowed there"
// +kubebuilder:validation:XValidation:rule="self.type == 'pg-notify' || !has(self.pgNotify)",message="the pgNotify block is only allowed with type pg-notify"
// +kubebuilder:validation:XValidation:rule="(self.type == 'script') == has(self.script)",message="the script block is required with type script and only allowed there"
type EventTarget struct {
	// Name of the target, unique within the asset; it appears in metrics and delivery records.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Type of the target.
	Type EventTargetType `json:"type"`

	// HTTP posts each event as JSON with an HMAC-SHA256 signature header.
	// +optional
	HTTP *HTTPEventTarget `json:"http,omitempty"`

	// Redis publishes each event on a channel.
	// +optional
	Redis *RedisEventTarget `json:"redis,omitempty"`

	// PGNotify sends each event with PostgreSQL NOTIFY on the ledger database; optional with
	// type pg-notify (the channel defaults to cryptoassets_events).
	// +optional
	PGNotify *PGNotifyEventTarget `json:"pgNotify,omitempty"`

	// Script runs a command per event with CRYPTOASSETS_EVENT_NAME and CRYPTOASSETS_EVENT_DATA set.
	// +optional
	Script *ScriptEventTarget `json:"script,omitempty"`
}

// HTTPEventTarget posts events to the application.
type HTTPEventTarget struct {
	// URL the events are posted to.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="url must be an http or https URL with a host"
	URL string `json:"url"`

	// SigningSecretRef selects the HMAC-SHA256 key events are signed with.
	SigningSecretRef SecretKeyRef `json:"signingSecretRef"`

	// Timeout of one delivery attempt.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="timeout must be between 1s and 5m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// MaxInFlight is how many posts may be under way at once. More drains a backlog faster (one
	// post at a time, a receiver 50 ms away takes 20 events a second); events then arrive
	// slightly out of order, as they may after any retry. 1 posts one event at a time, in order.
	// +optional
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	MaxInFlight *int32 `json:"maxInFlight,omitempty"`
}

// RedisEventTarget publishes events on a Redis channel.
type RedisEventTarget struct {
	// Address of the Redis server, host:port.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^[^\s/:]+:[0-9]{1,5}$`
	Address string `json:"address"`

	// Channel events are published on.
	// +optional
	// +kubebuilder:default=cryptoassets_events
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Channel string `json:"channel,omitempty"`

	// PasswordSecretRef selects the Redis password.
	// +optional
	PasswordSecretRef *SecretKeyRef `json:"passwordSecretRef,omitempty"`
}

// PGNotifyEventTarget sends events with NOTIFY on the ledger database.
type PGNotifyEventTarget struct {
	// Channel passed to NOTIFY.
	// +optional
	// +kubebuilder:default=cryptoassets_events
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_]*$`
	Channel string `json:"channel,omitempty"`
}

// ScriptEventTarget runs a command inside the helper container for each event.
type ScriptEventTarget struct {
	// Command and its arguments; not run through a shell.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=4096
	Command []string `json:"command"`

	// Timeout of one run.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// APISpec configures the application API.
type APISpec struct {
	// TokenSecretRef selects the bearer token applications must present; requests without it are refused.
	TokenSecretRef SecretKeyRef `json:"tokenSecretRef"`

	// Port the API and the status page listen on.
	// +optional
	// +kubebuilder:default=8080
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
}

// BroadcastSpec configures the broadcaster.
type BroadcastSpec struct {
	// Period between broadcasts: pending sends of a wallet are batched into one network transaction.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="broadcast period must be between 1s and 24h"
	Period *metav1.Duration `json:"period,omitempty"`
}

// LogLevel of the helper.
// +kubebuilder:validation:Enum=debug;info;error
type LogLevel string

// HelperSpec adjusts the helper pod the operator renders.
// +kubebuilder:validation:XValidation:rule="!has(self.podAnnotations) || !('cryptoassets.io/config-hash' in self.podAnnotations)",message="podAnnotations must not set cryptoassets.io/config-hash; the operator owns it"
type HelperSpec struct {
	// Image of the helper; defaults to the operator's own image (one binary does both jobs).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self != ''",message="image must name an image; leave the field out to run the operator's own image"
	Image string `json:"image,omitempty"`

	// ImagePullPolicy of the helper image.
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// ImagePullSecrets for a private registry.
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// Resources of the helper container; defaults to 50m CPU and 64Mi memory requested, 256Mi limit.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// NodeSelector of the helper pod.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the helper pod.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity of the helper pod.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// PriorityClassName of the helper pod.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// PodAnnotations are added to the helper pod.
	// +optional
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`

	// PodLabels are added to the helper pod.
	// +optional
	PodLabels map[string]string `json:"podLabels,omitempty"`

	// LogLevel of the helper.
	// +optional
	// +kubebuilder:default=info
	LogLevel LogLevel `json:"logLevel,omitempty"`

	// Sidecars run next to the helper in its pod: typically bitcoind itself, whose
	// walletnotify writes into the notify pipe. With the pipe method the pipe's directory is
	// mounted into every sidecar at the same path.
	// Each is a Kubernetes container spec (name, image, command, env, ...), checked by the
	// operator when it renders the Deployment; the CRD keeps them schemaless so the container
	// schema does not double the CRD's size.
	// +optional
	// +kubebuilder:validation:MaxItems=4
	// +listType=atomic
	Sidecars []runtime.RawExtension `json:"sidecars,omitempty"`
}

// RescanPhase is where a rescan stands.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed
type RescanPhase string

const (
	RescanPending   RescanPhase = "Pending"
	RescanRunning   RescanPhase = "Running"
	RescanSucceeded RescanPhase = "Succeeded"
	RescanFailed    RescanPhase = "Failed"
)

// RescanStatus is written by the helper only.
type RescanStatus struct {
	// RequestedToken is the newest cryptoassets.io/rescan value the helper has seen.
	// +optional
	RequestedToken string `json:"requestedToken,omitempty"`
	// HandledToken is the token of the last rescan that finished (succeeded or failed).
	// +optional
	HandledToken string `json:"handledToken,omitempty"`
	// Phase of the current or last rescan.
	// +optional
	Phase RescanPhase `json:"phase,omitempty"`
	// StartTime of the current or last rescan.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// FinishTime of the last rescan.
	// +optional
	FinishTime *metav1.Time `json:"finishTime,omitempty"`
	// FromHeight the rescan started at.
	// +optional
	FromHeight int64 `json:"fromHeight,omitempty"`
	// Done is how many units (blocks or pages) of Total are scanned.
	// +optional
	Done int64 `json:"done,omitempty"`
	// Total units to scan.
	// +optional
	Total int64 `json:"total,omitempty"`
	// TransactionsFound by the rescan.
	// +optional
	TransactionsFound int64 `json:"transactionsFound,omitempty"`
	// TransactionsBooked that the ledger did not know before.
	// +optional
	TransactionsBooked int64 `json:"transactionsBooked,omitempty"`
	// Message says why a rescan failed.
	// +optional
	Message string `json:"message,omitempty"`
}

// HelperObjects names the objects the operator created for the helper.
type HelperObjects struct {
	ConfigMap      string `json:"configMap,omitempty"`
	Deployment     string `json:"deployment,omitempty"`
	Service        string `json:"service,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
}

// CryptoAssetStatus is the observed state. The operator writes everything but rescan, which the
// helper writes.
type CryptoAssetStatus struct {
	// ObservedGeneration is the spec generation the operator last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Progressing, Degraded (written by the operator); BackendReachable and
	// LedgerReachable (written by the active helper).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Confirmations is the credit threshold in force (the spec's value or the coin's default).
	// +optional
	Confirmations int32 `json:"confirmations,omitempty"`

	// Helper names the helper's objects.
	// +optional
	Helper *HelperObjects `json:"helper,omitempty"`

	// ConfigHash is the hash of the rendered config and referenced Secret data the helper runs with.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`

	// ObservedRescanToken is the last cryptoassets.io/rescan value the operator saw and announced.
	// +optional
	ObservedRescanToken string `json:"observedRescanToken,omitempty"`

	// Rescan reports the helper's rescans.
	// +optional
	Rescan *RescanStatus `json:"rescan,omitempty"`
}

// CryptoAsset runs the helper service for one coin: it broadcasts queued sends, books deposits and
// confirmations into a PostgreSQL ledger and notifies the application.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ca,categories=cryptoassets
// +kubebuilder:printcolumn:name="Coin",type=string,JSONPath=`.spec.coin`
// +kubebuilder:printcolumn:name="Network",type=string,JSONPath=`.spec.network`
// +kubebuilder:printcolumn:name="Backend",type=string,JSONPath=`.spec.backend.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Rescan",type=string,priority=1,JSONPath=`.status.rescan.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CryptoAsset struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   CryptoAssetSpec   `json:"spec"`
	Status CryptoAssetStatus `json:"status,omitempty"`
}

// CryptoAssetList is a list of CryptoAssets.
// +kubebuilder:object:root=true
type CryptoAssetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CryptoAsset `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CryptoAsset{}, &CryptoAssetList{})
}
