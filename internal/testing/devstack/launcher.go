// Package devstack is development and test tooling, not product: the pieces `make dev` and the
// end-to-end test put together around a local control plane whose pods are simulated. Its
// Launcher plays kubelet for the helper: it runs a real helper process on this machine for every
// helper Deployment the operator rendered.
package devstack

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/loopback"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/proc"
)

// helperLabels pick the Deployments the operator renders for helpers.
var helperLabels = client.MatchingLabels{v1alpha1.LabelComponent: v1alpha1.HelperComponent, v1alpha1.LabelManagedBy: v1alpha1.ManagedBy}

// Helper is one running helper process.
type Helper struct {
	Namespace, Name string
	// Hash is the pod template's config hash it was started with.
	Hash string
	// API, Ops and Hook are its listen addresses on this machine (Hook: walletnotify HTTP, if any).
	API, Ops, Hook string
	// Root holds the files the pod's volumes would have.
	Root string
	// Log is the process's output.
	Log *Buffer

	cmd  *exec.Cmd
	done chan struct{}
}

// Ready asks the helper's /readyz, as kubelet's readiness probe would.
func (h *Helper) Ready() error {
	resp, err := http.Get("http://" + h.Ops + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d", resp.StatusCode)
	}
	return nil
}

// Buffer is a log safe to read while a process writes it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }

// String is everything written so far.
func (b *Buffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// Launcher runs the helpers.
type Launcher struct {
	// Client reads Deployments, ConfigMaps and Secrets (an admin identity: it stands for kubelet).
	Client client.Client
	// Kube is the API server the helpers talk to, each as its own ServiceAccount.
	Kube *rest.Config
	// Binary stands for the helper image.
	Binary string
	// Dir is where each helper's files go.
	Dir string
	// Every is how often Deployments are looked at (default 500ms).
	Every time.Duration
	Log   logr.Logger

	mu      sync.Mutex
	running map[types.NamespacedName]*Helper
	paused  map[types.NamespacedName]bool
	started int
}

// Pause stops a Deployment's helper and keeps it stopped until Resume, as a node outage would.
func (l *Launcher) Pause(namespace, name string) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	l.mu.Lock()
	if l.paused == nil {
		l.paused = map[types.NamespacedName]bool{}
	}
	l.paused[key] = true
	h := l.running[key]
	delete(l.running, key)
	l.mu.Unlock()
	if h != nil {
		h.stop()
	}
}

// Resume lets the launcher start a paused helper again.
func (l *Launcher) Resume(namespace, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.paused, types.NamespacedName{Namespace: namespace, Name: name})
}

// Run reconciles helper processes with helper Deployments until ctx ends, then stops them all.
func (l *Launcher) Run(ctx context.Context) error {
	l.mu.Lock()
	if l.running == nil {
		l.running = map[types.NamespacedName]*Helper{}
	}
	l.mu.Unlock()
	every := l.Every
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	defer l.stopAll()
	for {
		if err := l.sync(ctx); err != nil && ctx.Err() == nil {
			l.Log.Error(err, "launcher pass")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// Get returns the running helper of a Deployment.
func (l *Launcher) Get(namespace, name string) (*Helper, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.running[types.NamespacedName{Namespace: namespace, Name: name}]
	return h, ok
}

// Starts counts helper processes started so far.
func (l *Launcher) Starts() int { l.mu.Lock(); defer l.mu.Unlock(); return l.started }

func (l *Launcher) sync(ctx context.Context) error {
	var list appsv1.DeploymentList
	if err := l.Client.List(ctx, &list, helperLabels); err != nil {
		return err
	}
	seen := map[types.NamespacedName]bool{}
	for i := range list.Items {
		d := &list.Items[i]
		if d.DeletionTimestamp != nil {
			continue
		}
		key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
		seen[key] = true
		l.mu.Lock()
		paused := l.paused[key]
		l.mu.Unlock()
		if paused {
			continue
		}
		hash := d.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation]
		l.mu.Lock()
		cur := l.running[key]
		l.mu.Unlock()
		if cur != nil && cur.Hash == hash && !cur.exited() {
			continue
		}
		if cur != nil {
			why := "its pod template changed"
			if cur.exited() {
				why = "it exited"
			}
			l.Log.Info("restarting helper", "deployment", key, "because", why)
			cur.stop()
		}
		h, err := l.start(ctx, d)
		if err != nil {
			l.Log.Error(err, "starting helper", "deployment", key)
			continue
		}
		l.mu.Lock()
		l.running[key] = h
		l.started++
		l.mu.Unlock()
	}
	l.mu.Lock()
	var gone []*Helper
	for key, h := range l.running {
		if !seen[key] {
			gone = append(gone, h)
			delete(l.running, key)
		}
	}
	l.mu.Unlock()
	for _, h := range gone {
		l.Log.Info("stopping helper: its Deployment is gone", "deployment", h.Namespace+"/"+h.Name)
		h.stop()
	}
	return nil
}

func (l *Launcher) stopAll() {
	l.mu.Lock()
	hs := make([]*Helper, 0, len(l.running))
	for _, h := range l.running {
		hs = append(hs, h)
	}
	l.running = map[types.NamespacedName]*Helper{}
	l.mu.Unlock()
	for _, h := range hs {
		h.stop()
	}
}

func (h *Helper) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, as kubelet does, and SIGKILL after the grace period.
func (h *Helper) stop() {
	proc.Stop(h.cmd.Process, syscall.SIGTERM, 30*time.Second, h.done)
}

// start materialises the pod's volumes, rewrites the helper config for this machine (file paths
// under the volume root, listen addresses on free loopback ports) and runs the init containers,
// then the helper container.
func (l *Launcher) start(ctx context.Context, d *appsv1.Deployment) (*Helper, error) {
	spec := d.Spec.Template.Spec
	root := filepath.Join(l.Dir, d.Namespace, d.Name, strconv.FormatInt(time.Now().UnixNano(), 36))
	mounts := map[string]string{} // volume name -> host dir
	for _, v := range spec.Volumes {
		dir := filepath.Join(root, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		mounts[v.Name] = dir
		if err := l.fill(ctx, d.Namespace, v, dir); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	var helper *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == "helper" {
			helper = &spec.Containers[i]
		}
	}
	if helper == nil {
		return nil, fmt.Errorf("no helper container")
	}
	// Paths inside the pod map to host paths by their mount points, longest first.
	type mapping struct{ from, to string }
	var maps []mapping
	for _, m := range helper.VolumeMounts {
		maps = append(maps, mapping{m.MountPath, mounts[m.Name]})
	}
	sort.Slice(maps, func(i, j int) bool { return len(maps[i].from) > len(maps[j].from) })
	hostPath := func(s string) string {
		for _, m := range maps {
			if s == m.from || strings.HasPrefix(s, m.from+"/") {
				return m.to + strings.TrimPrefix(s, m.from)
			}
		}
		return s
	}

	h := &Helper{Namespace: d.Namespace, Name: d.Name, Hash: d.Spec.Template.Annotations[v1alpha1.ConfigHashAnnotation], Root: root, Log: &Buffer{}, done: make(chan struct{})}
	configPath := ""
	args := func(c corev1.Container) []string {
		out := make([]string, len(c.Args))
		for i, a := range c.Args {
			out[i] = hostPath(a)
			if i > 0 && c.Args[i-1] == "--config" {
				configPath = out[i]
			}
		}
		return out
	}
	helperArgs := args(*helper)
	if configPath == "" {
		return nil, fmt.Errorf("the helper container has no --config argument")
	}
	// The ConfigMap is read-only in a pod; here the launcher writes its rewritten copy beside it.
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return nil, err
	}
	// One pass: host paths themselves may begin with a mount point (/tmp).
	var pairs []string
	for _, m := range maps {
		pairs = append(pairs, m.from+"/", m.to+"/")
	}
	cfg, err := config.Parse([]byte(strings.NewReplacer(pairs...).Replace(string(raw))))
	if err != nil {
		return nil, fmt.Errorf("the rendered helper config: %w", err)
	}
	free := func() (string, error) {
		p, err := loopback.FreePort()
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), err
	}
	if h.API, err = free(); err != nil {
		return nil, err
	}
	if h.Ops, err = free(); err != nil {
		return nil, err
	}
	cfg.API.Listen, cfg.Server.MetricsListen = h.API, h.Ops
	if cfg.Notify.HTTP != nil {
		if h.Hook, err = free(); err != nil {
			return nil, err
		}
		cfg.Notify.HTTP.Listen = h.Hook
	}
	if cfg.Notify.BlockIOWebhook != nil {
		if cfg.Notify.BlockIOWebhook.Listen, err = free(); err != nil {
			return nil, err
		}
	}
	out, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	local := filepath.Join(root, "helper.yaml")
	if err := os.WriteFile(local, out, 0o600); err != nil {
		return nil, err
	}
	kubeconfig, err := l.kubeconfig(root, d.Namespace, spec.ServiceAccountName)
	if err != nil {
		return nil, err
	}
	env, err := l.env(ctx, d, *helper)
	if err != nil {
		return nil, err
	}
	env = append(env, "KUBECONFIG="+kubeconfig)
	replaceConfig := func(a []string) []string {
		for i := range a {
			if a[i] == configPath {
				a[i] = local
			}
		}
		return a
	}
	for _, ic := range spec.InitContainers {
		cmd := exec.CommandContext(ctx, l.Binary, replaceConfig(args(ic))...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = h.Log, h.Log
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("init container %s: %w: %s", ic.Name, err, h.Log)
		}
	}
	h.cmd = exec.Command(l.Binary, replaceConfig(helperArgs)...)
	h.cmd.Env = env
	h.cmd.Stdout, h.cmd.Stderr = h.Log, h.Log
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the launcher's process
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = h.cmd.Wait(); close(h.done) }()
	l.Log.Info("started helper", "deployment", d.Namespace+"/"+d.Name, "api", h.API, "ops", h.Ops, "hook", h.Hook, "pid", h.cmd.Process.Pid)
	return h, nil
}

// fill writes what a volume would hold: ConfigMap and projected Secret items, or nothing
// (emptyDir).
func (l *Launcher) fill(ctx context.Context, ns string, v corev1.Volume, dir string) error {
	write := func(path string, data []byte) error {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		return os.WriteFile(p, data, 0o600)
	}
	switch {
	case v.ConfigMap != nil:
		var cm corev1.ConfigMap
		if err := l.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: v.ConfigMap.Name}, &cm); err != nil {
			return err
		}
		for _, it := range v.ConfigMap.Items {
			if err := write(it.Path, []byte(cm.Data[it.Key])); err != nil {
				return err
			}
		}
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			if src.Secret == nil {
				continue
			}
			var s corev1.Secret
			if err := l.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: src.Secret.Name}, &s); err != nil {
				return err
			}
			for _, it := range src.Secret.Items {
				data, ok := s.Data[it.Key]
				if !ok {
					return fmt.Errorf("Secret %s has no key %s", s.Name, it.Key)
				}
				if err := write(it.Path, data); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// env resolves the container's environment: values, and the pod fields kubelet would fill in.
func (l *Launcher) env(_ context.Context, d *appsv1.Deployment, c corev1.Container) ([]string, error) {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"="+d.Name+"-launched")
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+d.Namespace)
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			// kubelet gives the node's memory when there is no limit; a process here is not
			// limited at all, so the variable is left out.
			if limit, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				divisor := max(1, e.ValueFrom.ResourceFieldRef.Divisor.Value())
				env = append(env, fmt.Sprintf("%s=%d", e.Name, (limit.Value()+divisor-1)/divisor))
			}
		default:
			return nil, fmt.Errorf("env %s: only values, pod name/namespace and the memory limit are supported by the launcher", e.Name)
		}
	}
	return env, nil
}

// kubeconfig writes credentials that act as the pod's ServiceAccount, by impersonation: the
// helper then has exactly the rights its rendered Role grants.
func (l *Launcher) kubeconfig(root, ns, sa string) (string, error) {
	k := l.Kube
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: k.Host, CertificateAuthorityData: k.CAData, CertificateAuthority: k.CAFile,
		InsecureSkipTLSVerify: k.Insecure}
	cfg.AuthInfos["helper"] = &clientcmdapi.AuthInfo{ClientCertificateData: k.CertData, ClientKeyData: k.KeyData,
		ClientCertificate: k.CertFile, ClientKey: k.KeyFile, Token: k.BearerToken,
		Impersonate:       "system:serviceaccount:" + ns + ":" + sa,
		ImpersonateGroups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	cfg.Contexts["helper"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "helper", Namespace: ns}
	cfg.CurrentContext = "helper"
	p := filepath.Join(root, "kubeconfig")
	return p, clientcmd.WriteToFile(*cfg, p)
}
