package kubectl

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/cmd/cmdutil"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/render"
)

func ledgerCheckCmd(conn *connection) *cobra.Command {
	var (
		againstBackend bool
		databaseURL    string
	)
	cmd := &cobra.Command{
		Use:   "ledger-check NAME [--against-backend] [--database-url URL]",
		Short: "Verify the asset's ledger: run `cryptoassets ledger check` in its helper pod, or against a database URL; exits 1 on any violation",
		Long: "Runs the ledger's invariant checks (wallet = sum of accounts, account = its transactions...) in\n" +
			"the asset's active helper pod, with the pod's own config and credentials, and prints what it\n" +
			"finds; --against-backend also checks credited deposits and broadcasts against the chain. With\n" +
			"--database-url the invariants are checked from here instead (for a database this machine reaches).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := conn.clients()
			if err != nil {
				return err
			}
			var ca v1alpha1.CryptoAsset
			if err := c.ctrl.Get(cmd.Context(), client.ObjectKey{Namespace: c.namespace, Name: args[0]}, &ca); err != nil {
				return err
			}
			if databaseURL != "" {
				if againstBackend {
					return errors.New("--against-backend runs in the helper pod, which reaches the backend; leave out --database-url")
				}
				return checkDatabase(cmd, databaseURL)
			}
			pod, err := c.activeHelper(cmd.Context(), &ca)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", ca.Namespace, ca.Name, err)
			}
			command := []string{"/cryptoassets", "ledger", "check", "--config", render.ConfigPath}
			if againstBackend {
				command = append(command, "--against-backend")
			}
			req := c.core.RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("exec").
				VersionedParams(&corev1.PodExecOptions{Container: render.ContainerName, Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec)
			exec, err := remotecommand.NewSPDYExecutor(c.rest, "POST", req.URL())
			if err != nil {
				return err
			}
			err = exec.StreamWithContext(cmd.Context(), remotecommand.StreamOptions{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()})
			var exit interface{ ExitStatus() int }
			if errors.As(err, &exit) {
				// What it found, or why it could not check, is in the output above.
				return fmt.Errorf("the ledger check in helper pod %s exited %d", pod.Name, exit.ExitStatus())
			}
			if err != nil {
				return fmt.Errorf("running the ledger check in helper pod %s: %w", pod.Name, err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&againstBackend, "against-backend", false, "also check credited deposits and broadcasts against the backend's chain")
	cmd.Flags().StringVar(&databaseURL, "database-url", "", "check this database from here instead of in the helper pod")
	return cmd
}

func checkDatabase(cmd *cobra.Command, url string) error {
	pool, err := pgxpool.New(cmd.Context(), url)
	if err != nil {
		return fmt.Errorf("connecting to the ledger database: %w", err)
	}
	defer pool.Close()
	violations, err := ledger.Check(cmd.Context(), pool)
	if err != nil {
		return err
	}
	return cmdutil.ReportViolations(cmd.OutOrStdout(), violations)
}
