// Package initializedb is the `cryptoassets initializedb` subcommand: create or upgrade the
// ledger schema.
package initializedb

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/cmdutil"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// NewCmd is the initializedb subcommand.
func NewCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "initializedb --config FILE",
		Short: "Create or upgrade the ledger schema (idempotent; refuses a schema newer than this binary)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, pool, err := cmdutil.ConnectLedger(cmd.Context(), path)
			if err != nil {
				return err
			}
			defer pool.Close()
			applied, err := ledger.Migrate(cmd.Context(), pool)
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "ledger schema is up to date (version %d)\n", ledger.SchemaVersion())
				return nil
			}
			for _, m := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "applied %s\n", m)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ledger schema is at version %d\n", ledger.SchemaVersion())
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "helper config file")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
