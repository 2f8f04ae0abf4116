package controllers

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
)

// The status patch says what controller-runtime's MergeFrom with the optimistic lock says for the
// same change, field for field: the same fields set, the same ones removed (null), the same
// resourceVersion lock, and nothing about the spec or metadata.
func TestStatusMergePatchIsMergeFromsPatch(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC))
	ready := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "HelperReady", Message: "1/1 ready", LastTransitionTime: at, ObservedGeneration: 3}
	backend := metav1.Condition{Type: "BackendReachable", Status: metav1.ConditionFalse, Reason: "Unreachable", Message: "dial tcp: refused", LastTransitionTime: at}
	helper := &v1alpha1.HelperObjects{ConfigMap: "btc-helper", Deployment: "btc-helper", Service: "btc-helper", ServiceAccount: "btc-helper"}
	rescan := &v1alpha1.RescanStatus{RequestedToken: "t1", HandledToken: "t0", Phase: "Running", StartTime: &at, FromHeight: 10, Done: 5, Total: 100}

	for _, tc := range []struct {
		name          string
		before, after v1alpha1.CryptoAssetStatus
	}{
		{"first status of a new asset", v1alpha1.CryptoAssetStatus{},
			v1alpha1.CryptoAssetStatus{ObservedGeneration: 1, Helper: helper, Confirmations: 3, ConfigHash: "abc",
				Conditions: []metav1.Condition{backend}}},
		{"a condition added; the helper's rescan kept", v1alpha1.CryptoAssetStatus{ObservedGeneration: 3, Helper: helper, Rescan: rescan, Conditions: []metav1.Condition{backend}},
			v1alpha1.CryptoAssetStatus{ObservedGeneration: 3, Helper: helper, Rescan: rescan, Conditions: []metav1.Condition{backend, ready}}},
		{"fields removed", v1alpha1.CryptoAssetStatus{ObservedGeneration: 3, Helper: helper, ConfigHash: "abc", ObservedRescanToken: "t0", Conditions: []metav1.Condition{ready}},
			v1alpha1.CryptoAssetStatus{ObservedGeneration: 4}},
		{"a nested field changed", v1alpha1.CryptoAssetStatus{ObservedGeneration: 4, Helper: helper},
			v1alpha1.CryptoAssetStatus{ObservedGeneration: 4, Helper: &v1alpha1.HelperObjects{ConfigMap: "btc-helper", Deployment: "btc-helper-2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := &v1alpha1.CryptoAsset{
				ObjectMeta: metav1.ObjectMeta{Name: "btc", Namespace: "shop", ResourceVersion: "4711", Generation: 4,
					Labels: map[string]string{"team": "payments"}, Annotations: map[string]string{"cryptoassets.io/rescan": "t1"}},
				Spec:   v1alpha1.CryptoAssetSpec{Coin: "bitcoin"},
				Status: *tc.before.DeepCopy(),
			}
			base := ca.DeepCopy()
			ca.Status = *tc.after.DeepCopy()
			want, err := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}).Data(ca)
			if err != nil {
				t.Fatal(err)
			}
			patch, err := statusMergePatch(ca.ResourceVersion, &tc.before, &tc.after)
			if err != nil {
				t.Fatal(err)
			}
			if patch.Type() != client.Merge.Type() {
				t.Errorf("patch type %s, want %s", patch.Type(), client.Merge.Type())
			}
			got, err := patch.Data(ca)
			if err != nil {
				t.Fatal(err)
			}
			var g, w map[string]any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("%s: %v", got, err)
			}
			if err := json.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("status patch\n %s\nMergeFrom's\n %s", got, want)
			}
		})
	}

	if _, err := statusMergePatch("", &v1alpha1.CryptoAssetStatus{}, &v1alpha1.CryptoAssetStatus{ObservedGeneration: 1}); err == nil {
		t.Error("a patch without a resourceVersion to lock it to was made")
	}
}
