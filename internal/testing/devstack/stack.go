package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/internal/operator"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/proc"
)

// Release and namespace of the chart the stack installs, and the ServiceAccount the operator
// runs as.
const (
	Release          = "cryptoassets-operator"
	OperatorNS       = "cryptoassets-system"
	OperatorSA       = "cryptoassets-operator"
	HelperImage      = "cryptoassets-operator:dev"
	KubeVersion      = "v1.36.3"
	defaultClusterID = "cryptoassets-dev"
)

// Options say where the tools are and what to run.
type Options struct {
	// Root is the repository (for the chart); Bin holds the built tools (bin/).
	Root, Bin string
	// Dir keeps the stack's state and logs.
	Dir string
	// Bitcoin starts btcd + btcwallet on simnet; without it only the null backend can be used.
	Bitcoin bool
	// Cluster names the kwok cluster.
	Cluster string
	// Binary is the cryptoassets binary for the operator and helpers (default Bin/cryptoassets).
	Binary string
	Log    logr.Logger
}

// Stack is the running whole.
type Stack struct {
	opts       Options
	Kubeconfig string
	Rest       *rest.Config
	Client     client.Client
	PG         *pgtest.Server
	Node       *btctest.Node
	Launcher   *Launcher
	// OperatorLog and LauncherLog are where the host processes write.
	OperatorLog string

	operator *exec.Cmd
	opDone   chan struct{}
	cancel   context.CancelFunc
	stops    []func()
}

func (s *Stack) kwokctl(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.opts.Bin, "kwokctl"), append([]string{"--name", s.opts.Cluster}, args...)...)
	cmd.Env = append(os.Environ(), "KWOK_WORKDIR="+filepath.Join(s.opts.Dir, "kwok"))
	return cmd
}

func run(cmd *exec.Cmd, log string) error {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w (log: %s)", filepath.Base(cmd.Path), err, log)
	}
	return nil
}

// Start brings the stack up: a kwok cluster, the Helm chart, PostgreSQL (and btcd/btcwallet), the
// operator on this machine as the chart's ServiceAccount, and the helper launcher.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.Cluster == "" {
		opts.Cluster = defaultClusterID
	}
	if opts.Binary == "" {
		opts.Binary = filepath.Join(opts.Bin, "cryptoassets")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	s := &Stack{opts: opts, Kubeconfig: filepath.Join(opts.Dir, "kubeconfig"), OperatorLog: filepath.Join(opts.Dir, "operator.log")}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	log := opts.Log
	k8s := filepath.Join(opts.Bin, "k8s", KubeVersion)
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return nil, errors.New("etcd not installed (apt-get install etcd-server; hack/setup-tools.sh dev does it)")
	}
	for _, b := range []string{filepath.Join(k8s, "kube-apiserver"), filepath.Join(k8s, "kube-controller-manager"), filepath.Join(k8s, "kube-scheduler"),
		filepath.Join(opts.Bin, "kwok"), filepath.Join(opts.Bin, "kwokctl"), filepath.Join(opts.Bin, "helm"), opts.Binary} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s is missing: run hack/setup-tools.sh dev and make build first", b)
		}
	}

	log.Info("starting a local control plane (kwokctl, binary runtime)")
	_ = run(s.kwokctl("delete", "cluster"), filepath.Join(opts.Dir, "kwokctl.log"))
	if err := run(s.kwokctl("create", "cluster", "--runtime", "binary", "--etcd-binary", etcd,
		"--kube-apiserver-binary", filepath.Join(k8s, "kube-apiserver"),
		"--kube-controller-manager-binary", filepath.Join(k8s, "kube-controller-manager"),
		"--kube-scheduler-binary", filepath.Join(k8s, "kube-scheduler"),
		"--kwok-controller-binary", filepath.Join(opts.Bin, "kwok"),
		"--kubeconfig", s.Kubeconfig, "--wait", "120s"), filepath.Join(opts.Dir, "kwokctl.log")); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func() { _ = run(s.kwokctl("delete", "cluster"), filepath.Join(opts.Dir, "kwokctl.log")) })
	if err := run(s.kwokctl("scale", "node", "--replicas", "1"), filepath.Join(opts.Dir, "kwokctl.log")); err != nil {
		return nil, err
	}
	if s.Rest, err = clientcmd.BuildConfigFromFlags("", s.Kubeconfig); err != nil {
		return nil, err
	}
	scheme, err := operator.Scheme()
	if err != nil {
		return nil, err
	}
	if s.Client, err = client.New(s.Rest, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}

	log.Info("helm install", "chart", "charts/cryptoassets-operator", "namespace", OperatorNS)
	if err := run(exec.Command(filepath.Join(opts.Bin, "helm"), "install", Release, filepath.Join(opts.Root, "charts", "cryptoassets-operator"),
		"--kubeconfig", s.Kubeconfig, "--namespace", OperatorNS, "--create-namespace",
		"--set", "serviceAccount.name="+OperatorSA, "--set", "image.repository=cryptoassets-operator", "--set", "image.tag=dev",
		"--wait", "--timeout", "120s"), filepath.Join(opts.Dir, "helm.log")); err != nil {
		return nil, err
	}

	if s.PG, err = pgtest.Start(); err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	s.stops = append(s.stops, s.PG.Stop)
	if opts.Bitcoin {
		log.Info("starting btcd and btcwallet on simnet")
		if s.Node, err = btctest.Start(); err != nil {
			return nil, fmt.Errorf("btcd/btcwallet: %w", err)
		}
		s.stops = append(s.stops, s.Node.Stop)
	}

	// The operator runs here, not in its simulated pod, with exactly the chart's RBAC.
	log.Info("starting the operator as the chart's ServiceAccount", "log", s.OperatorLog)
	f, err := os.Create(s.OperatorLog)
	if err != nil {
		return nil, err
	}
	s.operator = exec.Command(opts.Binary, "operator", "--kubeconfig", s.Kubeconfig,
		"--as", "system:serviceaccount:"+OperatorNS+":"+OperatorSA,
		"--as-group", "system:serviceaccounts", "--as-group", "system:serviceaccounts:"+OperatorNS, "--as-group", "system:authenticated",
		"--helper-image", HelperImage, "--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0")
	s.operator.Stdout, s.operator.Stderr = f, f
	if err := s.operator.Start(); err != nil {
		f.Close()
		return nil, err
	}
	s.opDone = make(chan struct{})
	go func() { _ = s.operator.Wait(); f.Close(); close(s.opDone) }()
	s.stops = append(s.stops, func() {
		proc.Stop(s.operator.Process, os.Interrupt, 15*time.Second, s.opDone)
	})

	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.Launcher = &Launcher{Client: s.Client, Kube: s.Rest, Binary: opts.Binary,
		Dir: filepath.Join(opts.Dir, "helpers"), Log: log.WithName("launcher")}
	done := make(chan struct{})
	go func() { _ = s.Launcher.Run(lctx); close(done) }()
	s.stops = append(s.stops, func() { cancel(); <-done })
	return s, nil
}

// OperatorRunning says whether the operator process is still up.
func (s *Stack) OperatorRunning() bool {
	select {
	case <-s.opDone:
		return false
	default:
		return true
	}
}

// Stop stops everything, in reverse order; nothing is left running.
func (s *Stack) Stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// DatabaseURL makes a fresh database on the stack's PostgreSQL and returns its URL.
func (s *Stack) DatabaseURL(ctx context.Context) (string, error) {
	return s.PG.NewDatabase(ctx)
}
