package e2e

import (
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
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/jackc/pgx/v5/pgxpool"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/controllers"
	kubectlplugin "github.com/cryptoassets/cryptoassets-operator/internal/cmd/kubectl"
	"github.com/cryptoassets/cryptoassets-operator/internal/events/eventstest"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/operator"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// TestEndToEndOnRealPods runs the product as a user runs it on a real cluster: the image built
// here, a real node (kubelet, containerd, runc), `helm install` with the operator as a pod, the
// bitcoind sample as a real helper pod, PostgreSQL and btcd/btcwallet on the host. The
// application and walletnotify reach the helper only through its Service's ClusterIP.
func TestEndToEndOnRealPods(t *testing.T) {
	bin := testassets.RealNode(t)
	ctx := context.Background()
	root := testassets.RepoRoot(t)
	dir, err := os.MkdirTemp("", "cae2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // after st.Stop: cleanups run last-in first-out
	st, err := devstack.StartPods(ctx, devstack.PodOptions{Root: root, Bin: bin, Dir: dir, Version: "e2e", Bitcoin: true, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	// A cleanup, not a defer: it runs even when a step panics, so no server outlives the test.
	t.Cleanup(st.Stop)
	t.Logf("figures: node Ready %s after start; helm install --wait (operator pod Ready) %s", st.Node.NodeReady.Round(time.Millisecond), st.HelmInstall.Round(time.Millisecond))
	k := st.Client
	cs, err := kubernetes.NewForConfig(st.Rest)
	if err != nil {
		t.Fatal(err)
	}

	// The application's event receiver listens where pods reach the host.
	app := &eventstest.EventReceiver{}
	appLn, err := net.Listen("tcp", devstack.HostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	appSrv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = appSrv.Serve(appLn) }()
	defer appSrv.Close()
	podDB, hostDB, err := st.DatabaseURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	secret, ca := bitcoindSample(t, root, podDB, st.BTC.WalletURLOn(), "http://"+appLn.Addr().String()+"/events", st.BTC)
	app.Key = []byte(secret.StringData["event-signing-key"])
	_, pass := st.BTC.Credentials()
	apiToken, hookToken := secret.StringData["api-token"], secret.StringData["walletnotify-token"]
	key := client.ObjectKey{Namespace: ns, Name: ca.Name}
	helperName := ca.Name + "-helper"

	getCA := func() *v1alpha1.CryptoAsset {
		t.Helper()
		var cur v1alpha1.CryptoAsset
		if err := k.Get(ctx, key, &cur); err != nil {
			t.Fatal(err)
		}
		return &cur
	}
	condition := func(typ string) *metav1.Condition { return meta.FindStatusCondition(getCA().Status.Conditions, typ) }
	var apiAddr, hookAddr string
	api := apiFunc(func(method, path string, body, out any) int {
		t.Helper()
		return testassets.APIRequest(t, apiAddr, apiToken, method, path, nil, body, out)
	})
	notify := func(txid string) {
		t.Helper()
		// What bitcoind's walletnotify does, through the Service.
		resp, err := http.Post("http://"+hookAddr+"/?token="+hookToken, "application/x-www-form-urlencoded", strings.NewReader("txid="+txid))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("walletnotify through the Service: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	balance := func(account int64, want string) func() error { return balanceIs(api, account, want) }
	helperPod := func() (*corev1.Pod, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + ca.Name})
		if err != nil {
			return nil, err
		}
		var live []corev1.Pod
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				live = append(live, p)
			}
		}
		if len(live) != 1 {
			return nil, fmt.Errorf("%d helper pods", len(live))
		}
		return &live[0], nil
	}
	podReady := func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}
	readyEndpoints := func() int {
		slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + helperName})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					n++
				}
			}
		}
		return n
	}

	var acct struct{ ID int64 }
	var addr struct{ Address string }
	t.Run("1 the bitcoind sample becomes a real, Ready helper pod", func(t *testing.T) {
		if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		if err := k.Create(ctx, secret); err != nil {
			t.Fatal(err)
		}
		applied := time.Now()
		if err := k.Create(ctx, ca); err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, 3*time.Minute, "Ready=True", func() error {
			if c := condition(v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("Ready %+v", c)
			}
			return nil
		})
		t.Logf("figure: CryptoAsset applied -> Ready (helper pod Ready) in %s", time.Since(applied).Round(time.Millisecond))
		p, err := helperPod()
		if err != nil {
			t.Fatal(err)
		}
		sc := p.Spec.SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.FSGroup == nil || *sc.FSGroup != 65532 {
			t.Errorf("pod security context %+v", sc)
		}
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("container %s: root filesystem not read-only", c.Name)
			}
			if c.Image != st.Image {
				t.Errorf("container %s runs %s, want %s", c.Name, c.Image, st.Image)
			}
		}
		if len(p.Status.InitContainerStatuses) != 1 || p.Status.InitContainerStatuses[0].State.Terminated == nil || p.Status.InitContainerStatuses[0].State.Terminated.ExitCode != 0 {
			t.Errorf("initializedb: %+v", p.Status.InitContainerStatuses)
		}
		if apiAddr, err = st.ServiceAddr(ctx, ns, helperName, "api"); err != nil {
			t.Fatal(err)
		}
		if hookAddr, err = st.ServiceAddr(ctx, ns, helperName, "walletnotify"); err != nil {
			t.Fatal(err)
		}
		t.Logf("helper API through its Service: http://%s, walletnotify: http://%s", apiAddr, hookAddr)
		// Ready is the pod's; the Service routes to it once the EndpointSlice lists it and
		// kube-proxy has written its rules, a moment later on a loaded machine (until then the
		// ClusterIP answers "no route to host"). Any HTTP answer on both ports is the route.
		testassets.Eventually(t, time.Minute, "the helper's Service routes to its pod", func() error {
			for _, addr := range []string{apiAddr, hookAddr} {
				resp, err := http.Get("http://" + addr + "/")
				if err != nil {
					return err
				}
				resp.Body.Close()
			}
			return nil
		})
	})

	t.Run("2 a deposit notified through the Service is booked, credited and announced", func(t *testing.T) {
		if code := api("POST", "/v1/accounts", map[string]string{"name": "alice"}, &acct); code != http.StatusCreated {
			t.Fatalf("account: %d", code)
		}
		if code := api("POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), map[string]string{}, &addr); code != http.StatusCreated {
			t.Fatalf("address: %d", code)
		}
		depositCredited(t, api, st.BTC, app, acct.ID, addr.Address, 250_000_000, "2.50000000", notify)
		testassets.Eventually(t, time.Minute, "BackendReachable and LedgerReachable written by the helper", func() error {
			cur := getCA()
			for _, typ := range []string{v1alpha1.ConditionBackendReachable, v1alpha1.ConditionLedgerReachable} {
				if !meta.IsStatusConditionTrue(cur.Status.Conditions, typ) {
					return fmt.Errorf("%s: %+v", typ, meta.FindStatusCondition(cur.Status.Conditions, typ))
				}
			}
			return nil
		})
	})

	t.Run("3 btcd down: the pod stays Ready behind its Service, a send is queued and goes out once", func(t *testing.T) {
		payee, err := st.BTC.NewAddress()
		if err != nil {
			t.Fatal(err)
		}
		st.BTC.StopBtcd()
		down := time.Now()
		testassets.Eventually(t, 3*time.Minute, "BackendReachable=False", func() error {
			if c := condition(v1alpha1.ConditionBackendReachable); c == nil || c.Status != metav1.ConditionFalse {
				return fmt.Errorf("BackendReachable %+v", c)
			}
			return nil
		})
		t.Logf("figure: btcd stopped -> BackendReachable=False in %s", time.Since(down).Round(time.Millisecond))
		p, err := helperPod()
		if err != nil {
			t.Fatal(err)
		}
		if !podReady(p) || readyEndpoints() != 1 {
			t.Fatalf("during the outage: pod Ready=%v, ready endpoints %d", podReady(p), readyEndpoints())
		}
		var sent struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
			TxID  string `json:"txid"`
		}
		if code := api("POST", fmt.Sprintf("/v1/accounts/%d/send", acct.ID), map[string]string{"to": payee.String(), "amount": "0.4"}, &sent); code != http.StatusCreated && code != http.StatusAccepted {
			t.Fatalf("send through the Service during the outage: %d", code)
		}
		t.Logf("figure: a send posted to the ClusterIP %s after btcd stopped was accepted (%s)", time.Since(down).Round(time.Millisecond), sent.State)
		api("GET", fmt.Sprintf("/v1/transactions/%d", sent.ID), nil, &sent)
		if sent.TxID != "" {
			t.Fatalf("broadcast while the node was down: %+v", sent)
		}
		if p, err := helperPod(); err != nil || !podReady(p) || readyEndpoints() != 1 {
			t.Fatalf("after the send: %v, ready endpoints %d", err, readyEndpoints())
		}
		if err := st.BTC.StartBtcd(); err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, 3*time.Minute, "broadcast after the node came back", func() error {
			api("GET", fmt.Sprintf("/v1/transactions/%d", sent.ID), nil, &sent)
			if sent.TxID == "" {
				return fmt.Errorf("state %s", sent.State)
			}
			return nil
		})
		st.BTC.MustMine(t, 3)
		testassets.Eventually(t, 2*time.Minute, "confirmed, backend reachable again", func() error {
			api("GET", fmt.Sprintf("/v1/transactions/%d", sent.ID), nil, &sent)
			if sent.State != "confirmed" {
				return fmt.Errorf("state %s", sent.State)
			}
			if c := condition(v1alpha1.ConditionBackendReachable); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("BackendReachable %+v", c)
			}
			return nil
		})
		n, err := st.BTC.PaymentsTo(payee.String())
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("btcwallet shows %d payments to the payee, want exactly 1", n)
		}
	})

	t.Run("3b PostgreSQL restarts under the pod: the helper says so, keeps running and carries on", func(t *testing.T) {
		before, err := helperPod()
		if err != nil {
			t.Fatal(err)
		}
		restarts := func(p *corev1.Pod) (n int32) {
			for _, c := range p.Status.ContainerStatuses {
				n += c.RestartCount
			}
			return n
		}
		st.PG.Down()
		down := time.Now()
		testassets.Eventually(t, 3*time.Minute, "LedgerReachable=False", func() error {
			if c := condition(v1alpha1.ConditionLedgerReachable); c == nil || c.Status != metav1.ConditionFalse {
				return fmt.Errorf("LedgerReachable %+v", c)
			}
			return nil
		})
		t.Logf("figure: PostgreSQL stopped -> LedgerReachable=False in %s", time.Since(down).Round(time.Millisecond))
		if err := st.PG.Up(); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		testassets.Eventually(t, 3*time.Minute, "LedgerReachable=True, Ready=True, the API answering", func() error {
			for _, typ := range []string{v1alpha1.ConditionLedgerReachable, v1alpha1.ConditionReady} {
				if c := condition(typ); c == nil || c.Status != metav1.ConditionTrue {
					return fmt.Errorf("%s %+v", typ, c)
				}
			}
			if n := readyEndpoints(); n != 1 {
				return fmt.Errorf("%d ready endpoints", n)
			}
			// The endpoint can still be listed while the helper queues for the lock again and
			// its API is not back yet: ask without failing the test on a refused connection.
			req, err := http.NewRequest("GET", fmt.Sprintf("http://%s/v1/accounts/%d", apiAddr, acct.ID), nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+apiToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var a struct{ Balance string }
			if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK || a.Balance != "2.10000000" {
				return fmt.Errorf("account: %d %+v %v", resp.StatusCode, a, err)
			}
			return nil
		})
		t.Logf("figure: PostgreSQL back -> LedgerReachable=True and the API answering in %s", time.Since(up).Round(time.Millisecond))
		after, err := helperPod()
		if err != nil {
			t.Fatal(err)
		}
		if after.UID != before.UID || restarts(after) != restarts(before) {
			t.Fatalf("the helper was restarted: pod %s -> %s, container restarts %d -> %d", before.UID, after.UID, restarts(before), restarts(after))
		}
	})

	t.Run("4 a rescan by annotation finds an unnotified payment", func(t *testing.T) {
		st.BTC.MustPay(t, addr.Address, 10_000_000)
		st.BTC.MustMine(t, 3)
		requestRescan(t, ctx, k, key, "pods-1", 2)
		testassets.Eventually(t, 90*time.Second, "the payment credited", balance(acct.ID, "2.20000000"))
	})

	t.Run("4b kubectl cryptoassets: status matches the API, a rescan is followed to the end, a failing check exits 1", func(t *testing.T) {
		plugin := filepath.Join(dir, kubectlplugin.PluginName)
		build := exec.Command("go", "build", "-o", plugin, ".")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the plugin: %v\n%s", err, out)
		}
		run := func(args ...string) (string, int) {
			t.Helper()
			out, err := exec.Command(plugin, append(args, "--kubeconfig", st.Kubeconfig, "-n", ns)...).CombinedOutput()
			var exit *exec.ExitError
			switch {
			case errors.As(err, &exit):
				return string(out), exit.ExitCode()
			case err != nil:
				t.Fatalf("running the plugin: %v", err)
			}
			return string(out), 0
		}

		var bal struct{ Balance string }
		api("GET", "/v1/balance", nil, &bal)
		queued := 0
		for _, state := range []string{"pending", "broadcasting"} {
			var txs []struct{ ID int64 }
			api("GET", "/v1/transactions?kind=outgoing&state="+state, nil, &txs)
			queued += len(txs)
		}
		testassets.Eventually(t, time.Minute, "status as the API says", func() error {
			out, code := run("status", "-o", "json")
			var rows []kubectlplugin.AssetStatus
			if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
				return fmt.Errorf("exit %d, %v: %s", code, err, out)
			}
			if len(rows) != 1 {
				return fmt.Errorf("%d rows: %s", len(rows), out)
			}
			r := rows[0]
			if r.Name != ca.Name || r.Ready != "True" || r.Backend != "Reachable" || r.Balance != bal.Balance ||
				r.PendingSends == nil || *r.PendingSends != int64(queued) || r.EventBacklog == nil || r.NeedsReview == nil || r.LastRescan == "" {
				return fmt.Errorf("status %s; the API says balance %s, %d sends queued", out, bal.Balance, queued)
			}
			return nil
		})
		if out, code := run("status"); code != 0 || !strings.Contains(out, ca.Name) || !strings.Contains(out, bal.Balance) {
			t.Errorf("status table (exit %d):\n%s", code, out)
		}

		out, code := run("rescan", ca.Name, "--from-height", "0", "--wait", "--timeout", "3m")
		if code != 0 || !strings.Contains(out, "Succeeded") {
			t.Fatalf("rescan --wait (exit %d):\n%s", code, out)
		}
		if r := getCA().Status.Rescan; r == nil || r.Phase != v1alpha1.RescanSucceeded || r.HandledToken != r.RequestedToken {
			t.Errorf("status.rescan after the plugin's rescan: %+v", r)
		}

		if out, code := run("ledger-check", ca.Name); code != 0 || !strings.Contains(out, "all invariants hold") {
			t.Fatalf("ledger-check in the helper pod (exit %d):\n%s", code, out)
		}
		// One satoshi appears from nowhere: the check in the pod, and from here, exit 1 and say where.
		pool, err := pgxpool.New(ctx, hostDB)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		tamper := func(delta int) {
			t.Helper()
			if _, err := pool.Exec(ctx, `UPDATE accounts SET balance = balance + $1 WHERE id = $2`, delta, acct.ID); err != nil {
				t.Fatal(err)
			}
		}
		tamper(1)
		defer tamper(-1)
		for _, args := range [][]string{{"ledger-check", ca.Name}, {"ledger-check", ca.Name, "--database-url", hostDB}} {
			if out, code := run(args...); code != 1 || !strings.Contains(out, "VIOLATION account balance equals its booked transactions") {
				t.Errorf("%v on a tampered ledger (exit %d):\n%s", args, code, out)
			}
		}
	})

	t.Run("5 rotating the RPC password rolls the pod, which keeps working", func(t *testing.T) {
		before, err := helperPod()
		if err != nil {
			t.Fatal(err)
		}
		const rotated = "rotated-rpc-password-2"
		rotateRPCPassword(t, ctx, k, st.BTC, secret.Name, rotated)
		pass = rotated
		rotatedAt := time.Now()
		testassets.Eventually(t, 3*time.Minute, "a new pod Ready", func() error {
			p, err := helperPod()
			if err != nil {
				return err
			}
			if p.UID == before.UID || !podReady(p) {
				return fmt.Errorf("pod %s ready=%v", p.Name, podReady(p))
			}
			return nil
		})
		t.Logf("figure: Secret rotated -> new helper pod Ready in %s", time.Since(rotatedAt).Round(time.Millisecond))
		txid := st.BTC.MustPay(t, addr.Address, 30_000_000)
		testassets.Eventually(t, time.Minute, "walletnotify through the Service after the roll", func() error {
			resp, err := http.Post("http://"+hookAddr+"/?token="+hookToken, "application/x-www-form-urlencoded", strings.NewReader("txid="+txid))
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				p, _ := helperPod()
				var ip string
				if p != nil {
					ip = p.Status.PodIP
				}
				nat, _ := exec.Command("sh", "-c", "iptables-save -t nat | grep -c "+strings.Split(hookAddr, ":")[0]).Output()
				return fmt.Errorf("HTTP %d %s %q (helper pod IP %s, ready endpoints %d, NAT rules for the ClusterIP %s)",
					resp.StatusCode, resp.Header, body, ip, readyEndpoints(), strings.TrimSpace(string(nat)))
			}
			return nil
		})
		st.BTC.MustMine(t, 3)
		testassets.Eventually(t, 90*time.Second, "credited after rotation", balance(acct.ID, "2.50000000"))
	})

	t.Run("6 a helper that cannot reach its database says why in status", func(t *testing.T) {
		// The null sample as written: its database URL points at 127.0.0.1, which is the pod itself.
		s2, ca2, err := devstack.LoadSample(filepath.Join(root, "config", "samples", "null.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		s2.Namespace, ca2.Namespace = ns, ns
		for _, obj := range []client.Object{s2, ca2} {
			if err := k.Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
		key2 := client.ObjectKeyFromObject(ca2)
		testassets.Eventually(t, 3*time.Minute, "Ready=False naming the init container and its error", func() error {
			var cur v1alpha1.CryptoAsset
			if err := k.Get(ctx, key2, &cur); err != nil {
				return err
			}
			r := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionReady)
			d := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionDegraded)
			p := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionProgressing)
			if r == nil || r.Reason != controllers.ReasonInitContainerFailing || !strings.Contains(r.Message, "initializedb") ||
				!strings.Contains(r.Message, "connection refused") {
				return fmt.Errorf("Ready %+v", r)
			}
			if d == nil || d.Status != metav1.ConditionTrue || p == nil || p.Status != metav1.ConditionFalse {
				return fmt.Errorf("Degraded %+v, Progressing %+v", d, p)
			}
			return nil
		})
		if err := k.Delete(ctx, ca2); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("7 no secret value in pod specs, logs, ConfigMaps, status or Events", func(t *testing.T) {
		values := map[string]string{"rpc password": pass, "API token": apiToken, "walletnotify token": hookToken,
			"signing key": secret.StringData["event-signing-key"]}
		var haystack []string
		add := func(what string, v any) {
			b, _ := json.Marshal(v)
			haystack = append(haystack, what+": "+string(b))
		}
		for _, n := range []string{ns, devstack.OperatorNS} {
			pods, err := cs.CoreV1().Pods(n).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pods.Items {
				add("pod "+p.Name, p.Spec)
				for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
					logs, err := cs.CoreV1().Pods(n).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name}).DoRaw(ctx)
					if err == nil {
						haystack = append(haystack, "log of "+p.Name+"/"+c.Name+": "+string(logs))
					}
				}
			}
			cms, _ := cs.CoreV1().ConfigMaps(n).List(ctx, metav1.ListOptions{})
			add("configmaps in "+n, cms.Items)
			evs, _ := cs.CoreV1().Events(n).List(ctx, metav1.ListOptions{})
			add("events in "+n, evs.Items)
		}
		add("status", getCA().Status)
		for name, v := range values {
			for _, h := range haystack {
				if v != "" && strings.Contains(h, v) {
					t.Errorf("the %s appears in %.80s...", name, h)
				}
			}
		}
	})

	t.Run("8 deleting the CryptoAsset collects the pod; the ledger stays and checks out", func(t *testing.T) {
		if err := k.Delete(ctx, &v1alpha1.CryptoAsset{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ca.Name}}); err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, 3*time.Minute, "helper pods gone", func() error {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			if len(pods.Items) > 0 {
				return fmt.Errorf("%d pods left", len(pods.Items))
			}
			return nil
		})
		pool, err := pgxpool.New(ctx, hostDB)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if v, err := ledger.Check(ctx, pool); err != nil || len(v) > 0 {
			t.Fatalf("ledger check: %v %v", v, err)
		}
	})

	t.Run("9 helm uninstall removes the operator and its leader-election Lease", func(t *testing.T) {
		if err := st.HelmUninstall(ctx); err != nil {
			t.Fatal(err)
		}
		testassets.Eventually(t, 2*time.Minute, "Lease gone", func() error {
			err := k.Get(ctx, client.ObjectKey{Namespace: devstack.OperatorNS, Name: operator.LeaseID}, &coordinationv1.Lease{})
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("Lease still there (%v)", err)
			}
			return nil
		})
	})
}
