package helper

import (
	"context"
	"errors"
	"fmt"
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
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/backoff"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/rescan"
)

// The helper process is two layers of runnables, each layer one errgroup (as CloudNativePG's
// instance manager runs its parts): the process's own (the ops server, the database watch, the
// condition writer, and the loop of tenures), and a tenure's (the lock watch and the parts of
// the active helper). A runnable returns nil when its context ends and an error only when the
// helper cannot go on; the first error stops its layer. errLostLock from a tenure's lock watch
// ends the tenure only: the process queues for the lock again.

// runnable is one part of the helper.
type runnable struct {
	name string
	run  func(context.Context) error
}

// errLostLock: the connection holding the active-helper lock died, so the lock is gone.
var errLostLock = errors.New("lost the connection holding the active-helper lock")

// process is what one helper process keeps across its tenures as the active helper.
type process struct {
	cfg           *config.Config
	log           logr.Logger
	opts          Options
	pool          *pgxpool.Pool
	connConfig    *pgx.ConnConfig // the lock connection's, whose answers the ledger watch does not count
	token         string
	m             *metrics
	rescanMetrics *rescan.Metrics
	h             *health
	conditions    *conditionWriter
}

func run(ctx context.Context, cfg *config.Config, log logr.Logger, opts Options) error {
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
	answered, lockConfig := traceAnswers(pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("connecting to the ledger database: %w", err)
	}
	defer pool.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p := &process{cfg: cfg, log: log, opts: opts, pool: pool, connConfig: lockConfig, token: token,
		m: newMetrics(reg), rescanMetrics: rescan.NewMetrics(reg), h: newHealth()}
	h := p.h
	registerHealthGauges(reg, h)
	// Readiness: this replica holds the lock and serves its API. Nothing else.
	h.require("active", "startup")
	h.set("active", errors.New("waiting for the advisory lock"), "")
	h.set("startup", errors.New("starting"), "")

	// The ops endpoints, the database watch and the condition writer outlive every tenure as the
	// active helper, so a standby and a helper whose database is down both say so.
	_, ops, err := p.serve("ops", cfg.Server.MetricsListen, h.opsHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	if err != nil {
		return err
	}
	parts := []runnable{
		{"ops", ops},
		{"ledger-watch", func(ctx context.Context) error { watchLedger(ctx, pool, answered, h); return nil }},
	}
	if k := cfg.Kubernetes; k != nil && opts.Kube != nil {
		cw, err := newConditionWriter(opts.Kube, types.NamespacedName{Namespace: k.Namespace, Name: k.Name}, h, cfg.Backend.Type == v1alpha1.BackendNull, log.WithName("conditions"))
		if err != nil {
			return fmt.Errorf("creating the Kubernetes client for conditions: %w", err)
		}
		p.conditions = cw
		h.notify(cw.changed)
		parts = append(parts, runnable{"conditions", func(ctx context.Context) error { cw.run(ctx); return nil }})
	}
	parts = append(parts, runnable{"tenures", p.tenures})
	err = runAll(ctx, parts)
	if ctx.Err() != nil {
		log.Info("shutting down")
		return nil
	}
	log.Error(err, "stopping")
	return err
}

// runAll runs parts until ctx ends or one fails; it returns the first failure after every part
// has stopped.
func runAll(ctx context.Context, parts []runnable) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, r := range parts {
		g.Go(func() error {
			if err := r.run(ctx); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// tenures runs one tenure after another: a database that went away (a restart, a failover)
// took the lock with its session, and another helper may take it first; every active part has
// stopped by then, so this helper waits for the database and queues for the lock again.
func (p *process) tenures(ctx context.Context) error {
	wait := backoff.New(30 * time.Second)
	for {
		began := time.Now()
		err := p.tenure(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errLostLock) {
			return err
		}
		p.h.set("active", err, "")
		// A database that takes connections and drops them at once (starting up, failing
		// over) must not turn this loop into a busy one.
		if time.Since(began) > time.Minute {
			wait.Reset()
		}
		d := wait.Next()
		p.log.Error(err, "the database connection holding or queueing for the lock is gone; every active part stopped; queueing for the lock again", "in", d)
		backoff.Sleep(ctx, d)
	}
}

// tenure waits for the database, queues for the active-helper lock, and runs every active part
// until ctx ends, a part fails, or the lock connection dies (errLostLock). It returns only after
// every part it started has stopped.
func (p *process) tenure(ctx context.Context) error {
	cfg, log, h := p.cfg, p.log, p.h
	// One active helper per asset: a session-level advisory lock on a connection of its own. A
	// database that is not there yet is waited for (the pod's startup probe allows it), so a
	// PostgreSQL restart does not become a crash loop.
	conn, err := connectLedger(ctx, p.connConfig, h, log)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Refuse a ledger whose record of the asset is another coin, network or backend now, not
	// after waiting behind the helper that serves it. Any other failure of this early look (an
	// older schema, a dropped connection) is left to ledger.Open, which checks again under the
	// lock and whose errors the tenure already handles.
	k, err := coin.LookupNetwork(cfg.Asset.Coin, cfg.Asset.Network)
	if err != nil {
		return err
	}
	if err := ledger.VerifyAsset(ctx, conn, ledgerOptions(cfg, k)); errors.Is(err, ledger.ErrAssetMismatch) {
		return err
	} else if err != nil {
		log.Info("could not check the ledger's record of the asset before queueing for its lock; it is checked again once held", "error", err.Error())
	}
	lock := newLockHolder(conn)
	h.set("active", errors.New("waiting for the advisory lock"), "")
	log.Info("waiting to become the active helper")
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey(cfg.Asset)); err != nil {
		if ctx.Err() != nil {
			return err
		}
		// The database went away while we queued: queue again once it is back.
		return fmt.Errorf("%w: while waiting for it: %w", errLostLock, err)
	}
	log.Info("active helper")

	parts, release, err := p.parts(ctx, lock)
	if err != nil {
		if lerr := lock.held(ctx); lerr != nil && ctx.Err() == nil {
			return fmt.Errorf("%w (starting the active parts: %v)", lerr, err)
		}
		return err
	}
	defer release()
	if p.conditions != nil {
		p.conditions.changed("ledger") // what is known already
	}
	// Ready only now that the API listens again: a later tenure finds "startup" already set.
	h.set("startup", nil, "every part started")
	h.set("active", nil, "this helper holds the asset's lock")
	return runAll(ctx, append(parts, runnable{"lock-watch", lock.watch}))
}

// serve listens on addr now, so a port that is taken fails at once, and returns the runnable
// that serves until its context ends.
func (p *process) serve(name, addr string, handler http.Handler) (net.Listener, func(context.Context) error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: listening on %s: %w", name, addr, err)
	}
	p.log.Info("listening", "server", name, "address", ln.Addr().String())
	return ln, func(ctx context.Context) error {
		srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		select {
		case err := <-served:
			return err // Serve only returns early on a failure
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			<-served
			return nil
		}
	}, nil
}

// lockHolder is the connection holding the session-level advisory lock that makes this helper
// the active one. The lock lives exactly as long as the connection's session.
type lockHolder struct {
	conn *pgx.Conn
	// idleCheck is how long the watch waits on the idle connection before it pings it
	// (lockCheckEvery).
	idleCheck time.Duration

	// The connection has one user at a time. A ping (held) goes before the watch's read, and
	// cuts a read under way short, so that a payment never waits for the watch.
	mu      sync.Mutex
	free    sync.Cond // L is &mu; told whenever the connection is given back
	busy    bool
	wanted  int                // statements (pings, LISTEN) waiting for the connection
	cutRead context.CancelFunc // ends the watch's read; nil unless it reads
	// notified is called for each notification the watch's read receives (listen).
	notified func()
}

func newLockHolder(conn *pgx.Conn) *lockHolder {
	lh := &lockHolder{conn: conn, idleCheck: lockCheckEvery}
	lh.free.L = &lh.mu
	return lh
}

// take waits for the connection: for a statement (a ping, LISTEN) when read is nil, else for the
// watch's read, which read cancels. A read waits while any statement does.
func (lh *lockHolder) take(read context.CancelFunc) {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	ping := read == nil
	if ping {
		lh.wanted++
		if lh.cutRead != nil {
			lh.cutRead()
		}
	}
	for lh.busy || (!ping && lh.wanted > 0) {
		lh.free.Wait()
	}
	if ping {
		lh.wanted--
	}
	lh.busy, lh.cutRead = true, read
}

// give gives the connection back.
func (lh *lockHolder) give() {
	lh.mu.Lock()
	lh.busy, lh.cutRead = false, nil
	lh.mu.Unlock()
	lh.free.Broadcast()
}

// held says whether the lock is still ours: the session that holds it still answers. The
// broadcaster asks before every payment, so a helper whose database restarted under it never
// pays beside the helper that took over.
func (lh *lockHolder) held(ctx context.Context) error {
	lh.take(nil)
	defer lh.give()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := lh.conn.Ping(pctx); err != nil {
		return fmt.Errorf("%w: %w", errLostLock, err)
	}
	return nil
}

// listen has the watch's read take the notifications of channel, and hand each to notified. The
// lock connection waits on its socket anyway, so other processes can wake the helper through it
// at no cost to an idle one. Notifications that come while a ping has the connection wait in
// pgx until the next read.
func (lh *lockHolder) listen(ctx context.Context, channel string, notified func()) error {
	lh.take(nil)
	defer lh.give()
	lh.mu.Lock()
	lh.notified = notified
	lh.mu.Unlock()
	if _, err := lh.conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listening on the lock connection for %s: %w", channel, err)
	}
	return nil
}

// watch returns when the lock connection is lost (errLostLock) or ctx ends (nil).
//
// It waits on the idle connection's socket rather than pinging it on a timer: a session the
// server ends (a restart, pg_terminate_backend) closes the socket, which wakes the wait at once
// and costs no query while nothing happens. Pinging every 2 s cost each idle helper 30 queries a
// minute, and a thousand helpers on one database 500 a second. A connection that dies silently
// (the database's host gone, a partition) only shows as an unanswered ping, so the watch still
// pings after each idleCheck without news.
func (lh *lockHolder) watch(ctx context.Context) error {
	for {
		timedOut, err := lh.wait(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return err
		case timedOut:
			if err := lh.held(ctx); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

// wait reads the lock connection for up to idleCheck, or until a ping wants it. It says whether
// the read ran its whole time, and returns errLostLock if the connection broke meanwhile.
func (lh *lockHolder) wait(ctx context.Context) (timedOut bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, lh.idleCheck)
	defer cancel()
	lh.take(cancel)
	defer lh.give()
	// The read ends with a notification (listen), at the deadline, when a ping cuts it short, or
	// with the error that says the session is gone. pgx's default context handling only sets a
	// deadline on the socket, which leaves the connection usable after the deadline or the cut.
	_, err = lh.conn.WaitForNotification(rctx)
	switch {
	case err == nil:
		lh.mu.Lock()
		notified := lh.notified
		lh.mu.Unlock()
		if notified != nil {
			notified()
		}
		return false, nil
	case rctx.Err() == nil:
		return false, fmt.Errorf("%w: %w", errLostLock, err)
	}
	return errors.Is(rctx.Err(), context.DeadlineExceeded), nil
}

// lockCheckEvery is how long the lock watch waits on an idle lock connection before it pings it,
// for the failures only a ping finds. The broadcaster's fence pings before each payment anyway.
const lockCheckEvery = 30 * time.Second
