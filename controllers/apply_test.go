package controllers

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// behindCache is the operator's cache before it has seen a child: every Get is NotFound, while
// writes reach the API server (the fake client).
type behindCache struct{ client.Client }

func (c behindCache) Get(_ context.Context, key client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	return apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, key.Name)
}

// A create that finds the child existing is told apart through the uncached reader: ours with
// the cache behind is retried quietly, someone else's is a conflict.
func TestApplyTellsACacheBehindFromSomeoneElsesObject(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	owner := metav1.OwnerReference{APIVersion: "cryptoassets.io/v1alpha1", Kind: "CryptoAsset", Name: "btc", UID: types.UID("ca-1"), Controller: ptr.To(true)}
	desired := func() *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "btc-helper", Namespace: "shop", OwnerReferences: []metav1.OwnerReference{owner}},
			Data: map[string]string{"helper.yaml": "x"}}
	}
	for _, tc := range []struct {
		name     string
		existing *corev1.ConfigMap
		want     func(error) bool
	}{
		{"ours, cache behind", desired(), func(err error) bool { return errors.Is(err, errCacheBehind) }},
		{"someone else's", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "btc-helper", Namespace: "shop"}},
			func(err error) bool { var n *errNotOwned; return errors.As(err, &n) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.existing).Build()
			wrote, err := apply(ctx, behindCache{server}, server, server, &writes{}, desired(), mergeConfigMap)
			if wrote || !tc.want(err) {
				t.Fatalf("wrote %v, error %v", wrote, err)
			}
		})
	}
}

// The record of the operator's own writes is kept per CryptoAsset and goes with it: a deleted
// asset's children are forgotten (their next version is taken as found), another asset's are not.
func TestWritesOfADeletedAssetAreForgotten(t *testing.T) {
	child := func(owner, uid, rv string) *corev1.ConfigMap {
		ref := metav1.OwnerReference{APIVersion: "cryptoassets.io/v1alpha1", Kind: "CryptoAsset", Name: owner, UID: types.UID("ca-" + owner), Controller: ptr.To(true)}
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: owner + "-helper", Namespace: "shop", UID: types.UID(uid),
			ResourceVersion: rv, OwnerReferences: []metav1.OwnerReference{ref}}}
	}
	var w writes
	w.remember(child("btc", "c1", "10"), "rv10")
	w.remember(child("ltc", "c2", "20"), "rv20")
	if !w.editedByOthers(child("btc", "c1", "11")) || !w.editedByOthers(child("ltc", "c2", "21")) {
		t.Fatal("an edit by someone else was not noticed")
	}
	w.forget(types.NamespacedName{Namespace: "shop", Name: "btc"})
	if w.editedByOthers(child("btc", "c1", "12")) {
		t.Error("a deleted asset's child is still on record")
	}
	if !w.editedByOthers(child("ltc", "c2", "22")) {
		t.Error("forgetting one asset forgot another's children")
	}
	n := 0
	w.owners.Range(func(any, any) bool { n++; return true })
	if n != 2 { // ltc, and btc again: editedByOthers above took c1 as found
		t.Errorf("%d assets on record, want 2", n)
	}
}
