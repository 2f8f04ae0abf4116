package operator

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
)

// What the cache keeps of a child is what the reconciler reads from it: name, version, owner,
// the rendered-hash annotation, a Deployment's replicas and status, a Pod's labels and status.
func TestChildrenAreCachedWithWhatTheReconcilerReads(t *testing.T) {
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: "btc-helper", Namespace: "shop", UID: "u1", ResourceVersion: "42",
			Labels:          map[string]string{v1alpha1.LabelName: v1alpha1.HelperAppName, v1alpha1.LabelInstance: "btc", "team": "pay"},
			Annotations:     map[string]string{v1alpha1.RenderedHashAnnotation: "h1", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "CryptoAsset", Name: "btc", UID: "owner", Controller: ptr.To(true)}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "cryptoassets"}},
		}
	}
	transforms := map[string]func(any) (any, error){}
	for obj, tr := range childTransforms() {
		transforms[kindOf(obj)] = tr
	}
	cases := []struct {
		obj        client.Object
		keepLabels bool
		check      func(t *testing.T, obj client.Object)
	}{
		{obj: &corev1.ConfigMap{ObjectMeta: meta(), Data: map[string]string{"config.yaml": "asset: btc"}}, check: func(t *testing.T, obj client.Object) {
			if cm := obj.(*corev1.ConfigMap); cm.Data != nil {
				t.Errorf("ConfigMap data kept: %v", cm.Data)
			}
		}},
		{obj: &corev1.Service{ObjectMeta: meta(), Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}},
		{obj: &appsv1.Deployment{ObjectMeta: meta(), Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "helper"}}}}},
			Status: appsv1.DeploymentStatus{AvailableReplicas: 1}}, check: func(t *testing.T, obj client.Object) {
			d := obj.(*appsv1.Deployment)
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || len(d.Spec.Template.Spec.Containers) != 0 || d.Status.AvailableReplicas != 1 {
				t.Errorf("Deployment cached as %+v / %+v: want replicas and status only", d.Spec, d.Status)
			}
		}},
		{obj: &corev1.Pod{ObjectMeta: meta(), Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
			keepLabels: true, check: func(t *testing.T, obj client.Object) {
				if p := obj.(*corev1.Pod); p.Spec.NodeName != "" || p.Status.Phase != corev1.PodRunning {
					t.Errorf("Pod cached as %+v / %+v: want its status only", p.Spec, p.Status)
				}
			}},
	}
	for _, c := range cases {
		kind := kindOf(c.obj)
		t.Run(kind, func(t *testing.T) {
			tr, ok := transforms[kind]
			if !ok {
				t.Fatalf("no cache transform for %s", kind)
			}
			out, err := tr(c.obj)
			if err != nil {
				t.Fatal(err)
			}
			obj := out.(client.Object)
			if obj.GetName() != "btc-helper" || obj.GetResourceVersion() != "42" || metav1.GetControllerOf(obj) == nil || metav1.GetControllerOf(obj).UID != "owner" {
				t.Errorf("identity, version or owner lost: %+v", obj)
			}
			if a := obj.GetAnnotations(); len(a) != 1 || a[v1alpha1.RenderedHashAnnotation] != "h1" {
				t.Errorf("annotations %v, want the rendered hash alone", a)
			}
			want := 0
			if c.keepLabels {
				want = 3
			}
			if len(obj.GetLabels()) != want {
				t.Errorf("labels %v (keep: %v)", obj.GetLabels(), c.keepLabels)
			}
			if obj.GetManagedFields() != nil {
				t.Errorf("managed fields kept")
			}
			if c.check != nil {
				c.check(t, obj)
			}
		})
	}

	// A child without the annotation (made by an older operator, or by hand) has none cached.
	out, err := transforms[kindOf(&corev1.ConfigMap{})](&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Annotations: map[string]string{"a": "b"}}})
	if err != nil || out.(client.Object).GetAnnotations() != nil {
		t.Errorf("annotations of a child without a rendered hash: %v (%v)", out.(client.Object).GetAnnotations(), err)
	}
}

func kindOf(obj any) string { return reflect.TypeOf(obj).Elem().Name() }
