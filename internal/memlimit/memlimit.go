// Package memlimit sets the Go runtime's soft memory limit from the container's memory limit,
// leaving room for what the container is charged that the runtime does not manage.
//
// GOMEMLIMIT set to the container's limit (what the chart did) counts only the runtime's own
// memory, but the kernel charges the container for the binary's pages as well: about 32 MiB of
// this one binary are resident once its packages have initialised, before any work. Near the
// limit the runtime then let its heap grow into the room those pages need, and the kernel evicted
// the binary's code and read it back from disk at every turn: under a 96Mi limit, with GOMEMLIMIT
// at 96Mi, the operator did not converge its second 1,000 assets within 15 minutes; with the room
// left it converged all three rounds (test/bench, BENCH_OPERATOR_MEMORY_LIMIT=96MiB).
package memlimit

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// EnvVar holds the container's memory limit in bytes, as a resourceFieldRef of limits.memory
// with divisor 1 gives it. Without a limit, Kubernetes gives the node's allocatable memory.
const EnvVar = "CRYPTOASSETS_MEMORY_LIMIT"

// Limits is what Apply decided, for the log.
type Limits struct {
	// Container is the container's memory limit, from EnvVar.
	Container int64
	// FileResident is what the process had mapped from files (the binary's pages) when the
	// limit was set.
	FileResident int64
	// Go is the runtime's soft limit set.
	Go int64
}

// Apply sets the runtime's soft memory limit from EnvVar, read with getenv. It does nothing, and
// returns false, when GOMEMLIMIT is set (the runtime has taken it, and an explicit setting wins)
// or EnvVar is empty. fileResident reports the bytes the process has mapped from files now.
func Apply(getenv func(string) string, fileResident func() (int64, error)) (Limits, bool, error) {
	if getenv("GOMEMLIMIT") != "" {
		return Limits{}, false, nil
	}
	s := strings.TrimSpace(getenv(EnvVar))
	if s == "" {
		return Limits{}, false, nil
	}
	container, err := strconv.ParseInt(s, 10, 64)
	if err != nil || container <= 0 {
		return Limits{}, false, fmt.Errorf("%s=%q: want the container's memory limit in bytes, as a resourceFieldRef of limits.memory with divisor 1 gives it", EnvVar, s)
	}
	files, err := fileResident()
	if err != nil {
		return Limits{}, false, fmt.Errorf("reading the memory mapped from files, to set the Go memory limit below %s: %w", EnvVar, err)
	}
	l := Limits{Container: container, FileResident: files, Go: GoLimit(container, files)}
	debug.SetMemoryLimit(l.Go)
	return l, true, nil
}

// GoLimit is the runtime's share of a container limit when the process has files bytes mapped:
// the limit less those pages and a sixteenth for the kernel's own charges (page tables, socket
// buffers), but never less than a quarter of the limit, so that a limit smaller than the binary
// still bounds the heap rather than stopping it.
func GoLimit(container, files int64) int64 {
	return max(container-files-container/16, container/4)
}

// FileResident reads this process's resident file-backed memory (the binary's pages, mostly)
// from /proc/self/status, in bytes.
func FileResident() (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	var total int64
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		// RssShmem too: a binary on tmpfs is charged as shared memory.
		if len(f) == 3 && (f[0] == "RssFile:" || f[0] == "RssShmem:") && f[2] == "kB" {
			kib, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/self/status: %s %q: %w", f[0], f[1], err)
			}
			total += kib << 10
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("/proc/self/status has no RssFile")
	}
	return total, nil
}
