// Package operator is the `cryptoassets operator` subcommand: flags, logging and credentials
// around internal/operator's manager.
package operator

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/cmdutil"
	"github.com/cryptoassets/cryptoassets-operator/internal/operator"
)

// NewCmd is the operator subcommand; version goes into the API server user agent.
func NewCmd(version string) *cobra.Command {
	var (
		opts       operator.Options
		namespaces string
		kubeconfig string
		pullPolicy string
		qps        float32
		burst      int
		as         string
		asGroups   []string
		zapOpts    = zap.Options{Development: false}
	)
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the operator that reconciles CryptoAsset resources",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
			if err := cmdutil.SetMemoryLimit(ctrl.Log); err != nil {
				return err
			}
			if opts.Render.Image == "" {
				return errors.New("--helper-image (or CRYPTOASSETS_HELPER_IMAGE) is required: the image helper pods run, normally the operator's own")
			}
			switch corev1.PullPolicy(pullPolicy) {
			case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
				opts.Render.ImagePullPolicy = corev1.PullPolicy(pullPolicy)
			default:
				return fmt.Errorf("--helper-image-pull-policy must be Always, IfNotPresent or Never, got %q", pullPolicy)
			}
			opts.WatchNamespaces = operator.ParseNamespaces(namespaces)
			cfg, err := cmdutil.RestConfig(kubeconfig)
			if err != nil {
				return err
			}
			cfg.UserAgent = "cryptoassets-operator/" + version
			if as != "" {
				// Run with another identity's rights, e.g. the chart's ServiceAccount, so a rule
				// missing from the chart fails here as it would in the cluster.
				cfg.Impersonate = rest.ImpersonationConfig{UserName: as, Groups: asGroups}
			}
			// client-go's own default (5/s) makes a cold start with hundreds of assets crawl;
			// the API server's priority and fairness still protects it.
			cfg.QPS, cfg.Burst = qps, burst
			mgr, err := operator.NewManager(cmd.Context(), cfg, opts)
			if err != nil {
				return err
			}
			ctrl.Log.Info("starting operator", "version", version, "namespaces", opts.WatchNamespaces, "helperImage", opts.Render.Image)
			return mgr.Start(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file; default: in-cluster config, then $KUBECONFIG, then ~/.kube/config")
	f.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus /metrics endpoint; 0 disables it")
	f.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	f.StringVar(&opts.PprofAddr, "pprof-bind-address", "0", "address of /debug/pprof (CPU and heap profiles); 0 disables it")
	f.BoolVar(&opts.LeaderElect, "leader-elect", false, "elect a leader so several replicas can run with one active")
	f.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease; default: the pod's namespace")
	f.IntVar(&opts.MaxConcurrentReconciles, "max-concurrent-reconciles", 4, "CryptoAssets reconciled in parallel")
	f.StringVar(&namespaces, "watch-namespace", os.Getenv("WATCH_NAMESPACE"), "comma-separated namespaces to watch; empty watches the whole cluster")
	f.StringVar(&opts.Render.Image, "helper-image", os.Getenv("CRYPTOASSETS_HELPER_IMAGE"), "image of helper pods that do not set spec.helper.image")
	f.Float32Var(&qps, "kube-api-qps", 200, "requests per second the operator sends to the API server at most")
	f.IntVar(&burst, "kube-api-burst", 400, "burst of requests to the API server above --kube-api-qps")
	f.StringVar(&as, "as", "", "impersonate this user (e.g. system:serviceaccount:NS:NAME) for every API call; for running the operator outside the cluster with its in-cluster rights")
	f.StringSliceVar(&asGroups, "as-group", nil, "groups to impersonate with --as (repeatable)")
	f.StringVar(&pullPolicy, "helper-image-pull-policy", string(corev1.PullIfNotPresent), "pull policy of helper pods that do not set one")
	gofs := flag.NewFlagSet("zap", flag.ContinueOnError)
	zapOpts.BindFlags(gofs)
	f.AddGoFlagSet(gofs)
	return cmd
}
