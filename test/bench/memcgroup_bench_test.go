package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// memoryCgroup is a memory cgroup with a limit, made for one process as a container's is, so the
// operator can be measured the way a pod with a memory limit runs it: the kernel charges it the
// binary's page-cache pages as well as its own, and reclaims the clean ones when it nears the
// limit. Only the memory controller is used; cgroup v1 (these machines) and v2 both work.
type memoryCgroup struct {
	dir string
	v2  bool
}

// newMemoryCgroup makes a cgroup under this process's own memory cgroup (v1) or under the root
// of the unified hierarchy (v2, whose rule against processes in inner cgroups rules out this
// process's own), limited to limit bytes.
func newMemoryCgroup(name string, limit int64) (*memoryCgroup, error) {
	parent, v2, err := memoryCgroupParent()
	if err != nil {
		return nil, err
	}
	c := &memoryCgroup{dir: filepath.Join(parent, name), v2: v2}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("making the memory cgroup: %w", err)
	}
	file, value := "memory.limit_in_bytes", strconv.FormatInt(limit, 10)
	if v2 {
		file = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte(value), 0o644); err != nil {
		_ = os.Remove(c.dir)
		return nil, fmt.Errorf("setting the memory cgroup's limit: %w", err)
	}
	return c, nil
}

// memoryCgroupParent finds where a memory cgroup can be made: the v1 memory hierarchy's mount
// joined with this process's cgroup in it, or the v2 mount whose root delegates memory.
func memoryCgroupParent() (dir string, v2 bool, err error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", false, err
	}
	mounts, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	defer mounts.Close()
	var unified string
	sc := bufio.NewScanner(mounts)
	for sc.Scan() {
		// mountinfo: ... mount point (5th), ... " - " fstype source super options.
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		switch {
		case g[0] == "cgroup" && slices.Contains(strings.Split(g[2], ","), "memory"):
			for _, line := range strings.Split(string(own), "\n") {
				// "4:memory:/path"
				if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "memory") {
					return filepath.Join(f[4], parts[2]), false, nil
				}
			}
		case g[0] == "cgroup2" && unified == "":
			unified = f[4]
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, err
	}
	if unified != "" {
		if sub, err := os.ReadFile(filepath.Join(unified, "cgroup.subtree_control")); err == nil && slices.Contains(strings.Fields(string(sub)), "memory") {
			return unified, true, nil
		}
	}
	return "", false, errors.New("no memory cgroup can be made here: neither a cgroup v1 memory hierarchy nor a cgroup v2 root that delegates memory is mounted")
}

// wrap returns the command line that runs argv inside the cgroup from its first instruction: a
// shell joins the cgroup and then execs argv, so the process keeps the shell's PID and everything
// it faults in is charged to the cgroup (a process moved in after it started would leave its
// start-up charged to the old one).
func (c *memoryCgroup) wrap(argv ...string) []string {
	return append([]string{"/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(c.dir, "cgroup.procs")}, argv...)
}

// workingSet is the cgroup's memory as the kubelet reports it (`kubectl top`, eviction): usage
// less the inactive file pages, which the kernel reclaims first. It counts the process's own
// memory and the binary's pages it keeps active.
func (c *memoryCgroup) workingSet() (int64, error) {
	usageFile, inactive := "memory.usage_in_bytes", "total_inactive_file"
	if c.v2 {
		usageFile, inactive = "memory.current", "inactive_file"
	}
	usage, err := readInt(filepath.Join(c.dir, usageFile))
	if err != nil {
		return 0, err
	}
	stat, err := c.stat(inactive)
	if err != nil {
		return 0, err
	}
	return max(usage-stat, 0), nil
}

// oomKills is how many processes the kernel killed in the cgroup for want of memory.
func (c *memoryCgroup) oomKills() (int64, error) {
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	return keyedValue(filepath.Join(c.dir, file), "oom_kill")
}

// parts is the cgroup's anonymous memory, its page cache, and how much of that cache the process
// maps (the binary's pages, mostly), in bytes.
func (c *memoryCgroup) parts() (anon, cache, mapped int64, err error) {
	keys := []string{"total_rss", "total_cache", "total_mapped_file"}
	if c.v2 {
		keys = []string{"anon", "file", "file_mapped"}
	}
	out := make([]int64, len(keys))
	for i, k := range keys {
		if out[i], err = c.stat(k); err != nil {
			return 0, 0, 0, err
		}
	}
	return out[0], out[1], out[2], nil
}

func (c *memoryCgroup) stat(key string) (int64, error) {
	return keyedValue(filepath.Join(c.dir, "memory.stat"), key)
}

// remove deletes the cgroup once its process has ended; the kernel moves what is still charged
// to it (page cache) to the parent.
func (c *memoryCgroup) remove() error {
	if err := os.Remove(c.dir); err != nil {
		return fmt.Errorf("removing the memory cgroup: %w", err)
	}
	return nil
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// keyedValue reads the value of key from a file of "key value [unit]" lines: a cgroup's
// memory.stat, or /proc/PID/status (whose keys end in a colon, and sizes in " kB").
func keyedValue(path, key string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s", key, path)
}

// uncachedCopy copies the binary at src into dir and drops the copy's pages from the page cache,
// so that a process run from it reads them itself, as a container's first run reads its image:
// in a cgroup, they are then charged to that process's cgroup, not to whoever built the binary.
func uncachedCopy(src, dir string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return "", fmt.Errorf("copying the binary: %w", err)
	}
	// Dirty pages cannot be dropped: written back first.
	if err := out.Sync(); err != nil {
		return "", err
	}
	if err := unix.Fadvise(int(out.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return "", fmt.Errorf("dropping the copy from the page cache: %w", err)
	}
	return dst, out.Close()
}

// parseByteSize reads a size as GOMEMLIMIT takes it: a number with an optional unit, B, KiB, MiB,
// GiB or TiB.
func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}
	num, shift := s, uint(0)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, shift = strings.TrimSuffix(s, u.suffix), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is not a size such as 64MiB", s)
	}
	return n << shift, nil
}
