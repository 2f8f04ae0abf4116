package node_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack/image"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack/node"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// TestNodeRunsPodsAndLeavesTheHostAsItWas starts the real node, runs a pod on it (a sandbox and a
// container from the product image, read-only and as uid 65532), stops the node and checks that
// the host has no trace of it: no processes, mounts, iptables chains, bridge, cgroups or
// changed sysctls.
func TestNodeRunsPodsAndLeavesTheHostAsItWas(t *testing.T) {
	bin := testassets.RealNode(t)
	ctx := context.Background()
	root := testassets.RepoRoot(t)
	imgDir := t.TempDir()
	pause, err := image.BuildPause(ctx, root, imgDir, node.PauseImage)
	if err != nil {
		t.Fatal(err)
	}
	product, err := image.BuildProduct(ctx, root, imgDir, "cryptoassets-operator:node-test", "node-test")
	if err != nil {
		t.Fatal(err)
	}
	// An earlier node killed before it could clean up (a test binary that timed out, a run cut
	// short) is cleaned up first, so that its remains are not counted as this node's.
	if err := node.ReclaimHost(testr.New(t)); err != nil {
		t.Fatal(err)
	}
	before := hostSnapshot(t)
	// Short: containerd's socket path must stay under the unix socket limit.
	dir, err := os.MkdirTemp("", "canode")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	n, err := node.Start(ctx, node.Options{Bin: bin, Dir: dir, Images: []string{pause, product}, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			n.Stop()
		}
	}()
	t.Logf("control plane ready after %s, node Ready after %s", n.ControlPlaneReady, n.NodeReady)

	// The node's traffic stays on this machine: a ClusterIP kube-proxy has not programmed routes
	// onto the bridge (not out of the default route), and pods are fenced in. Checked by looking,
	// not by sending a packet that could leave if the fence were broken.
	if out, err := exec.Command("ip", "route", "get", "10.96.0.250").CombinedOutput(); err != nil || !strings.Contains(string(out), "dev "+node.Bridge) {
		t.Errorf("an unprogrammed ClusterIP routes %q (%v), want dev %s", out, err, node.Bridge)
	}
	if out, _ := exec.Command("iptables", "-S", "FORWARD").Output(); !strings.Contains(string(out), "-j CRYPTOASSETS-LOCAL") {
		t.Errorf("FORWARD does not fence pods in:\n%s", out)
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "version", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext:              &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(65532))},
			Containers: []corev1.Container{{
				Name: "version", Image: "cryptoassets-operator:node-test", ImagePullPolicy: corev1.PullNever, Args: []string{"version"},
				SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
	// The ServiceAccount controller makes "default" a moment after the namespace exists.
	testassets.Eventually(t, time.Minute, "pod created", func() error {
		_, err := n.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	testassets.Eventually(t, 2*time.Minute, "pod Succeeded", func() error {
		p, err := n.Client.CoreV1().Pods("default").Get(ctx, "version", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodSucceeded {
			return fmt.Errorf("phase %s %+v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		return nil
	})
	logs, err := n.Client.CoreV1().Pods("default").GetLogs("version", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || strings.TrimSpace(string(logs)) != "node-test" {
		t.Fatalf("pod log %q %v", logs, err)
	}

	n.Stop()
	stopped = true
	after := hostSnapshot(t)
	if before != after {
		t.Errorf("the host changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	out, _ := exec.Command("sh", "-c", "grep -c "+dir+" /proc/self/mountinfo").Output()
	if strings.TrimSpace(string(out)) != "0" {
		t.Errorf("mounts left under %s: %s", dir, out)
	}
	if out, _ := exec.Command("pgrep", "-f", dir).Output(); len(out) > 0 {
		t.Errorf("processes left: %s", out)
	}
}

// hostSnapshot is what a node must leave as it found it.
func hostSnapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, k := range []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", "net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet"} {
		v, _ := os.ReadFile("/proc/sys/" + k)
		fmt.Fprintf(&b, "%s=%s", k, v)
	}
	for _, family := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := exec.Command(family).Output()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "KUBE-") || strings.Contains(l, "CNI-") || strings.Contains(l, "CRYPTOASSETS-") {
				fmt.Fprintf(&b, "%s: %s\n", family, l)
			}
		}
	}
	links, _ := exec.Command("ip", "-o", "link").Output()
	for _, l := range strings.Split(string(links), "\n") {
		if strings.Contains(l, node.Bridge) || strings.Contains(l, "veth") {
			fmt.Fprintf(&b, "link: %s\n", l)
		}
	}
	routes, _ := exec.Command("ip", "route").Output()
	fmt.Fprintf(&b, "routes:\n%s", routes)
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	fmt.Fprintf(&b, "cgroups: %v\n", cg)
	return b.String()
}
