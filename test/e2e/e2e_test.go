// Package e2e runs the product as a user runs it: a local cluster (kwok), the Helm chart, the
// operator with the chart's RBAC, the helper started from the Deployment the operator rendered,
// PostgreSQL and btcd + btcwallet on simnet. See internal/testing/devstack.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/jackc/pgx/v5/pgxpool"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/events/eventstest"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

const ns = "shop"

func TestEndToEnd(t *testing.T) {
	if code, ok := testassets.Check("KUBEBUILDER_ASSETS", "E2E_BIN"); !ok {
		if code != 0 {
			t.Fatal("the end-to-end test needs `make test` (E2E_BIN: the tools hack/setup-tools.sh dev builds)")
		}
		t.Skip("E2E_BIN not set: `make test` runs the end-to-end test")
	}
	ctx := context.Background()
	root := testassets.RepoRoot(t)
	bin := filepath.Join(t.TempDir(), "cryptoassets")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	dir := t.TempDir()
	st, err := devstack.Start(ctx, devstack.Options{Root: root, Bin: os.Getenv("E2E_BIN"), Binary: bin, Dir: dir, Bitcoin: true,
		Cluster: "cryptoassets-e2e", Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	// A cleanup, not a defer: it runs even when a step panics, so no server outlives the test.
	t.Cleanup(st.Stop)
	k := st.Client

	// The application's event receiver.
	app := &eventstest.EventReceiver{}
	appSrv := httptest.NewServer(app)
	defer appSrv.Close()
	dbURL, err := st.DatabaseURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	secret, ca := bitcoindSample(t, root, dbURL, st.Node.WalletURL(), appSrv.URL+"/events", st.Node)
	app.Key = []byte(secret.StringData["event-signing-key"])
	_, pass := st.Node.Credentials()
	apiToken, hookToken := secret.StringData["api-token"], secret.StringData["walletnotify-token"]
	key := client.ObjectKey{Namespace: ns, Name: ca.Name}

	var h *devstack.Helper
	api := apiFunc(func(method, path string, body, out any) int {
		t.Helper()
		return testassets.APIRequest(t, h.API, apiToken, method, path, nil, body, out)
	})
	helperReady := func() error {
		var ok bool
		if h, ok = st.Launcher.Get(ns, ca.Name+"-helper"); !ok {
			return fmt.Errorf("no helper process")
		}
		return h.Ready()
	}
	balance := func(account int64, want string) func() error { return balanceIs(api, account, want) }

	var acct struct{ ID int64 }
	var addr struct{ Address string }
	t.Run("1 apply the sample: children, helper, Ready", func(t *testing.T) {
		if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		if err := k.Create(ctx, secret); err != nil {
			t.Fatal(err)
		}
		if err := k.Create(ctx, ca); err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, 2*time.Minute, "Ready=True", func() error {
			var cur v1alpha1.CryptoAsset
			if err := k.Get(ctx, key, &cur); err != nil {
				return err
			}
			if !meta.IsStatusConditionTrue(cur.Status.Conditions, v1alpha1.ConditionReady) {
				return fmt.Errorf("conditions %+v", cur.Status.Conditions)
			}
			return nil
		})
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ConfigMap{}, &corev1.ServiceAccount{}} {
			if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: ca.Name + "-helper"}, obj); err != nil {
				t.Fatalf("%T: %v", obj, err)
			}
		}
		testassets.Eventually(t, time.Minute, "helper process ready", helperReady)
	})

	t.Run("2 a deposit: walletnotify, booked, credited, signed event", func(t *testing.T) {
		api("POST", "/v1/accounts", map[string]string{"name": "alice"}, &acct)
		if code := api("POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), map[string]string{}, &addr); code != http.StatusCreated {
			t.Fatalf("address: %d", code)
		}
		depositCredited(t, api, st.Node, app, acct.ID, addr.Address, 250_000_000, "2.50000000", func(txid string) {
			// What bitcoind's walletnotify does.
			resp, err := http.Post("http://"+h.Hook+"/?token="+hookToken, "application/x-www-form-urlencoded", strings.NewReader("txid="+txid))
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("walletnotify: %v %v", err, resp)
			}
			resp.Body.Close()
		})
	})

	t.Run("3 a send queued while the node is down goes out once when it is back", func(t *testing.T) {
		payee, err := st.Node.NewAddress()
		if err != nil {
			t.Fatal(err)
		}
		st.Node.StopBtcd()
		var sent struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
		}
		if code := api("POST", fmt.Sprintf("/v1/accounts/%d/send", acct.ID), map[string]string{"to": payee.String(), "amount": "0.4"},
			&sent); code != http.StatusCreated && code != http.StatusAccepted {
			t.Fatalf("send: %d", code)
		}
		time.Sleep(3 * time.Second)
		var cur struct {
			State string `json:"state"`
			TxID  string `json:"txid"`
		}
		api("GET", fmt.Sprintf("/v1/transactions/%d", sent.ID), nil, &cur)
		if cur.TxID != "" {
			t.Fatalf("broadcast while the node was down: %+v", cur)
		}
		if err := st.Node.StartBtcd(); err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, 2*time.Minute, "broadcast after the node came back", func() error {
			api("GET", fmt.Sprintf("/v1/transactions/%d", sent.ID), nil, &cur)
			if cur.TxID == "" {
				return fmt.Errorf("state %s", cur.State)
			}
			return nil
		})
		st.Node.MustMine(t, 3) // outgoing sends are confirmed at the asset's threshold too
		testassets.Eventually(t, 90*time.Second, "confirmed", func() error {
			api("GET", fmt.Sprintf("/v1/transactions/%d", sent.ID), nil, &cur)
			if cur.State != "confirmed" {
				return fmt.Errorf("state %s", cur.State)
			}
			return nil
		})
		n, err := st.Node.PaymentsTo(payee.String())
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("btcwallet shows %d payments to the payee, want exactly 1", n)
		}
	})

	t.Run("4 a rescan by annotation after the helper was down", func(t *testing.T) {
		st.Launcher.Pause(ns, ca.Name+"-helper")
		resumed := false
		defer func() {
			if !resumed { // a failed step must not leave the helper down for the steps after it
				st.Launcher.Resume(ns, ca.Name+"-helper")
			}
		}()
		st.Node.MustPay(t, addr.Address, 10_000_000)
		st.Node.MustMine(t, 3)
		st.Launcher.Resume(ns, ca.Name+"-helper")
		resumed = true
		testassets.Eventually(t, time.Minute, "helper back", helperReady)
		requestRescan(t, ctx, k, key, "e2e-1", 2)
		testassets.Eventually(t, 90*time.Second, "the missed payment credited", balance(acct.ID, "2.20000000"))
	})

	t.Run("5 rotating the RPC password restarts the helper with it, and it keeps working", func(t *testing.T) {
		before, ok := st.Launcher.Get(ns, ca.Name+"-helper")
		if !ok {
			t.Fatal("no helper running before the change")
		}
		const rotated = "rotated-rpc-password-2"
		rotateRPCPassword(t, ctx, k, st.Node, secret.Name, rotated)
		pass = rotated
		testassets.Eventually(t, 2*time.Minute, "helper restarted with the new password and ready", func() error {
			now, ok := st.Launcher.Get(ns, ca.Name+"-helper")
			if !ok || now.Hash == before.Hash {
				return fmt.Errorf("not restarted")
			}
			return helperReady()
		})
		txid := st.Node.MustPay(t, addr.Address, 30_000_000)
		resp, err := http.Post("http://"+h.Hook+"/?token="+hookToken, "application/x-www-form-urlencoded", strings.NewReader("txid="+txid))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("walletnotify after rotation: %v %v", err, resp)
		}
		resp.Body.Close()
		st.Node.MustMine(t, 3)
		testassets.Eventually(t, 90*time.Second, "credited after rotation", balance(acct.ID, "2.50000000"))
	})

	t.Run("6 a spec edit changes the ConfigMap and restarts the helper", func(t *testing.T) {
		before, ok := st.Launcher.Get(ns, ca.Name+"-helper")
		if !ok {
			t.Fatal("no helper running before the change")
		}
		var cur v1alpha1.CryptoAsset
		if err := k.Get(ctx, key, &cur); err != nil {
			t.Fatal(err)
		}
		// A merge patch carries no resourceVersion: the helper writes status meanwhile.
		orig := cur.DeepCopy()
		cur.Spec.Confirmations = ptr.To(int32(4))
		if err := k.Patch(ctx, &cur, client.MergeFrom(orig)); err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, time.Minute, "ConfigMap and helper updated", func() error {
			var cm corev1.ConfigMap
			if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: ca.Name + "-helper"}, &cm); err != nil {
				return err
			}
			if !strings.Contains(cm.Data["config.yaml"], "confirmations: 4") {
				return fmt.Errorf("config %s", cm.Data["config.yaml"])
			}
			now, ok := st.Launcher.Get(ns, ca.Name+"-helper")
			if !ok || now.Hash == before.Hash {
				return fmt.Errorf("helper not restarted")
			}
			return helperReady()
		})
	})

	t.Run("7 deleting the CryptoAsset collects its objects and stops the helper; the ledger stays", func(t *testing.T) {
		h, ok := st.Launcher.Get(ns, ca.Name+"-helper")
		if !ok {
			t.Fatal("no helper process before the deletion")
		}
		if err := k.Delete(ctx, &v1alpha1.CryptoAsset{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ca.Name}}); err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, 3*time.Minute, "children garbage-collected", func() error {
			err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: ca.Name + "-helper"}, &appsv1.Deployment{})
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("Deployment still there (%v)", err)
			}
			if _, ok := st.Launcher.Get(ns, ca.Name+"-helper"); ok {
				return fmt.Errorf("helper still running")
			}
			return nil
		})
		pool, err := pgxpool.New(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM transactions`).Scan(&n); err != nil || n < 3 {
			t.Fatalf("ledger after deletion: %d transactions, %v", n, err)
		}
		// 8: the ledger's invariants hold, and no secret value reached the helper's log.
		if v, err := ledger.Check(ctx, pool); err != nil || len(v) > 0 {
			t.Fatalf("ledger check: %v %v", v, err)
		}
		logs := h.Log.String()
		for name, value := range map[string]string{"rpc password": pass, "API token": apiToken, "walletnotify token": hookToken,
			"signing key": secret.StringData["event-signing-key"]} {
			if value != "" && strings.Contains(logs, value) {
				t.Errorf("the helper log contains the %s", name)
			}
		}
	})
}
