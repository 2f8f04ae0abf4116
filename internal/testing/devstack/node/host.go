package node

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// The host settings a node changes: kubelet sets the first five (setupKernelTunables), the CNI
// bridge turns on forwarding, kube-proxy may raise conntrack limits. Each is saved before and
// written back after.
var tunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv4/conf/all/route_localnet",
	"net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

// markerPath records a running node's host changes, so a node that was killed before it could
// clean up is cleaned up by the next start.
const markerPath = "/run/cryptoassets-devnode.json"

// hostState is what must be put back.
type hostState struct {
	PID int `json:"pid"`
	// Started is the process's start time in clock ticks since boot (/proc/PID/stat), so a PID
	// that an unrelated process has since been given is not taken for a running node.
	Started string            `json:"started"`
	Dir     string            `json:"dir"`
	Bridge  string            `json:"bridge"`
	Sysctls map[string]string `json:"sysctls"`
}

func readSysctls() map[string]string {
	out := map[string]string{}
	for _, k := range tunables {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			out[k] = strings.TrimSpace(string(b))
		}
	}
	return out
}

// processStart is the start time of pid from /proc/PID/stat (field 22), or "" when there is no
// such process.
func processStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces; the fields after it start past its ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// running tells whether the node that wrote the marker is still running: its process exists, is
// not this one, and started when the marker says (markers written before Started was recorded
// are trusted on the PID alone).
func (st hostState) running() bool {
	if st.PID <= 0 || st.PID == os.Getpid() {
		return false
	}
	started := processStart(st.PID)
	return started != "" && (st.Started == "" || started == st.Started)
}

// ReclaimHost undoes what a node that was killed before it could clean up left on this machine
// (its processes, mounts, iptables chains, bridge, cgroups and sysctls), and refuses while
// another node is running. Start calls it; a test that compares the host before and after its
// own node calls it first, so that an earlier node's remains are not counted as its own.
func ReclaimHost(log logr.Logger) error {
	b, err := os.ReadFile(markerPath)
	if err != nil {
		return nil
	}
	var old hostState
	if json.Unmarshal(b, &old) != nil {
		log.Info("ignoring an unreadable node marker", "path", markerPath)
		return os.Remove(markerPath)
	}
	if old.running() {
		return fmt.Errorf("a dev node is already running on this machine (pid %d, state in %s); stop it first", old.PID, old.Dir)
	}
	log.Info("cleaning up after a node that stopped without cleaning up", "dir", old.Dir, "pid", old.PID)
	old.restore(log)
	return nil
}

// claimHost refuses a second node on this machine, cleans up after one that died, and records
// this one's state.
func claimHost(dir, bridge string, log logr.Logger) (*hostState, error) {
	if err := ReclaimHost(log); err != nil {
		return nil, err
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
		return nil, fmt.Errorf("network interface %s exists: another node (or something else) uses it", bridge)
	}
	st := &hostState{PID: os.Getpid(), Started: processStart(os.Getpid()), Dir: dir, Bridge: bridge, Sysctls: readSysctls()}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(markerPath, b, 0o600); err != nil {
		return nil, fmt.Errorf("recording the node's host state: %w", err)
	}
	return st, nil
}

// restore puts back everything a node changes on the host. Each step is best effort and logs
// what it could not undo: the rest must still run.
func (st *hostState) restore(log logr.Logger) {
	killStray(st.Dir, log)
	unmountUnder(st.Dir, log)
	removeChains(log)
	removeCgroups(log)
	if _, err := os.Stat("/sys/class/net/" + st.Bridge); err == nil {
		if out, err := exec.Command("ip", "link", "delete", st.Bridge).CombinedOutput(); err != nil {
			log.Error(err, "deleting the bridge", "bridge", st.Bridge, "output", string(out))
		}
	}
	now := readSysctls()
	for k, v := range st.Sysctls {
		if now[k] != v {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				log.Error(err, "restoring a sysctl", "key", k, "value", v)
			}
		}
	}
	_ = os.Remove(markerPath)
}

// killStray kills processes still running from the node's directory or talking to its
// containerd (container shims, a container's processes), which outlive containerd itself.
func killStray(dir string, log logr.Logger) {
	if dir == "" {
		return
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		log.Info("killing a process the node left", "pid", pid, "cmdline", strings.ReplaceAll(string(b), "\x00", " "))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			p := unescapeMount(fields[4])
			if p == dir || strings.HasPrefix(p, dir+"/") {
				points = append(points, p)
			}
		}
	}
	return points
}

// unmountUnder unmounts everything mounted below dir (kubelet's volumes, containerd's rootfs and
// network namespaces), deepest first.
func unmountUnder(dir string, log logr.Logger) {
	if dir == "" {
		return
	}
	for attempt := 0; attempt < 3; attempt++ {
		points := mountsUnder(dir)
		if len(points) == 0 {
			return
		}
		sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
		for _, p := range points {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				log.Error(err, "unmounting", "path", p)
			}
		}
	}
}

// wipe removes dir and what an earlier node left in it. Mounts go first: removing files through
// a volume's bind mount would delete them where they really live.
func wipe(dir string, log logr.Logger) error {
	unmountUnder(dir, log)
	if m := mountsUnder(dir); len(m) > 0 {
		return fmt.Errorf("cannot clear %s: still mounted there: %s", dir, strings.Join(m, ", "))
	}
	return os.RemoveAll(dir)
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// chainPrefixes are the iptables chains kubelet, kube-proxy and the CNI plugins create, and the
// node's own (fenceChain).
var chainPrefixes = []string{"KUBE-", "CNI-", "CRYPTOASSETS-"}

// fenceChain keeps pod traffic on this machine.
const fenceChain = "CRYPTOASSETS-LOCAL"

// fence keeps every packet of the node on this machine: the Service range is routed onto the
// bridge, so a ClusterIP that kube-proxy has not (yet) programmed goes nowhere instead of out of
// the default route; and a packet from a pod that would be forwarded to any interface but the
// bridge is rejected. Pods reach the host and each other, nothing beyond.
func fence(bridge, podCIDR, serviceCIDR string) error {
	for _, args := range [][]string{
		{"ip", "route", "add", serviceCIDR, "dev", bridge},
		{"iptables", "-N", fenceChain},
		{"iptables", "-A", fenceChain, "-s", podCIDR, "!", "-o", bridge, "-j", "REJECT", "--reject-with", "icmp-net-prohibited"},
		{"iptables", "-A", fenceChain, "-d", serviceCIDR, "!", "-o", bridge, "-j", "REJECT", "--reject-with", "icmp-net-prohibited"},
		{"iptables", "-I", "FORWARD", "1", "-j", fenceChain},
		{"iptables", "-I", "OUTPUT", "1", "-d", serviceCIDR, "!", "-o", bridge, "-j", fenceChain},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func ours(chain string) bool {
	for _, p := range chainPrefixes {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

// removeChains deletes the node's iptables chains and the rules that jump to them, in both
// families, and leaves every other rule as it is.
func removeChains(log logr.Logger) {
	for _, family := range []string{"iptables", "ip6tables"} {
		save, err := exec.Command(family + "-save").Output()
		if err != nil {
			continue
		}
		var keep []string
		changed := false
		for _, line := range strings.Split(string(save), "\n") {
			f := strings.Fields(line)
			drop := false
			switch {
			case strings.HasPrefix(line, ":") && len(f) > 0:
				drop = ours(strings.TrimPrefix(f[0], ":"))
			case strings.HasPrefix(line, "-A ") && len(f) > 1:
				drop = ours(f[1])
				for i := 0; i+1 < len(f); i++ {
					if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
						drop = true
					}
				}
			}
			if drop {
				changed = true
				continue
			}
			keep = append(keep, line)
		}
		if !changed {
			continue
		}
		cmd := exec.Command(family + "-restore")
		cmd.Stdin = strings.NewReader(strings.Join(keep, "\n"))
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Error(err, "removing the node's iptables chains", "family", family, "output", string(out))
		}
	}
}

// removeCgroups removes the kubepods hierarchy kubelet makes (cgroupfs driver, cgroup v1 and
// v2), children first. Empty cgroups are removed with rmdir; a busy one is reported.
func removeCgroups(log logr.Logger) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if _, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for i := 0; i < 20; i++ {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					break
				}
				time.Sleep(100 * time.Millisecond) // a killed process leaves its cgroup a moment later
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				log.Error(err, "removing a cgroup", "path", d)
			}
		}
	}
}
