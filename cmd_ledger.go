package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/helper"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// connectLedger opens a pool on the database the config file names.
func connectLedger(ctx context.Context, path string) (*config.Config, *pgxpool.Pool, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	url, err := config.ReadSecretFile("database.urlFile", cfg.Database.URLFile)
	if err != nil {
		return nil, nil, err
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message can quote the URL, password included; say what is wrong without it.
		return nil, nil, errors.New("database.urlFile does not hold a valid PostgreSQL URL (postgres://user:password@host:5432/db?sslmode=...)")
	}
	pc.MaxConns = cfg.Database.MaxConnections
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

func initializeDBCommand() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "initializedb --config FILE",
		Short: "Create or upgrade the ledger schema (idempotent; refuses a schema newer than this binary)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, pool, err := connectLedger(cmd.Context(), path)
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

func ledgerCommand() *cobra.Command {
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
			cfg, pool, err := connectLedger(cmd.Context(), path)
			if err != nil {
				return err
			}
			defer pool.Close()
			violations, err := ledger.Check(cmd.Context(), pool)
			if err != nil {
				return err
			}
			if againstBackend {
				chain, err := helper.Audit(cmd.Context(), cfg, pool, commandLog(cmd, cfg))
				if err != nil {
					return fmt.Errorf("checking against the backend: %w", err)
				}
				violations = append(violations, chain...)
			}
			for _, v := range violations {
				fmt.Fprintln(cmd.OutOrStdout(), "VIOLATION", v)
			}
			if len(violations) > 0 {
				return fmt.Errorf("%d ledger invariant violations", len(violations))
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ledger check: all invariants hold")
			return nil
		},
	}
	check.Flags().StringVar(&path, "config", "", "helper config file")
	check.Flags().BoolVar(&againstBackend, "against-backend", false, "also check the asset's credited deposits and broadcasts against the backend's chain")
	_ = check.MarkFlagRequired("config")
	root.AddCommand(check)
	return root
}
