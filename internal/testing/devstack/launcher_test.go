package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/memlimit"
	"github.com/cryptoassets/cryptoassets-operator/internal/operator"
	"github.com/cryptoassets/cryptoassets-operator/internal/render"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	if code, ok := testassets.Check("KUBEBUILDER_ASSETS"); !ok {
		os.Exit(code)
	}
	os.Exit(testassets.Main(m, testassets.Postgres(&pg)))
}

// The launcher runs the helper the operator rendered, as its ServiceAccount, restarts it when the
// pod template changes and stops it when the Deployment goes.
func TestLauncherRunsRenderedHelpers(t *testing.T) {
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join(testassets.RepoRoot(t), "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := testassets.StartEnv(env)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := operator.NewManager(ctx, cfg, operator.Options{MetricsAddr: "0", ProbeAddr: "0", MaxConcurrentReconciles: 2,
		Render: render.Options{Image: "cryptoassets-operator:test"}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = mgr.Start(ctx) }()

	bin := filepath.Join(t.TempDir(), "cryptoassets")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = testassets.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}

	const ns = "shop"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	ref := func(key string) v1alpha1.SecretKeyRef { return v1alpha1.SecretKeyRef{Name: "sim", Key: key} }
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sim", Namespace: ns},
		StringData: map[string]string{"database-url": pg.Database(t), "api-token": testassets.APIToken}}); err != nil {
		t.Fatal(err)
	}
	ca := &v1alpha1.CryptoAsset{ObjectMeta: metav1.ObjectMeta{Name: "sim", Namespace: ns}, Spec: v1alpha1.CryptoAssetSpec{
		Coin: "bitcoin", Network: "regtest", Confirmations: ptr.To(int32(2)),
		Backend:  v1alpha1.BackendSpec{Type: v1alpha1.BackendNull},
		Notify:   v1alpha1.NotifySpec{Method: v1alpha1.NotifyPoll, PollInterval: &metav1.Duration{Duration: 5 * time.Second}},
		Database: v1alpha1.DatabaseSpec{URLSecretRef: ref("database-url")},
		API:      v1alpha1.APISpec{TokenSecretRef: ref("api-token")},
	}}
	if err := k8s.Create(ctx, ca); err != nil {
		t.Fatal(err)
	}

	l := &Launcher{Client: k8s, Kube: cfg, Binary: bin, Dir: t.TempDir(), Every: 200 * time.Millisecond, Log: testr.New(t)}
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var h *Helper
	testassets.Eventually(t, time.Minute, "the helper process ready", func() error {
		var ok bool
		if h, ok = l.Get(ns, "sim-helper"); !ok {
			return fmt.Errorf("not started")
		}
		return h.Ready()
	})

	// It runs with the environment kubelet would give it: the container's memory limit in
	// bytes. From that the helper sets its Go memory limit below the container's, by the binary's
	// pages it holds (internal/memlimit), as its own metrics report.
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", h.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	const limit = 256 << 20
	if !slices.Contains(strings.Split(string(environ), "\x00"), fmt.Sprintf("%s=%d", memlimit.EnvVar, limit)) {
		t.Fatalf("the helper's environment has no %s of its 256Mi limit: %q", memlimit.EnvVar, environ)
	}
	goLimit := testassets.Metric(t, h.Ops, "go_gc_gomemlimit_bytes")
	if goLimit >= limit || goLimit < limit/4 {
		t.Fatalf("the helper's Go memory limit is %.0f bytes, want below its container's %d and at least a quarter of it", goLimit, limit)
	}
	t.Logf("the helper's Go memory limit: %.1f MiB of its container's 256 MiB", goLimit/(1<<20))

	// The helper works from the rendered config: a simulated payment is credited.
	var acct struct{ ID int64 }
	testassets.API(t, h.API, "POST", "/v1/accounts", map[string]string{"name": "shop"}, &acct)
	var addr struct{ Address string }
	testassets.API(t, h.API, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), map[string]string{}, &addr)
	testassets.API(t, h.API, "POST", "/v1/simulator/receive", map[string]string{"address": addr.Address, "amount": "0.7"}, nil)
	testassets.API(t, h.API, "POST", "/v1/simulator/mine", map[string]int{"blocks": 2}, nil)
	testassets.Eventually(t, time.Minute, "credited", func() error {
		var a struct{ Balance string }
		testassets.API(t, h.API, "GET", fmt.Sprintf("/v1/accounts/%d", acct.ID), nil, &a)
		if a.Balance != "0.70000000" {
			return fmt.Errorf("balance %q", a.Balance)
		}
		return nil
	})

	// It acts as its ServiceAccount with the rendered Role: a rescan request is answered in status.
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{v1alpha1.RescanAnnotation: "r1"}}})
	if err := k8s.Patch(ctx, &v1alpha1.CryptoAsset{ObjectMeta: metav1.ObjectMeta{Name: "sim", Namespace: ns}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, time.Minute, "rescan reported by the helper", func() error {
		var cur v1alpha1.CryptoAsset
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sim"}, &cur); err != nil {
			return err
		}
		if r := cur.Status.Rescan; r == nil || r.HandledToken != "r1" || r.Phase != v1alpha1.RescanSucceeded || r.TransactionsFound != 1 {
			return fmt.Errorf("status.rescan %+v\n%s", cur.Status.Rescan, h.Log)
		}
		return nil
	})

	// A spec change renders a new pod template: the helper is restarted with it.
	var cur v1alpha1.CryptoAsset
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sim"}, &cur); err != nil {
		t.Fatal(err)
	}
	// A merge patch carries no resourceVersion: the helper writes status meanwhile.
	orig := cur.DeepCopy()
	cur.Spec.Confirmations = ptr.To(int32(4))
	if err := k8s.Patch(ctx, &cur, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, time.Minute, "restarted with the new config", func() error {
		n, ok := l.Get(ns, "sim-helper")
		if !ok || n.Hash == h.Hash || l.Starts() != 2 {
			return fmt.Errorf("starts %d", l.Starts())
		}
		return nil
	})

	// The CryptoAsset and its Deployment go (envtest has no garbage collector, so the test deletes
	// the Deployment as the cluster's would): the helper stops and is not started again.
	n, _ := l.Get(ns, "sim-helper")
	if err := k8s.Delete(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "sim-helper", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, time.Minute, "stopped", func() error {
		if _, ok := l.Get(ns, "sim-helper"); ok || !n.exited() {
			return fmt.Errorf("still running")
		}
		return nil
	})
	time.Sleep(time.Second)
	if _, ok := l.Get(ns, "sim-helper"); ok || l.Starts() != 2 {
		t.Fatalf("started again: %d starts", l.Starts())
	}
	cancel()
	<-done
}
