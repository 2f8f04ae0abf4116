package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
)

// errNotOwned is returned when a child's name is taken by an object this CryptoAsset does not control.
type errNotOwned struct {
	kind, name string
}

func (e *errNotOwned) Error() string {
	return fmt.Sprintf("%s %q already exists and is not managed by this CryptoAsset; rename or delete it", e.kind, e.name)
}

// errCacheBehind: a child this CryptoAsset owns exists but the operator's cache has not seen it
// yet (created a moment ago). Nothing is wrong; the reconcile is retried.
var errCacheBehind = errors.New("a helper object exists but the cache has not seen it yet")

// writes remembers, per child UID, the versions the operator itself wrote or accepted: the
// Deployment's generation (its status moves its resourceVersion all the time), the
// resourceVersion of the others. A child whose version is not among them was changed by someone
// else (`kubectl scale deploy btc-helper --replicas=0`) and is brought back, although its
// rendered-hash annotation still matches. A child edited while the operator was not running is
// taken as it is found until the next change. Children are grouped by their CryptoAsset, so a
// deleted asset's are forgotten with it and the record does not grow with every asset ever made.
type writes struct{ owners sync.Map } // owner (types.NamespacedName) -> *sync.Map (child UID -> []string)

func version(obj client.Object) string {
	if _, ok := obj.(*appsv1.Deployment); ok {
		return "g" + strconv.FormatInt(obj.GetGeneration(), 10)
	}
	return "rv" + obj.GetResourceVersion()
}

// children is the record of obj's CryptoAsset (its controller).
func (w *writes) children(obj client.Object) *sync.Map {
	owner := types.NamespacedName{Namespace: obj.GetNamespace()}
	if ref := metav1.GetControllerOf(obj); ref != nil {
		owner.Name = ref.Name
	}
	// Load first: LoadOrStore would allocate a map on every call, and this runs for every child
	// of every reconcile.
	if m, ok := w.owners.Load(owner); ok {
		return m.(*sync.Map)
	}
	m, _ := w.owners.LoadOrStore(owner, &sync.Map{})
	return m.(*sync.Map)
}

func (w *writes) remember(obj client.Object, versions ...string) {
	if w != nil {
		w.children(obj).Store(obj.GetUID(), versions)
	}
}

// editedByOthers says whether obj carries a version the operator neither wrote nor accepted.
func (w *writes) editedByOthers(obj client.Object) bool {
	if w == nil {
		return false
	}
	known, ok := w.children(obj).Load(obj.GetUID())
	if !ok {
		w.remember(obj, version(obj))
		return false
	}
	return !slices.Contains(known.([]string), version(obj))
}

// forget drops the record of a CryptoAsset's children.
func (w *writes) forget(owner types.NamespacedName) { w.owners.Delete(owner) }

// mergeFunc copies the fields the operator owns from desired into existing.
type mergeFunc func(existing, desired client.Object)

func renderedHash(obj client.Object) (string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return "", fmt.Errorf("hashing rendered %T: %w", obj, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}

// apply creates desired or brings the existing object in line with it, writing only when the
// rendered content changed since the last write or someone else changed the object. It reports
// whether it wrote. uncached reads straight from the API server: for whose an object is that
// exists but the cache has not seen, and for the whole object before an update. create need only
// set desired's UID and versions: nothing else of a created child is kept.
func apply(ctx context.Context, c client.Client, create Creator, uncached client.Reader, w *writes, desired client.Object, merge mergeFunc) (bool, error) {
	hash, err := renderedHash(desired)
	if err != nil {
		return false, err
	}
	setAnnotation(desired, v1alpha1.RenderedHashAnnotation, hash)
	kind := reflect.TypeOf(desired).Elem().Name()

	existing := reflect.New(reflect.TypeOf(desired).Elem()).Interface().(client.Object)
	err = c.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	switch {
	case apierrors.IsNotFound(err):
		if err := create.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Invisible to the cache: someone else's (the cache holds only objects the
				// operator labelled), or ours and the cache is behind.
				if err := uncached.Get(ctx, client.ObjectKeyFromObject(desired), existing); err != nil {
					return false, fmt.Errorf("reading %s %s: %w", kind, desired.GetName(), err)
				}
				if !controlledBySame(existing, desired) {
					return false, &errNotOwned{kind: kind, name: desired.GetName()}
				}
				return false, fmt.Errorf("%s %s: %w", kind, desired.GetName(), errCacheBehind)
			}
			return false, fmt.Errorf("creating %s %s: %w", kind, desired.GetName(), err)
		}
		w.remember(desired, version(desired))
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading %s %s: %w", kind, desired.GetName(), err)
	}

	if !controlledBySame(existing, desired) {
		return false, &errNotOwned{kind: kind, name: desired.GetName()}
	}
	if existing.GetAnnotations()[v1alpha1.RenderedHashAnnotation] == hash && !w.editedByOthers(existing) {
		return false, nil
	}
	// The cache holds children without what the operator renders into them (to keep its memory
	// small): merge into the object as the API server has it.
	if err := uncached.Get(ctx, client.ObjectKeyFromObject(desired), existing); err != nil {
		return false, fmt.Errorf("reading %s %s: %w", kind, desired.GetName(), err)
	}
	if !controlledBySame(existing, desired) {
		return false, &errNotOwned{kind: kind, name: desired.GetName()}
	}
	rendered := existing.GetAnnotations()[v1alpha1.RenderedHashAnnotation] == hash
	updated := existing.DeepCopyObject().(client.Object)
	merge(updated, desired)
	labels := updated.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range desired.GetLabels() {
		labels[k] = v
	}
	updated.SetLabels(labels)
	setAnnotation(updated, v1alpha1.RenderedHashAnnotation, hash)
	updated.SetOwnerReferences(desired.GetOwnerReferences())
	if rendered && equality.Semantic.DeepEqual(existing, updated) {
		// Someone changed what the operator does not own (a label, an annotation): theirs.
		w.remember(existing, version(existing))
		return false, nil
	}
	before := version(existing)
	if err := c.Update(ctx, updated); err != nil {
		return false, fmt.Errorf("updating %s %s: %w", kind, desired.GetName(), err)
	}
	// The cache may still show the version before this write for a moment: both are ours.
	w.remember(updated, before, version(updated))
	return true, nil
}

// controlledBySame says whether existing has desired's controller.
func controlledBySame(existing, desired client.Object) bool {
	owner := metav1.GetControllerOf(desired)
	ref := metav1.GetControllerOf(existing)
	return ref != nil && owner != nil && ref.UID == owner.UID
}

func setAnnotation(obj client.Object, key, value string) {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[key] = value
	obj.SetAnnotations(a)
}

// The merge functions copy only what the operator renders, leaving fields the API server or other
// controllers own (a Service's clusterIP, a Deployment's status) as they are.

func mergeConfigMap(existing, desired client.Object) {
	existing.(*corev1.ConfigMap).Data = desired.(*corev1.ConfigMap).Data
	existing.(*corev1.ConfigMap).BinaryData = nil
}

func mergeServiceAccount(_, _ client.Object) {}

func mergeRole(existing, desired client.Object) {
	existing.(*rbacv1.Role).Rules = desired.(*rbacv1.Role).Rules
}

func mergeRoleBinding(existing, desired client.Object) {
	// roleRef is immutable and rendered identically every time; only subjects can be brought back.
	existing.(*rbacv1.RoleBinding).Subjects = desired.(*rbacv1.RoleBinding).Subjects
}

func mergeService(existing, desired client.Object) {
	e, d := existing.(*corev1.Service), desired.(*corev1.Service)
	e.Spec.Selector = d.Spec.Selector
	e.Spec.Ports = d.Spec.Ports
	e.Spec.Type = d.Spec.Type
}

func mergeDeployment(existing, desired client.Object) {
	e, d := existing.(*appsv1.Deployment), desired.(*appsv1.Deployment)
	// The selector is immutable and rendered from labels that never change.
	e.Spec.Replicas = d.Spec.Replicas
	e.Spec.RevisionHistoryLimit = d.Spec.RevisionHistoryLimit
	e.Spec.Strategy = d.Spec.Strategy
	e.Spec.Template = d.Spec.Template
}
