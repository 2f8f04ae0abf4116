// Package helper is the helper service: one process per asset that books deposits, broadcasts
// queued sends, delivers events and serves the application API. It runs in the pod the operator
// renders or standalone on a VM, from the same config file.
package helper

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"k8s.io/client-go/rest"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/api"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/bitcoind"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockchain"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockio"
	"github.com/cryptoassets/cryptoassets-operator/internal/backend/null"
	"github.com/cryptoassets/cryptoassets-operator/internal/backoff"
	"github.com/cryptoassets/cryptoassets-operator/internal/broadcast"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/events"
	"github.com/cryptoassets/cryptoassets-operator/internal/intake"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/rescan"
	"github.com/cryptoassets/cryptoassets-operator/internal/walletnotify"
)

// secret reads a credential file named by the config.
func secret(field, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	return config.ReadSecretFile(field, path)
}

// newBackend builds the configured backend. The null simulator keeps its state in the ledger
// database (pool), so a restarted helper still finds the payments it booked.
func newBackend(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool) (backend.Backend, func(), error) {
	b := cfg.Backend
	switch b.Type {
	case v1alpha1.BackendBitcoind:
	case v1alpha1.BackendNull:
		sim, err := null.New(ctx, null.Options{Coin: cfg.Asset.Coin, Network: cfg.Asset.Network,
			Store: null.PGStore{Pool: pool, Asset: ledger.AssetRef(cfg.Asset.Namespace, cfg.Asset.Name)}})
		if err != nil {
			return nil, nil, err
		}
		return sim, func() {}, nil
	case v1alpha1.BackendBlockIO:
		key, err := secret("backend.blockio.apiKeyFile", b.BlockIO.APIKeyFile)
		if err != nil {
			return nil, nil, err
		}
		pin, err := secret("backend.blockio.pinFile", b.BlockIO.PINFile)
		if err != nil {
			return nil, nil, err
		}
		c, err := blockio.New(blockio.Options{URL: b.BlockIO.URL, APIKey: key, PIN: pin, Coin: cfg.Asset.Coin, Network: cfg.Asset.Network})
		if err != nil {
			return nil, nil, err
		}
		return c, func() {}, nil
	case v1alpha1.BackendBlockchain:
		x := b.Blockchain
		opts := blockchain.Options{URL: x.URL, ExplorerURL: x.ExplorerURL, Coin: cfg.Asset.Coin, Network: cfg.Asset.Network}
		for _, f := range []struct {
			field, path string
			into        *string
		}{
			{"backend.blockchain.guidFile", x.GUIDFile, &opts.GUID},
			{"backend.blockchain.passwordFile", x.PasswordFile, &opts.Password},
			{"backend.blockchain.secondPasswordFile", x.SecondPasswordFile, &opts.SecondPassword},
			{"backend.blockchain.apiKeyFile", x.APIKeyFile, &opts.APIKey},
		} {
			v, err := secret(f.field, f.path)
			if err != nil {
				return nil, nil, err
			}
			*f.into = v
		}
		c, err := blockchain.New(opts)
		if err != nil {
			return nil, nil, err
		}
		return c, func() {}, nil
	default:
		return nil, nil, fmt.Errorf("backend type %q is unknown; bitcoind, blockio, blockchain and null are", b.Type)
	}
	user, err := secret("backend.bitcoind.usernameFile", b.Bitcoind.UsernameFile)
	if err != nil {
		return nil, nil, err
	}
	pass, err := secret("backend.bitcoind.passwordFile", b.Bitcoind.PasswordFile)
	if err != nil {
		return nil, nil, err
	}
	phrase, err := secret("backend.bitcoind.walletPassphraseFile", b.Bitcoind.WalletPassphraseFile)
	if err != nil {
		return nil, nil, err
	}
	c, err := bitcoind.New(bitcoind.Options{URL: b.Bitcoind.URL, Flavor: string(b.Bitcoind.Flavor), Wallet: b.Bitcoind.Wallet,
		User: user, Password: pass, WalletPassphrase: phrase, Timeout: b.Bitcoind.Timeout.Duration, MaxRequests: b.Bitcoind.MaxRequests,
		Coin: cfg.Asset.Coin, Network: cfg.Asset.Network})
	if err != nil {
		return nil, nil, err
	}
	return c, c.Close, nil
}

func newTargets(cfg *config.Config, l *ledger.Ledger) ([]events.Target, error) {
	var out []events.Target
	for _, e := range cfg.Events {
		switch e.Type {
		case v1alpha1.EventHTTP:
			key, err := secret("events["+e.Name+"].http.signingKeyFile", e.HTTP.SigningKeyFile)
			if err != nil {
				return nil, err
			}
			out = append(out, events.NewHTTPTarget(e.Name, e.HTTP.URL, []byte(key), e.HTTP.Timeout.Duration, e.HTTP.MaxInFlight))
		case v1alpha1.EventPGNotify:
			out = append(out, events.NewPGNotifyTarget(e.Name, e.PGNotify.Channel, l))
		case v1alpha1.EventRedis:
			password, err := secret("events["+e.Name+"].redis.passwordFile", e.Redis.PasswordFile)
			if err != nil {
				return nil, err
			}
			out = append(out, events.NewRedisTarget(e.Name, e.Redis.Channel, &redis.Options{Addr: e.Redis.Address, Password: password}))
		case "script":
			out = append(out, events.NewScriptTarget(e.Name, e.Script.Command, e.Script.Timeout.Duration))
		default:
			return nil, fmt.Errorf("event target %q: type %q is unknown; http, redis, pg-notify and script are", e.Name, e.Type)
		}
	}
	return out, nil
}

// openAsset opens the asset's ledger on pool and its backend; onEvents (ledger.Options.OnEvents)
// may be nil.
func openAsset(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, onEvents func()) (*ledger.Ledger, backend.Backend, func(), error) {
	if err := ledger.CheckSchema(ctx, pool); err != nil {
		return nil, nil, nil, err
	}
	k, err := coin.LookupNetwork(cfg.Asset.Coin, cfg.Asset.Network)
	if err != nil {
		return nil, nil, nil, err
	}
	var targetNames []string
	for _, e := range cfg.Events {
		targetNames = append(targetNames, e.Name)
	}
	opts := ledgerOptions(cfg, k)
	opts.ValidateAddress = func(a string) error { return coin.ValidateAddress(k.Name, cfg.Asset.Network, a) }
	opts.EventTargets = targetNames
	opts.OnEvents = onEvents
	l, err := ledger.Open(ctx, pool, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	be, closeBackend, err := newBackend(ctx, cfg, pool)
	if err != nil {
		return nil, nil, nil, err
	}
	return l, be, closeBackend, nil
}

// ledgerOptions names the asset in the ledger: who it is and what it must be.
func ledgerOptions(cfg *config.Config, k coin.Coin) ledger.Options {
	return ledger.Options{
		Namespace: cfg.Asset.Namespace, Asset: cfg.Asset.Name, Backend: string(cfg.Backend.Type), Coin: k.Name, Network: cfg.Asset.Network,
		Confirmations: cfg.Asset.Confirmations, MaxTrackedConfirmations: cfg.Asset.MaxTrackedConfirmations,
	}
}

// Rescan runs one rescan outside the helper service (the `cryptoassets rescan` command): it books
// into the ledger through the same path, so running it beside a live helper is safe.
func Rescan(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, fromHeight int64, log logr.Logger, progress func(intake.RescanProgress)) (intake.RescanResult, error) {
	// The active helper delivers what the rescan books: tell it when events commit, so they go out
	// now rather than at its idle poll. A notification that fails only delays them to that poll.
	channel := eventsChannel(cfg.Asset)
	l, be, closeBackend, err := openAsset(ctx, cfg, pool, func() {
		if err := ledger.Notify(ctx, pool, channel, nil); err != nil && ctx.Err() == nil {
			log.Error(err, "telling the active helper of the events the rescan committed; it finds them at its idle poll")
		}
	})
	if err != nil {
		return intake.RescanResult{}, err
	}
	defer closeBackend()
	return rescan.Run(ctx, intake.New(l, be, log.WithName("intake")), fromHeight, nil, progress)
}

// Audit checks the asset's ledger against its backend's chain (the `ledger check
// --against-backend` command); it changes nothing.
func Audit(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, log logr.Logger) ([]ledger.Violation, error) {
	l, be, closeBackend, err := openAsset(ctx, cfg, pool, nil)
	if err != nil {
		return nil, err
	}
	defer closeBackend()
	return intake.New(l, be, log.WithName("intake")).Audit(ctx)
}

// lockKey is the advisory lock that makes one helper per asset the active one. A standalone
// helper's key is the one helpers used before namespaces, so an upgraded VM helper and an old
// one never both hold the asset.
func lockKey(a config.Asset) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("cryptoassets-helper/" + ledger.AssetRef(a.Namespace, a.Name)))
	return int64(h.Sum64())
}

// eventsChannel is the NOTIFY channel on which another process tells the asset's active helper
// that it committed events (the lock's key names the asset, namespace included).
func eventsChannel(a config.Asset) string {
	return fmt.Sprintf("cryptoassets_events_%016x", uint64(lockKey(a)))
}

// Run runs the helper until ctx ends (SIGTERM) or a part fails in a way a restart must fix (a
// port taken, a bad config). Losing the database is not such a failure: the helper stops its
// active parts, waits for the database and queues for the lock again. A shutdown is a clean
// exit, whatever step it interrupted.
func Run(ctx context.Context, cfg *config.Config, log logr.Logger, opts Options) error {
	err := run(ctx, cfg, log, opts)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Options carry what the helper takes from its command line rather than its config file.
type Options struct {
	// Kube is how to reach the API server when the config names a CryptoAsset (kubernetes:);
	// the helper then watches it for rescan requests and reports rescans in its status.
	Kube *rest.Config
	// RescanProgressEvery bounds how often rescan progress is written to status (default 3s).
	RescanProgressEvery time.Duration
	// EventsIdlePoll, if set, is how often event delivery looks for events nothing told it of
	// (default a minute); tests lengthen it to show what wakes it.
	EventsIdlePoll time.Duration
}

// parts builds the runnables of the active helper: the catch-up and broadcast loops, event
// delivery, the API, the notification source and the rescan watcher. Its servers are listening
// when it returns, so readiness never points traffic at a port nobody answers. close releases
// the backend once every part has stopped.
func (p *process) parts(ctx context.Context, lock *lockHolder) (parts []runnable, close func(), err error) {
	cfg, log, h, m, pool, token, opts := p.cfg, p.log, p.h, p.m, p.pool, p.token, p.opts
	// Every write that commits events wakes the dispatcher and the pull API's long polls: the
	// intake's, the broadcaster's, the API's and a rescan's alike, and those of another process
	// (the rescan command), which notifies the lock connection.
	commits := &events.Commits{}
	l, be, closeBackend, err := openAsset(ctx, cfg, pool, commits.Notify)
	if err != nil {
		return nil, nil, err
	}
	if err := lock.listen(ctx, eventsChannel(cfg.Asset), commits.Notify); err != nil {
		closeBackend()
		return nil, nil, err
	}
	var listeners []net.Listener
	defer func() {
		if err != nil {
			for _, ln := range listeners {
				ln.Close()
			}
			closeBackend()
		}
	}()
	targets, err := newTargets(cfg, l)
	if err != nil {
		return nil, nil, err
	}
	add := func(name string, run func(context.Context) error) {
		parts = append(parts, runnable{name: name, run: run})
	}
	// background runs a part whose only way to end is ctx: nothing it returns is fatal.
	background := func(run func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error { _ = run(ctx); return nil }
	}
	serve := func(name, addr string, handler http.Handler) error {
		ln, run, err := p.serve(name, addr, handler)
		if err == nil {
			listeners = append(listeners, ln)
			add(name, run)
		}
		return err
	}

	in := intake.New(l, be, log.WithName("intake"))
	grace := 2*timeoutOf(cfg) + 30*time.Second
	bc := broadcast.New(l, be, grace, log.WithName("broadcast"))
	bc.Fence = lock.held
	d := events.NewDispatcher(l, targets, events.DefaultBackoff(), log.WithName("events"))
	d.OnResult = func(target string, err error) { m.eventAttempt(target, err) }
	d.Commits = commits
	if opts.EventsIdlePoll > 0 {
		d.IdlePoll = opts.EventsIdlePoll
	}
	catchUpWake := make(chan struct{}, 1)
	broadcastWake := make(chan struct{}, 1)
	wake := func(c chan struct{}) func() {
		return func() {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}

	backendOK := "reachable"
	sim, simulated := be.(*null.Backend)
	if simulated {
		// Say it everywhere someone looks: logs, /readyz, the status page.
		backendOK = "SIMULATED (null backend): no real coins move"
		h.set("backend", nil, backendOK) // nothing to reach: say so from the start
		log.Info("WARNING: the null backend is a simulator; addresses, payments and sends are not real", "coin", cfg.Asset.Coin, "network", cfg.Asset.Network)
	}
	// The backend's health is what the parts saw when they last called it; no probe calls it
	// (a paid API such as block.io would be billed for every probe period).
	sawBackend := func(err error) {
		switch {
		case err == nil:
			h.set("backend", nil, backendOK)
		case errors.Is(err, backend.ErrUnreachable):
			h.set("backend", err, "")
		}
	}
	act := &activity{}
	sup := &supervisor{log: log, health: h, stepLimit: stepLimit}
	add("catch-up", sup.loop("catch-up", cfg.Notify.PollInterval.Duration, catchUpWake, func(ctx context.Context) error {
		start := time.Now()
		r, err := in.CatchUp(ctx)
		m.catchUp(time.Since(start), r, err)
		act.caughtUp(err)
		sawBackend(err)
		return err
	}))
	add("broadcast", sup.loop("broadcast", cfg.Broadcast.Period.Duration, broadcastWake, func(ctx context.Context) error {
		r, err := bc.Run(ctx)
		m.broadcast(r, err)
		if err != nil {
			sawBackend(err)
		}
		return err
	}))
	add("events", background(d.Run))
	add("event-retention", sup.loop("event-retention", time.Hour, nil, func(ctx context.Context) error {
		before := time.Now().Add(-cfg.EventRetention.Duration)
		for {
			n, err := l.PruneEvents(ctx, before)
			if err != nil || n < ledger.PruneBatch {
				return err
			}
		}
	}))

	apiServer := api.New(l, be, token)
	apiServer.Wake = wake(broadcastWake)
	apiServer.EventsCommitted = commits.Next
	apiMux := http.NewServeMux()
	apiMux.Handle("GET /status", statusHandler(cfg, l, h, act, token))
	apiMux.Handle("/", apiServer.Handler())
	if simulated {
		simHandler := sim.Handler()
		apiMux.Handle("/v1/simulator", apiServer.Protect(simHandler))
		apiMux.Handle("/v1/simulator/", apiServer.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			simHandler.ServeHTTP(w, r)
			// An injected payment or block is what a node's walletnotify would announce.
			wake(catchUpWake)()
		})))
	}
	if err := serve("api", cfg.API.Listen, apiMux); err != nil {
		return nil, nil, err
	}
	// Every source ends here: the txid is looked up at once, and whatever else the wallet saw
	// meanwhile is not left for the next poll.
	notified := func(source string) walletnotify.Handler {
		return func(ctx context.Context, txid string) error {
			m.notification(source)
			act.notified(txid)
			_, err := in.Notify(ctx, txid)
			wake(catchUpWake)()
			return err
		}
	}
	rejected := func(source string) func(string) { return func(string) { m.rejectedNotification(source) } }
	switch n := cfg.Notify; n.Method {
	case v1alpha1.NotifyHTTP:
		hookToken, err := secret("notify.http.tokenFile", n.HTTP.TokenFile)
		if err != nil {
			return nil, nil, err
		}
		if hookToken == "" {
			log.Info("WARNING: the walletnotify hook takes notifications without a token (notify.http.allowUnauthenticated); anyone who reaches it can make the helper poll its backend", "listen", n.HTTP.Listen)
		}
		if err := serve("walletnotify", n.HTTP.Listen, walletnotify.NewHTTP(hookToken, notified("http"), log.WithName("walletnotify"))); err != nil {
			return nil, nil, err
		}
	case v1alpha1.NotifyPipe:
		pipe := &walletnotify.Pipe{Path: n.Pipe.Path, Notify: notified("pipe"), Rejected: rejected("pipe"), Log: log.WithName("walletnotify")}
		add("walletnotify-pipe", func(ctx context.Context) error {
			// The pipe cannot be made or opened: fatal, unlike a source that reconnects.
			if err := pipe.Run(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			return nil
		})
	case v1alpha1.NotifyRedis:
		password, err := secret("notify.redis.passwordFile", n.Redis.PasswordFile)
		if err != nil {
			return nil, nil, err
		}
		opts := &redis.Options{Addr: n.Redis.Address, Password: password, DB: int(n.Redis.DB), MaxRetries: -1}
		if n.Redis.TLS {
			host, _, _ := net.SplitHostPort(n.Redis.Address)
			opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		}
		h.set("notify-redis", errors.New("connecting"), "")
		src := &walletnotify.Redis{Options: opts, Channel: n.Redis.Channel, Notify: notified("redis"), Rejected: rejected("redis"),
			// Redis keeps nothing for an absent subscriber: every (re)subscription catches up.
			Connected: wake(catchUpWake),
			Health:    func(err error) { h.set("notify-redis", err, "subscribed to "+n.Redis.Channel) },
			Log:       log.WithName("walletnotify")}
		add("walletnotify-redis", background(src.Run))
	case v1alpha1.NotifyBlockIOWebsocket:
		key, err := secret("backend.blockio.apiKeyFile", cfg.Backend.BlockIO.APIKeyFile)
		if err != nil {
			return nil, nil, err
		}
		h.set("notify-blockio", errors.New("connecting"), "")
		src := &walletnotify.BlockIOWebsocket{URL: n.BlockIOWebsocket.URL, APIKey: key, Notify: notified("blockio-websocket"),
			Rejected: rejected("blockio-websocket"), Connected: wake(catchUpWake),
			Health: func(err error) { h.set("notify-blockio", err, "subscribed to "+n.BlockIOWebsocket.URL) },
			Log:    log.WithName("walletnotify")}
		add("walletnotify-blockio", background(src.Run))
	case v1alpha1.NotifyBlockIOWebhook:
		reg, ok := be.(*blockio.Client)
		if !ok {
			return nil, nil, errors.New("notify method blockio-webhook needs backend blockio")
		}
		hook := &walletnotify.BlockIOWebhook{PublicURL: n.BlockIOWebhook.PublicURL, Registrar: reg, Notify: notified("blockio-webhook"),
			Rejected: rejected("blockio-webhook"),
			Health:   func(err error) { h.set("notify-blockio", err, "webhook registered at block.io") },
			Log:      log.WithName("walletnotify")}
		handler, err := hook.Handler()
		if err != nil {
			return nil, nil, err
		}
		h.set("notify-blockio", errors.New("registering the webhook"), "")
		if err := serve("blockio-webhook", n.BlockIOWebhook.Listen, handler); err != nil {
			return nil, nil, err
		}
		add("blockio-webhook-registration", func(ctx context.Context) error {
			if err := hook.Register(ctx); err != nil {
				log.Error(err, "block.io webhook")
			}
			return nil
		})
	}

	if k := cfg.Kubernetes; k != nil {
		if opts.Kube == nil {
			return nil, nil, fmt.Errorf("the config names CryptoAsset %s/%s (kubernetes:) but no Kubernetes credentials were given", k.Namespace, k.Name)
		}
		w := &rescan.Watcher{Namespace: k.Namespace, Name: k.Name, Config: opts.Kube, Intake: in,
			Metrics: p.rescanMetrics, ProgressEvery: opts.RescanProgressEvery, Log: log.WithName("rescan")}
		add("rescan-watcher", func(ctx context.Context) error {
			// Rescans are a repair tool: losing the API server must not stop payments, so the
			// watcher is retried here and stays out of readiness.
			wait := backoff.New(time.Minute)
			for ctx.Err() == nil {
				began := time.Now()
				err := w.Run(ctx)
				if time.Since(began) > time.Minute {
					wait.Reset() // it watched for a while: a new failure, not the same one
				}
				d := wait.Next()
				if err != nil {
					log.Error(err, "rescan watcher stopped; restarting", "in", d)
				}
				backoff.Sleep(ctx, d)
			}
			return nil
		})
	}
	release := m.ledger.serve(l)
	return parts, func() { release(); closeBackend() }, nil
}

func timeoutOf(cfg *config.Config) time.Duration {
	if cfg.Backend.Bitcoind != nil {
		return cfg.Backend.Bitcoind.Timeout.Duration
	}
	return config.DefaultRPCTimeout
}
