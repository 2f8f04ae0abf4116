package operator

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The memoized mapper answers as the mapper it wraps, per kind and version, and a kind it could
// not map is mapped once its API appears (a CRD installed after the operator started).
func TestMemoMapperAnswersAsTheMapperItWraps(t *testing.T) {
	v1 := schema.GroupVersion{Group: "cryptoassets.io", Version: "v1alpha1"}
	v2 := schema.GroupVersion{Group: "cryptoassets.io", Version: "v1beta1"}
	asset := schema.GroupKind{Group: "cryptoassets.io", Kind: "CryptoAsset"}
	inner := meta.NewDefaultRESTMapper([]schema.GroupVersion{v1, v2})
	m := &memoMapper{RESTMapper: inner}

	if _, err := m.RESTMapping(asset, v1.Version); !meta.IsNoMatchError(err) {
		t.Fatalf("before the API exists: got %v, want a no-match error", err)
	}
	inner.Add(v1.WithKind("CryptoAsset"), meta.RESTScopeNamespace)
	for range 2 { // the second answer comes from memory
		got, err := m.RESTMapping(asset, v1.Version)
		if err != nil {
			t.Fatalf("after the API appeared: %v", err)
		}
		if got.Resource != v1.WithResource("cryptoassets") || got.Scope.Name() != meta.RESTScopeNameNamespace {
			t.Fatalf("mapping %v %s, want resource cryptoassets, namespaced", got.Resource, got.Scope.Name())
		}
	}
	// Another version is another question: the v1alpha1 answer is not given for it.
	if got, err := m.RESTMapping(asset, v2.Version); !meta.IsNoMatchError(err) {
		t.Fatalf("for %s, served only as %s: got %v, %v; want a no-match error", v2, v1, got, err)
	}
	inner.Add(v2.WithKind("CryptoAsset"), meta.RESTScopeRoot)
	got, err := m.RESTMapping(asset, v2.Version)
	if err != nil || got.GroupVersionKind.Version != v2.Version || got.Scope.Name() != meta.RESTScopeNameRoot {
		t.Fatalf("for %s: got %v, %v", v2, got, err)
	}
}
