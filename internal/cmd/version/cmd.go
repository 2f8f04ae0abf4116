// Package version is the `cryptoassets version` subcommand.
package version

import (
	"fmt"

	"github.com/spf13/cobra"
)

// NewCmd prints version.
func NewCmd(version string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version)
		},
	}
}
