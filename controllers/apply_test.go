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
			wrote, err := apply(ctx, behindCache{server}, server, &writes{}, desired(), mergeConfigMap)
			if wrote || !tc.want(err) {
				t.Fatalf("wrote %v, error %v", wrote, err)
			}
		})
	}
}
