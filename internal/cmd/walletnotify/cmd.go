// Package walletnotify is the `cryptoassets walletnotify` subcommand: the client bitcoind runs
// for every wallet transaction.
package walletnotify

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/walletnotify"
)

// NewCmd is the client bitcoind runs for every wallet transaction:
//
//	walletnotify=cryptoassets walletnotify --url http://btc-helper:28882/ --token-file /etc/cryptoassets/walletnotify-token %s
//
// It posts the txid the way the original curl hook did, with the helper's token, and gives up
// after --timeout so a slow or absent helper never holds bitcoind up (the helper's poll timer
// finds the transaction anyway).
func NewCmd() *cobra.Command {
	var (
		target    string
		tokenFile string
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "walletnotify --url URL [--token-file FILE] TXID",
		Short: "Tell a running helper about a wallet transaction (for bitcoind -walletnotify)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			txid := strings.TrimSpace(args[0])
			if b, err := hex.DecodeString(txid); err != nil || len(b) != 32 {
				return fmt.Errorf("%q is not a transaction id (64 hex digits)", txid)
			}
			u, err := url.Parse(target)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("--url %q must be the helper's http(s)://host:port", target)
			}
			token := os.Getenv("CRYPTOASSETS_WALLETNOTIFY_TOKEN")
			if tokenFile != "" {
				if token, err = config.ReadSecretFile("--token-file", tokenFile); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(url.Values{"txid": {txid}}.Encode()))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if token != "" {
				req.Header.Set(walletnotify.TokenHeader, token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("notifying %s: %w", u.Host, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("helper at %s answered %s: %s", u.Host, resp.Status, strings.TrimSpace(string(body)))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "url", "", "the helper's walletnotify address, e.g. http://btc-helper:28882/")
	f.StringVar(&tokenFile, "token-file", "", "file holding the hook's token (or set CRYPTOASSETS_WALLETNOTIFY_TOKEN)")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	_ = cmd.MarkFlagRequired("url")
	return cmd
}
