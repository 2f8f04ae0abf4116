package kubectl

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
)

func rescanCmd(conn *connection) *cobra.Command {
	var (
		fromHeight int64
		follow     bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rescan NAME [--from-height H] [--wait]",
		Short: "Ask the helper to rescan for missed transactions, and with --wait follow it until it is done",
		Long: "Sets a fresh " + v1alpha1.RescanAnnotation + " token (and " + v1alpha1.RescanFromHeightAnnotation + " with\n" +
			"--from-height) on the CryptoAsset. With --wait, prints the helper's progress from status.rescan\n" +
			"until the rescan of this token succeeds (exit 0) or fails (exit 1).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromHeight < 0 {
				return fmt.Errorf("--from-height must be 0 or more, got %d", fromHeight)
			}
			c, err := conn.clients()
			if err != nil {
				return err
			}
			key := client.ObjectKey{Namespace: c.namespace, Name: args[0]}
			token := strconv.FormatInt(time.Now().UnixNano(), 10)
			var from any // null removes an earlier from-height
			if cmd.Flags().Changed("from-height") {
				from = strconv.FormatInt(fromHeight, 10)
			}
			patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{
				v1alpha1.RescanAnnotation: token, v1alpha1.RescanFromHeightAnnotation: from}}})
			if err != nil {
				return err
			}
			ca := &v1alpha1.CryptoAsset{}
			ca.Namespace, ca.Name = key.Namespace, key.Name
			if err := c.ctrl.Patch(cmd.Context(), ca, client.RawPatch(types.MergePatchType, patch)); err != nil {
				return fmt.Errorf("requesting the rescan of %s: %w", key, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rescan of %s requested (token %s)\n", key, token)
			if !follow {
				return nil
			}
			return c.followRescan(cmd, key, token, timeout)
		},
	}
	cmd.Flags().Int64Var(&fromHeight, "from-height", 0, "block height to start from (default: the wallet's whole history)")
	cmd.Flags().BoolVar(&follow, "wait", false, "follow the rescan until it is done")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Hour, "how long --wait waits")
	return cmd
}

// followRescan prints status.rescan as the helper updates it, until the token's rescan finished.
func (c *clients) followRescan(cmd *cobra.Command, key client.ObjectKey, token string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	out := cmd.OutOrStdout()
	var last string
	var final *v1alpha1.RescanStatus
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		var ca v1alpha1.CryptoAsset
		if err := c.ctrl.Get(ctx, key, &ca); err != nil {
			return false, nil // a passing API server error; the deadline bounds the wait
		}
		r := ca.Status.Rescan
		if r == nil || r.RequestedToken != token {
			return false, nil
		}
		line := fmt.Sprintf("%s: %d/%d scanned, %d transactions found, %d booked", r.Phase, r.Done, r.Total, r.TransactionsFound, r.TransactionsBooked)
		if line != last {
			fmt.Fprintln(out, line)
			last = line
		}
		if r.HandledToken == token {
			final = r
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("the rescan of %s did not finish within %s (it goes on; see status.rescan)", key, timeout)
	}
	if final.Phase != v1alpha1.RescanSucceeded {
		return fmt.Errorf("the rescan of %s %s: %s", key, final.Phase, final.Message)
	}
	return nil
}
