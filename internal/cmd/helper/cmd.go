// Package helper is the `cryptoassets helper` subcommand: the helper service for one asset.
package helper

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/cmdutil"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/helper"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// NewCmd is the helper subcommand; version goes into the API server user agent.
func NewCmd(version string) *cobra.Command {
	var (
		path       string
		kubeconfig string
		opts       helper.Options
	)
	cmd := &cobra.Command{
		Use:   "helper --config FILE",
		Short: "Run the helper service for one asset: deposits, broadcasts, events, application API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			level := zapcore.InfoLevel
			switch cfg.Log.Level {
			case "debug":
				level = zapcore.DebugLevel
			case "error":
				level = zapcore.ErrorLevel
			}
			log := zap.New(zap.Level(level)).WithValues("asset", ledger.AssetRef(cfg.Asset.Namespace, cfg.Asset.Name))
			if err := cmdutil.SetMemoryLimit(log); err != nil {
				return err
			}
			if cfg.Kubernetes != nil {
				kube, err := cmdutil.RestConfig(kubeconfig)
				if err != nil {
					return fmt.Errorf("the config names CryptoAsset %s/%s: %w", cfg.Kubernetes.Namespace, cfg.Kubernetes.Name, err)
				}
				kube.UserAgent = "cryptoassets-helper/" + version
				opts.Kube = kube
			}
			return helper.Run(cmd.Context(), cfg, log, opts)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "helper config file")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file, used when the config names a CryptoAsset; default: in-cluster config, then $KUBECONFIG, then ~/.kube/config")
	cmd.Flags().DurationVar(&opts.RescanProgressEvery, "rescan-progress-interval", 3*time.Second, "how often rescan progress is written to the CryptoAsset's status at most")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
