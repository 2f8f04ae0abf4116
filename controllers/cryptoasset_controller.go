// Package controllers holds the CryptoAsset reconciler: it reads the resource and its Secrets,
// calls the pure renderers in internal/render, applies the results and reports status.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/render"
)

// SecretNameIndex indexes CryptoAssets by the names of the Secrets they reference.
const SecretNameIndex = "spec.secretNames"

// Condition reasons.
const (
	ReasonAvailable             = "Available"
	ReasonDeploymentUnavailable = "DeploymentUnavailable"
	ReasonRollingOut            = "RollingOut"
	ReasonRolledOut             = "RolledOut"
	ReasonProgressDeadline      = "ProgressDeadlineExceeded"
	ReasonSecretNotFound        = "SecretNotFound"
	ReasonSecretKeyNotFound     = "SecretKeyNotFound"
	ReasonInvalidConfig         = "InvalidConfig"
	ReasonChildConflict         = "ChildConflict"
	ReasonApplyFailed           = "ApplyFailed"
	ReasonReconciled            = "Reconciled"
	ReasonRescanRequested       = "RescanRequested"
	ReasonInvalidRescanRequest  = "InvalidRescanRequest"
)

// CryptoAssetReconciler reconciles CryptoAsset objects.
type CryptoAssetReconciler struct {
	// Client reads from the operator's cache and writes to the API server.
	Client client.Client
	// APIReader reads straight from the API server: Secrets (the cache holds only their metadata,
	// so the operator never keeps every Secret of the cluster in memory), and a child whose
	// create found it existing while the cache had not seen it.
	APIReader client.Reader
	// Creator creates children; nil creates them through Client. The operator's reads back only
	// a created child's metadata, which is all the reconciler keeps of it.
	Creator Creator
	// StatusPatcher patches the CryptoAsset's status; nil patches it through Client. The
	// operator's reads back only the patched resource's metadata: the reconciler does not use
	// the rest.
	StatusPatcher StatusPatcher
	// MetadataCache reads the cached metadata of Secrets (the Secret watch's cache); nil reads
	// the Secrets every reconcile.
	MetadataCache client.Reader
	Recorder      events.EventRecorder
	Render        render.Options

	// writes tells the operator's own writes of children from other people's edits.
	writes writes
	// hashes saves reading the Secrets again while nothing they feed has changed.
	hashes hashMemo
	// rendered saves rendering the children again while nothing they are rendered from has.
	rendered renderMemo
}

// configProblem is a problem the user must fix in the CryptoAsset or its Secrets; retrying does not
// help, so it is reported in status and the reconcile ends without error (a Secret watch or a spec
// change brings the next one).
type configProblem struct {
	reason, message string
}

func (p *configProblem) Error() string { return p.message }

// +kubebuilder:rbac:groups=cryptoassets.io,resources=cryptoassets,verbs=get;list;watch
// +kubebuilder:rbac:groups=cryptoassets.io,resources=cryptoassets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps;services;serviceaccounts,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="";events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one CryptoAsset's helper objects in line with its spec and reports status.
func (r *CryptoAssetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ca := &v1alpha1.CryptoAsset{}
	if err := r.Client.Get(ctx, req.NamespacedName, ca); err != nil {
		if apierrors.IsNotFound(err) {
			r.hashes.forget(req.NamespacedName)
			r.rendered.forget(req.NamespacedName)
			r.writes.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ca.DeletionTimestamp.IsZero() {
		// Children carry owner references; the garbage collector removes them.
		return ctrl.Result{}, nil
	}
	before := ca.Status.DeepCopy()
	status := ca.Status.DeepCopy()
	status.ObservedGeneration = ca.Generation
	status.Helper = &v1alpha1.HelperObjects{
		ConfigMap: render.HelperName(ca), Deployment: render.HelperName(ca),
		Service: render.HelperName(ca), ServiceAccount: render.HelperName(ca),
	}

	deploy, applyErr := r.applyChildren(ctx, ca, status)
	if errors.Is(applyErr, errCacheBehind) {
		// Our own child, created a moment ago, not in the cache yet: nothing to report.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	var pods []corev1.Pod
	if applyErr == nil {
		var err error
		if pods, err = r.helperPods(ctx, ca); err != nil {
			return ctrl.Result{}, err
		}
	}
	r.setConditions(ca, status, deploy, pods, applyErr)
	r.noticeRescanRequest(ca, status)
	r.recordTransitions(ca, before, status)

	if !equality.Semantic.DeepEqual(before, status) {
		patch, err := statusMergePatch(ca.ResourceVersion, before, status)
		if err != nil {
			return ctrl.Result{}, err
		}
		ca.Status = *status
		if err := r.patchStatus(ctx, ca, patch); err != nil {
			if apierrors.IsNotFound(err) {
				return ctrl.Result{}, nil
			}
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, fmt.Errorf("patching status: %w", err)
		}
	}

	var problem *configProblem
	if applyErr != nil && !errors.As(applyErr, &problem) {
		return ctrl.Result{}, applyErr // logged by controller-runtime, retried with backoff
	}
	return ctrl.Result{}, nil
}

// applyChildren reads the referenced Secrets, renders and applies the helper's objects, and
// returns the Deployment as the cache last saw it.
func (r *CryptoAssetReconciler) applyChildren(ctx context.Context, ca *v1alpha1.CryptoAsset, status *v1alpha1.CryptoAssetStatus) (*appsv1.Deployment, error) {
	versions, cached := "", false
	if r.MetadataCache != nil {
		versions, cached = secretVersions(ctx, r.MetadataCache, ca)
	}
	if cached {
		if e, ok := r.rendered.lookup(ca, versions); ok {
			if current, ok := r.unchanged(ctx, ca, e); ok {
				status.Confirmations, status.ConfigHash = e.confirmations, e.configHash
				return current, nil
			}
		}
	}
	cfg, err := render.Config(ca)
	if err != nil {
		return nil, &configProblem{reason: ReasonInvalidConfig, message: "rendering the helper config: " + err.Error()}
	}
	if _, err := render.Sidecars(ca); err != nil {
		return nil, &configProblem{reason: ReasonInvalidConfig, message: err.Error()}
	}
	status.Confirmations = cfg.Asset.Confirmations
	configData, err := cfg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("writing the helper config: %w", err)
	}
	hash, err := r.configHash(ctx, ca, configData, versions, cached)
	if err != nil {
		return nil, err
	}

	deploy := render.Deployment(ca, r.Render, hash)
	// What the pods use is applied first, side by side (they do not depend on each other), and
	// the Deployment after it: a ReplicaSet whose ServiceAccount is not there yet fails to make
	// pods and backs off. A new asset costs two round trips of writes, not six.
	stages := [][]child{{
		{render.ServiceAccount(ca), mergeServiceAccount},
		{render.Role(ca), mergeRole},
		{render.RoleBinding(ca), mergeRoleBinding},
		{render.ConfigMap(ca, configData), mergeConfigMap},
		{render.Service(ca), mergeService},
	}, {
		{deploy, mergeDeployment},
	}}
	for _, stage := range stages {
		if err := r.applyAll(ctx, stage); err != nil {
			return nil, err
		}
	}
	status.ConfigHash = hash
	if cached {
		var applied []client.Object
		for _, stage := range stages {
			for _, c := range stage {
				applied = append(applied, c.obj)
			}
		}
		r.rendered.store(ca, versions, status, applied)
	}

	current := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(deploy), current); err != nil {
		if apierrors.IsNotFound(err) {
			// Just created, and the cache has not seen it yet: its watch event brings the next
			// reconcile in a moment, which reports status once, rather than a status now and
			// another then.
			return nil, fmt.Errorf("Deployment %s: %w", deploy.Name, errCacheBehind)
		}
		return nil, fmt.Errorf("reading Deployment %s: %w", deploy.Name, err)
	}
	if current.Annotations[v1alpha1.RenderedHashAnnotation] != deploy.Annotations[v1alpha1.RenderedHashAnnotation] {
		// The cache has not caught up with the write just made: what it shows is the
		// Deployment before it, whose available status says nothing of the new template. Ready
		// waits for the update's own watch event.
		return nil, nil
	}
	return current, nil
}

// child is a helper object and how to bring the live one in line with it.
type child struct {
	obj   client.Object
	merge mergeFunc
}

// Creator creates an object and sets on it what the API server assigned: client.Client is one.
type Creator interface {
	Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error
}

func (r *CryptoAssetReconciler) creator() Creator {
	if r.Creator != nil {
		return r.Creator
	}
	return r.Client
}

// StatusPatcher patches an object's status subresource and sets on it the resourceVersion the
// API server assigned.
type StatusPatcher interface {
	PatchStatus(ctx context.Context, obj client.Object, patch client.Patch) error
}

func (r *CryptoAssetReconciler) patchStatus(ctx context.Context, obj client.Object, patch client.Patch) error {
	if r.StatusPatcher != nil {
		return r.StatusPatcher.PatchStatus(ctx, obj, patch)
	}
	return r.Client.Status().Patch(ctx, obj, patch)
}

// applyAll applies children concurrently and returns the first failure in their order.
func (r *CryptoAssetReconciler) applyAll(ctx context.Context, children []child) error {
	errs := make([]error, len(children))
	var wg sync.WaitGroup
	for i, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wrote, err := apply(ctx, r.Client, r.creator(), r.APIReader, &r.writes, c.obj, c.merge)
			if wrote {
				logf.FromContext(ctx).Info("applied helper object", "object", fmt.Sprintf("%T %s", c.obj, c.obj.GetName()))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		var notOwned *errNotOwned
		if errors.As(err, &notOwned) {
			return &configProblem{reason: ReasonChildConflict, message: err.Error()}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// configHash is the hash of the helper's config and the Secrets' values it uses, from the memo
// when neither has changed since it was last computed, otherwise from the Secrets read afresh.
//
// versions are the referenced Secrets' versions as the metadata cache has them; cached is false
// when it does not have them all.
func (r *CryptoAssetReconciler) configHash(ctx context.Context, ca *v1alpha1.CryptoAsset, configData []byte, versions string, cached bool) (string, error) {
	key := client.ObjectKeyFromObject(ca)
	from := memoFrom(ca, configData, versions)
	if cached {
		if hash, ok := r.hashes.lookup(key, from); ok {
			return hash, nil
		}
	}
	secrets, err := r.readSecrets(ctx, ca)
	if err != nil {
		return "", err
	}
	hash, err := render.ConfigHash(ca, configData, secrets)
	if err != nil {
		return "", &configProblem{reason: ReasonSecretKeyNotFound, message: err.Error()}
	}
	if cached {
		r.hashes.store(key, from, hash)
	}
	return hash, nil
}

// readSecrets fetches every referenced Secret and checks each referenced key is there.
func (r *CryptoAssetReconciler) readSecrets(ctx context.Context, ca *v1alpha1.CryptoAsset) (map[string]render.SecretData, error) {
	out := map[string]render.SecretData{}
	for _, u := range ca.Spec.SecretUses() {
		s, seen := out[u.Ref.Name]
		if !seen {
			secret := &corev1.Secret{}
			err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ca.Namespace, Name: u.Ref.Name}, secret)
			if apierrors.IsNotFound(err) {
				return nil, &configProblem{reason: ReasonSecretNotFound,
					message: fmt.Sprintf("Secret %q referenced by %s not found in namespace %s", u.Ref.Name, u.Field, ca.Namespace)}
			}
			if err != nil {
				return nil, fmt.Errorf("reading Secret %s: %w", u.Ref.Name, err)
			}
			s = render.SecretData{UID: string(secret.UID), Data: secret.Data}
			out[u.Ref.Name] = s
		}
		if _, ok := s.Data[u.Ref.Key]; !ok {
			return nil, &configProblem{reason: ReasonSecretKeyNotFound,
				message: fmt.Sprintf("Secret %q has no key %q (referenced by %s)", u.Ref.Name, u.Ref.Key, u.Field)}
		}
	}
	return out, nil
}

// helperPods lists the helper's pods from the cache (which holds only pods the operator's
// label marks).
func (r *CryptoAssetReconciler) helperPods(ctx context.Context, ca *v1alpha1.CryptoAsset) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := r.Client.List(ctx, list, client.InNamespace(ca.Namespace), client.MatchingLabels(render.SelectorLabels(ca))); err != nil {
		return nil, fmt.Errorf("listing the helper's pods: %w", err)
	}
	return list.Items, nil
}

// setConditions derives Ready, Progressing and Degraded from what happened in this reconcile:
// Ready says whether the helper serves with the current config and, when not, why (from the
// pods: a failing init container, a crash loop, an image that cannot be had, with the last
// words of the container); Progressing says a rollout is under way and nothing else; Degraded
// says the declared state cannot be reached without someone fixing something.
func (r *CryptoAssetReconciler) setConditions(ca *v1alpha1.CryptoAsset, status *v1alpha1.CryptoAssetStatus, deploy *appsv1.Deployment, pods []corev1.Pod, applyErr error) {
	set := func(t string, s metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: ca.Generation,
		})
	}
	if applyErr != nil {
		reason := ReasonApplyFailed
		var problem *configProblem
		if errors.As(applyErr, &problem) {
			reason = problem.reason
		}
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, applyErr.Error())
		set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, reason, applyErr.Error())
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, reason, "blocked until the problem is fixed")
		return
	}
	inLine := "helper objects are in line with the spec"
	available, rollingOut, msg := deploymentState(deploy)
	podReason, podMsg, failing := "", "", false
	if !available {
		podReason, podMsg, failing = podProblem(pods)
	}
	readyReason, readyMsg := ReasonDeploymentUnavailable, msg
	if podReason != "" {
		readyReason, readyMsg = podReason, podMsg
	}
	switch {
	case available:
		msg := "helper Deployment is available with the current config"
		if ca.Spec.Backend.Type == v1alpha1.BackendNull {
			msg += " (null backend: a simulator, no real coins move)"
		}
		set(v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonAvailable, msg)
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonRolledOut, "helper runs the current config")
		set(v1alpha1.ConditionDegraded, metav1.ConditionFalse, ReasonReconciled, inLine)
	case deploy != nil && deadlineExceeded(deploy):
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, readyReason, readyMsg)
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonProgressDeadline, msg)
		set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, ReasonProgressDeadline, readyMsg)
	default:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, readyReason, readyMsg)
		if rollingOut {
			set(v1alpha1.ConditionProgressing, metav1.ConditionTrue, ReasonRollingOut, msg)
		} else {
			set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonRolledOut, "helper runs the current config")
		}
		if failing {
			set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, podReason, podMsg)
		} else {
			set(v1alpha1.ConditionDegraded, metav1.ConditionFalse, ReasonReconciled, inLine)
		}
	}
}

// deploymentState says whether the helper Deployment is available with its current spec and
// whether a rollout (a new pod template not yet on every replica, or old pods still there) is
// under way, with a message for status. A helper that is merely unavailable is not rolling out.
func deploymentState(d *appsv1.Deployment) (available, rollingOut bool, msg string) {
	if d == nil {
		return false, true, "helper Deployment written; waiting for the write to be observed"
	}
	if d.Status.ObservedGeneration < d.Generation {
		return false, true, "helper Deployment update not yet observed by the deployment controller"
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			available = true
		}
	}
	rollingOut = d.Status.UpdatedReplicas < replicas || d.Status.Replicas > replicas
	available = available && d.Status.AvailableReplicas >= replicas && !rollingOut
	switch {
	case rollingOut:
		msg = fmt.Sprintf("helper Deployment %s is rolling out (%d of %d replicas updated)", d.Name, d.Status.UpdatedReplicas, replicas)
	case !available:
		msg = fmt.Sprintf("helper Deployment %s is not available (%d of %d replicas available)", d.Name, d.Status.AvailableReplicas, replicas)
	}
	return available, rollingOut, msg
}

func deadlineExceeded(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return true
		}
	}
	return false
}

// noticeRescanRequest announces a new rescan token. The helper runs the rescan and owns
// status.rescan; the operator only validates the request and records that it saw it.
func (r *CryptoAssetReconciler) noticeRescanRequest(ca *v1alpha1.CryptoAsset, status *v1alpha1.CryptoAssetStatus) {
	token := ca.Annotations[v1alpha1.RescanAnnotation]
	if token == "" || token == status.ObservedRescanToken {
		return
	}
	status.ObservedRescanToken = token
	if from, ok := ca.Annotations[v1alpha1.RescanFromHeightAnnotation]; ok {
		if h, err := strconv.ParseInt(from, 10, 64); err != nil || h < 0 {
			r.Recorder.Eventf(ca, nil, corev1.EventTypeWarning, ReasonInvalidRescanRequest, "Rescan",
				"rescan %q: annotation %s=%q is not a block height (a whole number >= 0)", token, v1alpha1.RescanFromHeightAnnotation, from)
			return
		}
	}
	note := "rescan %q requested; the helper runs it and reports progress in status.rescan"
	if !meta.IsStatusConditionTrue(status.Conditions, v1alpha1.ConditionReady) {
		note += " (the helper is not ready yet; it starts the rescan when it is)"
	}
	r.Recorder.Eventf(ca, nil, corev1.EventTypeNormal, ReasonRescanRequested, "Rescan", note, token)
}

// recordTransitions emits an Event when Ready or Degraded changes, so `kubectl describe` tells
// the story without an Event per reconcile. Only problems are Warnings: a rollout is routine.
func (r *CryptoAssetReconciler) recordTransitions(ca *v1alpha1.CryptoAsset, before, after *v1alpha1.CryptoAssetStatus) {
	degraded := meta.IsStatusConditionTrue(after.Conditions, v1alpha1.ConditionDegraded)
	for _, t := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionDegraded} {
		old := meta.FindStatusCondition(before.Conditions, t)
		cur := meta.FindStatusCondition(after.Conditions, t)
		if cur == nil || (old != nil && old.Status == cur.Status && old.Reason == cur.Reason) {
			continue
		}
		if t == v1alpha1.ConditionDegraded && cur.Status != metav1.ConditionTrue && (old == nil || old.Status != metav1.ConditionTrue) {
			continue // "not degraded" is news only after having been degraded
		}
		if t == v1alpha1.ConditionReady && cur.Status != metav1.ConditionTrue && !degraded {
			// A rollout under way (a new asset, a spec change) is not news: becoming Ready is,
			// and so is every problem, which Degraded reports. Each event is a write to the API
			// server, and a thousand new assets would make a thousand of these.
			continue
		}
		eventType := corev1.EventTypeNormal
		if degraded {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(ca, nil, eventType, cur.Reason, "Reconcile", "%s=%s: %s", t, cur.Status, cur.Message)
	}
}

// secretToAssets maps a Secret event to the CryptoAssets in its namespace that reference it.
func (r *CryptoAssetReconciler) secretToAssets(ctx context.Context, obj client.Object) []reconcile.Request {
	list := &v1alpha1.CryptoAssetList{}
	if err := r.Client.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.MatchingFields{SecretNameIndex: obj.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "listing CryptoAssets that reference a Secret", "secret", obj.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, ca := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&ca)})
	}
	return reqs
}

// podToAsset maps a helper pod to its CryptoAsset.
func podToAsset(_ context.Context, obj client.Object) []reconcile.Request {
	l := obj.GetLabels()
	name := l[v1alpha1.LabelInstance]
	if name == "" || l[v1alpha1.LabelName] != v1alpha1.HelperAppName {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}}}
}

// IndexSecretNames is the field indexer behind SecretNameIndex.
func IndexSecretNames(obj client.Object) []string {
	return obj.(*v1alpha1.CryptoAsset).Spec.SecretNames()
}

// SetupWithManager registers the reconciler and its watches.
func (r *CryptoAssetReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, maxConcurrent int) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.CryptoAsset{}, SecretNameIndex, IndexSecretNames); err != nil {
		return fmt.Errorf("indexing CryptoAssets by Secret name: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("cryptoasset").
		// Status writes (the operator's own and the helper's rescan progress) change neither the
		// generation nor the annotations, so they do not trigger a reconcile; spec edits and the
		// rescan annotation do.
		For(&v1alpha1.CryptoAsset{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&rbacv1.Role{}).
		Owns(&rbacv1.RoleBinding{}).
		Owns(&appsv1.Deployment{}).
		// The helper's pods say why it is not ready (crash loops, a failing init container); they
		// belong to a ReplicaSet, so they are mapped to their asset by the selector labels.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podToAsset)).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.secretToAssets)).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Complete(r)
}
