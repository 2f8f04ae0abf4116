package kubectl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/amount"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
)

// AssetStatus is one line of `kubectl cryptoassets status` (and one object of -o json).
type AssetStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Ready     string `json:"ready"`
	Backend   string `json:"backend"`
	// From the active helper's metrics; empty when it could not be read (Note says why).
	Balance      string `json:"balance,omitempty"`
	PendingSends *int64 `json:"pendingSends,omitempty"`
	NeedsReview  *int64 `json:"needsReview,omitempty"`
	EventBacklog *int64 `json:"eventBacklog,omitempty"`
	LastRescan   string `json:"lastRescan,omitempty"`
	Note         string `json:"note,omitempty"`
}

func statusCmd(conn *connection) *cobra.Command {
	var allNamespaces bool
	var output string
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Per CryptoAsset: Ready, backend reachability, wallet balance, pending sends, event backlog, last rescan",
		Long: "Reads each CryptoAsset's conditions and rescan status from the API server, and the wallet\n" +
			"balance, pending sends, sends needing review and undelivered events from its active helper's\n" +
			"metrics, through the API server's pod proxy (no port-forward, no API token).",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := conn.clients()
			if err != nil {
				return err
			}
			var assets []v1alpha1.CryptoAsset
			switch {
			case len(args) == 1:
				var ca v1alpha1.CryptoAsset
				if err := c.ctrl.Get(cmd.Context(), client.ObjectKey{Namespace: c.namespace, Name: args[0]}, &ca); err != nil {
					return err
				}
				assets = append(assets, ca)
			default:
				var list v1alpha1.CryptoAssetList
				var opts []client.ListOption
				if !allNamespaces {
					opts = append(opts, client.InNamespace(c.namespace))
				}
				if err := c.ctrl.List(cmd.Context(), &list, opts...); err != nil {
					return err
				}
				assets = list.Items
			}
			var out []AssetStatus
			for i := range assets {
				out = append(out, c.status(cmd.Context(), &assets[i]))
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			case "", "wide":
				return printStatus(cmd.OutOrStdout(), out)
			default:
				return fmt.Errorf("--output must be json or left out, got %q", output)
			}
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "", "json for a machine-readable list")
	return cmd
}

func (c *clients) status(ctx context.Context, ca *v1alpha1.CryptoAsset) AssetStatus {
	s := AssetStatus{Namespace: ca.Namespace, Name: ca.Name, Ready: "Unknown", Backend: "Unknown"}
	if r := meta.FindStatusCondition(ca.Status.Conditions, v1alpha1.ConditionReady); r != nil {
		s.Ready = string(r.Status)
		if r.Status != metav1.ConditionTrue {
			s.Ready += " (" + r.Reason + ")"
		}
	}
	if b := meta.FindStatusCondition(ca.Status.Conditions, v1alpha1.ConditionBackendReachable); b != nil {
		s.Backend = b.Reason
	}
	if r := ca.Status.Rescan; r != nil && r.Phase != "" {
		s.LastRescan = string(r.Phase)
		if r.FinishTime != nil {
			s.LastRescan += " " + r.FinishTime.UTC().Format(time.RFC3339)
		}
	}
	pod, err := c.activeHelper(ctx, ca)
	if err != nil {
		s.Note = err.Error()
		return s
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := c.core.Pods(ca.Namespace).ProxyGet("http", pod.Name, strconv.Itoa(config.DefaultMetricsPort), "/metrics", nil).DoRaw(ctx)
	if err != nil {
		s.Note = fmt.Sprintf("reading the metrics of helper pod %s: %v", pod.Name, err)
		return s
	}
	m, err := parseMetrics(raw)
	if err != nil {
		s.Note = fmt.Sprintf("helper pod %s: %v", pod.Name, err)
		return s
	}
	if v, ok := m["cryptoassets_wallet_balance_base_units"]; ok {
		decimals := 8
		if k, err := coin.Lookup(string(ca.Spec.Coin)); err == nil {
			decimals = k.Decimals
		}
		s.Balance = amount.Amount(int64(v)).Format(decimals)
	}
	count := func(name string) *int64 {
		if v, ok := m[name]; ok {
			n := int64(v)
			return &n
		}
		return nil
	}
	s.PendingSends, s.NeedsReview, s.EventBacklog = count("cryptoassets_sends_pending"), count("cryptoassets_sends_needs_review"),
		count("cryptoassets_outbox_undelivered_events")
	return s
}

// activeHelper is the asset's helper pod that is Ready: the one holding the asset's lock.
func (c *clients) activeHelper(ctx context.Context, ca *v1alpha1.CryptoAsset) (*corev1.Pod, error) {
	pods, err := c.core.Pods(ca.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: v1alpha1.LabelName + "=" + v1alpha1.HelperAppName + "," + v1alpha1.LabelInstance + "=" + ca.Name})
	if err != nil {
		return nil, fmt.Errorf("listing the helper pods: %w", err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
				return p, nil
			}
		}
	}
	return nil, fmt.Errorf("no Ready helper pod (of %d)", len(pods.Items))
}

// parseMetrics sums each family's samples: the backlog of all targets, for instance.
func parseMetrics(raw []byte) (map[string]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("its metrics do not parse: %w", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			switch {
			case m.Gauge != nil:
				out[name] += m.Gauge.GetValue()
			case m.Counter != nil:
				out[name] += m.Counter.GetValue()
			}
		}
	}
	return out, nil
}

func printStatus(w io.Writer, rows []AssetStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tREADY\tBACKEND\tBALANCE\tPENDING\tREVIEW\tEVENTS\tLAST RESCAN\tNOTE")
	n := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatInt(*p, 10)
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Name, r.Ready, r.Backend, dash(r.Balance),
			n(r.PendingSends), n(r.NeedsReview), n(r.EventBacklog), dash(r.LastRescan), r.Note)
	}
	return tw.Flush()
}
