package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LeaseID names the operator's leader-election Lease.
const LeaseID = "cryptoassets-operator.cryptoassets.io"

// leaseOwner makes the leader's own Pod the owner of the leader-election Lease, so that the
// garbage collector deletes the Lease once that Pod is gone.
//
// Why: `helm uninstall` deletes the operator's Role in the same breath as its Deployment, so the
// stopping operator can no longer release the Lease itself (ReleaseOnCancel then fails with
// Forbidden), and a reinstall would wait out the old holder's lease while reporting Ready. The
// garbage collector acts with its own rights, after the Pod is gone. Each new leader replaces
// the owner with itself, so a failover never deletes a Lease someone holds.
type leaseOwner struct {
	client          client.Client
	namespace, name string
	podName, podUID string
	log             logr.Logger
}

// newLeaseOwner returns nil outside a pod (POD_NAME and POD_UID come from the downward API).
func newLeaseOwner(c client.Client, namespace string, log logr.Logger) *leaseOwner {
	podName, podUID := os.Getenv("POD_NAME"), os.Getenv("POD_UID")
	if podName == "" || podUID == "" || namespace == "" {
		return nil
	}
	return &leaseOwner{client: c, namespace: namespace, name: LeaseID, podName: podName, podUID: podUID, log: log}
}

// NeedLeaderElection: only the leader owns the Lease.
func (o *leaseOwner) NeedLeaderElection() bool { return true }

// Start records the ownership once; a failure is logged, not fatal (the Lease then only expires).
func (o *leaseOwner) Start(ctx context.Context) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": []map[string]any{{
		"apiVersion": "v1", "kind": "Pod", "name": o.podName, "uid": o.podUID,
	}}}})
	lease := &coordinationv1.Lease{}
	lease.Namespace, lease.Name = o.namespace, o.name
	if err := o.client.Patch(ctx, lease, client.RawPatch(types.MergePatchType, patch)); err != nil {
		o.log.Error(fmt.Errorf("making pod %s the owner of Lease %s: %w", o.podName, o.name, err), "the Lease will expire instead of being removed on uninstall")
		return nil
	}
	o.log.Info("leader-election Lease owned by this pod", "lease", o.name, "pod", o.podName)
	return nil
}
