package controllers_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/controllers"
)

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func TestCreateRendersAllChildren(t *testing.T) {
	ns := newNamespace(t)
	secret := sampleSecret(ns)
	ca := sampleAsset(ns, "btc")
	create(t, secret, ca)
	ctx := context.Background()
	name := "btc-helper"

	children := map[string]client.Object{
		"ConfigMap": &corev1.ConfigMap{}, "Service": &corev1.Service{}, "ServiceAccount": &corev1.ServiceAccount{},
		"Role": &rbacv1.Role{}, "RoleBinding": &rbacv1.RoleBinding{}, "Deployment": &appsv1.Deployment{},
	}
	uid := getAsset(t, ns, "btc").UID
	for kind, obj := range children {
		eventually(t, waitTime, func() error {
			return env.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
		})
		owner := metav1.GetControllerOf(obj)
		if owner == nil || owner.UID != uid || owner.Kind != "CryptoAsset" || !ptr.Deref(owner.BlockOwnerDeletion, false) {
			t.Errorf("%s %s: controller owner reference = %+v, want the CryptoAsset %s", kind, name, owner, uid)
		}
		if obj.GetLabels()["app.kubernetes.io/managed-by"] != "cryptoassets-operator" {
			t.Errorf("%s %s: missing managed-by label: %v", kind, name, obj.GetLabels())
		}
	}

	cm := children["ConfigMap"].(*corev1.ConfigMap)
	data := cm.Data["config.yaml"]
	for key, value := range secret.StringData {
		if strings.Contains(data, value) {
			t.Errorf("ConfigMap holds the value of Secret key %s", key)
		}
	}
	for _, want := range []string{"coin: bitcoin", "network: simnet", "confirmations: 3", "flavor: btcwallet",
		"passwordFile: /var/run/secrets/cryptoassets/bitcoind-password", "method: http"} {
		if !strings.Contains(data, want) {
			t.Errorf("config.yaml lacks %q:\n%s", want, data)
		}
	}

	d := children["Deployment"].(*appsv1.Deployment)
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("Deployment: replicas %d strategy %s, want 1 and Recreate", *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 1 {
		t.Fatalf("pod: %d containers, %d init containers, want 1 and 1", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	if c.Image != testImage || strings.Join(c.Args, " ") != "helper --config /etc/cryptoassets/config.yaml" {
		t.Errorf("helper container: image %q args %q", c.Image, c.Args)
	}
	if got := strings.Join(pod.InitContainers[0].Args, " "); got != "initializedb --config /etc/cryptoassets/config.yaml" {
		t.Errorf("init container args %q", got)
	}
	sc := c.SecurityContext
	if !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("helper security context not locked down: %+v", sc)
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes: liveness %s readiness %s", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	if pod.ServiceAccountName != name {
		t.Errorf("service account %q, want %q", pod.ServiceAccountName, name)
	}
	if d.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation] == "" {
		t.Errorf("pod template has no %s annotation", v1alpha1.ConfigHashAnnotation)
	}
	for _, e := range c.Env {
		if e.Value != "" && strings.Contains(e.Value, "s3cret") {
			t.Errorf("env %s carries a secret value", e.Name)
		}
	}

	svc := children["Service"].(*corev1.Service)
	ports := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if ports["api"] != 8080 || ports["metrics"] != 9090 || ports["walletnotify"] != 28882 {
		t.Errorf("service ports %v, want api 8080, metrics 9090, walletnotify 28882", ports)
	}

	role := children["Role"].(*rbacv1.Role)
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			if strings.HasPrefix(res, "cryptoassets") && (len(r.ResourceNames) != 1 || r.ResourceNames[0] != "btc") {
				t.Errorf("role rule on %s is not limited to the helper's own CryptoAsset: %+v", res, r)
			}
		}
	}

	got := getAsset(t, ns, "btc")
	condition(t, ns, "btc", v1alpha1.ConditionReady, metav1.ConditionFalse, controllers.ReasonDeploymentUnavailable)
	condition(t, ns, "btc", v1alpha1.ConditionProgressing, metav1.ConditionTrue, controllers.ReasonRollingOut)
	markAvailable(t, ns, "btc")
	condition(t, ns, "btc", v1alpha1.ConditionReady, metav1.ConditionTrue, controllers.ReasonAvailable)
	condition(t, ns, "btc", v1alpha1.ConditionDegraded, metav1.ConditionFalse, controllers.ReasonReconciled)
	got = getAsset(t, ns, "btc")
	if got.Status.ObservedGeneration != got.Generation || got.Status.Confirmations != 3 || got.Status.Helper.Deployment != name ||
		got.Status.ConfigHash != d.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation] {
		t.Errorf("status %+v does not describe the rollout", got.Status)
	}
	if len(events(t, ns, "btc", controllers.ReasonAvailable)) != 1 {
		t.Errorf("want one Available event on the transition to Ready")
	}
}

func TestSpecUpdateUpdatesChildren(t *testing.T) {
	ns := readyAsset(t, "btc")
	before, _ := getDeployment(ns, "btc")
	oldHash := before.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation]

	if err := update(assetRef(ns, "btc"), func(ca *v1alpha1.CryptoAsset) {
		ca.Spec.Confirmations = ptr.To(int32(6))
		ca.Spec.Notify.HTTP.Port = 29000
		ca.Spec.Helper.NodeSelector = map[string]string{"pool": "payments"}
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTime, func() error {
		cm := &corev1.ConfigMap{}
		if err := env.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "btc-helper"}, cm); err != nil {
			return err
		}
		if !strings.Contains(cm.Data["config.yaml"], "confirmations: 6") || !strings.Contains(cm.Data["config.yaml"], "listen: :29000") {
			return fmt.Errorf("config not updated:\n%s", cm.Data["config.yaml"])
		}
		d, err := getDeployment(ns, "btc")
		if err != nil {
			return err
		}
		if d.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation] == oldHash {
			return fmt.Errorf("pod template hash unchanged")
		}
		if d.Spec.Template.Spec.NodeSelector["pool"] != "payments" {
			return fmt.Errorf("node selector not applied")
		}
		svc := &corev1.Service{}
		if err := env.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "btc-helper"}, svc); err != nil {
			return err
		}
		for _, p := range svc.Spec.Ports {
			if p.Name == "walletnotify" && p.Port == 29000 {
				return nil
			}
		}
		return fmt.Errorf("service walletnotify port not moved to 29000: %+v", svc.Spec.Ports)
	})
	// The new generation is rolling out until the deployment controller reports it.
	condition(t, ns, "btc", v1alpha1.ConditionProgressing, metav1.ConditionTrue, controllers.ReasonRollingOut)
	markAvailable(t, ns, "btc")
	condition(t, ns, "btc", v1alpha1.ConditionReady, metav1.ConditionTrue, controllers.ReasonAvailable)
	if got := getAsset(t, ns, "btc"); got.Status.Confirmations != 6 || got.Status.ObservedGeneration != got.Generation {
		t.Errorf("status confirmations %d observedGeneration %d generation %d", got.Status.Confirmations, got.Status.ObservedGeneration, got.Generation)
	}
}

func TestSecretRotationRollsHelper(t *testing.T) {
	ns := newNamespace(t)
	secret := sampleSecret(ns)
	create(t, secret, sampleAsset(ns, "btc"))
	markAvailable(t, ns, "btc")
	condition(t, ns, "btc", v1alpha1.ConditionReady, metav1.ConditionTrue, controllers.ReasonAvailable)
	d, _ := getDeployment(ns, "btc")
	oldHash := d.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation]

	// A key the asset does not reference changes nothing.
	settle(t, ns, time.Second)
	seen := reconciles(t)
	s := &corev1.Secret{}
	if err := env.k8s.Get(context.Background(), client.ObjectKeyFromObject(secret), s); err != nil {
		t.Fatal(err)
	}
	s.Data["unrelated"] = []byte("x")
	if err := env.k8s.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTime, func() error {
		if reconciles(t) <= seen {
			return fmt.Errorf("Secret change did not trigger a reconcile")
		}
		return nil
	})
	settle(t, ns, 500*time.Millisecond)
	if d, _ := getDeployment(ns, "btc"); d.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation] != oldHash {
		t.Fatalf("an unreferenced Secret key changed the pod template hash")
	}

	// Rotating the RPC password rolls the helper.
	if err := env.k8s.Get(context.Background(), client.ObjectKeyFromObject(secret), s); err != nil {
		t.Fatal(err)
	}
	s.Data["rpc-password"] = []byte("rotated-password")
	if err := env.k8s.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTime, func() error {
		d, err := getDeployment(ns, "btc")
		if err != nil {
			return err
		}
		if h := d.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation]; h == oldHash {
			return fmt.Errorf("pod template hash still %s", h)
		}
		return nil
	})
	d, _ = getDeployment(ns, "btc")
	eventually(t, waitTime, func() error {
		if got := getAsset(t, ns, "btc").Status.ConfigHash; got != d.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation] {
			return fmt.Errorf("status.configHash %s does not match the pod template", got)
		}
		return nil
	})
}

func TestMissingSecretThenRecovery(t *testing.T) {
	ns := newNamespace(t)
	create(t, sampleAsset(ns, "btc"))
	c := condition(t, ns, "btc", v1alpha1.ConditionReady, metav1.ConditionFalse, controllers.ReasonSecretNotFound)
	if !strings.Contains(c.Message, `Secret "btc-credentials"`) || !strings.Contains(c.Message, "spec.database.urlSecretRef") {
		t.Errorf("message %q does not name the Secret and the field", c.Message)
	}
	condition(t, ns, "btc", v1alpha1.ConditionDegraded, metav1.ConditionTrue, controllers.ReasonSecretNotFound)
	eventually(t, waitTime, func() error {
		ev := events(t, ns, "btc", controllers.ReasonSecretNotFound)
		if len(ev) == 0 {
			return fmt.Errorf("no SecretNotFound event")
		}
		if ev[0].Type != corev1.EventTypeWarning {
			return fmt.Errorf("SecretNotFound event is %s, want Warning", ev[0].Type)
		}
		return nil
	})
	if _, err := getDeployment(ns, "btc"); err == nil {
		t.Errorf("a Deployment was created although its Secret is missing")
	}

	// A Secret without one of the referenced keys is named precisely too.
	partial := sampleSecret(ns)
	delete(partial.StringData, "api-token")
	create(t, partial)
	c = condition(t, ns, "btc", v1alpha1.ConditionReady, metav1.ConditionFalse, controllers.ReasonSecretKeyNotFound)
	if !strings.Contains(c.Message, `no key "api-token"`) {
		t.Errorf("message %q does not name the missing key", c.Message)
	}

	// The Secret is completed: the asset recovers by itself.
	s := &corev1.Secret{}
	if err := env.k8s.Get(context.Background(), client.ObjectKeyFromObject(partial), s); err != nil {
		t.Fatal(err)
	}
	s.Data["api-token"] = []byte("now-there")
	if err := env.k8s.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTime, func() error { _, err := getDeployment(ns, "btc"); return err })
	condition(t, ns, "btc", v1alpha1.ConditionDegraded, metav1.ConditionFalse, controllers.ReasonReconciled)
	markAvailable(t, ns, "btc")
	condition(t, ns, "btc", v1alpha1.ConditionReady, metav1.ConditionTrue, controllers.ReasonAvailable)
}

func TestNoWritesWhenNothingChanged(t *testing.T) {
	ns := readyAsset(t, "btc")
	before := settle(t, ns, time.Second)
	generation := getAsset(t, ns, "btc").Generation
	secretReads := env.writes.secretGets(ns)

	// Each of these makes the operator reconcile without anything to change.
	touches := []func(){
		func() { // an unrelated annotation on the CryptoAsset
			if err := update(assetRef(ns, "btc"), func(ca *v1alpha1.CryptoAsset) {
				ca.Annotations = map[string]string{"example.com/touched": "1"}
			}); err != nil {
				t.Fatal(err)
			}
		},
		func() { // an unrelated label on an owned object
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "btc-helper"}}
			if err := update(cm, func(cm *corev1.ConfigMap) { cm.Labels["example.com/touched"] = "1" }); err != nil {
				t.Fatal(err)
			}
		},
	}
	for i, touch := range touches {
		seen := reconciles(t)
		touch()
		eventually(t, waitTime, func() error {
			if reconciles(t) <= seen {
				return fmt.Errorf("touch %d did not trigger a reconcile", i)
			}
			return nil
		})
	}
	after := settle(t, ns, time.Second)
	if g := getAsset(t, ns, "btc").Generation; g != generation {
		t.Fatalf("a read-modify-write of annotations changed the spec (generation %d -> %d): defaults do not round-trip", generation, g)
	}
	if after != before {
		_, paths := env.writes.count(ns)
		t.Fatalf("operator wrote %d times on no-op reconciles: %v", after-before, paths[before:])
	}
	// Nor did it read the Secrets again: their versions in the metadata cache had not changed.
	if n := env.writes.secretGets(ns) - secretReads; n != 0 {
		t.Errorf("operator read Secrets %d times on no-op reconciles", n)
	}
}

func TestRescanAnnotationIsNoticed(t *testing.T) {
	ns := readyAsset(t, "btc")

	annotate := func(kv map[string]string) {
		t.Helper()
		ca := getAsset(t, ns, "btc")
		base := ca.DeepCopy()
		if ca.Annotations == nil {
			ca.Annotations = map[string]string{}
		}
		for k, v := range kv {
			ca.Annotations[k] = v
		}
		if err := env.k8s.Patch(context.Background(), ca, client.MergeFrom(base)); err != nil {
			t.Fatal(err)
		}
	}
	annotate(map[string]string{v1alpha1.RescanAnnotation: "1700000000"})
	eventually(t, waitTime, func() error {
		if got := getAsset(t, ns, "btc").Status.ObservedRescanToken; got != "1700000000" {
			return fmt.Errorf("observedRescanToken %q", got)
		}
		if n := len(events(t, ns, "btc", controllers.ReasonRescanRequested)); n != 1 {
			return fmt.Errorf("%d RescanRequested events, want 1", n)
		}
		return nil
	})

	// The same token again is not a new request.
	seen := reconciles(t)
	annotate(map[string]string{"example.com/other": "x", v1alpha1.RescanAnnotation: "1700000000"})
	eventually(t, waitTime, func() error {
		if reconciles(t) <= seen {
			return fmt.Errorf("no reconcile yet")
		}
		return nil
	})
	settle(t, ns, 500*time.Millisecond)
	if n := len(events(t, ns, "btc", controllers.ReasonRescanRequested)); n != 1 {
		t.Errorf("%d RescanRequested events after repeating the token, want 1", n)
	}

	// A bad start height is reported instead of being passed on.
	annotate(map[string]string{v1alpha1.RescanAnnotation: "1700000001", v1alpha1.RescanFromHeightAnnotation: "yesterday"})
	eventually(t, waitTime, func() error {
		ev := events(t, ns, "btc", controllers.ReasonInvalidRescanRequest)
		if len(ev) != 1 || ev[0].Type != corev1.EventTypeWarning || !strings.Contains(ev[0].Note, `"yesterday"`) {
			return fmt.Errorf("want one Warning InvalidRescanRequest event naming the value, got %d", len(ev))
		}
		return nil
	})
}

func TestChildNameConflictIsReported(t *testing.T) {
	ns := newNamespace(t)
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "btc-helper", Namespace: ns}, Data: map[string]string{"mine": "yes"}}
	create(t, sampleSecret(ns), foreign, sampleAsset(ns, "btc"))
	c := condition(t, ns, "btc", v1alpha1.ConditionDegraded, metav1.ConditionTrue, controllers.ReasonChildConflict)
	if !strings.Contains(c.Message, `ConfigMap "btc-helper" already exists`) {
		t.Errorf("message %q does not name the conflicting object", c.Message)
	}
	cm := &corev1.ConfigMap{}
	if err := env.k8s.Get(context.Background(), client.ObjectKeyFromObject(foreign), cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data["mine"] != "yes" || len(cm.OwnerReferences) != 0 {
		t.Errorf("the operator changed a ConfigMap it does not own: %+v", cm)
	}
}

func TestDefaultsAndCoinDefaults(t *testing.T) {
	ns := newNamespace(t)
	ca := sampleAsset(ns, "ltc")
	ca.Spec.Coin = "litecoin"
	ca.Spec.Confirmations = nil
	create(t, sampleSecret(ns), ca)
	got := getAsset(t, ns, "ltc")
	if got.Spec.MaxTrackedConfirmations != 15 || got.Spec.Broadcast.Period.Duration != 30*time.Second ||
		got.Spec.Notify.PollInterval.Duration != time.Minute || got.Spec.Backend.Bitcoind.Timeout.Duration != 30*time.Second ||
		got.Spec.Notify.HTTP.Port != 28882 || got.Spec.API.Port != 8080 {
		t.Errorf("API server defaults not applied: %+v", got.Spec)
	}
	eventually(t, waitTime, func() error {
		if c := getAsset(t, ns, "ltc").Status.Confirmations; c != 6 {
			return fmt.Errorf("status.confirmations %d, want litecoin's default 6", c)
		}
		return nil
	})
}

func TestSidecarsRenderedAndRefused(t *testing.T) {
	ns := newNamespace(t)
	ca := sampleAsset(ns, "btc")
	ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyPipe}
	ca.Spec.Helper.Sidecars = []runtime.RawExtension{{Raw: []byte(`{"name":"bitcoind","image":"bitcoind:27","imagee":"typo"}`)}}
	create(t, sampleSecret(ns), ca)
	c := condition(t, ns, "btc", v1alpha1.ConditionReady, metav1.ConditionFalse, controllers.ReasonInvalidConfig)
	if !strings.Contains(c.Message, "spec.helper.sidecars[0]") || !strings.Contains(c.Message, `unknown field "imagee"`) {
		t.Fatalf("message %q does not name the sidecar's problem", c.Message)
	}
	if _, err := getDeployment(ns, "btc"); err == nil {
		t.Fatal("a Deployment was rendered with a broken sidecar")
	}

	// Fixed: the sidecar runs beside the helper with the pipe's directory mounted.
	if err := update(assetRef(ns, "btc"), func(ca *v1alpha1.CryptoAsset) {
		ca.Spec.Helper.Sidecars = []runtime.RawExtension{{Raw: []byte(`{"name":"bitcoind","image":"bitcoind:27"}`)}}
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTime, func() error {
		d, err := getDeployment(ns, "btc")
		if err != nil {
			return err
		}
		cs := d.Spec.Template.Spec.Containers
		if len(cs) != 2 || cs[1].Name != "bitcoind" || len(cs[1].VolumeMounts) != 1 || cs[1].VolumeMounts[0].MountPath != "/run/cryptoassets/walletnotify" {
			return fmt.Errorf("containers %+v", cs)
		}
		return nil
	})
}

func TestSimulatedBackendSaysSo(t *testing.T) {
	ns := newNamespace(t)
	ca := sampleAsset(ns, "sim")
	ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendNull}
	create(t, sampleSecret(ns), ca)
	eventually(t, waitTime, func() error { _, err := getDeployment(ns, "sim"); return err })
	markAvailable(t, ns, "sim")
	c := condition(t, ns, "sim", v1alpha1.ConditionReady, metav1.ConditionTrue, controllers.ReasonAvailable)
	if !strings.Contains(c.Message, "simulator") {
		t.Fatalf("Ready message %q does not say the backend is simulated", c.Message)
	}
}

// A hand edit of a field the operator owns is brought back, although the child's rendered-hash
// annotation still matches; an edit of what it does not own (a label) is left alone.
func TestHandEditsOfChildrenAreReverted(t *testing.T) {
	ctx := context.Background()
	ns := readyAsset(t, "btc")

	// kubectl scale deploy btc-helper --replicas=0
	d, err := getDeployment(ns, "btc")
	if err != nil {
		t.Fatal(err)
	}
	want := *d.Spec.Replicas
	if err := update(d, func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To(int32(0)) }); err != nil {
		t.Fatal(err)
	}
	// kubectl edit cm btc-helper: the rendered config replaced.
	cm := &corev1.ConfigMap{}
	if err := env.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "btc-helper"}, cm); err != nil {
		t.Fatal(err)
	}
	rendered := cm.Data
	if err := update(cm, func(cm *corev1.ConfigMap) { cm.Data = map[string]string{"helper.yaml": "edited: by hand\n"} }); err != nil {
		t.Fatal(err)
	}
	// The edits carry no change of the CryptoAsset: only the children's own watch brings the
	// reconcile that reverts them.
	eventually(t, waitTime, func() error {
		d, err := getDeployment(ns, "btc")
		if err != nil {
			return err
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != want {
			return fmt.Errorf("replicas %v, want %d", d.Spec.Replicas, want)
		}
		if err := env.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "btc-helper"}, cm); err != nil {
			return err
		}
		if !reflect.DeepEqual(cm.Data, rendered) {
			return fmt.Errorf("config map data %v", cm.Data)
		}
		return nil
	})
	// And then it is quiet again.
	before := settle(t, ns, time.Second)
	if after := settle(t, ns, time.Second); after != before {
		_, paths := env.writes.count(ns)
		t.Fatalf("operator kept writing after reverting: %v", paths[before:])
	}
}

// A child deleted by hand comes back, although nothing the operator renders from has changed
// (the operator skips rendering while the CryptoAsset, its Secrets and its children stay as it
// left them).
func TestDeletedChildrenAreRecreated(t *testing.T) {
	ctx := context.Background()
	ns := readyAsset(t, "btc")
	key := client.ObjectKey{Namespace: ns, Name: "btc-helper"}
	for _, obj := range []client.Object{&rbacv1.RoleBinding{}, &corev1.ConfigMap{}} {
		if err := env.k8s.Get(ctx, key, obj); err != nil {
			t.Fatal(err)
		}
		gone := obj.GetUID()
		if err := env.k8s.Delete(ctx, obj); err != nil {
			t.Fatal(err)
		}
		eventually(t, waitTime, func() error {
			if err := env.k8s.Get(ctx, key, obj); err != nil {
				return err
			}
			if obj.GetUID() == gone {
				return fmt.Errorf("%T still the deleted one", obj)
			}
			return nil
		})
		if obj.GetAnnotations()[v1alpha1.RenderedHashAnnotation] == "" || metav1.GetControllerOf(obj) == nil {
			t.Fatalf("recreated %T lacks its rendered hash or owner: %v %v", obj, obj.GetAnnotations(), obj.GetOwnerReferences())
		}
	}
	cm := &corev1.ConfigMap{}
	if err := env.k8s.Get(ctx, key, cm); err != nil || len(cm.Data) == 0 {
		t.Fatalf("recreated ConfigMap holds no config: %v %v", cm.Data, err)
	}
}

// TestReadyNeverPrecedesTheRollout watches the CryptoAsset through a spec edit: no version of it
// may say Ready=True for the new config before the Deployment controller (played by the test)
// has observed the new Deployment and rolled it out.
func TestReadyNeverPrecedesTheRollout(t *testing.T) {
	ns := readyAsset(t, "btc")
	oldHash := getAsset(t, ns, "btc").Status.ConfigHash

	ctx, cancel := context.WithTimeout(context.Background(), 6*waitTime)
	defer cancel()
	// The watch may be closed by the server or the client at any time: it is opened again from
	// the last version seen, so no version of the object goes unseen.
	var lastVersion string
	watchFrom := func() watch.Interface {
		t.Helper()
		opts := []client.ListOption{client.InNamespace(ns)}
		if lastVersion != "" {
			opts = append(opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: lastVersion}})
		}
		w, err := env.k8s.Watch(ctx, &v1alpha1.CryptoAssetList{}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	lastVersion = getAsset(t, ns, "btc").ResourceVersion
	w := watchFrom()
	defer func() { w.Stop() }()
	if err := update(assetRef(ns, "btc"), func(ca *v1alpha1.CryptoAsset) { ca.Spec.Confirmations = ptr.To(int32(5)) }); err != nil {
		t.Fatal(err)
	}
	var rolledOut atomic.Bool // set before the test plays the Deployment controller
	seenNotReady := false
	var seen []string // what each version said, for the failure message
	for {
		var ev watch.Event
		var open bool
		select {
		case ev, open = <-w.ResultChan():
		case <-ctx.Done():
			t.Fatalf("Ready never came back for the new config (saw it not ready: %v); versions seen:\n%s", seenNotReady, strings.Join(seen, "\n"))
		}
		if !open {
			w = watchFrom()
			continue
		}
		ca, ok := ev.Object.(*v1alpha1.CryptoAsset)
		if ok {
			lastVersion = ca.ResourceVersion
			r := meta.FindStatusCondition(ca.Status.Conditions, v1alpha1.ConditionReady)
			seen = append(seen, fmt.Sprintf("%s generation %d hash %.8s ready %+v", ev.Type, ca.Generation, ca.Status.ConfigHash, r))
		}
		if !ok || ca.Status.ConfigHash == oldHash || ca.Status.ConfigHash == "" {
			continue
		}
		ready := meta.FindStatusCondition(ca.Status.Conditions, v1alpha1.ConditionReady)
		if ready == nil {
			continue
		}
		if ready.Status == metav1.ConditionTrue {
			if !rolledOut.Load() {
				t.Fatalf("Ready=True (%s: %s) for the new config before the rollout", ready.Reason, ready.Message)
			}
			if ready.ObservedGeneration != ca.Generation {
				t.Fatalf("Ready=True for generation %d, the object is at %d", ready.ObservedGeneration, ca.Generation)
			}
			break
		}
		if !seenNotReady {
			seenNotReady = true
			rolledOut.Store(true)
			markAvailable(t, ns, "btc")
		}
	}
}

// readyAsset creates a namespace holding the sample Secret and a CryptoAsset name whose helper the
// test's Deployment controller has made available, and waits for it to be Ready.
func readyAsset(t *testing.T, name string) string {
	t.Helper()
	ns := newNamespace(t)
	create(t, sampleSecret(ns), sampleAsset(ns, name))
	markAvailable(t, ns, name)
	condition(t, ns, name, v1alpha1.ConditionReady, metav1.ConditionTrue, controllers.ReasonAvailable)
	return ns
}
