package controllers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
)

// hashMemo remembers, per CryptoAsset, the config hash last computed and what it was computed
// from: the spec's generation, the rendered config, and the version of every referenced Secret as
// the operator's cache of Secret metadata shows it. While all of these stay the same, the hash
// does too, and a reconcile (most are: a child's status changed) needs no Secret read from the API
// server. Only hashes are kept, never a Secret's data, so no Secret value lives in the operator's
// memory between reconciles.
type hashMemo struct{ m sync.Map }

type memoEntry struct{ from, hash string }

// secretVersions describes the referenced Secrets' versions from the metadata cache; ok is false
// when one is not in the cache (just created, or gone), and the Secrets must then be read.
func secretVersions(ctx context.Context, c client.Reader, ca *v1alpha1.CryptoAsset) (string, bool) {
	var b strings.Builder
	for _, name := range ca.Spec.SecretNames() {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		if err := c.Get(ctx, types.NamespacedName{Namespace: ca.Namespace, Name: name}, m); err != nil {
			return "", false
		}
		fmt.Fprintf(&b, "%s %s %s\n", name, m.UID, m.ResourceVersion)
	}
	return b.String(), true
}

func memoFrom(ca *v1alpha1.CryptoAsset, configData []byte, versions string) string {
	sum := sha256.Sum256(configData)
	return fmt.Sprintf("g%d %x\n%s", ca.Generation, sum, versions)
}

func (h *hashMemo) lookup(key types.NamespacedName, from string) (string, bool) {
	e, ok := h.m.Load(key)
	if !ok || e.(memoEntry).from != from {
		return "", false
	}
	return e.(memoEntry).hash, true
}

func (h *hashMemo) store(key types.NamespacedName, from, hash string) {
	h.m.Store(key, memoEntry{from: from, hash: hash})
}

func (h *hashMemo) forget(key types.NamespacedName) { h.m.Delete(key) }
