// Command cryptoassets is the one binary of cryptoassets-operator: the Kubernetes operator, the
// per-coin helper service and its maintenance commands. Each subcommand is a package under
// internal/cmd; this file only wires them under the cobra root.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/helper"
	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/initializedb"
	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/kubectl"
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
	root := rootCommand()
	if strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe") == kubectl.PluginName {
		// Installed as a kubectl plugin: `kubectl cryptoassets status` runs kubectl-cryptoassets status.
		root = kubectl.NewCmd("kubectl cryptoassets")
	}
	if err := root.ExecuteContext(ctx); err != nil {
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
		ledger.NewCmd(), walletnotify.NewCmd(), rescan.NewCmd(), kubectl.NewCmd("cryptoassets kubectl"))
	return root
}
