// Command cryptoassets is the one binary of cryptoassets-operator: the Kubernetes operator, the
// per-coin helper service and its maintenance commands. Each subcommand is a package under
// internal/cmd; this file only wires them under the cobra root.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/helper"
	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/initializedb"
	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/operator"
	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/rescan"
	versioncmd "github.com/cryptoassets/cryptoassets-operator/internal/cmd/version"
	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/walletnotify"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "cryptoassets",
		Short:         "Kubernetes operator and helper service for applications that take and send cryptocurrency",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(operator.NewCmd(version), versioncmd.NewCmd(version), helper.NewCmd(version), initializedb.NewCmd(),
		ledger.NewCmd(), walletnotify.NewCmd(), rescan.NewCmd())
	return root
}
