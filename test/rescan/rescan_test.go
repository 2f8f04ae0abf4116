// Package rescan tests rescans as users trigger them: `kubectl annotate` on a CryptoAsset in a real
// API server, the real helper binary running with the identity and Role the operator renders for
// it, btcd+btcwallet on simnet as the backend, and `cryptoassets rescan` from a shell.
package rescan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/render"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

var (
	pg    *pgtest.Server
	node  *btctest.Node
	kube  *envtest.Environment
	admin client.WithWatch
)

func TestMain(m *testing.M) {
	if code, ok := testassets.Check("KUBEBUILDER_ASSETS"); !ok {
		os.Exit(code)
	}
	os.Exit(testassets.Main(m, testassets.Postgres(&pg), testassets.Bitcoin(&node), startKube))
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

func startKube() (func(), error) {
	kube = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testassets.StartEnv(kube)
	if err != nil {
		return nil, fmt.Errorf("starting the test API server: %w", err)
	}
	admin, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme()})
	if err != nil {
		_ = kube.Stop()
		return nil, err
	}
	return func() { _ = kube.Stop() }, nil
}

// proxy stands between the helper and btcwallet, so a test can cut the wire (refuse) or make the
// backend hang (accept and never answer) without touching the node.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	mode   string // pass, refuse, hang
	held   []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, mode: "pass"}
	t.Cleanup(func() { ln.Close(); p.set("refuse") })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *proxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = mode
	if mode != "hang" {
		for _, c := range p.held {
			c.Close()
		}
		p.held = nil
	}
}

func (p *proxy) serve(c net.Conn) {
	p.mu.Lock()
	mode := p.mode
	if mode == "hang" {
		p.held = append(p.held, c)
	}
	p.mu.Unlock()
	switch mode {
	case "refuse":
		c.Close()
		return
	case "hang":
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cryptoassets")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = testassets.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building cryptoassets: %v\n%s", err, out)
	}
	return bin
}

// asset creates the CryptoAsset and the ServiceAccount, Role and RoleBinding the operator renders
// for its helper, and returns a kubeconfig that authenticates as that ServiceAccount.
func asset(t *testing.T, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	ref := func(key string) v1alpha1.SecretKeyRef {
		return v1alpha1.SecretKeyRef{Name: "btc-credentials", Key: key}
	}
	ca := &v1alpha1.CryptoAsset{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.CryptoAssetSpec{
			Coin: "bitcoin", Network: "simnet", Confirmations: ptr.To(int32(3)),
			Backend: v1alpha1.BackendSpec{Type: v1alpha1.BackendBitcoind, Bitcoind: &v1alpha1.BitcoindBackend{
				URL: "http://127.0.0.1:18554", Flavor: v1alpha1.FlavorBtcwallet,
				UsernameSecretRef: ref("rpc-username"), PasswordSecretRef: ref("rpc-password"),
				WalletPassphraseSecretRef: ptr.To(ref("wallet-passphrase")),
			}},
			Notify:   v1alpha1.NotifySpec{Method: v1alpha1.NotifyPoll},
			Database: v1alpha1.DatabaseSpec{URLSecretRef: ref("database-url")},
			API:      v1alpha1.APISpec{TokenSecretRef: ref("api-token")},
		},
	}
	if err := admin.Create(ctx, ca); err != nil {
		t.Fatalf("creating the CryptoAsset: %v", err)
	}
	for _, obj := range []client.Object{render.ServiceAccount(ca), render.Role(ca), render.RoleBinding(ca)} {
		if err := admin.Create(ctx, obj); err != nil {
			t.Fatalf("creating the helper's %T: %v", obj, err)
		}
	}
	sa := "system:serviceaccount:" + ns + ":" + render.HelperName(ca)
	user, err := kube.AddUser(envtest.User{Name: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// helperProc is one run of the real helper binary.
type helperProc struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startHelper(t *testing.T, bin, cfgPath, kubeconfig string, cfg *config.Config, logs *syncBuffer) *helperProc {
	t.Helper()
	cmd := exec.Command(bin, "helper", "--config", cfgPath, "--kubeconfig", kubeconfig, "--rescan-progress-interval", "100ms")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, logs: logs, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(h.exited) }()
	t.Cleanup(h.kill)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + cfg.Server.MetricsListen + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case <-h.exited:
			t.Fatalf("helper exited: %v\n%s", cmd.ProcessState, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper not ready\n%s", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *helperProc) kill() {
	_ = h.cmd.Process.Kill()
	<-h.exited
}

func balance(t *testing.T, addr string, account int64) string {
	t.Helper()
	var a struct{ Balance string }
	if code := testassets.API(t, addr, "GET", fmt.Sprintf("/v1/accounts/%d", account), nil, &a); code != http.StatusOK {
		t.Fatalf("reading account %d: %d", account, code)
	}
	return a.Balance
}

// recorder keeps every status.rescan the API server sent on a watch, so a test sees phases that
// lasted only an instant.
type recorder struct {
	mu   sync.Mutex
	seen []v1alpha1.RescanStatus
}

func watchRescans(t *testing.T, ns, name string) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &recorder{}
	go func() {
		// A fresh API server's watch cache can lag the first list ("too large resource
		// version"): watch again until the test ends.
		for ctx.Err() == nil {
			w, err := admin.Watch(ctx, &v1alpha1.CryptoAssetList{}, client.InNamespace(ns))
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				ca, ok := ev.Object.(*v1alpha1.CryptoAsset)
				if !ok {
					break
				}
				if ca.Name != name || ca.Status.Rescan == nil {
					continue
				}
				r.mu.Lock()
				if n := len(r.seen); n == 0 || !equalRescan(r.seen[n-1], *ca.Status.Rescan) {
					r.seen = append(r.seen, *ca.Status.Rescan)
				}
				r.mu.Unlock()
			}
			w.Stop()
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return r
}

func equalRescan(a, b v1alpha1.RescanStatus) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// phases lists the phases recorded for a token, in order, without repeats.
func (r *recorder) phases(token string) []v1alpha1.RescanPhase {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []v1alpha1.RescanPhase
	for _, s := range r.seen {
		final := s.Phase == v1alpha1.RescanSucceeded || s.Phase == v1alpha1.RescanFailed
		mine := (final && s.HandledToken == token) || (!final && s.HandledToken != token && s.RequestedToken == token)
		if mine && (len(out) == 0 || out[len(out)-1] != s.Phase) {
			out = append(out, s.Phase)
		}
	}
	return out
}

func annotate(t *testing.T, ns, name string, kv ...string) {
	t.Helper()
	ann := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		ann[kv[i]] = kv[i+1]
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	ca := &v1alpha1.CryptoAsset{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := admin.Patch(context.Background(), ca, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatalf("annotating: %v", err)
	}
}

// waitHandled waits until status.rescan has handled token, and returns it.
func waitHandled(t *testing.T, ns, name, token string, logs fmt.Stringer) v1alpha1.RescanStatus {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var ca v1alpha1.CryptoAsset
		if err := admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ca); err != nil {
			t.Fatal(err)
		}
		if r := ca.Status.Rescan; r != nil && r.HandledToken == token {
			return *r
		}
		if time.Now().After(deadline) {
			t.Fatalf("rescan %q not handled; status %+v\nhelper logs:\n%s", token, ca.Status.Rescan, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStarted waits until the helper has taken token up.
func waitStarted(t *testing.T, ns, name, token string, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ca v1alpha1.CryptoAsset
		if err := admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ca); err != nil {
			t.Fatal(err)
		}
		if r := ca.Status.Rescan; r != nil && r.RequestedToken == token && (r.Phase == v1alpha1.RescanPending || r.Phase == v1alpha1.RescanRunning) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rescan %q not started; status %+v\nhelper logs:\n%s", token, ca.Status.Rescan, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func eventsFor(t *testing.T, ns, name, reason string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := admin.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func waitEvent(t *testing.T, ns, name, reason, noteContains string) eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, e := range eventsFor(t, ns, name, reason) {
			if strings.Contains(e.Note, noteContains) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event mentioning %q", reason, noteContains)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRescanByAnnotation(t *testing.T) {
	ctx := context.Background()
	const ns, name = "shop", "btc"
	bin := buildBinary(t)
	kubeconfig := asset(t, ns, name)
	rec := watchRescans(t, ns, name)

	dbURL := pg.Database(t)
	px := newProxy(t, strings.TrimPrefix(node.WalletURL(), "http://"))
	cfg := testassets.HelperConfig(t, node, dbURL, "")
	cfg.Backend.Bitcoind.URL = px.url()
	cfg.Backend.Bitcoind.Timeout = config.Duration{Duration: 3 * time.Second}
	// No notifications, and a poll too rare to matter: only a rescan can find what is paid now.
	cfg.Notify = config.Notify{Method: "poll", PollInterval: config.Duration{Duration: 24 * time.Hour}}
	cfg.Kubernetes = &config.KubernetesOwner{Namespace: ns, Name: name}
	cfgPath := testassets.WriteConfig(t, cfg)
	if out, err := exec.Command(bin, "initializedb", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("initializedb: %v\n%s", err, out)
	}
	logs := &syncBuffer{}
	h := startHelper(t, bin, cfgPath, kubeconfig, cfg, logs)
	api, ops := cfg.API.Listen, cfg.Server.MetricsListen

	var acct struct{ ID int64 }
	testassets.API(t, api, "POST", "/v1/accounts", map[string]string{"name": "shop"}, &acct)
	var addr struct{ Address string }
	if code := testassets.API(t, api, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), map[string]string{}, &addr); code != http.StatusCreated {
		t.Fatalf("creating an address: %d", code)
	}
	// The helper's first catch-up runs as it starts, and would book a payment made before it
	// ends (seen on a loaded machine): pay after it, when only a rescan can find the payment.
	testassets.Eventually(t, 60*time.Second, "the helper's first catch-up", func() error {
		if testassets.Metric(t, ops, "cryptoassets_catchup_last_success_timestamp_seconds") == 0 {
			return fmt.Errorf("no catch-up has succeeded yet\n%s", logs)
		}
		return nil
	})
	node.MustPay(t, addr.Address, 120_000_000)
	node.MustMine(t, 3)
	time.Sleep(2 * time.Second)
	if b := balance(t, api, acct.ID); b != "0.00000000" {
		t.Fatalf("balance %s before any rescan: something other than the rescan booked the payment", b)
	}

	t.Run("annotation runs a rescan that books the missed payment", func(t *testing.T) {
		annotate(t, ns, name, v1alpha1.RescanAnnotation, "t1")
		st := waitHandled(t, ns, name, "t1", logs)
		if st.Phase != v1alpha1.RescanSucceeded || st.TransactionsBooked != 1 || st.TransactionsFound != 1 || st.Message != "" {
			t.Fatalf("status %+v", st)
		}
		if st.StartTime == nil || st.FinishTime == nil || st.FinishTime.Before(st.StartTime) || st.Total == 0 || st.Done != st.Total {
			t.Fatalf("times or progress: %+v", st)
		}
		if b := balance(t, api, acct.ID); b != "1.20000000" {
			t.Fatalf("balance after the rescan: %s", b)
		}
		// The watch shows the writes that reached the API server, in order. An intermediate
		// one (Pending, a progress write) can lose a conflict with the operator's status write
		// on a busy machine and is not retried, so the start is read from its Event instead.
		if got := rec.phases("t1"); !phasesInOrder(got) || len(got) == 0 || got[len(got)-1] != v1alpha1.RescanSucceeded {
			t.Fatalf("phases seen on the watch: %v", got)
		}
		waitEvent(t, ns, name, "RescanStarted", `"t1"`)
		waitEvent(t, ns, name, "RescanSucceeded", "1 transactions found, 1 new")
		if n := testassets.Metric(t, ops, `cryptoassets_rescan_transactions_booked_total`); n != 1 {
			t.Fatalf("rescan_transactions_booked_total %v", n)
		}
		if n := testassets.Metric(t, ops, `cryptoassets_deposits_total{change="booked"}`); n != 0 {
			t.Fatalf("catch-up booked %v deposits: the rescan was not the only one to find it", n)
		}
	})

	t.Run("the same value again does nothing", func(t *testing.T) {
		before := waitHandled(t, ns, name, "t1", logs)
		// The object changes (another annotation), the token does not.
		annotate(t, ns, name, v1alpha1.RescanAnnotation, "t1", "example.com/touched", "yes")
		time.Sleep(2 * time.Second)
		after := waitHandled(t, ns, name, "t1", logs)
		if !equalRescan(before, after) || testassets.Metric(t, ops, `cryptoassets_rescans_started_total`) != 1 {
			t.Fatalf("a repeated token ran again: %+v -> %+v", before, after)
		}
	})

	t.Run("unreachable backend fails with the reason and a new token retries", func(t *testing.T) {
		px.set("refuse")
		annotate(t, ns, name, v1alpha1.RescanAnnotation, "t2")
		st := waitHandled(t, ns, name, "t2", logs)
		if st.Phase != v1alpha1.RescanFailed || !strings.Contains(st.Message, "unreachable") {
			t.Fatalf("status %+v", st)
		}
		e := waitEvent(t, ns, name, "RescanFailed", `"t2"`)
		if e.Type != corev1.EventTypeWarning {
			t.Fatalf("failure event type %s", e.Type)
		}
		px.set("pass")
		annotate(t, ns, name, v1alpha1.RescanAnnotation, "t3")
		st = waitHandled(t, ns, name, "t3", logs)
		if st.Phase != v1alpha1.RescanSucceeded || st.TransactionsFound != 1 || st.TransactionsBooked != 0 || st.Message != "" {
			t.Fatalf("retry: %+v", st)
		}
		if b := balance(t, api, acct.ID); b != "1.20000000" {
			t.Fatalf("balance after three rescans: %s", b)
		}
	})

	t.Run("a token arriving during a rescan waits for it", func(t *testing.T) {
		startedBefore := testassets.Metric(t, ops, `cryptoassets_rescans_started_total`)
		px.set("hang")
		annotate(t, ns, name, v1alpha1.RescanAnnotation, "t4")
		waitStarted(t, ns, name, "t4", logs)
		annotate(t, ns, name, v1alpha1.RescanAnnotation, "t5")
		px.set("pass")
		st := waitHandled(t, ns, name, "t5", logs)
		if st.Phase != v1alpha1.RescanSucceeded {
			t.Fatalf("queued rescan: %+v", st)
		}
		// t4 finished (however its hung backend call ended) and then t5 ran: two rescans.
		got := rec.phases("t4")
		if len(got) == 0 || (got[len(got)-1] != v1alpha1.RescanFailed && got[len(got)-1] != v1alpha1.RescanSucceeded) {
			t.Fatalf("t4 phases %v", got)
		}
		t4EndReason := "RescanSucceeded"
		if got[len(got)-1] == v1alpha1.RescanFailed {
			t4EndReason = "RescanFailed"
		}
		if n := testassets.Metric(t, ops, `cryptoassets_rescans_started_total`) - startedBefore; n != 2 {
			t.Fatalf("%v rescans started for t4 and t5", n)
		}
		// And in turn: t5 started only after t4 ended.
		t4End := waitEvent(t, ns, name, t4EndReason, `"t4"`).EventTime
		t5Start := waitEvent(t, ns, name, "RescanStarted", `"t5"`).EventTime
		if t5Start.Before(&t4End) {
			t.Fatalf("t5 started at %s, before t4 ended at %s", t5Start.Format(time.StampMicro), t4End.Format(time.StampMicro))
		}
	})

	t.Run("a helper killed mid-rescan runs it again after restart", func(t *testing.T) {
		px.set("hang")
		annotate(t, ns, name, v1alpha1.RescanAnnotation, "t6")
		waitStarted(t, ns, name, "t6", logs)
		h.kill()
		px.set("pass")
		h = startHelper(t, bin, cfgPath, kubeconfig, cfg, logs)
		st := waitHandled(t, ns, name, "t6", logs)
		if st.Phase != v1alpha1.RescanSucceeded || st.TransactionsFound != 1 {
			t.Fatalf("after restart: %+v", st)
		}
	})

	t.Run("the rescan command", func(t *testing.T) {
		out, err := exec.Command(bin, "rescan", "--config", cfgPath).Output()
		if err != nil {
			t.Fatalf("rescan: %v\n%s", err, stderrOf(err))
		}
		if !strings.Contains(string(out), "1 paying this asset, 0 new to the ledger") {
			t.Fatalf("summary: %s", out)
		}
		cmd := exec.Command(bin, "rescan", "--config", cfgPath, "--from-height", "1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("rescan --from-height 1: %v\n%s", err, stderr.String())
		}
		// Not a terminal: plain lines, the last one complete.
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "rescan: ") || !strings.Contains(last, " blocks, 1 transactions found, 0 new") {
			t.Fatalf("progress lines: %q", stderr.String())
		}
		out, err = exec.Command(bin, "rescan", "--config", cfgPath, "--from-height", "99999999").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "above the tip") {
			t.Fatalf("rescan above the tip: %v\n%s", err, out)
		}
		px.set("refuse")
		defer px.set("pass")
		out, err = exec.Command(bin, "rescan", "--config", cfgPath).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unreachable") {
			t.Fatalf("rescan with the backend down: %v\n%s", err, out)
		}
	})

	var ca v1alpha1.CryptoAsset
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ca); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "ledger", "check", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("ledger check: %v\n%s", err, out)
	}
	// Against the chain: the rescanned deposit is there with its confirmations.
	if out, err := exec.Command(bin, "ledger", "check", "--config", cfgPath, "--against-backend").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "all invariants hold") {
		t.Fatalf("ledger check --against-backend: %v\n%s", err, out)
	}
	// A broadcast the wallet never made (a restored database from another wallet, say) is named,
	// and the command exits 1.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ghost := strings.Repeat("cd", 32)
	if _, err := conn.Exec(ctx, `INSERT INTO network_transactions (asset_id, kind, txid, confirmations)
		SELECT id, 'broadcast', $1, 0 FROM assets WHERE name = 'btc'`, ghost); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "ledger", "check", "--config", cfgPath, "--against-backend").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "broadcast "+ghost+" is not known to the backend") {
		t.Fatalf("ledger check --against-backend with a ghost broadcast: %v\n%s", err, out)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// phasesInOrder says whether a rescan's phases never went back: Pending, then Running, then an
// outcome, each possibly unseen.
func phasesInOrder(got []v1alpha1.RescanPhase) bool {
	rank := map[v1alpha1.RescanPhase]int{v1alpha1.RescanPending: 0, v1alpha1.RescanRunning: 1, v1alpha1.RescanSucceeded: 2, v1alpha1.RescanFailed: 2}
	for i := 1; i < len(got); i++ {
		if rank[got[i]] < rank[got[i-1]] {
			return false
		}
	}
	return true
}
