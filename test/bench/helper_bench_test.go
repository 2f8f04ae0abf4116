package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/events"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
)

// envDuration is a duration from the environment, or def.
func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("%s=%q is not a duration", name, s)
		}
		return d
	}
	return def
}

// envInt reads a size from the environment variable name: a positive whole number, def when unset.
func envInt(b *testing.B, name string, def int) int { return envAtLeast(b, name, def, 1) }

// envAtLeast reads a whole number of at least least from the environment variable name, def when
// unset; for the sizes where none is a size too.
func envAtLeast(b *testing.B, name string, def, least int) int {
	if s := os.Getenv(name); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < least {
			b.Fatalf("%s=%q is not a whole number of at least %d", name, s, least)
		}
		return v
	}
	return def
}

// profiled times f and, when BENCH_PROFILE_DIR is set, writes the CPU profile of just that
// section to <dir>/<name>.cpu, for `go tool pprof -top`; an empty name only times f.
func profiled(b *testing.B, name string, f func() error) (time.Duration, error) {
	dir := os.Getenv("BENCH_PROFILE_DIR")
	if dir == "" || name == "" {
		return timeIt(f)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, name+".cpu"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		b.Fatalf("profiling %s: %v (run without -cpuprofile)", name, err)
	}
	defer pprof.StopCPUProfile()
	return timeIt(f)
}

func startPG(b *testing.B) *pgtest.Server {
	settings := pgProfileSettings(b)
	srv, err := pgtest.StartWith(settings...)
	if err != nil {
		if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
			b.Fatal(err)
		}
		b.Skip(err)
	}
	b.Cleanup(srv.Stop)
	if settings != nil {
		// Cleanups run last first: this one while the server and its log are still there.
		b.Cleanup(func() { writePGProfile(b, srv) })
	}
	return srv
}

// eventTargets names the event targets of the ledgers that the benchmarks of the money path
// (intake, rescan, broadcast, transfers) book into: BENCH_EVENT_TARGETS of them (default 1). A
// helper that notifies its application has one, and each of its events then gets a delivery row
// in the same transaction; 0 books as a helper read only through the pull API does.
func eventTargets(b *testing.B) []string {
	targets := make([]string, envAtLeast(b, "BENCH_EVENT_TARGETS", 1, 0))
	for i := range targets {
		targets[i] = fmt.Sprintf("app-%d", i+1)
	}
	return targets
}

func openLedger(b *testing.B, srv *pgtest.Server, targets ...string) (*ledger.Ledger, *pgxpool.Pool) {
	ctx := context.Background()
	url, err := srv.NewDatabase(ctx)
	if err != nil {
		b.Fatal(err)
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	pc.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := ledger.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	l, err := ledger.Open(ctx, pool, ledger.Options{Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 1,
		MaxTrackedConfirmations: config.DefaultMaxTracked, ValidateAddress: func(string) error { return nil }, EventTargets: targets})
	if err != nil {
		b.Fatal(err)
	}
	return l, pool
}

// BenchmarkLedgerTransfers runs internal transfers from 8 concurrent clients over 100 accounts
// (each one statement that locks both accounts, checks the balance, and writes the transaction
// row and its event), and next to it pgbench's tpcb-like workload with 8 clients on the same
// PostgreSQL. The two take turns for BENCH_LEDGER_ROUNDS (default 5) rounds of BENCH_SECONDS
// (default 4) each, and the figure is the ratio of the median rates: one long run of each, one
// after the other, put whatever the machine did meanwhile (a checkpoint, another process) on one
// side only, and the ratio moved between 0.99 and 1.20 on the same tree.
func BenchmarkLedgerTransfers(b *testing.B) {
	srv := startPG(b)
	seconds := envInt(b, "BENCH_SECONDS", 4)
	rounds := envInt(b, "BENCH_LEDGER_ROUNDS", 5)
	ctx := context.Background()
	targets := eventTargets(b)
	l, _ := openLedger(b, srv, targets...)
	var ids []int64
	for i := range 100 {
		a, err := l.CreateAccount(ctx, fmt.Sprintf("acct-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		addr := fmt.Sprintf("addr-%d", i)
		if _, err := l.AddReceivingAddress(ctx, a.ID, addr, ""); err != nil {
			b.Fatal(err)
		}
		if _, err := l.RecordDeposit(ctx, ledger.Observation{TxID: fmt.Sprintf("%064x", i), Address: addr, Amount: 1e12, Confirmations: 1}); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	pgbench := filepath.Join(filepath.Dir(mustLook(b, "initdb")), "pgbench")
	url, err := srv.NewDatabase(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(pgbench, "-i", "-s", "1", "-q", url).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	tpsRE := regexp.MustCompile(`tps = ([0-9.]+)`)

	// transfers runs the 8 clients for the round's time and returns their rate.
	transfers := func(round int) float64 {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			ops   int
			first error
		)
		start := time.Now()
		deadline := start.Add(time.Duration(seconds) * time.Second)
		for c := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(c), uint64(round)))
				n := 0
				for time.Now().Before(deadline) {
					from, to := ids[r.IntN(len(ids))], ids[r.IntN(len(ids))]
					if from == to {
						continue
					}
					if _, err := l.SendInternal(ctx, from, to, ledger.Amount(r.IntN(1000)+1), ""); err != nil {
						mu.Lock()
						first = errors.Join(first, err)
						mu.Unlock()
						return
					}
					n++
				}
				mu.Lock()
				ops += n
				mu.Unlock()
			}()
		}
		wg.Wait()
		if first != nil {
			b.Fatal(first)
		}
		return float64(ops) / time.Since(start).Seconds()
	}
	// tpcb runs pgbench for the round's time and returns the rate it reports.
	tpcb := func() float64 {
		out, err := exec.Command(pgbench, "-b", "tpcb-like", "-c", "8", "-j", "2", "-n", "-T", strconv.Itoa(seconds), url).CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench: %v\n%s", err, out)
		}
		m := tpsRE.FindSubmatch(out)
		if m == nil {
			b.Fatalf("no tps in pgbench output:\n%s", out)
		}
		tps, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			b.Fatalf("pgbench tps %q: %v", m[1], err)
		}
		return tps
	}

	ledgerRates, pgRates := make([]float64, rounds), make([]float64, rounds)
	for r := range rounds {
		// Each goes first in every other round, so neither always runs on the other's leftovers
		// (dirty buffers, a checkpoint due).
		if r%2 == 0 {
			ledgerRates[r], pgRates[r] = transfers(r), tpcb()
		} else {
			pgRates[r] = tpcb()
			ledgerRates[r] = transfers(r)
		}
	}
	ledgerRate, pgRate := median(ledgerRates), median(pgRates)
	b.ReportMetric(ledgerRate, "transfers/s")
	b.ReportMetric(pgRate, "pgbench-tps")
	b.ReportMetric(ledgerRate/pgRate, "ratio")
	b.Logf("8 clients, median of %d rounds of %ds: %.0f ledger transfers/s (%s; each also checks balances and writes a transaction row, an event and its %d delivery rows); pgbench tpcb-like %.0f tps (%s); ratio %.2f",
		rounds, seconds, ledgerRate, rates(ledgerRates), len(targets), pgRate, rates(pgRates), ledgerRate/pgRate)
}

// rates lists rates as whole numbers, for a log line.
func rates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, " ") + " /s"
}

func mustLook(b *testing.B, name string) string {
	for _, dir := range append([]string{os.Getenv("PG_BIN")}, globDirs("/usr/lib/postgresql/*/bin")...) {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		b.Fatalf("%s not found", name)
	}
	return p
}

func globDirs(pattern string) []string { d, _ := filepath.Glob(pattern); return d }

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// BenchmarkEventDelivery delivers BENCH_EVENTS (default 10000) outbox events to a local HTTP
// receiver through the dispatcher (read from the outbox, sign, post, mark delivered), next to a
// bare HTTP client posting the same requests in the same run. It does so BENCH_EVENT_ROUNDS
// (default 9, as the other short benchmarks) times, each round with fresh events, the bare posts
// and the dispatcher taking turns, and compares the medians.
//
// Between the two, the same events go out through the target alone (built, signed and posted
// as the dispatcher's workers do, without the outbox): that splits what the dispatcher adds into
// what signing each post costs and what reading and recording the outbox costs.
func BenchmarkEventDelivery(b *testing.B) {
	srv := startPG(b)
	n := envInt(b, "BENCH_EVENTS", 10000)
	rounds := envInt(b, "BENCH_EVENT_ROUNDS", 9)
	ctx := context.Background()
	l, pool := openLedger(b, srv, "app")
	var received sync.Map
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Store(r.Header.Get(events.EventIDHeader), true)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	target := events.NewHTTPTarget("app", receiver.URL, []byte("key"), 10*time.Second, config.DefaultEventsInFlight)
	// The bare posts go out as many at once as the dispatcher's (config.DefaultEventsInFlight),
	// on as many kept-alive connections: the ratio is the dispatcher's own cost, not its
	// concurrency.
	inFlight := config.DefaultEventsInFlight
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = inFlight
	client := &http.Client{Timeout: 10 * time.Second, Transport: transport}
	d := events.NewDispatcher(l, nil, events.DefaultBackoff(), logr.Discard())
	meter := cpuMeter{{name: "this process (dispatcher and receiver)", pid: os.Getpid()}, {name: "PostgreSQL", pid: srv.PID(), children: true}}
	bareCPU, oursCPU := cpuUse{meter: meter}, cpuUse{meter: meter}

	// posts sends events 0..n-1 with post, as many at once as the dispatcher's workers.
	posts := func(n int, post func(i int) error) error {
		var (
			next   atomic.Int64
			wg     sync.WaitGroup
			failed atomic.Pointer[error]
		)
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
					if err := post(int(i)); err != nil {
						failed.Store(&err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := failed.Load(); err != nil {
			return *err
		}
		return nil
	}

	bares, signeds, tooks := make([]time.Duration, rounds), make([]time.Duration, rounds), make([]time.Duration, rounds)
	var bareMem, oursMem memUse
	var mem [3]runtime.MemStats
	for r := range rounds {
		// Events are generated in bulk; the benchmark measures delivery, not bookkeeping.
		if _, err := pool.Exec(ctx, `WITH a AS (SELECT id FROM assets WHERE name = 'btc'),
			e AS (INSERT INTO outbox_events (asset_id, name, payload)
				SELECT a.id, 'txupdate', jsonb_build_object('transaction_id', g, 'amount', '0.00010000', 'confirmations', 3, 'credited', true)
				FROM a, generate_series(1, $1) g RETURNING id)
			INSERT INTO outbox_deliveries (event_id, target) SELECT id, 'app' FROM e`, n); err != nil {
			b.Fatal(err)
		}
		due, _, err := l.DueDeliveries(ctx, "app", ledger.DueCursor{}, n)
		if err != nil || len(due) != n {
			b.Fatalf("%d events due: %v", len(due), err)
		}
		// The bare posts are the dispatcher's own requests, built (body, signatures, headers)
		// before the clock starts: the receiver does the same work for both, and the ratio is
		// what the dispatcher adds (reading the outbox, building and signing, recording
		// deliveries).
		bodies := make([][]byte, len(due))
		headers := make([]http.Header, len(due))
		for i, d := range due {
			req, err := target.Request(ctx, d)
			if err != nil {
				b.Fatal(err)
			}
			if bodies[i], err = io.ReadAll(req.Body); err != nil {
				b.Fatal(err)
			}
			headers[i] = req.Header
		}
		name, bareName := "events", "events-bare"
		if r > 0 {
			name, bareName = "", "" // one profile of each is enough
		}
		if signeds[r], err = timeIt(func() error {
			return posts(len(due), func(i int) error { return target.Deliver(ctx, due[i]) })
		}); err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&mem[0])
		bareStart, _ := meter.read()
		bares[r], err = profiled(b, bareName, func() error {
			return posts(len(bodies), func(i int) error {
				req, err := http.NewRequest(http.MethodPost, receiver.URL, bytes.NewReader(bodies[i]))
				if err != nil {
					return err
				}
				req.Header = headers[i]
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				return resp.Body.Close()
			})
		})
		if bareEnd, err := meter.read(); err == nil {
			bareCPU.add(bareStart, bareEnd)
		}
		if err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&mem[1])
		err = oursCPU.measure(func() (err error) {
			// One call: the dispatcher pages through the outbox until it has taken every due
			// event, and returns once their deliveries are recorded.
			tooks[r], err = profiled(b, name, func() error {
				k, err := d.DeliverDue(ctx, target)
				if err == nil && k != n {
					err = fmt.Errorf("the dispatcher took %d of %d events", k, n)
				}
				return err
			})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&mem[2])
		// The bare posts' prepared requests stay live through the dispatcher's turn too, so both
		// run with the same live heap: freed before it, they left the dispatcher a heap a few
		// MiB smaller, which the collector, pacing itself by the live heap, then cycled through
		// twice as often (4-6 cycles against 9-16 per round of 10,000).
		runtime.KeepAlive(bodies)
		runtime.KeepAlive(headers)
		bareMem.add(mem[0], mem[1])
		oursMem.add(mem[1], mem[2])
		var left int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_deliveries WHERE delivered_at IS NULL`).Scan(&left); err != nil || left != 0 {
			b.Fatalf("%d events undelivered (%v)", left, err)
		}
	}
	bare, signed, took := median(bares), median(signeds), median(tooks)
	b.ReportMetric(float64(n)/took.Seconds(), "events/s")
	b.ReportMetric(float64(n)/signed.Seconds(), "signed-posts/s")
	b.ReportMetric(float64(n)/bare.Seconds(), "bare-posts/s")
	b.ReportMetric(took.Seconds()/bare.Seconds(), "ratio")
	b.Logf("%d events, median of %d rounds: dispatcher %s (%.0f/s; %s), bare HTTP posts %s (%.0f/s; %s), ratio %.2f",
		n, rounds, took.Round(time.Millisecond), float64(n)/took.Seconds(), roundMs(tooks),
		bare.Round(time.Millisecond), float64(n)/bare.Seconds(), roundMs(bares), took.Seconds()/bare.Seconds())
	b.Logf("the target's own posts, built and signed without the outbox: %s (%.0f/s; %s), %.2f of the bare posts' rate; the dispatcher's rate %.2f of theirs",
		signed.Round(time.Millisecond), float64(n)/signed.Seconds(), roundMs(signeds),
		bare.Seconds()/signed.Seconds(), signed.Seconds()/took.Seconds())
	// The table gives the rate as the inverse of the ratio of times: 0.9 of the bare posts' rate
	// is a time ratio of 1.11.
	b.Logf("each round's ratio of times, dispatcher over bare posts: %s", pairedRatios(tooks, bares))
	per := float64(n*rounds) / 10000
	b.Logf("CPU, dispatcher %s", oursCPU.per(per, "10,000 events"))
	b.Logf("CPU, bare posts %s", bareCPU.per(per, "10,000 events"))
	b.Logf("this process allocated, per event: dispatcher %s; bare posts %s", oursMem.per(n*rounds), bareMem.per(n*rounds))
}

// memUse adds up what a process allocated, and the collections, between MemStats readings.
type memUse struct{ bytes, objects, cycles uint64 }

func (u *memUse) add(from, to runtime.MemStats) {
	u.bytes += to.TotalAlloc - from.TotalAlloc
	u.objects += to.Mallocs - from.Mallocs
	u.cycles += uint64(to.NumGC - from.NumGC)
}

func (u memUse) per(n int) string {
	return fmt.Sprintf("%d B in %d objects (%d collections in all)", u.bytes/uint64(n), u.objects/uint64(n), u.cycles)
}
