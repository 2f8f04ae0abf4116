package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
// rendered content changed since the last write. It reports whether it wrote.
func apply(ctx context.Context, c client.Client, desired client.Object, merge mergeFunc) (bool, error) {
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
		if err := c.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// The operator's cache only holds objects it labelled; one that exists but is
				// invisible to it belongs to someone else.
				return false, &errNotOwned{kind: kind, name: desired.GetName()}
			}
			return false, fmt.Errorf("creating %s %s: %w", kind, desired.GetName(), err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading %s %s: %w", kind, desired.GetName(), err)
	}

	owner := metav1.GetControllerOf(desired)
	if ref := metav1.GetControllerOf(existing); ref == nil || ref.UID != owner.UID {
		return false, &errNotOwned{kind: kind, name: desired.GetName()}
	}
	if existing.GetAnnotations()[v1alpha1.RenderedHashAnnotation] == hash {
		return false, nil
	}
	merge(existing, desired)
	labels := existing.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range desired.GetLabels() {
		labels[k] = v
	}
	existing.SetLabels(labels)
	setAnnotation(existing, v1alpha1.RenderedHashAnnotation, hash)
	existing.SetOwnerReferences(desired.GetOwnerReferences())
	if err := c.Update(ctx, existing); err != nil {
		return false, fmt.Errorf("updating %s %s: %w", kind, desired.GetName(), err)
	}
	return true, nil
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
