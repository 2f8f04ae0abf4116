package rescan

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/backoff"
	"github.com/cryptoassets/cryptoassets-operator/internal/intake"
)

// Event reasons the helper records on its CryptoAsset.
const (
	ReasonRescanStarted   = "RescanStarted"
	ReasonRescanSucceeded = "RescanSucceeded"
	ReasonRescanFailed    = "RescanFailed"
)

// maxMessage bounds the failure message kept in status.
const maxMessage = 1024

// Watcher runs a rescan for every new cryptoassets.io/rescan value on one CryptoAsset and reports
// it in that object's status.rescan and Events. Rescans run one at a time: a value that arrives
// during a rescan waits for it to finish; values that arrive together are served by one rescan
// (the newest). The handled token is kept in status, so a restarted helper neither repeats a
// finished rescan nor forgets an unfinished one: it runs that one again from the start.
type Watcher struct {
	Namespace, Name string
	Config          *rest.Config
	Intake          *intake.Intake
	Metrics         *Metrics
	// ProgressEvery bounds how often progress is written to status (default 3s).
	ProgressEvery time.Duration
	Log           logr.Logger

	// handled is the last token this process finished; status may lag behind it in the cache.
	handled string
}

// Run watches until ctx ends. It returns an error when it cannot watch the CryptoAsset (no
// credentials, no permission); the caller retries.
func (w *Watcher) Run(ctx context.Context) error {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	// The cache lists and watches this one object, by a metadata.name field selector: the
	// helper's Role grants list and watch for its own CryptoAsset's name only.
	c, err := cache.New(w.Config, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{
		w.Namespace: {FieldSelector: fields.OneTermEqualSelector("metadata.name", w.Name)},
	}})
	if err != nil {
		return fmt.Errorf("creating the CryptoAsset cache: %w", err)
	}
	cl, err := client.New(w.Config, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	evs, err := eventsv1client.NewForConfig(w.Config)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: evs})
	broadcaster.StartRecordingToSink(ctx.Done())
	defer broadcaster.Shutdown()
	rec := broadcaster.NewRecorder(scheme, "cryptoassets-helper")

	inf, err := c.GetInformer(ctx, &v1alpha1.CryptoAsset{})
	if err != nil {
		return fmt.Errorf("watching CryptoAsset %s/%s: %w", w.Namespace, w.Name, err)
	}
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
	}); err != nil {
		return err
	}
	started := make(chan error, 1)
	go func() { started <- c.Start(ctx) }()
	syncCtx, syncCancel := context.WithTimeout(ctx, time.Minute)
	synced := c.WaitForCacheSync(syncCtx)
	syncCancel()
	if !synced {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("could not list and watch CryptoAsset %s/%s within a minute (does the helper's ServiceAccount have its Role?)", w.Namespace, w.Name)
	}
	w.Log.Info("watching for rescan requests", "namespace", w.Namespace, "name", w.Name)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-started:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("the CryptoAsset cache stopped: %w", err)
		case <-wake:
		}
		w.step(ctx, c, cl, rec)
	}
}

// step runs a rescan if the object asks for one this helper has not handled.
func (w *Watcher) step(ctx context.Context, reader client.Reader, cl client.Client, rec events.EventRecorder) {
	key := types.NamespacedName{Namespace: w.Namespace, Name: w.Name}
	var ca v1alpha1.CryptoAsset
	if err := reader.Get(ctx, key, &ca); err != nil {
		if !apierrors.IsNotFound(err) {
			w.Log.Error(err, "reading the CryptoAsset")
		}
		return
	}
	token := ca.Annotations[v1alpha1.RescanAnnotation]
	if token == "" || token == w.handled || (ca.Status.Rescan != nil && ca.Status.Rescan.HandledToken == token) {
		return
	}
	log := w.Log.WithValues("token", token)
	latest := func() string {
		var now v1alpha1.CryptoAsset
		if err := reader.Get(ctx, key, &now); err != nil {
			return token
		}
		return now.Annotations[v1alpha1.RescanAnnotation]
	}

	start := metav1.Now()
	st := v1alpha1.RescanStatus{RequestedToken: token, Phase: v1alpha1.RescanPending, StartTime: &start}
	if ca.Status.Rescan != nil {
		st.HandledToken = ca.Status.Rescan.HandledToken
	}
	from, err := fromHeight(ca.Annotations[v1alpha1.RescanFromHeightAnnotation])
	st.FromHeight = from
	if err == nil {
		if perr := w.write(ctx, cl, st); perr != nil {
			log.Error(perr, "writing the rescan's status")
		}
		rec.Eventf(&ca, nil, corev1.EventTypeNormal, ReasonRescanStarted, "Rescan", "rescan %q started from height %d", token, from)
		log.Info("rescan started", "fromHeight", from)
		throttle := Throttle{Every: w.progressEvery()}
		var r intake.RescanResult
		r, err = Run(ctx, w.Intake, from, w.Metrics, func(p intake.RescanProgress) {
			if !throttle.Ready(time.Now()) {
				return
			}
			st.Phase, st.Done, st.Total = v1alpha1.RescanRunning, p.Done, p.Total
			st.TransactionsFound, st.TransactionsBooked = int64(p.TxFound), int64(p.TxBooked)
			// A newer token arriving meanwhile shows as requested: it runs next.
			st.RequestedToken = latest()
			if perr := w.write(ctx, cl, st); perr != nil {
				log.Error(perr, "writing rescan progress")
			}
		})
		st.Done, st.Total = r.Done, r.Total
		st.TransactionsFound, st.TransactionsBooked = int64(r.TxFound), int64(r.TxBooked)
	}
	if ctx.Err() != nil {
		// Shutting down: the token stays unhandled, so the next helper runs it again.
		log.Info("rescan interrupted by shutdown; the next helper runs it again")
		return
	}
	finish := metav1.Now()
	st.FinishTime = &finish
	st.HandledToken = token
	st.RequestedToken = latest()
	took := finish.Sub(start.Time).Round(time.Millisecond)
	if err != nil {
		st.Phase, st.Message = v1alpha1.RescanFailed, truncate(err.Error())
		log.Error(err, "rescan failed", "took", took)
		rec.Eventf(&ca, nil, corev1.EventTypeWarning, ReasonRescanFailed, "Rescan", "rescan %q failed after %s: %s", token, took, st.Message)
	} else {
		st.Phase, st.Message = v1alpha1.RescanSucceeded, ""
		log.Info("rescan succeeded", "took", took, "found", st.TransactionsFound, "booked", st.TransactionsBooked)
		rec.Eventf(&ca, nil, corev1.EventTypeNormal, ReasonRescanSucceeded, "Rescan", "rescan %q succeeded in %s: %d transactions found, %d new to the ledger",
			token, took, st.TransactionsFound, st.TransactionsBooked)
	}
	w.handled = token
	// The result must reach status, or a restarted helper would run the rescan again: keep
	// trying (with backoff) until it is written or the helper stops.
	wait := backoff.New(30 * time.Second)
	for {
		err := w.write(ctx, cl, st)
		if err == nil || ctx.Err() != nil {
			return
		}
		d := wait.Next()
		log.Error(err, "writing the rescan's result; retrying", "in", d)
		if !backoff.Sleep(ctx, d) {
			return
		}
	}
}

// write replaces status.rescan, reading the object fresh and patching with its resourceVersion:
// a conflict (the operator wrote status meanwhile) is retried on the new version, and the
// operator's fields are never overwritten with stale values.
func (w *Watcher) write(ctx context.Context, cl client.Client, st v1alpha1.RescanStatus) error {
	key := types.NamespacedName{Namespace: w.Namespace, Name: w.Name}
	return retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) || apierrors.IsTimeout(err)
	}, func() error {
		var ca v1alpha1.CryptoAsset
		if err := cl.Get(ctx, key, &ca); err != nil {
			return err
		}
		orig := ca.DeepCopy()
		ca.Status.Rescan = st.DeepCopy()
		return cl.Status().Patch(ctx, &ca, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	})
}

func (w *Watcher) progressEvery() time.Duration {
	if w.ProgressEvery > 0 {
		return w.ProgressEvery
	}
	return 3 * time.Second
}

// fromHeight reads the rescan-from-height annotation; empty means the whole wallet history.
func fromHeight(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	h, err := strconv.ParseInt(s, 10, 64)
	if err != nil || h < 0 {
		return 0, fmt.Errorf("annotation %s=%q is not a block height (a whole number, 0 or more)", v1alpha1.RescanFromHeightAnnotation, s)
	}
	return h, nil
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}
