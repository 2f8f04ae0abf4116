// Package ledger is the `cryptoassets ledger` subcommand: checks of the ledger, against itself
// and against the backend's chain.
package ledger

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/cmdutil"
	"github.com/cryptoassets/cryptoassets-operator/internal/helper"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// NewCmd is the ledger subcommand and its check.
func NewCmd() *cobra.Command {
	root := &cobra.Command{Use: "ledger", Short: "Inspect the ledger"}
	var path string
	var againstBackend bool
	check := &cobra.Command{
		Use:   "check --config FILE [--against-backend]",
		Short: "Verify the ledger's invariants (balances, credits), and with --against-backend the chain's agreement; exits 1 on any violation",
		Long: `Verify the ledger's invariants over the whole database: balances equal their transactions,
credits have their confirmations. With --against-backend, also ask the config's backend about the
config's asset: every credited deposit must be on the best chain with at least the threshold and
pay what the ledger booked, and every transaction we broadcast must exist. Run it after a deep
reorganisation, a backend or wallet replacement, or a restore of the database.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, pool, err := cmdutil.ConnectLedger(cmd.Context(), path)
			if err != nil {
				return err
			}
			defer pool.Close()
			violations, err := ledger.Check(cmd.Context(), pool)
			if err != nil {
				return err
			}
			if againstBackend {
				chain, err := helper.Audit(cmd.Context(), cfg, pool, cmdutil.CommandLog(cmd, cfg))
				if err != nil {
					return fmt.Errorf("checking against the backend: %w", err)
				}
				violations = append(violations, chain...)
			}
			return cmdutil.ReportViolations(cmd.OutOrStdout(), violations)
		},
	}
	check.Flags().StringVar(&path, "config", "", "helper config file")
	check.Flags().BoolVar(&againstBackend, "against-backend", false, "also check the asset's credited deposits and broadcasts against the backend's chain")
	_ = check.MarkFlagRequired("config")
	root.AddCommand(check)
	return root
}
