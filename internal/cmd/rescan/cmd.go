// Package rescan is the `cryptoassets rescan` subcommand: one rescan outside the helper service.
package rescan

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/cmdutil"
	"github.com/cryptoassets/cryptoassets-operator/internal/helper"
	"github.com/cryptoassets/cryptoassets-operator/internal/intake"
)

// NewCmd is the rescan subcommand.
func NewCmd() *cobra.Command {
	var (
		path       string
		fromHeight int64
	)
	cmd := &cobra.Command{
		Use:   "rescan --config FILE [--from-height N]",
		Short: "Rescan the backend once for missed transactions and book them (safe beside a running helper)",
		Long: "Reads the backend wallet's history from --from-height (default: all of it) and books every\n" +
			"deposit and confirmation change the ledger lacks, through the same idempotent path as\n" +
			"notifications. Progress goes to stderr; the summary to stdout. Exits 1 on failure.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fromHeight < 0 {
				return fmt.Errorf("--from-height must be 0 or more, got %d", fromHeight)
			}
			cfg, pool, err := cmdutil.ConnectLedger(cmd.Context(), path)
			if err != nil {
				return err
			}
			defer pool.Close()
			log := cmdutil.CommandLog(cmd, cfg)
			start := time.Now()
			p := newProgressPrinter(cmd.ErrOrStderr())
			r, err := helper.Rescan(cmd.Context(), cfg, pool, fromHeight, log, p.update)
			p.finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rescan of %s from height %d to %d done in %s: %d wallet transactions read, %d paying this asset, %d new to the ledger, %d credited\n",
				cfg.Asset.Name, fromHeight, r.Tip.Height, time.Since(start).Round(time.Millisecond), r.Seen, r.TxFound, r.TxBooked, r.Credited)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "helper config file")
	cmd.Flags().Int64Var(&fromHeight, "from-height", 0, "block height to start from; 0 reads the wallet's whole history")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// progressPrinter draws a bar on a terminal and writes a plain line every few seconds otherwise
// (a Job's log, a pipe).
type progressPrinter struct {
	w        io.Writer
	terminal bool
	last     time.Time
	drawn    bool
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	f, ok := w.(*os.File)
	return &progressPrinter{w: w, terminal: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progressPrinter) update(r intake.RescanProgress) {
	if r.Total <= 0 {
		return
	}
	now := time.Now()
	final := r.Done >= r.Total
	if p.terminal {
		const width = 30
		n := int(int64(width) * min(r.Done, r.Total) / r.Total)
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d %s, %d found, %d new", strings.Repeat("#", n), strings.Repeat(".", width-n), r.Done, r.Total, r.Unit, r.TxFound, r.TxBooked)
		p.drawn = true
		return
	}
	if !final && now.Sub(p.last) < 2*time.Second {
		return
	}
	p.last = now
	fmt.Fprintf(p.w, "rescan: %d/%d %s, %d transactions found, %d new\n", r.Done, r.Total, r.Unit, r.TxFound, r.TxBooked)
}

func (p *progressPrinter) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
