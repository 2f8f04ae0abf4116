// Package cmdutil holds what the subcommands share: the helper config's ledger connection, the
// cluster credentials and a one-off command's log.
package cmdutil

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/memlimit"
)

// ConnectLedger opens a pool on the database the config file names.
func ConnectLedger(ctx context.Context, path string) (*config.Config, *pgxpool.Pool, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	url, err := config.ReadSecretFile("database.urlFile", cfg.Database.URLFile)
	if err != nil {
		return nil, nil, err
	}
	pc, err := ledger.PoolConfig(url, cfg.Database.MaxConnections)
	if err != nil {
		return nil, nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the ledger database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("connecting to the ledger database %s:%d/%s: %w", pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.Database, err)
	}
	return cfg, pool, nil
}

// RestConfig finds cluster credentials: a kubeconfig file when given, otherwise the in-cluster
// config, then $KUBECONFIG, then ~/.kube/config.
func RestConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("finding cluster credentials: %w", err)
	}
	return cfg, nil
}

// CommandLog is the log of a one-off command: silent unless the config asks for debug, so the
// command's own output stays readable.
func CommandLog(cmd *cobra.Command, cfg *config.Config) logr.Logger {
	if cfg.Log.Level == "debug" {
		return zap.New(zap.WriteTo(cmd.ErrOrStderr()))
	}
	return zap.New(zap.WriteTo(io.Discard))
}

// ReportViolations prints a ledger check's findings and fails when there are any, so the
// command exits 1.
func ReportViolations(w io.Writer, violations []ledger.Violation) error {
	for _, v := range violations {
		fmt.Fprintln(w, "VIOLATION", v)
	}
	if len(violations) > 0 {
		return fmt.Errorf("%d ledger invariant violations", len(violations))
	}
	fmt.Fprintln(w, "ledger check: all invariants hold")
	return nil
}

// SetMemoryLimit sets the Go memory limit below the container's (memlimit.Apply) and logs what
// it chose. The long-running commands, the operator and the helper, call it first thing in their
// run: after every package's init, whose pages of the binary are then resident and are what the
// limit leaves room for.
func SetMemoryLimit(log logr.Logger) error {
	limits, applied, err := memlimit.Apply(os.Getenv, memlimit.FileResident)
	if err != nil {
		return err
	}
	if applied {
		log.Info("Go memory limit set below the container's", "containerBytes", limits.Container,
			"fileResidentBytes", limits.FileResident, "goMemoryLimitBytes", limits.Go)
	}
	return nil
}
