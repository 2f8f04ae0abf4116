package operator

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// TestMetadataWriterSetsWhatTheServerAssigned: against a real API server, objects of a core
// kind, a grouped kind, a cluster-scoped kind and a custom resource (JSON, not protobuf) are
// created, and the object handed in carries the UID, resourceVersion, generation and creation
// time the server has, without the server's defaults. A custom resource's status is patched,
// and the object carries the server's new resourceVersion. Refusals are the API server's errors.
func TestMetadataWriterSetsWhatTheServerAssigned(t *testing.T) {
	if code, ok := testassets.Check("KUBEBUILDER_ASSETS"); !ok {
		if code != 0 {
			t.Fatal("KUBEBUILDER_ASSETS is not set")
		}
		t.Skip("KUBEBUILDER_ASSETS not set")
	}
	testEnv := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testassets.StartEnv(testEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := testEnv.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	scheme, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := newMemoMapper(cfg, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	server, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	create := newMetadataWriter(scheme, mapper, cfg, httpClient)

	labels := map[string]string{"app": "helper"}
	for _, obj := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "btc-helper", Namespace: "default"}, Data: map[string]string{"config.yaml": "version: 1\n"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "btc-helper", Namespace: "default"}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "helper", Image: "cryptoassets:dev"}}}},
		}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&v1alpha1.CryptoAsset{ObjectMeta: metav1.ObjectMeta{Name: "btc", Namespace: "default"}, Spec: v1alpha1.CryptoAssetSpec{
			Coin:    "bitcoin",
			Network: "simnet",
			Backend: v1alpha1.BackendSpec{Type: v1alpha1.BackendBitcoind, Bitcoind: &v1alpha1.BitcoindBackend{
				URL: "http://127.0.0.1:18554", UsernameSecretRef: ref("rpc-username"), PasswordSecretRef: ref("rpc-password"),
			}},
			Notify:   v1alpha1.NotifySpec{Method: v1alpha1.NotifyHTTP, HTTP: &v1alpha1.HTTPNotify{TokenSecretRef: ptr.To(ref("walletnotify-token"))}},
			Database: v1alpha1.DatabaseSpec{URLSecretRef: ref("database-url")},
			API:      v1alpha1.APISpec{TokenSecretRef: ref("api-token")},
		}},
	} {
		t.Run(fmt.Sprintf("%T", obj), func(t *testing.T) {
			if err := create.Create(ctx, obj); err != nil {
				t.Fatalf("creating: %v", err)
			}
			got := obj.DeepCopyObject().(client.Object)
			if err := server.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
				t.Fatalf("reading it back: %v", err)
			}
			if obj.GetUID() != got.GetUID() || obj.GetResourceVersion() != got.GetResourceVersion() ||
				obj.GetGeneration() != got.GetGeneration() || !obj.GetCreationTimestamp().Time.Equal(got.GetCreationTimestamp().Time) {
				t.Errorf("set uid %q rv %q generation %d created %v; the server has %q %q %d %v",
					obj.GetUID(), obj.GetResourceVersion(), obj.GetGeneration(), obj.GetCreationTimestamp(),
					got.GetUID(), got.GetResourceVersion(), got.GetGeneration(), got.GetCreationTimestamp())
			}
			if obj.GetUID() == "" || obj.GetResourceVersion() == "" {
				t.Errorf("no UID or resourceVersion set: %q %q", obj.GetUID(), obj.GetResourceVersion())
			}
			if d, ok := obj.(*appsv1.Deployment); ok {
				if d.Generation != 1 {
					t.Errorf("generation %d, want 1", d.Generation)
				}
				if d.Spec.Template.Spec.RestartPolicy != "" || got.(*appsv1.Deployment).Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
					t.Errorf("restartPolicy %q here, %q on the server: want the server's default only there",
						d.Spec.Template.Spec.RestartPolicy, got.(*appsv1.Deployment).Spec.Template.Spec.RestartPolicy)
				}
			}

			again := got.DeepCopyObject().(client.Object)
			again.SetResourceVersion("")
			again.SetUID("")
			if err := create.Create(ctx, again); !apierrors.IsAlreadyExists(err) {
				t.Errorf("creating it again: %v, want AlreadyExists", err)
			}
		})
	}

	t.Run("status patch", func(t *testing.T) {
		ca := &v1alpha1.CryptoAsset{}
		if err := server.Get(ctx, client.ObjectKey{Namespace: "default", Name: "btc"}, ca); err != nil {
			t.Fatal(err)
		}
		stale := ca.DeepCopy()
		base := ca.DeepCopy()
		ca.Status.ObservedGeneration = ca.Generation
		ca.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "HelperStarting",
			Message: "waiting for the helper", LastTransitionTime: metav1.Now()}}
		want := ca.Status.DeepCopy()
		lock := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
		if err := create.PatchStatus(ctx, ca, lock); err != nil {
			t.Fatalf("patching status: %v", err)
		}
		got := &v1alpha1.CryptoAsset{}
		if err := server.Get(ctx, client.ObjectKeyFromObject(ca), got); err != nil {
			t.Fatal(err)
		}
		if got.Status.ObservedGeneration != 1 || len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Reason != "HelperStarting" {
			t.Errorf("the server has status %+v, want observedGeneration 1 and the HelperStarting condition", got.Status)
		}
		if ca.ResourceVersion != got.ResourceVersion || ca.ResourceVersion == base.ResourceVersion {
			t.Errorf("resourceVersion %q set, the server has %q (it was %q before the patch)", ca.ResourceVersion, got.ResourceVersion, base.ResourceVersion)
		}
		if ca.Status.ObservedGeneration != want.ObservedGeneration || len(ca.Status.Conditions) != 1 || ca.UID != got.UID {
			t.Errorf("the patched object changed beyond its resourceVersion: status %+v, uid %q", ca.Status, ca.UID)
		}

		// A patch made from the version before is refused, not applied over the newer status.
		stale.Status.ObservedGeneration = 7
		if err := create.PatchStatus(ctx, stale, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); !apierrors.IsConflict(err) {
			t.Errorf("patching from a stale version: %v, want Conflict", err)
		}
		gone := ca.DeepCopy()
		gone.Name = "not-there"
		gone.Status.ObservedGeneration = 2
		if err := create.PatchStatus(ctx, gone, client.MergeFrom(ca)); !apierrors.IsNotFound(err) {
			t.Errorf("patching a CryptoAsset that does not exist: %v, want NotFound", err)
		}
	})

	bad := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "Not_A_Name", Namespace: "default"}}
	if err := create.Create(ctx, bad); !apierrors.IsInvalid(err) {
		t.Errorf("creating a ConfigMap with an invalid name: %v, want Invalid", err)
	}
	if bad.GetUID() != "" {
		t.Errorf("a refused create set UID %q", bad.GetUID())
	}
}

func ref(key string) v1alpha1.SecretKeyRef {
	return v1alpha1.SecretKeyRef{Name: "btc-credentials", Key: key}
}
