// Package bench measures the operator against a real API server. Figures are ratios to a baseline
// measured in the same run, because these machines are too noisy for absolute times to mean much.
package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/memlimit"
	"github.com/cryptoassets/cryptoassets-operator/internal/operator"
	"github.com/cryptoassets/cryptoassets-operator/internal/render"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/loopback"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

const workers = 4 // the operator runs with --max-concurrent-reconciles=4; the baseline writes with as many clients

func secretFor(ns, name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-creds", Namespace: ns},
		StringData: map[string]string{"user": "u", "password": "p-" + name, "db": "postgres://db/" + name, "token": "t-" + name},
	}
}

func assetFor(ns, name string) *v1alpha1.CryptoAsset {
	ref := func(key string) v1alpha1.SecretKeyRef { return v1alpha1.SecretKeyRef{Name: name + "-creds", Key: key} }
	return &v1alpha1.CryptoAsset{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.CryptoAssetSpec{
			Coin: "bitcoin", Network: "regtest", Confirmations: ptr.To(int32(3)), MaxTrackedConfirmations: 15,
			Backend: v1alpha1.BackendSpec{Type: v1alpha1.BackendBitcoind, Bitcoind: &v1alpha1.BitcoindBackend{
				URL: "http://node:18443", Flavor: v1alpha1.FlavorBitcoinCore, UsernameSecretRef: ref("user"), PasswordSecretRef: ref("password"),
			}},
			Notify:   v1alpha1.NotifySpec{Method: v1alpha1.NotifyHTTP},
			Database: v1alpha1.DatabaseSpec{URLSecretRef: ref("db")},
			API:      v1alpha1.APISpec{TokenSecretRef: ref("token")},
		},
	}
}

// parallel runs f(i) for i in [0,n) on `workers` goroutines and returns the first error.
func parallel(n int, f func(i int) error) error { return parallelOn(workers, n, f) }

// parallelOn is parallel on w goroutines.
func parallelOn(w, n int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	next := make(chan int)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// BenchmarkOperatorConvergence creates N CryptoAssets (BENCH_N, default 200) for a running operator
// process and measures the time until every one has all its children and a current
// observedGeneration; next to it, the time a plain client needs to write the same objects
// directly, with the same client rate limit as the operator's. The watched namespaces also hold
// BENCH_UNRELATED (default 10000) Secrets and ConfigMaps that are none of the operator's business,
// half each. It also reports the operator's peak RSS and the writes it makes in 30 s of idling.
// BENCH_OPERATOR_MEMORY_LIMIT (say 64MiB) runs the operator as a pod with that memory limit runs
// it: in a memory cgroup with that limit, and told the limit as the chart tells it; it then also
// reports the working set as the kubelet counts it, and OOM kills.
//
// The operator converges BENCH_OPERATOR_ROUNDS (default 3) times, N new assets in a namespace of
// their own each time, and the direct writes run before the first and after each: every round is
// compared with the mean of the direct writes either side of it, and the round with the median
// ratio is reported. One round against one pair of baselines gave 0.87x to 1.39x in four runs of
// the same code on the same machine: the API server's CPU for the same writes varied by a
// quarter from phase to phase. The memory figures, the profiles and the API requests are of the
// first round, at N assets.
func BenchmarkOperatorConvergence(b *testing.B) {
	bin := os.Getenv("OPERATOR_BINARY")
	if os.Getenv("KUBEBUILDER_ASSETS") == "" || bin == "" {
		b.Skip("needs KUBEBUILDER_ASSETS and OPERATOR_BINARY; run `make bench-operator`")
	}
	n := envInt(b, "BENCH_N", 200)
	idle := envDuration(b, "BENCH_IDLE", 30*time.Second)

	// envtest logs through controller-runtime's logger; without one it prints a stack trace
	// into the benchmark output saying so.
	logf.SetLogger(logr.Discard())
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	// Every asset has a Service, in each round and each baseline: envtest's /24 is too small.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/12")
	cfg, err := testassets.StartEnv(env)
	if err != nil {
		b.Fatalf("starting the API server: %v", err)
	}
	defer func() { _ = env.Stop() }()
	scheme, err := operator.Scheme()
	if err != nil {
		b.Fatal(err)
	}
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 500, 1000 // the clients, not the API server's flow control, would otherwise set the pace
	c, err := client.New(fast, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rounds := envInt(b, "BENCH_OPERATOR_ROUNDS", 3)
	if rounds < 1 {
		b.Fatalf("BENCH_OPERATOR_ROUNDS=%d: at least one round", rounds)
	}
	operated := func(r int) string { return fmt.Sprintf("operated-%d", r) }
	baselineNS := func(r int) string { return fmt.Sprintf("baseline-%d", r) }
	watched := make([]string, rounds)
	for r := range rounds + 1 {
		names := []string{baselineNS(r)}
		if r < rounds {
			watched[r] = operated(r)
			names = append(names, operated(r))
		}
		for _, ns := range names {
			if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	unrelated := envAtLeast(b, "BENCH_UNRELATED", 10000, 0)
	// Unrelated objects the size of typical application config, with labels and annotations.
	filler := strings.Repeat("x", 1024)
	if err := parallelOn(16, unrelated, func(i int) error {
		meta := metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%05d", i), Namespace: operated(0),
			Labels: map[string]string{"app": "shop", "tier": "web"}, Annotations: map[string]string{"note": filler}}
		if i%2 == 0 {
			return c.Create(ctx, &corev1.Secret{ObjectMeta: meta, StringData: map[string]string{"key": filler}})
		}
		return c.Create(ctx, &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"key": filler}})
	}); err != nil {
		b.Fatalf("creating unrelated objects: %v", err)
	}

	// Baseline: the same Secrets, CryptoAssets and rendered children, written directly, plus the
	// status patch the operator makes. UIDs come from the created CryptoAsset, as in the operator.
	// It runs before each round of the operator and after the last, and each round's ratio is to
	// the mean of the two either side of it: the same writes slow down as the cluster fills (at
	// N=1000, 17.9 s before and 23.2 s after, in one run), so a baseline taken only first, on the
	// emptier cluster, was the cheaper half.
	direct := func(ns string, count int) (time.Duration, error) {
		start := time.Now()
		err := parallel(count, func(i int) error {
			name := fmt.Sprintf("asset-%04d", i)
			s := secretFor(ns, name)
			ca := assetFor(ns, name)
			if err := c.Create(ctx, s); err != nil {
				return err
			}
			if err := c.Create(ctx, ca); err != nil {
				return err
			}
			data, err := render.ConfigData(ca)
			if err != nil {
				return err
			}
			objs := []client.Object{render.ServiceAccount(ca), render.Role(ca), render.RoleBinding(ca), render.ConfigMap(ca, data), render.Service(ca),
				render.Deployment(ca, render.Options{Image: "bench:1"}, "hash")}
			for _, o := range objs {
				if err := c.Create(ctx, o); err != nil {
					return fmt.Errorf("baseline %s: %w", name, err)
				}
			}
			base := ca.DeepCopy()
			ca.Status.ObservedGeneration = ca.Generation
			return c.Status().Patch(ctx, ca, client.MergeFrom(base))
		})
		return time.Since(start), err
	}
	// Where the CPU goes in each phase: on two shared CPUs, the API server and etcd do most of
	// the work, and a phase is as slow as the machine is busy.
	apiserver, etcd := controlPlanePIDs(b)
	meter := cpuMeter{{name: "kube-apiserver", pid: apiserver}, {name: "etcd", pid: etcd}, {name: "this process (the clients)", pid: os.Getpid()}}
	directs, directCPUs := make([]time.Duration, rounds+1), make([]cpuUse, rounds+1)
	directRound := func(r int) {
		directCPUs[r] = cpuUse{meter: meter}
		if err := directCPUs[r].measure(func() (err error) { directs[r], err = direct(baselineNS(r), n); return err }); err != nil {
			b.Fatalf("direct writes, %s: %v", baselineNS(r), err)
		}
	}
	// The clients' first write of each kind looks its resource up, and each worker opens its
	// connection: one asset per worker, written first, keeps that out of the first baseline (at
	// N=20 it was 2.6 s of a phase the next one did in 0.57 s).
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "warm-up"}}); err != nil {
		b.Fatal(err)
	}
	if _, err := direct("warm-up", workers); err != nil {
		b.Fatalf("direct writes, warm-up: %v", err)
	}
	directRound(0)

	startupRSS := startupPeakRSS(b, bin)

	// The operator as a separate process, so its RSS is its own.
	kubeconfig := filepath.Join(b.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		b.Fatal(err)
	}
	probePort, err := loopback.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	probeAddr := "127.0.0.1:" + strconv.Itoa(probePort)
	pprofPort, err := loopback.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	pprofAddr := "127.0.0.1:" + strconv.Itoa(pprofPort)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	exe := bin
	args := []string{"operator", "--kubeconfig", kubeconfig, "--helper-image", "bench:1",
		"--kube-api-qps", strconv.Itoa(int(fast.QPS)), "--kube-api-burst", strconv.Itoa(fast.Burst),
		"--max-concurrent-reconciles", strconv.Itoa(workers), "--watch-namespace", strings.Join(watched, ","),
		"--metrics-bind-address", "0", "--health-probe-bind-address", probeAddr, "--pprof-bind-address", pprofAddr, "--zap-log-level", "error"}
	var operatorEnv []string
	var limited *memoryCgroup
	limit := os.Getenv("BENCH_OPERATOR_MEMORY_LIMIT")
	if limit != "" {
		// As a pod with this memory limit runs it under the chart: in a memory cgroup with that
		// limit, which is charged the binary's pages as the operator reads them, and told the
		// limit, from which it sets its Go memory limit. Only the operator's process gets either.
		bytes, err := parseByteSize(limit)
		if err != nil {
			b.Fatalf("BENCH_OPERATOR_MEMORY_LIMIT: %v", err)
		}
		if limited, err = newMemoryCgroup(fmt.Sprintf("bench-operator-%d", os.Getpid()), bytes); err != nil {
			b.Fatalf("BENCH_OPERATOR_MEMORY_LIMIT=%s: %v", limit, err)
		}
		// Deferred first, so it runs after the operator has been waited for.
		defer func() {
			if err := limited.remove(); err != nil {
				b.Error(err)
			}
		}()
		if exe, err = uncachedCopy(bin, b.TempDir()); err != nil {
			b.Fatal(err)
		}
		operatorEnv = append(os.Environ(), memlimit.EnvVar+"="+strconv.FormatInt(bytes, 10))
		b.Logf("operator runs in a memory cgroup limited to %s (%s), with %s set to it", limit, limited.dir, memlimit.EnvVar)
	}
	argv := append([]string{exe}, args...)
	if limited != nil {
		argv = limited.wrap(argv...)
	}
	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Env = os.Stderr, os.Stderr, operatorEnv
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting the operator: %v", err)
	}
	// Waited for at once, so that an operator that dies (say, killed for memory under a limit)
	// stops the wait for its assets instead of letting it run to its timeout.
	exited := make(chan struct{})
	var exitErr error
	alive, died := context.WithCancel(ctx)
	defer died()
	go func() {
		exitErr = cmd.Wait()
		close(exited)
		died()
	}()
	defer func() { cancel(); <-exited }()
	whyNot := func() string {
		select {
		case <-exited:
			return fmt.Sprintf(" (the operator exited: %v)", exitErr)
		default:
			return ""
		}
	}
	waitReady(b, "http://"+probeAddr+"/readyz", time.Minute, func() string { return " (the operator)" + whyNot() })
	// What the process costs before any asset: the runtime, the binary's touched pages, and the
	// caches of the unrelated objects.
	readyRSS := procStatusKiB(b, cmd.Process.Pid, "VmRSS:")
	readyAnon, readyFile := rssParts(b, cmd.Process.Pid)

	wc, err := client.NewWithWatch(fast, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	// The kernel keeps no high-water mark of anonymous memory alone, so it is sampled: the peak
	// of what the operator itself allocated, apart from the binary's pages that VmHWM also counts.
	anonPeak := sampleAnonPeak(runCtx, cmd.Process.Pid, 20*time.Millisecond)
	var workingSetPeak func() int64
	if limited != nil {
		workingSetPeak = samplePeak(runCtx, 20*time.Millisecond, limited.workingSet)
	}

	// converge has the operator converge N new assets in round r's namespace and returns how long
	// that took, and the CPU every process used meanwhile, the operator's last.
	withOperator := append(slices.Clone(meter), cpuProcess{name: "the operator", pid: cmd.Process.Pid})
	converge := func(r int) (time.Duration, cpuUse) {
		use := cpuUse{meter: withOperator}
		ns := operated(r)
		initial := &v1alpha1.CryptoAssetList{}
		if err := c.List(ctx, initial, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		var took time.Duration
		err := use.measure(func() error {
			start := time.Now()
			if err := parallel(n, func(i int) error {
				name := fmt.Sprintf("asset-%04d", i)
				if err := c.Create(ctx, secretFor(ns, name)); err != nil {
					return err
				}
				return c.Create(ctx, assetFor(ns, name))
			}); err != nil {
				return fmt.Errorf("creating CryptoAssets: %w", err)
			}
			// Watched, not polled: listing a thousand assets ten times a second would take the API
			// server's time from the operator being measured.
			if err := waitCurrent(alive, wc, ns, n, initial.ResourceVersion, 15*time.Minute); err != nil {
				return fmt.Errorf("%w%s", err, whyNot())
			}
			if done, err := converged(ctx, c, ns, n); err != nil || !done {
				return fmt.Errorf("every asset reported current, but children are missing (%v)", err)
			}
			took = time.Since(start)
			return nil
		})
		if err != nil {
			b.Fatalf("round %d, in %s: %v", r, ns, err)
		}
		if len(use.used) == 0 {
			b.Fatalf("round %d: reading CPU times failed", r)
		}
		return took, use
	}
	converges, convergeCPUs := make([]time.Duration, rounds), make([]cpuUse, rounds)

	// The first round, profiled: the operator's CPU for its first 30 s, its heap at the end, the
	// API requests, its memory, and its writes while idle afterwards.
	requestsBefore := apiRequests(b, cfg)
	profileDone := make(chan struct{})
	go func() {
		defer close(profileDone)
		if err := saveProfile("http://"+pprofAddr+"/debug/pprof/profile?seconds=30", "operator.cpu"); err != nil {
			b.Error(err)
		}
	}()
	converges[0], convergeCPUs[0] = converge(0)
	<-profileDone
	// The benchmark's own creates and its watch are in these counts too.
	b.Logf("API requests while converging: %s", requestDelta(requestsBefore, apiRequests(b, cfg)))
	if err := saveProfile("http://"+pprofAddr+"/debug/pprof/heap", "operator.heap"); err != nil {
		b.Fatal(err)
	}
	writesBefore := apiWrites(b, cfg)
	time.Sleep(idle)
	idleWrites := apiWrites(b, cfg) - writesBefore
	rss := peakRSS(b, cmd.Process.Pid)
	peakAnon := anonPeak()
	endAnon, endFile := rssParts(b, cmd.Process.Pid)
	var workingSet int64
	if limited != nil {
		workingSet = workingSetPeak()
		anon, cache, mapped, err := limited.parts()
		if err != nil {
			b.Fatalf("reading the operator's memory cgroup: %v", err)
		}
		b.Logf("operator under its %s limit, after converging and idling: working set (usage less inactive file pages, as the kubelet counts it) at most %d KiB; now anonymous %d KiB, page cache %d KiB of which %d KiB mapped",
			limit, workingSet>>10, anon>>10, cache>>10, mapped>>10)
	}
	// Resident memory is the binary's pages read from its file (the one binary carries the
	// operator, the helper and every backend client) and the process's own (heap, stacks).
	b.Logf("operator resident memory, anonymous + file-backed: %d + %d KiB when ready, %d + %d KiB after converging and idling; anonymous at most %d KiB (sampled)",
		readyAnon, readyFile, endAnon, endFile, peakAnon)
	if pages, blocks, err := binaryResidency(cmd.Process.Pid, exe); err == nil {
		// The kernel maps a file's pages around each one touched (fault-around, 64 KiB), so the
		// binary's resident pages come in whole blocks: what RSS counts of it is not what the
		// operator reads of it.
		// By section: .text is the code run, .gopclntab the function tables the runtime reads
		// walking stacks, .rodata the type descriptors and constant data.
		var sections []string
		for name, n := range pages.bySection {
			sections = append(sections, fmt.Sprintf("%s %d KiB", name, n*4))
		}
		sort.Strings(sections)
		b.Logf("the binary's resident pages: %d KiB, in %d aligned 64 KiB blocks of which %d fully resident; by section: %s",
			pages.resident*4, blocks.touched, blocks.full, strings.Join(sections, ", "))
	} else {
		b.Logf("reading the binary's resident pages: %v", err)
	}
	directRound(1)

	// The other rounds. The operator keeps running, idle, through the direct writes between
	// them: it watches none of their namespaces, so they cost it nothing but the API server's
	// check of each event against its watches.
	requests := make([]string, rounds)
	for r := 1; r < rounds; r++ {
		before := apiRequests(b, cfg)
		converges[r], convergeCPUs[r] = converge(r)
		requests[r] = ". API requests: " + requestDelta(before, apiRequests(b, cfg))
		directRound(r + 1)
	}
	cancel()
	<-exited
	if limited != nil {
		// Every round ran under the limit: an operator killed for memory would have failed its
		// round, so this is 0 unless the kernel killed it while it was being stopped.
		kills, err := limited.oomKills()
		if err != nil {
			b.Fatalf("reading the operator's memory cgroup: %v", err)
		}
		b.ReportMetric(float64(workingSet)/(1<<20), "limited-working-set-MiB")
		b.ReportMetric(float64(kills), "oom-kills")
	}

	// Each round against the mean of the direct writes either side of it.
	type round struct {
		converge, direct       time.Duration
		convergeCPU, directCPU time.Duration
	}
	all := make([]round, rounds)
	for r := range rounds {
		all[r] = round{converge: converges[r], direct: (directs[r] + directs[r+1]) / 2,
			convergeCPU: convergeCPUs[r].total(), directCPU: (directCPUs[r].total() + directCPUs[r+1].total()) / 2}
		// One line a round: a benchmark's log is cut after ten lines.
		b.Logf("round %d: operator converged in %s, direct writes %s before it and %s after: ratio %.2f to the mean; CPU of all processes %s against %s: %.2f. CPU, the operator's round, %s. CPU, the direct writes before it, %s%s",
			r, converges[r].Round(time.Millisecond), directs[r].Round(time.Millisecond), directs[r+1].Round(time.Millisecond),
			all[r].converge.Seconds()/all[r].direct.Seconds(), all[r].convergeCPU.Round(10*time.Millisecond), all[r].directCPU.Round(10*time.Millisecond),
			all[r].convergeCPU.Seconds()/all[r].directCPU.Seconds(),
			convergeCPUs[r].per(float64(n)/1000, "1,000 assets"), directCPUs[r].per(float64(n)/1000, "1,000 assets"), requests[r])
	}
	// The median round, by each ratio, so that the figures reported are one round's and their
	// quotient is that median.
	medianRound := func(ratio func(round) float64) round {
		sorted := slices.Clone(all)
		slices.SortFunc(sorted, func(x, y round) int { return cmp.Compare(ratio(x), ratio(y)) })
		return sorted[len(sorted)/2]
	}
	wall := medianRound(func(x round) float64 { return x.converge.Seconds() / x.direct.Seconds() })
	cpu := medianRound(func(x round) float64 { return x.convergeCPU.Seconds() / x.directCPU.Seconds() })
	operatorCPU := convergeCPUs[0].used[len(withOperator)-1]

	b.ReportMetric(wall.converge.Seconds(), "operator-s")
	b.ReportMetric(wall.direct.Seconds(), "direct-s")
	b.ReportMetric(wall.converge.Seconds()/wall.direct.Seconds(), "ratio")
	// The CPU every process needed in each phase: on a machine whose CPUs every phase keeps
	// busy, the figure the wall-clock ratio tends to, without the machine's other load.
	b.ReportMetric(cpu.convergeCPU.Seconds(), "converge-cpu-s")
	b.ReportMetric(cpu.directCPU.Seconds(), "direct-cpu-s")
	b.ReportMetric(float64(rss)/1024, "peak-rss-MiB")
	b.ReportMetric(float64(readyRSS)/1024, "ready-rss-MiB")
	b.ReportMetric(float64(startupRSS)/1024, "startup-rss-MiB")
	b.ReportMetric(float64(peakAnon)/1024, "peak-anon-MiB")
	b.ReportMetric(operatorCPU.Seconds(), "operator-cpu-s")
	b.ReportMetric(float64(idleWrites), "idle-writes")
	b.Logf("N=%d, %d unrelated Secrets and ConfigMaps, median of %d rounds: operator converged in %s, direct writes took %s, ratio %.2f (CPU %.2f); the first round's operator used %s of CPU; operator peak RSS %d KiB (%d KiB when ready, before any asset); %d writes in %s idle. CPU, the direct writes after the last round, %s",
		n, unrelated, rounds, wall.converge.Round(time.Millisecond), wall.direct.Round(time.Millisecond), wall.converge.Seconds()/wall.direct.Seconds(),
		cpu.convergeCPU.Seconds()/cpu.directCPU.Seconds(), operatorCPU, rss, readyRSS, idleWrites, idle, directCPUs[rounds].per(float64(n)/1000, "1,000 assets"))
	if idleWrites != 0 {
		b.Fatalf("the operator wrote %d times while nothing changed", idleWrites)
	}
}

// startupPeakRSS is the operator's peak RSS in KiB from its start to its first request to the
// API server: every package's init (the operator's, the helper's and every backend client's, all
// in the one binary), the flags and the manager's set-up, before any object is cached. It is the
// floor under the converged figure: the runtime, a few MiB of allocations, and the binary's pages
// that start-up touches, which the kernel maps in 64 KiB blocks around each page touched
// (fault-around). The API server here is a listener that accepts and never answers, so the
// operator is caught waiting for it. (A child's rusage cannot tell this: Go starts it sharing the
// parent's memory until exec, and the kernel counts the parent's peak as the child's.)
func startupPeakRSS(b *testing.B, bin string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	kubeconfig := filepath.Join(b.TempDir(), "silent-kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: silent, cluster: {server: "https://%s", insecure-skip-tls-verify: true}}]
users: [{name: silent, user: {token: none}}]
contexts: [{name: silent, context: {cluster: silent, user: silent}}]
current-context: silent
`, ln.Addr())), 0o600); err != nil {
		b.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	cmd := exec.Command(bin, "operator", "--kubeconfig", kubeconfig, "--helper-image", "bench:1",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--zap-log-level", "error")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting the operator: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() { _ = cmd.Process.Kill(); <-exited }()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-exited:
		b.Fatalf("the operator exited before calling the API server (%v): %s", waitErr, out.String())
	case <-time.After(2 * time.Minute):
		b.Fatal("the operator never called the API server")
	}
	hwm := procStatusKiB(b, cmd.Process.Pid, "VmHWM:")
	anon, file := rssParts(b, cmd.Process.Pid)
	b.Logf("operator start-up, up to its first request to the API server: peak RSS %d KiB; now %d KiB anonymous + %d KiB of the binary and other files",
		hwm, anon, file)
	return hwm
}

// saveProfile writes a profile the operator serves to BENCH_PROFILE_DIR, when set.
func saveProfile(url, name string) error {
	dir := os.Getenv("BENCH_PROFILE_DIR")
	if dir == "" {
		return nil
	}
	resp, err := http.Get(url)
	if err != nil {
		return fmt.Errorf("reading %s: %w", url, err)
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// waitReady waits until url answers 200, and fails naming it and what explain says.
func waitReady(b *testing.B, url string, within time.Duration, explain func() string) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("not ready at %s within %s%s", url, within, explain())
}

// waitCurrent watches the CryptoAssets of namespace ns from resourceVersion rv until n of them
// have a current observedGeneration and a config hash.
func waitCurrent(ctx context.Context, wc client.WithWatch, ns string, n int, rv string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	current := map[string]bool{}
	for {
		w, err := wc.Watch(ctx, &v1alpha1.CryptoAssetList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			return fmt.Errorf("watching CryptoAssets: %w (%d of %d current)", err, len(current), n)
		}
		for ev := range w.ResultChan() {
			ca, ok := ev.Object.(*v1alpha1.CryptoAsset)
			if !ok {
				continue // a bookmark or an error status: the watch is reopened from rv
			}
			rv = ca.ResourceVersion
			if ca.Status.ObservedGeneration == ca.Generation && ca.Status.ConfigHash != "" {
				current[ca.Name] = true
			}
			if len(current) >= n {
				w.Stop()
				return nil
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return fmt.Errorf("the operator did not converge within %s: %d of %d current", within, len(current), n)
		}
	}
}

// converged reports whether all n CryptoAssets of namespace ns have a current observedGeneration
// and all children.
func converged(ctx context.Context, c client.Client, ns string, n int) (bool, error) {
	cas := &v1alpha1.CryptoAssetList{}
	if err := c.List(ctx, cas, client.InNamespace(ns)); err != nil {
		return false, err
	}
	current := 0
	for _, ca := range cas.Items {
		if ca.Status.ObservedGeneration == ca.Generation && ca.Status.ConfigHash != "" {
			current++
		}
	}
	if current < n {
		return false, nil
	}
	lists := []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{}}
	for _, l := range lists {
		if err := c.List(ctx, l, client.InNamespace(ns), client.HasLabels{"cryptoassets.io/coin"}); err != nil {
			return false, err
		}
		if meta.LenList(l) < n {
			return false, nil
		}
	}
	return true, nil
}

// apiRequests reads the API server's count of requests by verb and resource.
func apiRequests(b *testing.B, cfg *rest.Config) map[string]int {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := hc.Get(strings.TrimSuffix(cfg.Host, "/") + "/metrics")
	if err != nil {
		b.Fatalf("reading API server metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]int{}
	label := func(line, name string) string {
		i := strings.Index(line, name+`="`)
		if i < 0 {
			return ""
		}
		rest := line[i+len(name)+2:]
		return rest[:strings.IndexByte(rest, '"')]
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			b.Fatalf("parsing %q: %v", line, err)
		}
		resource := label(line, "resource")
		if sub := label(line, "subresource"); sub != "" {
			resource += "/" + sub
		}
		out[label(line, "verb")+" "+resource] += int(v)
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("reading API server metrics: %v", err)
	}
	if len(out) == 0 {
		// Without them the idle-writes figure would be a 0 that measured nothing.
		b.Fatalf("no apiserver_request_total in the API server's /metrics (HTTP %d)", resp.StatusCode)
	}
	return out
}

// apiWrites sums the API server's count of mutating requests on the resources the operator
// manages (not leases or events, which the API server and event recorders write on their own).
func apiWrites(b *testing.B, cfg *rest.Config) int {
	total := 0
	for key, n := range apiRequests(b, cfg) {
		verb, resource, _ := strings.Cut(key, " ")
		resource, _, _ = strings.Cut(resource, "/")
		switch verb {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE":
		default:
			continue
		}
		switch resource {
		case "cryptoassets", "deployments", "configmaps", "services", "serviceaccounts", "roles", "rolebindings", "secrets":
			total += n
		}
	}
	return total
}

// requestDelta lists the requests made between two readings, most first.
func requestDelta(before, after map[string]int) string {
	type kv struct {
		k string
		n int
	}
	var d []kv
	for k, n := range after {
		if n -= before[k]; n > 0 {
			d = append(d, kv{k, n})
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i].n > d[j].n })
	parts := make([]string, 0, len(d))
	for _, e := range d {
		parts = append(parts, fmt.Sprintf("%s=%d", e.k, e.n))
	}
	return strings.Join(parts, " ")
}

// rssParts reads the process's proportional set size in KiB, anonymous and backed by files: its
// resident memory, with each page it shares with other processes (a binary they all run) divided
// among them.
func rssParts(b *testing.B, pid int) (anon, file int) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatalf("reading the operator's memory: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Pss_Anon:":
			anon, _ = strconv.Atoi(f[1])
		case "Pss_File:":
			file, _ = strconv.Atoi(f[1])
		}
	}
	return anon, file
}

// sampleAnonPeak reads the process's anonymous resident memory every interval until ctx ends or
// the returned function is called, which gives the largest value read, in KiB.
func sampleAnonPeak(ctx context.Context, pid int, interval time.Duration) func() int {
	peak := samplePeak(ctx, interval, func() (int64, error) {
		v, err := statusKiB(pid, "RssAnon:")
		return int64(v), err
	})
	return func() int { return int(peak()) }
}

// samplePeak calls read every interval until ctx ends or the returned function is called, which
// gives the largest value read. The kernel keeps no high-water mark of these figures.
func samplePeak(ctx context.Context, interval time.Duration, value func() (int64, error)) func() int64 {
	var peak atomic.Int64
	read := func() {
		// An error means the process (or its cgroup) has ended; the peak so far stands.
		if v, err := value(); err == nil && v > peak.Load() {
			peak.Store(v)
		}
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			read()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		stop()
		<-done
		read()
		return peak.Load()
	}
}

type residentPages struct {
	resident int
	// bySection: resident pages by the ELF section they hold.
	bySection map[string]int
}
type residentBlocks struct{ touched, full int }

// binaryResidency counts, over the process's mappings of the file at path, the 4 KiB pages that
// are resident (from /proc/PID/pagemap, whose present bit needs no privilege) and the aligned
// 16-page blocks holding any and all of them.
func binaryResidency(pid int, path string) (residentPages, residentBlocks, error) {
	var pages residentPages
	var blocks residentBlocks
	abs, err := filepath.Abs(path)
	if err != nil {
		return pages, blocks, err
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return pages, blocks, err
	}
	pagemap, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return pages, blocks, err
	}
	defer pagemap.Close()
	exe, err := elf.Open(abs)
	if err != nil {
		return pages, blocks, err
	}
	defer exe.Close()
	pages.bySection = map[string]int{}
	section := func(off uint64) string {
		for _, s := range exe.Sections {
			if s.Type != elf.SHT_NOBITS && off >= s.Offset && off < s.Offset+s.FileSize {
				return s.Name
			}
		}
		return "(none)"
	}
	const page, block = 4096, 16
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != abs {
			continue
		}
		var start, end, offset uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &start, &end); err != nil {
			return pages, blocks, fmt.Errorf("mapping %q: %w", f[0], err)
		}
		if _, err := fmt.Sscanf(f[2], "%x", &offset); err != nil {
			return pages, blocks, fmt.Errorf("mapping offset %q: %w", f[2], err)
		}
		entries := make([]byte, (end-start)/page*8)
		if _, err := pagemap.ReadAt(entries, int64(start/page*8)); err != nil {
			return pages, blocks, err
		}
		n := len(entries) / 8
		for i := 0; i < n; i += block {
			in := 0
			for j := i; j < min(i+block, n); j++ {
				if binary.LittleEndian.Uint64(entries[j*8:])>>63 == 1 {
					in++
					pages.bySection[section(offset+uint64(j)*page)]++
				}
			}
			pages.resident += in
			if in > 0 {
				blocks.touched++
			}
			if in == block {
				blocks.full++
			}
		}
	}
	return pages, blocks, nil
}

// peakRSS reads the process's peak resident set size in KiB.
func peakRSS(b *testing.B, pid int) int { return procStatusKiB(b, pid, "VmHWM:") }

// procStatusKiB reads a size in KiB from /proc/PID/status.
func procStatusKiB(b *testing.B, pid int, field string) int {
	v, err := statusKiB(pid, field)
	if err != nil {
		b.Fatalf("reading the operator's memory: %v", err)
	}
	return v
}

// statusKiB reads a size in KiB (field "VmRSS:", "RssAnon:", ...) from /proc/PID/status.
func statusKiB(pid int, field string) (int, error) {
	v, err := keyedValue(fmt.Sprintf("/proc/%d/status", pid), field)
	return int(v), err
}

// controlPlanePIDs finds the API server and etcd that envtest started: children of this process.
func controlPlanePIDs(b *testing.B) (apiserver, etcd int) {
	all, err := allProcTimes()
	if err != nil {
		b.Fatalf("listing processes: %v", err)
	}
	for _, p := range all {
		if p.ppid != os.Getpid() {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid))
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(comm)) {
		case "kube-apiserver":
			apiserver = p.pid
		case "etcd":
			etcd = p.pid
		}
	}
	if apiserver == 0 || etcd == 0 {
		b.Fatalf("the API server (pid %d) or etcd (pid %d) is not a child of this process", apiserver, etcd)
	}
	return apiserver, etcd
}
