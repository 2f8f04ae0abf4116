package helper

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/backoff"
)

// Reasons of the conditions the helper writes.
const (
	ReasonReachable   = "Reachable"
	ReasonUnreachable = "Unreachable"
	// ReasonSimulated: the null backend answers from the ledger database; nothing is reached.
	ReasonSimulated = "Simulated"
)

// maxConditionMessage keeps a backend's error text from bloating the object.
const maxConditionMessage = 512

// conditionWriter keeps BackendReachable and LedgerReachable on the helper's own CryptoAsset in
// line with what the helper's parts last saw, so `kubectl get ca -o wide` and `kubectl describe`
// say why payments are not moving without anyone reading logs. It writes on changes only, reads
// the object fresh and patches with its resourceVersion (the operator writes the other
// conditions; neither may overwrite the other), and retries until the API server takes it.
type conditionWriter struct {
	key       types.NamespacedName
	client    client.Client
	health    *health
	simulated bool
	wake      chan struct{}
	log       logr.Logger
}

// reported lists each condition the helper writes with the health component it reports.
func reported() []struct{ condition, component string } {
	return []struct{ condition, component string }{
		{v1alpha1.ConditionBackendReachable, "backend"},
		{v1alpha1.ConditionLedgerReachable, "ledger"},
	}
}

func newConditionWriter(cfg *rest.Config, key types.NamespacedName, h *health, simulated bool, log logr.Logger) (*conditionWriter, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	return &conditionWriter{key: key, client: cl, health: h, simulated: simulated, wake: make(chan struct{}, 1), log: log}, nil
}

// changed is health's onChange hook.
func (w *conditionWriter) changed(component string) {
	for _, r := range reported() {
		if r.component == component {
			select {
			case w.wake <- struct{}{}:
			default:
			}
			return
		}
	}
}

func (w *conditionWriter) run(ctx context.Context) {
	wait := backoff.New(time.Minute)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		for ctx.Err() == nil {
			err := w.write(ctx)
			if err == nil {
				wait.Reset()
				break
			}
			d := wait.Next()
			w.log.Error(err, "writing the helper's conditions; retrying", "in", d)
			if !backoff.Sleep(ctx, d) {
				return
			}
		}
	}
}

func (w *conditionWriter) write(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var ca v1alpha1.CryptoAsset
		if err := w.client.Get(ctx, w.key, &ca); err != nil {
			return err
		}
		orig := ca.DeepCopy()
		for _, r := range reported() {
			typ := r.condition
			st, ok := w.health.get(r.component)
			if !ok {
				continue // not contacted yet: say nothing rather than guess
			}
			c := metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: ReasonReachable,
				Message: truncateMessage(st.Message), ObservedGeneration: ca.Generation}
			if !st.OK {
				c.Status, c.Reason = metav1.ConditionFalse, ReasonUnreachable
			} else if typ == v1alpha1.ConditionBackendReachable && w.simulated {
				c.Reason = ReasonSimulated
			}
			meta.SetStatusCondition(&ca.Status.Conditions, c)
		}
		if equality.Semantic.DeepEqual(orig.Status.Conditions, ca.Status.Conditions) {
			return nil
		}
		err := w.client.Status().Patch(ctx, &ca, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		if apierrors.IsNotFound(err) {
			return nil // the asset is being deleted
		}
		return err
	})
}

func truncateMessage(s string) string {
	if len(s) <= maxConditionMessage {
		return s
	}
	return s[:maxConditionMessage-3] + "..."
}
