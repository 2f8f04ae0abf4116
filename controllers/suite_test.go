package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/operator"
	"github.com/cryptoassets/cryptoassets-operator/internal/render"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

const testImage = "registry.example/cryptoassets/cryptoassets-operator:test"

// suite is shared by the tests of this package: one API server, one running operator.
type suite struct {
	k8s    client.WithWatch // the tests' own client, uncached
	writes *writeCounter    // writes made by the operator, per namespace
}

var env suite

// writeCounter counts the operator's mutating requests, keyed by namespace. Events and leases are
// not counted: they are neither spec nor status of anything the operator manages.
type writeCounter struct {
	mu     sync.Mutex
	counts map[string]int
	paths  map[string][]string
	// secretReads counts the operator's GETs of Secrets (values, from the API server).
	secretReads map[string]int
}

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/secrets/") {
			w.mu.Lock()
			w.secretReads[namespaceOf(req.URL.Path)]++
			w.mu.Unlock()
		}
		switch req.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			p := req.URL.Path
			if !strings.Contains(p, "/events") && !strings.Contains(p, "/leases") {
				ns := namespaceOf(p)
				w.mu.Lock()
				w.counts[ns]++
				w.paths[ns] = append(w.paths[ns], req.Method+" "+p)
				w.mu.Unlock()
			}
		}
		return rt.RoundTrip(req)
	})
}

func (w *writeCounter) secretGets(ns string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.secretReads[ns]
}

func (w *writeCounter) count(ns string) (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts[ns], append([]string(nil), w.paths[ns]...)
}

func namespaceOf(path string) string {
	parts := strings.Split(path, "/")
	for i := range parts {
		if parts[i] == "namespaces" && i+1 < len(parts) {
			return parts[i+1]
		}
	}
	return ""
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestMain(m *testing.M) {
	if code, ok := testassets.Check("KUBEBUILDER_ASSETS"); !ok {
		os.Exit(code)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(zapLevel()))))
	testEnv := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testassets.StartEnv(testEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test API server:", err)
		return 1
	}
	defer func() {
		if err := testEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test API server:", err)
		}
	}()

	scheme, err := operator.Scheme()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.writes = &writeCounter{counts: map[string]int{}, paths: map[string][]string{}, secretReads: map[string]int{}}
	mgrCfg := rest.CopyConfig(cfg)
	mgrCfg.Wrap(env.writes.wrap)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgr, err := operator.NewManager(ctx, mgrCfg, operator.Options{
		MetricsAddr:             "0",
		ProbeAddr:               "0",
		MaxConcurrentReconciles: 4,
		Render:                  render.Options{Image: testImage},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the operator:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "operator stopped with an error:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func zapLevel() int8 {
	if os.Getenv("TEST_VERBOSE_OPERATOR") != "" {
		return -1
	}
	return 2 // errors only: the tests assert on objects, not on log lines
}

// eventually polls f until it succeeds or the timeout passes, then fails with f's last error.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const waitTime = 30 * time.Second

// newNamespace creates a namespace of the test's own.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := env.k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// sampleSecret and sampleAsset mirror config/samples/bitcoind.yaml.
func sampleSecret(ns string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "btc-credentials", Namespace: ns},
		StringData: map[string]string{
			"rpc-username":       "dev",
			"rpc-password":       "s3cret-rpc-password",
			"wallet-passphrase":  "s3cret-wallet-passphrase",
			"database-url":       "postgres://u:s3cret-db-password@db:5432/ledger",
			"api-token":          "s3cret-api-token",
			"walletnotify-token": "s3cret-walletnotify-token",
			"event-signing-key":  "s3cret-signing-key",
		},
	}
}

func ref(key string) v1alpha1.SecretKeyRef {
	return v1alpha1.SecretKeyRef{Name: "btc-credentials", Key: key}
}

func sampleAsset(ns, name string) *v1alpha1.CryptoAsset {
	return &v1alpha1.CryptoAsset{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.CryptoAssetSpec{
			Coin:          "bitcoin",
			Network:       "simnet",
			Confirmations: ptr.To(int32(3)),
			Backend: v1alpha1.BackendSpec{Type: v1alpha1.BackendBitcoind, Bitcoind: &v1alpha1.BitcoindBackend{
				URL:                       "http://127.0.0.1:18554",
				Flavor:                    v1alpha1.FlavorBtcwallet,
				UsernameSecretRef:         ref("rpc-username"),
				PasswordSecretRef:         ref("rpc-password"),
				WalletPassphraseSecretRef: ptr.To(ref("wallet-passphrase")),
			}},
			Notify:   v1alpha1.NotifySpec{Method: v1alpha1.NotifyHTTP, HTTP: &v1alpha1.HTTPNotify{TokenSecretRef: ptr.To(ref("walletnotify-token"))}},
			Database: v1alpha1.DatabaseSpec{URLSecretRef: ref("database-url")},
			API:      v1alpha1.APISpec{TokenSecretRef: ref("api-token")},
			Events: []v1alpha1.EventTarget{{Name: "app", Type: v1alpha1.EventHTTP, HTTP: &v1alpha1.HTTPEventTarget{
				URL: "http://app.example:8099/events", SigningSecretRef: ref("event-signing-key"),
			}}},
		},
	}
}

// update writes mutate's change to the object named by obj, read fresh each try: the operator
// writes the same objects (finalizers, status, reverts), so a read-then-update from a test
// can meet a newer resourceVersion, and a person re-running kubectl edit would simply retry.
func update[T client.Object](obj T, mutate func(T)) error {
	key := client.ObjectKeyFromObject(obj)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.k8s.Get(context.Background(), key, obj); err != nil {
			return err
		}
		mutate(obj)
		return env.k8s.Update(context.Background(), obj)
	})
}

// assetRef names a CryptoAsset for update.
func assetRef(ns, name string) *v1alpha1.CryptoAsset {
	return &v1alpha1.CryptoAsset{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func getAsset(t *testing.T, ns, name string) *v1alpha1.CryptoAsset {
	t.Helper()
	ca := &v1alpha1.CryptoAsset{}
	if err := env.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ca); err != nil {
		t.Fatalf("getting CryptoAsset: %v", err)
	}
	return ca
}

func getDeployment(ns, name string) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	err := env.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name + "-helper"}, d)
	return d, err
}

// markAvailable plays the deployment controller, which envtest does not run: the Deployment's
// current generation is rolled out and available.
func markAvailable(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, waitTime, func() error {
		d, err := getDeployment(ns, name)
		if err != nil {
			return err
		}
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{
				Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
				LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
			}},
		}
		return env.k8s.Status().Update(context.Background(), d)
	})
}

// condition waits for a condition of the CryptoAsset to reach status and reason.
func condition(t *testing.T, ns, name, condType string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var found *metav1.Condition
	eventually(t, waitTime, func() error {
		ca := &v1alpha1.CryptoAsset{}
		if err := env.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ca); err != nil {
			return err
		}
		for i := range ca.Status.Conditions {
			c := ca.Status.Conditions[i]
			if c.Type == condType {
				if c.Status == status && c.Reason == reason && c.ObservedGeneration == ca.Generation {
					found = &c
					return nil
				}
				return fmt.Errorf("%s is %s/%s (%s), want %s/%s", condType, c.Status, c.Reason, c.Message, status, reason)
			}
		}
		return fmt.Errorf("no %s condition yet", condType)
	})
	return found
}

// events lists the events.k8s.io Events about a CryptoAsset with the given reason.
func events(t *testing.T, ns, name, reason string) []eventsv1.Event {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := env.k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "CryptoAsset" && e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// reconciles reads how many reconciles the operator has finished, from its own metrics.
func reconciles(t *testing.T) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var total float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m, "controller") == "cryptoasset" {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// settle waits until the operator has made no write in ns for quiet, and returns the count.
func settle(t *testing.T, ns string, quiet time.Duration) int {
	t.Helper()
	last, _ := env.writes.count(ns)
	stableSince := time.Now()
	deadline := time.Now().Add(waitTime)
	for time.Since(stableSince) < quiet {
		if time.Now().After(deadline) {
			t.Fatalf("operator kept writing in %s", ns)
		}
		time.Sleep(50 * time.Millisecond)
		if n, _ := env.writes.count(ns); n != last {
			last, stableSince = n, time.Now()
		}
	}
	return last
}
