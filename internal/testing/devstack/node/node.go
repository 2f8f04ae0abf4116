// Package node runs a real one-node Kubernetes cluster on this machine for tests and `make dev`:
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler, then containerd + runc with a
// CNI bridge, kubelet and kube-proxy. Pods are real containers.
//
// Everything lives under one directory and every daemon is stopped by its PID. What the node
// changes on the host (sysctls, iptables chains, mounts, cgroups, the bridge) is recorded when it
// starts and put back when it stops; a node killed before it could clean up is cleaned up by the
// next start. See shared REALNODE.md for the facts this is built on (containerd must restrict
// negative oom_score_adj, kubelet must accept cgroup v1).
//
// This is dev and test tooling, not product.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/loopback"
	stopper "github.com/cryptoassets/cryptoassets-operator/internal/testing/proc"
)

const (
	// Name is the node's name.
	Name = "cryptoassets-node"
	// Bridge is the CNI bridge; GatewayIP is its address on the host. Pods reach the host, and so
	// the API server and any server a test binds there, at GatewayIP.
	Bridge    = "cryptoassets0"
	GatewayIP = "10.244.0.1"
	podCIDR   = "10.244.0.0/24"
	// ServiceCIDR holds the ClusterIPs; the first is the kubernetes Service.
	ServiceCIDR = "10.96.0.0/24"
	// PauseImage is the sandbox image; the caller imports an archive of that name (image.WritePause).
	PauseImage  = "cryptoassets.local/pause:1"
	KubeVersion = "v1.36.3"
)

// Options say where the tools are and where the node keeps its state.
type Options struct {
	// Bin is the project's bin/ (Kubernetes binaries under bin/k8s/<version>/).
	Bin string
	// Dir holds all of the node's state and logs. Keep it short: containerd's sockets live there.
	Dir string
	// Images are docker-archives to import into containerd before the node registers; the pause
	// image must be one of them.
	Images []string
	Log    logr.Logger
}

// Node is a running cluster of one real node.
type Node struct {
	opts Options
	// Kubeconfig is an admin kubeconfig; Rest the same as a client config.
	Kubeconfig string
	Rest       *rest.Config
	Client     kubernetes.Interface
	// ContainerdSocket is where `ctr -a` talks to the node's containerd.
	ContainerdSocket string
	// Timings of the start, for the notes and the dev stack's summary.
	ControlPlaneReady, NodeReady time.Duration

	pki   *pki
	host  *hostState
	procs []*proc // in start order
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process and SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	stopper.Stop(p.cmd.Process, syscall.SIGTERM, grace, p.done)
}

func (n *Node) start(name string, args ...string) (*proc, error) {
	logPath := filepath.Join(n.opts.Dir, "logs", filepath.Base(name)+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Pdeathsig: a test binary that dies must not leave daemons running; the next start then
	// finds the marker and cleans up the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(name), err)
	}
	p := &proc{name: filepath.Base(name), cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	n.procs = append(n.procs, p)
	return p, nil
}

// Log returns where a daemon writes its log (by binary name, e.g. "kubelet").
func (n *Node) Log(name string) string { return filepath.Join(n.opts.Dir, "logs", name+".log") }

// Preflight says what this machine lacks for a real node, or nil when it has everything.
func Preflight(bin string) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, b := range []string{"containerd", "ctr", "runc", "iptables", "iptables-save", "iptables-restore", "ip", "etcd"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	k8s := filepath.Join(bin, "k8s", KubeVersion)
	for _, b := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback",
		filepath.Join(k8s, "kube-apiserver"), filepath.Join(k8s, "kube-controller-manager"), filepath.Join(k8s, "kube-scheduler"),
		filepath.Join(k8s, "kubelet"), filepath.Join(k8s, "kube-proxy")} {
		if _, err := os.Stat(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("a real node needs %s (hack/setup-tools.sh node installs them)", strings.Join(missing, ", "))
	}
	return nil
}

// Start brings the cluster up and returns once the node is Ready. On error everything started so
// far is stopped again.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	if err := Preflight(opts.Bin); err != nil {
		return nil, err
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	n := &Node{opts: opts, ContainerdSocket: filepath.Join(opts.Dir, "containerd", "sock")}
	log := opts.Log
	if n.host, err = claimHost(opts.Dir, Bridge, log); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	// A new cluster every time: an earlier run's etcd, kubelet and containerd state would bring
	// back its pods, with credentials signed by keys that no longer exist.
	if err := wipe(opts.Dir, log); err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "pki", "etcd", "containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	began := time.Now()

	// The bridge exists before the API server so that it can listen on the gateway address,
	// which is where pods reach it; the CNI bridge plugin adopts an existing bridge.
	for _, args := range [][]string{{"link", "add", Bridge, "type", "bridge"}, {"addr", "add", GatewayIP + "/24", "dev", Bridge}, {"link", "set", Bridge, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := fence(Bridge, podCIDR, ServiceCIDR); err != nil {
		return nil, fmt.Errorf("keeping the node's traffic on this machine: %w", err)
	}

	if n.pki, err = newPKI(filepath.Join(opts.Dir, "pki")); err != nil {
		return nil, err
	}
	apiPort, err := loopback.FreePortOn(GatewayIP)
	if err != nil {
		return nil, err
	}
	server := "https://" + net.JoinHostPort(GatewayIP, strconv.Itoa(apiPort))
	for _, c := range []struct {
		name, cn string
		orgs     []string
		hosts    []string
	}{
		{"apiserver", "kube-apiserver", nil, []string{GatewayIP, "10.96.0.1", "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil},
		{"admin", "cryptoassets-dev-admin", []string{"system:masters"}, nil},
		{"controller-manager", "system:kube-controller-manager", nil, nil},
		{"scheduler", "system:kube-scheduler", nil, nil},
		{"kubelet", "system:node:" + Name, []string{"system:nodes"}, nil},
		{"kube-proxy", "system:kube-proxy", nil, nil},
	} {
		if err := n.pki.issue(c.name, c.cn, c.orgs, c.hosts...); err != nil {
			return nil, err
		}
	}
	kc := map[string]string{}
	for _, name := range []string{"admin", "controller-manager", "scheduler", "kubelet", "kube-proxy"} {
		if kc[name], err = n.pki.kubeconfig(name, server); err != nil {
			return nil, err
		}
	}
	n.Kubeconfig = kc["admin"]

	// etcd on loopback: only the API server talks to it.
	etcdBin, _ := exec.LookPath("etcd")
	etcdClient, err := loopback.FreePortOn("127.0.0.1")
	if err != nil {
		return nil, err
	}
	etcdPeer, err := loopback.FreePortOn("127.0.0.1")
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	if _, err := n.start(etcdBin, "--data-dir", filepath.Join(opts.Dir, "etcd"), "--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL, "--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(etcdPeer),
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+strconv.Itoa(etcdPeer),
		"--initial-cluster", "default=http://127.0.0.1:"+strconv.Itoa(etcdPeer), "--unsafe-no-fsync"); err != nil {
		return nil, err
	}

	k8s := filepath.Join(opts.Bin, "k8s", KubeVersion)
	p := n.pki.path
	if _, err := n.start(filepath.Join(k8s, "kube-apiserver"),
		"--bind-address", GatewayIP, "--advertise-address", GatewayIP, "--secure-port", strconv.Itoa(apiPort),
		"--etcd-servers", etcdURL, "--client-ca-file", p("ca.crt"),
		"--tls-cert-file", p("apiserver.crt"), "--tls-private-key-file", p("apiserver.key"),
		"--kubelet-client-certificate", p("apiserver-kubelet-client.crt"), "--kubelet-client-key", p("apiserver-kubelet-client.key"),
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", p("sa.pub"),
		"--service-account-signing-key-file", p("sa.key"), "--service-cluster-ip-range", ServiceCIDR,
		"--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
		"--allow-privileged=false", "--profiling=false", "--endpoint-reconciler-type", "lease",
		// No cluster DNS: the API server reaches kubelet (logs, exec) at the node IP.
		"--kubelet-preferred-address-types", "InternalIP"); err != nil {
		return nil, err
	}
	if n.Rest, err = clientcmd.BuildConfigFromFlags("", n.Kubeconfig); err != nil {
		return nil, err
	}
	if n.Client, err = kubernetes.NewForConfig(n.Rest); err != nil {
		return nil, err
	}
	if err := n.waitFor(ctx, 2*time.Minute, "kube-apiserver ready", func(ctx context.Context) error {
		_, err := n.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	cmPort, err := loopback.FreePortOn("127.0.0.1")
	if err != nil {
		return nil, err
	}
	if _, err := n.start(filepath.Join(k8s, "kube-controller-manager"), "--kubeconfig", kc["controller-manager"],
		"--authentication-kubeconfig", kc["controller-manager"], "--authorization-kubeconfig", kc["controller-manager"],
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(cmPort), "--leader-elect=false",
		"--service-account-private-key-file", p("sa.key"), "--root-ca-file", p("ca.crt"),
		"--use-service-account-credentials", "--service-cluster-ip-range", ServiceCIDR,
		"--controllers", "*,-csrsigning,-bootstrapsigner,-tokencleaner"); err != nil {
		return nil, err
	}
	schedPort, err := loopback.FreePortOn("127.0.0.1")
	if err != nil {
		return nil, err
	}
	if _, err := n.start(filepath.Join(k8s, "kube-scheduler"), "--kubeconfig", kc["scheduler"],
		"--authentication-kubeconfig", kc["scheduler"], "--authorization-kubeconfig", kc["scheduler"],
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(schedPort), "--leader-elect=false"); err != nil {
		return nil, err
	}
	n.ControlPlaneReady = time.Since(began)
	log.Info("control plane ready", "server", server, "after", n.ControlPlaneReady.Round(time.Millisecond).String())

	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	for _, img := range opts.Images {
		if out, err := exec.CommandContext(ctx, "ctr", "-a", n.ContainerdSocket, "-n", "k8s.io", "images", "import", img).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("importing %s into containerd: %v: %s", img, err, out)
		}
	}
	if err := n.startKubelet(ctx, kc["kubelet"]); err != nil {
		return nil, err
	}
	if err := n.startKubeProxy(kc["kube-proxy"]); err != nil {
		return nil, err
	}
	if err := n.waitFor(ctx, 2*time.Minute, "node Ready", func(ctx context.Context) error {
		node, err := n.Client.CoreV1().Nodes().Get(ctx, Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("node not Ready yet")
	}); err != nil {
		return nil, err
	}
	n.NodeReady = time.Since(began)
	log.Info("node Ready", "after", n.NodeReady.Round(time.Millisecond).String())
	return n, nil
}

func (n *Node) startContainerd(ctx context.Context) error {
	d := filepath.Join(n.opts.Dir, "containerd")
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = %[5]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[7]q
  # This machine's root lacks CAP_SYS_RESOURCE: negative oom_score_adj (sandboxes -998) is
  # refused and every sandbox fails at runc create without this.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = %[8]q
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[9]q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.ContainerdSocket, n.ContainerdSocket+".ttrpc",
		filepath.Join(d, "debug.sock"), filepath.Join(d, "opt"), PauseImage, filepath.Join(d, "runc"),
		filepath.Join(n.opts.Dir, "cni", "net.d"))
	if err := os.WriteFile(filepath.Join(d, "config.toml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	conflist := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "cryptoassets", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}`, Bridge, filepath.Join(n.opts.Dir, "cni", "ipam"), podCIDR, GatewayIP)
	if err := os.WriteFile(filepath.Join(n.opts.Dir, "cni", "net.d", "10-cryptoassets.conflist"), []byte(conflist), 0o600); err != nil {
		return err
	}
	if _, err := n.start("containerd", "--config", filepath.Join(d, "config.toml")); err != nil {
		return err
	}
	return n.waitFor(ctx, time.Minute, "containerd answering", func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "ctr", "-a", n.ContainerdSocket, "version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

func (n *Node) startKubelet(_ context.Context, kubeconfig string) error {
	d := filepath.Join(n.opts.Dir, "kubelet")
	port, err := loopback.FreePortOn(GatewayIP)
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzPort: 0
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%[3]s
imageServiceEndpoint: unix://%[3]s
failSwapOn: false
protectKernelDefaults: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[4]s}
authorization: {mode: Webhook}
podLogsDir: %[5]s
evictionHard: {nodefs.available: "1%%", imagefs.available: "1%%", memory.available: "100Mi"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
`, GatewayIP, port, n.ContainerdSocket, n.pki.path("ca.crt"), filepath.Join(n.opts.Dir, "pod-logs"))
	if err := os.WriteFile(filepath.Join(d, "config.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	_, err = n.start(filepath.Join(n.opts.Bin, "k8s", KubeVersion, "kubelet"), "--config", filepath.Join(d, "config.yaml"),
		"--kubeconfig", kubeconfig, "--root-dir", filepath.Join(d, "root"), "--cert-dir", filepath.Join(d, "pki"),
		"--node-ip", GatewayIP, "--hostname-override", Name)
	return err
}

func (n *Node) startKubeProxy(kubeconfig string) error {
	health, err := loopback.FreePortOn("127.0.0.1")
	if err != nil {
		return err
	}
	metrics, err := loopback.FreePortOn("127.0.0.1")
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %q}
mode: iptables
hostnameOverride: %s
clusterCIDR: %s
# Only the primary address: kube-proxy then leaves net.ipv4.conf.all.route_localnet alone.
nodePortAddresses: ["primary"]
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
# Zero leaves the host's conntrack settings as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, kubeconfig, Name, podCIDR, health, metrics)
	path := filepath.Join(n.opts.Dir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	_, err = n.start(filepath.Join(n.opts.Bin, "k8s", KubeVersion, "kube-proxy"), "--config", path)
	return err
}

// waitFor polls check until it succeeds, ctx ends or timeout passes; a daemon that exited
// meanwhile ends the wait at once with its log's name.
func (n *Node) waitFor(ctx context.Context, timeout time.Duration, what string, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		for _, p := range n.procs {
			if !p.running() {
				return fmt.Errorf("waiting for %s: %s exited (log: %s)", what, p.name, p.log)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", what, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Stop deletes every pod (so kubelet tears down their containers and networks through CNI),
// stops each daemon by its PID, removes what containerd and kubelet left, and restores the host.
func (n *Node) Stop() {
	log := n.opts.Log
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	byName := map[string]*proc{}
	for _, p := range n.procs {
		byName[p.name] = p
	}
	stop := func(name string, grace time.Duration) {
		if p := byName[name]; p != nil {
			p.stop(grace)
		}
	}
	// Nothing may recreate pods while they go.
	stop("kube-controller-manager", 10*time.Second)
	stop("kube-scheduler", 10*time.Second)
	if kl := byName["kubelet"]; kl != nil && kl.running() && n.Client != nil {
		n.deletePods(ctx)
	}
	stop("kubelet", 15*time.Second)
	stop("kube-proxy", 10*time.Second)
	if byName["kube-proxy"] != nil {
		// kube-proxy's own cleanup removes its rules in both families (and any nftables table).
		cmd := exec.Command(filepath.Join(n.opts.Bin, "k8s", KubeVersion, "kube-proxy"), "--cleanup")
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Info("kube-proxy --cleanup", "error", err.Error(), "output", string(out))
		}
	}
	if c := byName["containerd"]; c != nil && c.running() {
		n.removeContainers(ctx)
	}
	stop("containerd", 15*time.Second)
	stop("kube-apiserver", 15*time.Second)
	stop("etcd", 10*time.Second)
	for _, p := range n.procs {
		p.stop(5 * time.Second)
	}
	if n.host != nil {
		n.host.restore(log)
		n.host = nil
	}
}

// deletePods deletes every pod with its grace period and waits until kubelet has finished them.
func (n *Node) deletePods(ctx context.Context) {
	pods := n.Client.CoreV1().Pods(metav1.NamespaceAll)
	list, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range list.Items {
		_ = n.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
	}
	_ = n.waitFor(ctx, 90*time.Second, "every pod gone", func(ctx context.Context) error {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d pods left", len(list.Items))
		}
		return nil
	})
}

// removeContainers kills and deletes whatever tasks and sandboxes containerd still runs, so that
// no shim outlives it.
func (n *Node) removeContainers(ctx context.Context) {
	ctr := func(args ...string) string {
		out, _ := exec.CommandContext(ctx, "ctr", append([]string{"-a", n.ContainerdSocket, "-n", "k8s.io"}, args...)...).Output()
		return string(out)
	}
	for _, id := range strings.Fields(ctr("tasks", "ls", "-q")) {
		ctr("tasks", "kill", "-s", "SIGKILL", id)
	}
	for _, id := range strings.Fields(ctr("tasks", "ls", "-q")) {
		ctr("tasks", "delete", "-f", id)
	}
	for _, id := range strings.Fields(ctr("containers", "ls", "-q")) {
		ctr("containers", "delete", id)
	}
}
