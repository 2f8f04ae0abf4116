// Package operator builds and runs the controller manager behind `cryptoassets operator`.
package operator

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/controllers"
	"github.com/cryptoassets/cryptoassets-operator/internal/render"
)

// Options configure the operator.
type Options struct {
	MetricsAddr string
	ProbeAddr   string
	// PprofAddr serves net/http/pprof when set ("" or "0": off), for finding where time and
	// memory go at scale.
	PprofAddr               string
	LeaderElect             bool
	LeaderElectionNamespace string
	MaxConcurrentReconciles int
	// WatchNamespaces limits the operator to these namespaces; empty means the whole cluster.
	WatchNamespaces []string
	Render          render.Options
}

// Scheme knows the built-in types and the CryptoAsset API.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseNamespaces splits a comma-separated namespace list, ignoring blanks.
func ParseNamespaces(s string) []string {
	var out []string
	for _, ns := range strings.Split(s, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

// stripForCache drops what the operator never reads from cached objects. Of the Secrets (the
// only objects cached as metadata) the operator needs the name alone, to map an edit to the
// assets that reference it; every Secret of the watched namespaces is held, so the rest goes:
// kubectl's last-applied-configuration annotation would otherwise put Secret values in memory,
// and labels and owners would make memory grow with what other applications store.
func stripForCache(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	if p, ok := obj.(*metav1.PartialObjectMetadata); ok {
		p.Annotations, p.Labels, p.OwnerReferences, p.Finalizers = nil, nil, nil, nil
	}
	return obj, nil
}

// Children are cached without what the operator renders into them, which it never reads from
// the cache: whether a child is current is told by its rendered-hash annotation and version, and
// an update first reads the whole object from the API server (controllers.apply). A Deployment
// keeps its replicas and status, a Pod its status. At 1,000 assets the pod templates alone were
// a fifth of the operator's heap.
//
// Their labels and other annotations go too (six labels on each of six children came to about
// 4 MiB at 1,000 assets): the label selector is applied by the API server, a child is mapped to
// its asset by its owner reference, and an edit of a label shows as a version the operator did not
// write. Pods keep their labels, which map them to their asset and select them.
func stripChild(strip func(obj any)) func(any) (any, error) {
	return func(obj any) (any, error) {
		obj, err := stripForCache(obj)
		if err != nil {
			return obj, err
		}
		if m, ok := obj.(metav1.Object); ok {
			if _, pod := obj.(*corev1.Pod); !pod {
				m.SetLabels(nil)
			}
			m.SetAnnotations(onlyRenderedHash(m.GetAnnotations()))
		}
		strip(obj)
		return obj, nil
	}
}

// onlyRenderedHash is a's rendered-hash annotation alone, nil when a has none.
func onlyRenderedHash(a map[string]string) map[string]string {
	hash, ok := a[v1alpha1.RenderedHashAnnotation]
	switch {
	case !ok:
		return nil
	case len(a) == 1:
		return a
	}
	return map[string]string{v1alpha1.RenderedHashAnnotation: hash}
}

func childTransforms() map[client.Object]func(any) (any, error) {
	return map[client.Object]func(any) (any, error){
		&corev1.ConfigMap{}: stripChild(func(o any) {
			if c, ok := o.(*corev1.ConfigMap); ok {
				c.Data, c.BinaryData = nil, nil
			}
		}),
		&corev1.Service{}: stripChild(func(o any) {
			if s, ok := o.(*corev1.Service); ok {
				s.Spec = corev1.ServiceSpec{}
			}
		}),
		&corev1.ServiceAccount{}: stripChild(func(any) {}),
		&rbacv1.Role{}: stripChild(func(o any) {
			if r, ok := o.(*rbacv1.Role); ok {
				r.Rules = nil
			}
		}),
		&rbacv1.RoleBinding{}: stripChild(func(o any) {
			if r, ok := o.(*rbacv1.RoleBinding); ok {
				r.Subjects = nil
			}
		}),
		&appsv1.Deployment{}: stripChild(func(o any) {
			if d, ok := o.(*appsv1.Deployment); ok {
				d.Spec = appsv1.DeploymentSpec{Replicas: d.Spec.Replicas}
			}
		}),
		&corev1.Pod{}: stripChild(func(o any) {
			if p, ok := o.(*corev1.Pod); ok {
				p.Spec = corev1.PodSpec{}
			}
		}),
	}
}

// NewManager builds the controller manager with the CryptoAsset reconciler registered.
func NewManager(ctx context.Context, cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	scheme, err := Scheme()
	if err != nil {
		return nil, fmt.Errorf("building scheme: %w", err)
	}
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedBy})
	cacheOpts := cache.Options{
		DefaultTransform: stripForCache,
		ByObject:         map[client.Object]cache.ByObject{},
	}
	// Children are cached only when they carry the operator's label, so the operator does not
	// hold every ConfigMap and Deployment of the cluster.
	for obj, transform := range childTransforms() {
		cacheOpts.ByObject[obj] = cache.ByObject{Label: managed, Transform: transform}
	}
	if len(opts.WatchNamespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.WatchNamespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		MapperProvider:                newMemoMapper,
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		PprofBindAddress:              opts.PprofAddr,
		LeaderElection:                opts.LeaderElect,
		LeaderElectionID:              LeaseID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Logger:                        quietPlannedLeaseRelease(ctx, ctrl.Log),
		// Secret values are read only when a reconcile needs them, straight from the API server;
		// never through a cache of full Secrets.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	writer := newMetadataWriter(mgr.GetScheme(), mgr.GetRESTMapper(), mgr.GetConfig(), mgr.GetHTTPClient())
	r := &controllers.CryptoAssetReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Creator:       writer,
		StatusPatcher: writer,
		// The client reads Secrets from the API server; their metadata, which the Secret
		// watch caches, comes from the cache itself.
		MetadataCache: mgr.GetCache(),
		Recorder:      mgr.GetEventRecorder("cryptoassets-operator"),
		Render:        opts.Render,
	}
	maxConcurrent := opts.MaxConcurrentReconciles
	if maxConcurrent < 1 {
		maxConcurrent = 1
	}
	if err := r.SetupWithManager(ctx, mgr, maxConcurrent); err != nil {
		return nil, fmt.Errorf("setting up the CryptoAsset controller: %w", err)
	}
	if opts.LeaderElect {
		ns := opts.LeaderElectionNamespace
		if ns == "" {
			// As controller-runtime finds it in a pod.
			b, _ := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
			ns = strings.TrimSpace(string(b))
		}
		if o := newLeaseOwner(mgr.GetClient(), ns, mgr.GetLogger().WithName("lease")); o != nil {
			if err := mgr.Add(o); err != nil {
				return nil, fmt.Errorf("adding the Lease owner: %w", err)
			}
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("caches not synced")
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("adding ready check: %w", err)
	}
	return mgr, nil
}
