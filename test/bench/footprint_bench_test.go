package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// procStat is what /proc says of a process: resident memory and CPU time used.
type procStat struct {
	rssKiB int
	cpu    time.Duration
}

func readProc(b *testing.B, pid int) procStat {
	rss, err := statusKiB(pid, "VmRSS:")
	if err != nil {
		b.Fatalf("reading process %d: %v", pid, err)
	}
	times, err := readProcTimes(pid)
	if err != nil {
		b.Fatalf("reading process %d: %v", pid, err)
	}
	return procStat{rssKiB: rss, cpu: times.self}
}

// BenchmarkHelperFootprint starts BENCH_HELPERS (default 50) helper processes, one asset each,
// against one PostgreSQL and one btcd/btcwallet, lets them settle (start-up's connections
// closed, a poll interval) and then
// measures BENCH_IDLE (default 60s) of idling: resident memory and CPU per helper, the
// PostgreSQL connections they hold, and the backend calls they make, counted by a proxy in front
// of the wallet. Probes are polled meanwhile as a kubelet would, every 10 s each, so calls they
// caused would be counted. The baseline of the calls is the number of poll intervals in the
// window: the goal is at most one call per helper per interval.
func BenchmarkHelperFootprint(b *testing.B) {
	bin := os.Getenv("OPERATOR_BINARY")
	if bin == "" {
		b.Skip("needs OPERATOR_BINARY (the cryptoassets binary); run `make bench-helper`")
	}
	helpers := envInt(b, "BENCH_HELPERS", 50)
	idle := envDuration(b, "BENCH_IDLE", time.Minute)
	poll := 15 * time.Second
	// Room for every helper's pool at its ceiling, so a start-up burst is not refused: what
	// they hold once idle is what is measured.
	// BENCH_PG_PROFILE_DIR lists the statements the helpers ran while idle.
	pgProfile := pgProfileSettings(b)
	srv, err := pgtest.StartSized(helpers*(config.DefaultMaxConnections+1)+20, pgProfile...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	node, _ := startNode(b)
	ctx := context.Background()
	dbURL, err := srv.NewDatabase(ctx)
	if err != nil {
		b.Fatal(err)
	}
	counter, proxyURL := btctest.CountingProxy(b, node.WalletURL())
	// The helpers reach the database through a proxy that counts their round trips and the
	// sessions they open: pgx's pings are in neither pg_stat_statements nor the server's
	// transaction counts, and a session is a backend the server starts.
	exchanges, helperDBURL := pgtest.CountingProxy(b, dbURL)
	// The application's webhook, as a helper that notifies its application has (BENCH_EVENT_TARGETS):
	// an idle helper has nothing to post, so what the targets cost is the dispatcher's idling.
	targets := eventTargets(b)
	longPolls := envAtLeast(b, "BENCH_LONG_POLLS", 0, 0)
	var posts atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(receiver.Close)
	eventsURL := ""
	if len(targets) > 0 {
		eventsURL = receiver.URL
	}

	cfgs := make([]*config.Config, helpers)
	paths := make([]string, helpers)
	for i := range helpers {
		cfg := testassets.HelperConfig(b, node, helperDBURL, eventsURL)
		for j, name := range targets {
			if j > 0 {
				cfg.Events = append(cfg.Events, cfg.Events[0])
			}
			cfg.Events[j].Name = name
		}
		cfg.Asset.Name = fmt.Sprintf("asset-%02d", i)
		cfg.Backend.Bitcoind.URL = proxyURL
		cfg.Notify.PollInterval = config.Duration{Duration: poll}
		cfg.Broadcast.Period = config.Duration{}
		cfg.Database.MaxConnections = 0
		cfg.SetDefaults()
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		cfgs[i], paths[i] = cfg, testassets.WriteConfig(b, cfg)
	}
	if out, err := exec.Command(bin, "initializedb", "--config", paths[0]).CombinedOutput(); err != nil {
		b.Fatalf("initializedb: %v\n%s", err, out)
	}
	procs := make([]*exec.Cmd, helpers)
	logs := make([]*lockedWriter, helpers)
	for i := range helpers {
		logs[i] = &lockedWriter{}
		cmd := exec.Command(bin, "helper", "--config", paths[i])
		cmd.Stdout, cmd.Stderr = logs[i], logs[i]
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		procs[i] = cmd
	}
	b.Cleanup(func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	})
	for i, cfg := range cfgs {
		waitReady(b, "http://"+cfg.Server.MetricsListen+"/readyz", 3*time.Minute, func() string { return "; the helper's log:\n" + logs[i].String() })
	}
	// Start-up work (migrations checked, first catch-up) is not idling, and the connections it
	// opened are closed at the pool's first check (one every ledger.PoolIdleTime) after they have
	// been idle for ledger.PoolIdleTime.
	time.Sleep(ledger.PoolIdleTime*2 + poll)

	probeCtx, stopProbes := context.WithCancel(ctx)
	var probes sync.WaitGroup
	for _, cfg := range cfgs {
		probes.Add(1)
		go func() {
			defer probes.Done()
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				for _, p := range []string{"/readyz", "/healthz"} {
					if resp, err := http.Get("http://" + cfg.Server.MetricsListen + p); err == nil {
						resp.Body.Close()
					}
				}
				select {
				case <-probeCtx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	// Applications that pull events instead (BENCH_LONG_POLLS, 0 by default): each holds a long
	// poll on GET /v1/events, as the README shows, and asks again when it ends.
	var pulled atomic.Int64
	for _, cfg := range cfgs {
		for range longPolls {
			probes.Add(1)
			go func() {
				defer probes.Done()
				var after int64
				for probeCtx.Err() == nil {
					req, _ := http.NewRequestWithContext(probeCtx, "GET", fmt.Sprintf("http://%s/v1/events?after=%d&wait=60s", cfg.API.Listen, after), nil)
					req.Header.Set("Authorization", "Bearer "+testassets.APIToken)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						if probeCtx.Err() == nil {
							b.Errorf("long poll on %s: %v", cfg.API.Listen, err)
						}
						return
					}
					var page []struct{ Position int64 }
					err = json.NewDecoder(resp.Body).Decode(&page)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK {
						if probeCtx.Err() == nil {
							b.Errorf("long poll on %s: %d %v", cfg.API.Listen, resp.StatusCode, err)
						}
						return
					}
					if len(page) > 0 {
						pulled.Add(int64(len(page)))
						after = page[len(page)-1].Position
					}
				}
			}()
		}
	}
	before, postsBefore, pulledBefore := counter.Snapshot(), posts.Load(), pulled.Load()
	requestsBefore, sessionsBefore := exchanges.Requests(), exchanges.Sessions()
	// What the helpers log while idle: a step that failed is retried before the poll interval,
	// a call more than idling needs, and the log says why.
	logFrom := make([]int, helpers)
	for i, l := range logs {
		logFrom[i] = len(l.String())
	}
	cpuBefore := make([]time.Duration, helpers)
	for i, p := range procs {
		cpuBefore[i] = readProc(b, p.Process.Pid).cpu
	}
	// The database's side of idling: the server is the helpers' alone here, and a platform team
	// pays it once per asset on a shared database.
	pgMeter := cpuMeter{{name: "PostgreSQL", pid: srv.PID(), children: true}}
	if pgProfile != nil {
		resetPGStatements(b, srv)
	}
	pgBefore, err := pgMeter.read()
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(idle)
	pgAfter, err := pgMeter.read()
	if err != nil {
		b.Fatal(err)
	}
	if pgProfile != nil {
		writePGProfile(b, srv)
	}
	pgCPU := pgAfter.used[0] - pgBefore.used[0]
	after, posted := counter.Snapshot(), posts.Load()-postsBefore+pulled.Load()-pulledBefore
	requests, sessions := exchanges.Requests()-requestsBefore, exchanges.Sessions()-sessionsBefore
	// The connections held while idle, counted before the clients stop, as the helpers held them
	// in the window. Counted after, a run with long polls reported fewer than its helpers held
	// (1.14 a helper of 50, where pg_stat_activity showed 2 throughout the window): before a
	// request ran to its end when its client left (api.finish), a long poll that went away while
	// its request read the database had pgx close that connection.
	conns := 0
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&conns); err != nil {
		b.Fatal(err)
	}
	stopProbes()
	probes.Wait()

	var cpu time.Duration
	var rssKiB []int
	// Proportional set size: the binary's pages, shared by every helper (as an image's layers are
	// by its pods on a node), counted once over all of them. It is what one more helper costs.
	var pssAnonKiB, pssFileKiB int
	for i, p := range procs {
		st := readProc(b, p.Process.Pid)
		rssKiB = append(rssKiB, st.rssKiB)
		cpu += st.cpu - cpuBefore[i]
		anon, file := rssParts(b, p.Process.Pid)
		pssAnonKiB, pssFileKiB = pssAnonKiB+anon, pssFileKiB+file
	}
	calls, byMethod := 0, []string{}
	for m, n := range after {
		if d := n - before[m]; d > 0 {
			calls += d
			byMethod = append(byMethod, fmt.Sprintf("%s=%d", m, d))
		}
	}
	sort.Strings(byMethod)
	retries, example := 0, ""
	for i, l := range logs {
		for _, line := range strings.Split(l.String()[logFrom[i]:], "\n") {
			if strings.Contains(line, "retrying") {
				retries++
				if example == "" {
					example = line
				}
			}
		}
	}
	if retries > 0 {
		b.Logf("%d steps failed and were retried early while idle; the first: %s", retries, example)
	}
	if posted > 0 {
		b.Logf("%d events were posted or pulled while idle: something wrote events, and its cost is in the figures", posted)
	}
	sort.Ints(rssKiB)
	total := 0
	for _, k := range rssKiB {
		total += k
	}
	intervals := idle.Seconds() / poll.Seconds()
	perHelperCalls := float64(calls) / float64(helpers)
	b.ReportMetric(float64(total)/float64(helpers)/1024, "rss-MiB/helper")
	b.ReportMetric(float64(rssKiB[len(rssKiB)-1])/1024, "max-rss-MiB")
	b.ReportMetric(float64(pssAnonKiB+pssFileKiB)/float64(helpers)/1024, "pss-MiB/helper")
	b.ReportMetric(cpu.Seconds()*1000/float64(helpers)/idle.Minutes(), "cpu-ms/helper/min")
	b.ReportMetric(pgCPU.Seconds()*1000/float64(helpers)/idle.Minutes(), "pg-cpu-ms/helper/min")
	b.ReportMetric(float64(conns)/float64(helpers), "pg-conns/helper")
	b.ReportMetric(float64(requests)/float64(helpers)/idle.Minutes(), "pg-requests/helper/min")
	b.ReportMetric(float64(sessions)/float64(helpers)/idle.Minutes(), "pg-sessions/helper/min")
	b.ReportMetric(perHelperCalls/idle.Minutes(), "calls/helper/min")
	b.ReportMetric(perHelperCalls/intervals, "calls/helper/poll")
	b.Logf("%d helpers idle for %s (poll every %s, probes every 10s, %d event targets and %d long polls each): RSS %.1f MiB per helper (max %.1f), PSS %.1f MiB (%.1f anonymous + %.1f of the shared binary); CPU %.1f ms per helper per minute, and PostgreSQL's %.1f ms for it; %d PostgreSQL connections (%.2f per helper), %.1f requests and %.2f new sessions per helper per minute; %d backend calls (%.2f per helper per poll interval): %s",
		helpers, idle, poll, len(targets), longPolls, float64(total)/float64(helpers)/1024, float64(rssKiB[len(rssKiB)-1])/1024,
		float64(pssAnonKiB+pssFileKiB)/float64(helpers)/1024, float64(pssAnonKiB)/float64(helpers)/1024, float64(pssFileKiB)/float64(helpers)/1024,
		cpu.Seconds()*1000/float64(helpers)/idle.Minutes(), pgCPU.Seconds()*1000/float64(helpers)/idle.Minutes(), conns, float64(conns)/float64(helpers),
		float64(requests)/float64(helpers)/idle.Minutes(), float64(sessions)/float64(helpers)/idle.Minutes(), calls, perHelperCalls/intervals,
		strings.Join(byMethod, " "))
}

// lockedWriter lets a helper's log be read while the process writes it.
type lockedWriter struct {
	mu sync.Mutex
	w  bytes.Buffer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
