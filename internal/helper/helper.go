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
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/types"
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
			Store: null.PGStore{Pool: pool, Asset: cfg.Asset.Name}})
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
		User: user, Password: pass, WalletPassphrase: phrase, Timeout: b.Bitcoind.Timeout.Duration,
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
			out = append(out, events.NewHTTPTarget(e.Name, e.HTTP.URL, []byte(key), e.HTTP.Timeout.Duration))
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

// openAsset opens the asset's ledger on pool and its backend.
func openAsset(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool) (*ledger.Ledger, backend.Backend, func(), error) {
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
	l, err := ledger.Open(ctx, pool, ledger.Options{
		Asset: cfg.Asset.Name, Coin: k.Name, Network: cfg.Asset.Network,
		Confirmations: cfg.Asset.Confirmations, MaxTrackedConfirmations: cfg.Asset.MaxTrackedConfirmations,
		ValidateAddress: func(a string) error { return coin.ValidateAddress(k.Name, cfg.Asset.Network, a) },
		EventTargets:    targetNames,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	be, closeBackend, err := newBackend(ctx, cfg, pool)
	if err != nil {
		return nil, nil, nil, err
	}
	return l, be, closeBackend, nil
}

// Rescan runs one rescan outside the helper service (the `cryptoassets rescan` command): it books
// into the ledger through the same path, so running it beside a live helper is safe.
func Rescan(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, fromHeight int64, log logr.Logger, progress func(intake.RescanProgress)) (intake.RescanResult, error) {
	l, be, closeBackend, err := openAsset(ctx, cfg, pool)
	if err != nil {
		return intake.RescanResult{}, err
	}
	defer closeBackend()
	return rescan.Run(ctx, intake.New(l, be, log.WithName("intake")), fromHeight, nil, progress)
}

// Audit checks the asset's ledger against its backend's chain (the `ledger check
// --against-backend` command); it changes nothing.
func Audit(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, log logr.Logger) ([]ledger.Violation, error) {
	l, be, closeBackend, err := openAsset(ctx, cfg, pool)
	if err != nil {
		return nil, err
	}
	defer closeBackend()
	return intake.New(l, be, log.WithName("intake")).Audit(ctx)
}

// lockKey is the advisory lock that makes one helper per asset the active one.
func lockKey(asset string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("cryptoassets-helper/" + asset))
	return int64(h.Sum64())
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
}

func run(parent context.Context, cfg *config.Config, log logr.Logger, opts Options) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	dbURL, err := secret("database.urlFile", cfg.Database.URLFile)
	if err != nil {
		return err
	}
	token, err := secret("api.tokenFile", cfg.API.TokenFile)
	if err != nil {
		return err
	}
	pc, err := ledger.PoolConfig(dbURL, cfg.Database.MaxConnections)
	if err != nil {
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("connecting to the ledger database: %w", err)
	}
	defer pool.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p := &process{cfg: cfg, log: log, opts: opts, pool: pool, connConfig: pc.ConnConfig, token: token,
		m: newMetrics(reg), rescanMetrics: rescan.NewMetrics(reg), h: newHealth()}
	h := p.h
	registerHealthGauges(reg, h)
	// Readiness: this replica holds the lock and serves its API. Nothing else.
	h.require("active", "startup")
	h.set("active", errors.New("waiting for the advisory lock"), "")
	h.set("startup", errors.New("starting"), "")

	// The ops endpoints, the database watch and the condition writer outlive every tenure as the
	// active helper, so a standby and a helper whose database is down both say so.
	var wg sync.WaitGroup
	fatal := newFatal()
	defer wg.Wait()
	defer cancel()
	p.serve(ctx, &wg, fatal, "ops", cfg.Server.MetricsListen, h.opsHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	wg.Add(1)
	go func() { defer wg.Done(); watchLedger(ctx, pool, h) }()
	if k := cfg.Kubernetes; k != nil && opts.Kube != nil {
		cw, err := newConditionWriter(opts.Kube, types.NamespacedName{Namespace: k.Namespace, Name: k.Name}, h, cfg.Backend.Type == v1alpha1.BackendNull, log.WithName("conditions"))
		if err != nil {
			return fmt.Errorf("creating the Kubernetes client for conditions: %w", err)
		}
		p.conditions = cw
		h.notify(cw.changed)
		wg.Add(1)
		go func() { defer wg.Done(); cw.run(ctx) }()
	}

	// A fatal error (a server that cannot listen) also ends a wait for the database or the lock.
	ctx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	go func() {
		select {
		case <-fatal.done:
			stopAll()
		case <-ctx.Done():
		}
	}()
	wait := backoff.New(30 * time.Second)
	for {
		began := time.Now()
		err := p.tenure(ctx, fatal)
		if ferr := fatal.fired(); ferr != nil {
			log.Error(ferr, "stopping")
			return ferr
		}
		if ctx.Err() != nil {
			log.Info("shutting down")
			return nil
		}
		if !errors.Is(err, errLostLock) {
			log.Error(err, "stopping")
			return err
		}
		// The database went away under us (a restart, a failover): the lock went with the
		// session, and another helper may take it first. Every active part has stopped; wait
		// for the database and queue for the lock again.
		h.set("active", err, "")
		// A database that takes connections and drops them at once (starting up, failing
		// over) must not turn this loop into a busy one.
		if time.Since(began) > time.Minute {
			wait.Reset()
		}
		d := wait.Next()
		log.Error(err, "the database connection holding or queueing for the lock is gone; every active part stopped; queueing for the lock again", "in", d)
		backoff.Sleep(ctx, d)
	}
}

// errLostLock: the connection holding the active-helper lock died, so the lock is gone.
var errLostLock = errors.New("lost the connection holding the active-helper lock")

// fatal carries the first error that must stop the helper.
type fatal struct {
	once sync.Once
	done chan struct{}
	err  error
}

func newFatal() *fatal { return &fatal{done: make(chan struct{})} }

func (f *fatal) stop(err error) { f.once.Do(func() { f.err = err; close(f.done) }) }

// fired returns the fatal error, or nil while there is none.
func (f *fatal) fired() error {
	select {
	case <-f.done:
		return f.err
	default:
		return nil
	}
}

// process is what one helper process keeps across its tenures as the active helper.
type process struct {
	cfg           *config.Config
	log           logr.Logger
	opts          Options
	pool          *pgxpool.Pool
	connConfig    *pgx.ConnConfig
	token         string
	m             *metrics
	rescanMetrics *rescan.Metrics
	h             *health
	conditions    *conditionWriter
}

// serve runs an HTTP server until ctx ends; a server that cannot listen or fails stops the helper.
func (p *process) serve(ctx context.Context, wg *sync.WaitGroup, f *fatal, name, addr string, handler http.Handler) {
	srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		f.stop(fmt.Errorf("%s: listening on %s: %w", name, addr, err))
		return
	}
	p.log.Info("listening", "server", name, "address", ln.Addr().String())
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.stop(fmt.Errorf("%s: %w", name, err))
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
}

// lockHolder is the connection holding the session-level advisory lock that makes this helper
// the active one. The lock lives exactly as long as the connection's session.
type lockHolder struct {
	mu   sync.Mutex
	conn *pgx.Conn
}

// held says whether the lock is still ours: the session that holds it still answers. The
// broadcaster asks before every payment, so a helper whose database restarted under it never
// pays beside the helper that took over.
func (lh *lockHolder) held(ctx context.Context) error {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := lh.conn.Ping(pctx); err != nil {
		return fmt.Errorf("%w: %w", errLostLock, err)
	}
	return nil
}

// watch returns when the lock connection stops answering (errLostLock) or ctx ends (nil).
func (lh *lockHolder) watch(ctx context.Context) error {
	t := time.NewTicker(lockCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := lh.held(ctx); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

// lockCheckEvery is how often the active helper checks that its lock connection lives.
const lockCheckEvery = 2 * time.Second

// tenure waits for the database, queues for the active-helper lock, and runs every active part
// until ctx ends, a part fails fatally, or the lock connection dies (errLostLock). It returns
// only after every part it started has stopped.
func (p *process) tenure(ctx context.Context, f *fatal) error {
	cfg, log, h := p.cfg, p.log, p.h
	// One active helper per asset: a session-level advisory lock on a connection of its own. A
	// database that is not there yet is waited for (the pod's startup probe allows it), so a
	// PostgreSQL restart does not become a crash loop.
	conn, err := connectLedger(ctx, p.connConfig, h, log)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	lock := &lockHolder{conn: conn}
	h.set("active", errors.New("waiting for the advisory lock"), "")
	log.Info("waiting to become the active helper")
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey(cfg.Asset.Name)); err != nil {
		if ctx.Err() != nil {
			return err
		}
		// The database went away while we queued: queue again once it is back.
		return fmt.Errorf("%w: while waiting for it: %w", errLostLock, err)
	}
	h.set("active", nil, "this helper holds the asset's lock")
	log.Info("active helper")

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	lost := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := lock.watch(ctx); err != nil {
			lost <- err
		}
	}()
	err = p.active(ctx, &wg, f, lock)
	if err != nil && ctx.Err() == nil {
		if lerr := lock.held(ctx); lerr != nil {
			err = fmt.Errorf("%w (starting the active parts: %v)", lerr, err)
		}
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case <-f.done:
			err = f.err
		case err = <-lost:
		}
	}
	cancel()
	wg.Wait()
	return err
}

// active starts every part of the active helper under ctx, each registered in wg.
func (p *process) active(ctx context.Context, wg *sync.WaitGroup, f *fatal, lock *lockHolder) error {
	cfg, log, h, m, pool, token, opts := p.cfg, p.log, p.h, p.m, p.pool, p.token, p.opts
	l, be, closeBackend, err := openAsset(ctx, cfg, pool)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); <-ctx.Done(); closeBackend() }()
	targets, err := newTargets(cfg, l)
	if err != nil {
		return err
	}
	serve := func(name, addr string, handler http.Handler) { p.serve(ctx, wg, f, name, addr, handler) }

	in := intake.New(l, be, log.WithName("intake"))
	grace := 2*timeoutOf(cfg) + 30*time.Second
	bc := broadcast.New(l, be, grace, log.WithName("broadcast"))
	bc.Fence = lock.held
	dispatcher := events.NewDispatcher(l, targets, events.DefaultBackoff(), log.WithName("events"))
	dispatcher.OnResult = func(target string, err error) { m.eventAttempt(target, err) }
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
	if p.conditions != nil {
		p.conditions.changed("ledger") // what is known already
	}

	act := &activity{}
	sup := &supervisor{log: log, health: h, stepLimit: stepLimit}
	sup.loop(ctx, wg, "catch-up", cfg.Notify.PollInterval.Duration, catchUpWake, func(ctx context.Context) error {
		start := time.Now()
		r, err := in.CatchUp(ctx)
		m.catchUp(time.Since(start), r, err)
		act.caughtUp(err)
		sawBackend(err)
		if err == nil && (r.Booked+r.Updated) > 0 {
			dispatcher.Wake()
		}
		return err
	})
	sup.loop(ctx, wg, "broadcast", cfg.Broadcast.Period.Duration, broadcastWake, func(ctx context.Context) error {
		r, err := bc.Run(ctx)
		m.broadcast(r, err)
		if err != nil {
			sawBackend(err)
		}
		if r.Sent || r.Reconciled {
			dispatcher.Wake()
		}
		return err
	})
	wg.Add(1)
	go func() { defer wg.Done(); _ = dispatcher.Run(ctx) }()

	apiServer := api.New(l, be, token)
	apiServer.Wake = wake(broadcastWake)
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
	serve("api", cfg.API.Listen, apiMux)
	// Every source ends here: the txid is looked up at once, and whatever else the wallet saw
	// meanwhile is not left for the next poll.
	notified := func(source string) walletnotify.Handler {
		return func(ctx context.Context, txid string) error {
			m.notification(source)
			act.notified(txid)
			r, err := in.Notify(ctx, txid)
			if err == nil && (r.Booked+r.Updated) > 0 {
				dispatcher.Wake()
			}
			wake(catchUpWake)()
			return err
		}
	}
	rejected := func(source string) func(string) { return func(string) { m.rejectedNotification(source) } }
	switch n := cfg.Notify; n.Method {
	case v1alpha1.NotifyHTTP:
		hookToken, err := secret("notify.http.tokenFile", n.HTTP.TokenFile)
		if err != nil {
			return err
		}
		serve("walletnotify", n.HTTP.Listen, walletnotify.NewHTTP(hookToken, notified("http"), log.WithName("walletnotify")))
	case v1alpha1.NotifyPipe:
		pipe := &walletnotify.Pipe{Path: n.Pipe.Path, Notify: notified("pipe"), Rejected: rejected("pipe"), Log: log.WithName("walletnotify")}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pipe.Run(ctx); err != nil {
				f.stop(err)
			}
		}()
	case v1alpha1.NotifyRedis:
		password, err := secret("notify.redis.passwordFile", n.Redis.PasswordFile)
		if err != nil {
			return err
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
		wg.Add(1)
		go func() { defer wg.Done(); _ = src.Run(ctx) }()
	case v1alpha1.NotifyBlockIOWebsocket:
		key, err := secret("backend.blockio.apiKeyFile", cfg.Backend.BlockIO.APIKeyFile)
		if err != nil {
			return err
		}
		h.set("notify-blockio", errors.New("connecting"), "")
		src := &walletnotify.BlockIOWebsocket{URL: n.BlockIOWebsocket.URL, APIKey: key, Notify: notified("blockio-websocket"),
			Rejected: rejected("blockio-websocket"), Connected: wake(catchUpWake),
			Health: func(err error) { h.set("notify-blockio", err, "subscribed to "+n.BlockIOWebsocket.URL) },
			Log:    log.WithName("walletnotify")}
		wg.Add(1)
		go func() { defer wg.Done(); _ = src.Run(ctx) }()
	case v1alpha1.NotifyBlockIOWebhook:
		reg, ok := be.(*blockio.Client)
		if !ok {
			return errors.New("notify method blockio-webhook needs backend blockio")
		}
		hook := &walletnotify.BlockIOWebhook{PublicURL: n.BlockIOWebhook.PublicURL, Registrar: reg, Notify: notified("blockio-webhook"),
			Rejected: rejected("blockio-webhook"),
			Health:   func(err error) { h.set("notify-blockio", err, "webhook registered at block.io") },
			Log:      log.WithName("walletnotify")}
		handler, err := hook.Handler()
		if err != nil {
			return err
		}
		h.set("notify-blockio", errors.New("registering the webhook"), "")
		serve("blockio-webhook", n.BlockIOWebhook.Listen, handler)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hook.Register(ctx); err != nil {
				log.Error(err, "block.io webhook")
			}
		}()
	}

	if k := cfg.Kubernetes; k != nil {
		if opts.Kube == nil {
			return fmt.Errorf("the config names CryptoAsset %s/%s (kubernetes:) but no Kubernetes credentials were given", k.Namespace, k.Name)
		}
		w := &rescan.Watcher{Namespace: k.Namespace, Name: k.Name, Config: opts.Kube, Intake: in,
			Metrics: p.rescanMetrics, ProgressEvery: opts.RescanProgressEvery, Log: log.WithName("rescan")}
		wg.Add(1)
		go func() {
			defer wg.Done()
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
		}()
	}

	h.set("startup", nil, "every part started")
	return nil
}

func timeoutOf(cfg *config.Config) time.Duration {
	if cfg.Backend.Bitcoind != nil {
		return cfg.Backend.Bitcoind.Timeout.Duration
	}
	return config.DefaultRPCTimeout
}
