package devstack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/internal/operator"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack/image"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack/node"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
)

// PodOptions say what the real-pod stack runs.
type PodOptions struct {
	// Root is the repository (the program and the chart); Bin holds the built tools (bin/).
	Root, Bin string
	// Dir keeps the stack's state and logs; keep it short (containerd's sockets live under it).
	Dir string
	// Version tags the image built from Root (default "dev").
	Version string
	// Bitcoin starts btcd + btcwallet on simnet, the wallet reachable from pods.
	Bitcoin bool
	Log     logr.Logger
}

// PodStack is the product as a user runs it, on a real one-node cluster on this machine: the
// image built from the repository, the chart installed with Helm, the operator as a pod with its
// own ServiceAccount and leader election, helper pods rendered by it. PostgreSQL and the simnet
// wallet run on the host and listen on the node's bridge address, where pods reach them.
type PodStack struct {
	opts PodOptions
	Node *node.Node
	// Kubeconfig is an admin kubeconfig; Rest and Client use it.
	Kubeconfig string
	Rest       *rest.Config
	Client     client.Client
	PG         *pgtest.Server
	BTC        *btctest.Node
	// Image is the product image's name and tag, imported into the node.
	Image string
	// HelmInstall is how long `helm install --wait` took (the operator pod Ready).
	HelmInstall time.Duration

	stops []func()
}

// HostIP is the address on the host that pods reach: servers for pods listen here.
const HostIP = node.GatewayIP

// StartPods builds the images, starts the node, PostgreSQL (and the simnet node), and installs
// the chart. On error everything started is stopped.
func StartPods(ctx context.Context, opts PodOptions) (_ *PodStack, err error) {
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	s := &PodStack{opts: opts, Image: "cryptoassets-operator:" + opts.Version}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	log := opts.Log
	imgDir := filepath.Join(opts.Dir, "images")
	if err := os.MkdirAll(imgDir, 0o700); err != nil {
		return nil, err
	}
	log.Info("building the images", "image", s.Image)
	product, err := image.BuildProduct(ctx, opts.Root, imgDir, s.Image, opts.Version)
	if err != nil {
		return nil, err
	}
	pause, err := image.BuildPause(ctx, opts.Root, imgDir, node.PauseImage)
	if err != nil {
		return nil, err
	}
	log.Info("starting a real node: control plane, containerd, kubelet, kube-proxy")
	if s.Node, err = node.Start(ctx, node.Options{Bin: opts.Bin, Dir: filepath.Join(opts.Dir, "node"), Images: []string{pause, product}, Log: log.WithName("node")}); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, s.Node.Stop)
	s.Kubeconfig, s.Rest = s.Node.Kubeconfig, s.Node.Rest
	scheme, err := operator.Scheme()
	if err != nil {
		return nil, err
	}
	if s.Client, err = client.New(s.Rest, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}

	if s.PG, err = pgtest.StartOn(HostIP); err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	s.stops = append(s.stops, s.PG.Stop)
	if opts.Bitcoin {
		log.Info("starting btcd and btcwallet on simnet")
		if s.BTC, err = btctest.StartOn(HostIP); err != nil {
			return nil, fmt.Errorf("btcd/btcwallet: %w", err)
		}
		s.stops = append(s.stops, s.BTC.Stop)
	}

	log.Info("helm install", "chart", "charts/cryptoassets-operator", "namespace", OperatorNS)
	began := time.Now()
	if err := run(exec.CommandContext(ctx, filepath.Join(opts.Bin, "helm"), "install", Release, filepath.Join(opts.Root, "charts", "cryptoassets-operator"),
		"--kubeconfig", s.Kubeconfig, "--namespace", OperatorNS, "--create-namespace",
		"--set", "serviceAccount.name="+OperatorSA, "--set", "image.repository=cryptoassets-operator", "--set", "image.tag="+opts.Version,
		"--set", "image.pullPolicy=IfNotPresent", "--wait", "--timeout", "180s"), filepath.Join(opts.Dir, "helm.log")); err != nil {
		return nil, err
	}
	s.HelmInstall = time.Since(began)
	log.Info("operator pod Ready", "after", s.HelmInstall.Round(time.Millisecond).String())
	s.stops = append(s.stops, func() { _ = s.HelmUninstall(context.Background()) })
	return s, nil
}

// HelmUninstall uninstalls the chart (waiting for its objects to go); a second call is a no-op.
func (s *PodStack) HelmUninstall(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, filepath.Join(s.opts.Bin, "helm"), "uninstall", Release, "--kubeconfig", s.Kubeconfig,
		"--namespace", OperatorNS, "--ignore-not-found", "--wait", "--timeout", "120s").CombinedOutput()
	if err != nil {
		return fmt.Errorf("helm uninstall: %v: %s", err, out)
	}
	return nil
}

// ServiceAddr is host:port of a Service's ClusterIP and named port, reachable from this machine
// through kube-proxy as from any pod.
func (s *PodStack) ServiceAddr(ctx context.Context, namespace, name, port string) (string, error) {
	var svc corev1.Service
	if err := s.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &svc); err != nil {
		return "", err
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == port {
			return svc.Spec.ClusterIP + ":" + strconv.Itoa(int(p.Port)), nil
		}
	}
	return "", fmt.Errorf("Service %s/%s has no port %q", namespace, name, port)
}

// Stop stops everything in reverse order; the node restores the host.
func (s *PodStack) Stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// DatabaseURL makes a fresh database: its URL for pods (at HostIP) and for this machine.
func (s *PodStack) DatabaseURL(ctx context.Context) (pod, host string, err error) {
	if host, err = s.PG.NewDatabase(ctx); err != nil {
		return "", "", err
	}
	return strings.Replace(host, "@127.0.0.1:", "@"+HostIP+":", 1), host, nil
}
