package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/helper"
)

func helperCommand() *cobra.Command {
	var path string
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
			log := zap.New(zap.Level(level)).WithValues("asset", cfg.Asset.Name)
			return helper.Run(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "helper config file")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
