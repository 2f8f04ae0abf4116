// Package kubectl is `kubectl cryptoassets`, the kubectl plugin for day-two work on CryptoAssets:
// status, rescans and ledger checks. It is the same binary as the operator and the helper: run
// as kubectl-cryptoassets (a copy or link on the PATH; `make plugin` builds one), or as
// `cryptoassets kubectl`.
package kubectl

import (
	"github.com/spf13/cobra"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/internal/operator"
)

// PluginName is the name kubectl finds the plugin by.
const PluginName = "kubectl-cryptoassets"

// clients are what every command talks to the cluster with.
type clients struct {
	ctrl      client.Client
	core      corev1client.CoreV1Interface
	rest      *rest.Config
	namespace string
}

// connection holds the kubeconfig flags every command shares.
type connection struct {
	loading   *clientcmd.ClientConfigLoadingRules
	overrides clientcmd.ConfigOverrides
}

func (c *connection) clients() (*clients, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(c.loading, &c.overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, err
	}
	scheme, err := operator.Scheme()
	if err != nil {
		return nil, err
	}
	ctrl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	core, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &clients{ctrl: ctrl, core: core, rest: cfg, namespace: ns}, nil
}

// NewCmd is the plugin's root command, shown as display ("kubectl cryptoassets" as a plugin,
// "cryptoassets kubectl" under the cryptoassets command).
func NewCmd(display string) *cobra.Command {
	conn := &connection{loading: clientcmd.NewDefaultClientConfigLoadingRules()}
	root := &cobra.Command{
		Use:           "kubectl",
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: display},
		Short:         "Day-two work on CryptoAssets: status, rescans, ledger checks",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	f.StringVar(&conn.loading.ExplicitPath, "kubeconfig", "", "path to the kubeconfig file")
	f.StringVar(&conn.overrides.CurrentContext, "context", "", "the kubeconfig context to use")
	f.StringVarP(&conn.overrides.Context.Namespace, "namespace", "n", "", "the namespace of the CryptoAssets")
	root.AddCommand(statusCmd(conn), rescanCmd(conn), ledgerCheckCmd(conn))
	return root
}
