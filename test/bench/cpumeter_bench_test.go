package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// cpuMeter reads the CPU time used by the processes a benchmark runs on, and by the whole
// machine. Where a ratio is above its goal, it tells whether the time went to a process that
// could do less, or whether the machine's CPUs were all busy (two cores shared by the helper,
// PostgreSQL and the node, on these machines).
type cpuMeter []cpuProcess

type cpuProcess struct {
	name string
	pid  int
	// children counts the process's children too: PostgreSQL serves each connection in a
	// child of the postmaster.
	children bool
}

type cpuReading struct {
	at   time.Time
	used []time.Duration // by process, in the meter's order
	busy time.Duration   // all CPUs of the machine
}

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTick = time.Second / 100

func (m cpuMeter) read() (cpuReading, error) {
	r := cpuReading{at: time.Now(), used: make([]time.Duration, len(m))}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return r, err
	}
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i > 7 { // guest time is already in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		r.busy += time.Duration(n) * clockTick
	}
	var all []procTimes
	for i, p := range m {
		if p.pid == 0 {
			continue
		}
		own, err := readProcTimes(p.pid)
		if err != nil {
			return r, fmt.Errorf("%s: %w", p.name, err)
		}
		// Children already reaped are in the parent's cutime and cstime.
		r.used[i] = own.self + own.children
		if !p.children {
			continue
		}
		if all == nil {
			if all, err = allProcTimes(); err != nil {
				return r, err
			}
		}
		for _, c := range all {
			if c.ppid == p.pid {
				r.used[i] += c.self
			}
		}
	}
	return r, nil
}

type procTimes struct {
	pid, ppid      int
	self, children time.Duration
}

func readProcTimes(pid int) (procTimes, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procTimes{}, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	n := func(i int) time.Duration { v, _ := strconv.ParseInt(f[i], 10, 64); return time.Duration(v) }
	ppid, _ := strconv.Atoi(f[1])
	return procTimes{pid: pid, ppid: ppid, self: (n(11) + n(12)) * clockTick, children: (n(13) + n(14)) * clockTick}, nil
}

func allProcTimes() ([]procTimes, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	out := make([]procTimes, 0, len(dirs))
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if t, err := readProcTimes(pid); err == nil { // a process may end while the list is read
			out = append(out, t)
		}
	}
	return out, nil
}

// cpuUse adds up what a meter read around several runs.
type cpuUse struct {
	meter cpuMeter
	wall  time.Duration
	used  []time.Duration
	busy  time.Duration
}

func (u *cpuUse) add(before, after cpuReading) {
	if u.used == nil {
		u.used = make([]time.Duration, len(u.meter))
	}
	u.wall += after.at.Sub(before.at)
	u.busy += after.busy - before.busy
	for i := range u.used {
		u.used[i] += after.used[i] - before.used[i]
	}
}

// measure runs f and adds what the meter reads around it; a failed read is left out (the
// figures are for the log, not for the ratio).
func (u *cpuUse) measure(f func() error) error {
	before, berr := u.meter.read()
	err := f()
	after, aerr := u.meter.read()
	if berr == nil && aerr == nil {
		u.add(before, after)
	}
	return err
}

// per describes the use per unit of work: "PostgreSQL 85 ms, btcwallet 60 ms, ...; the machine
// busy 1.9 of 2 CPUs".
func (u cpuUse) per(units float64, unit string) string {
	var parts []string
	for i, p := range u.meter {
		if i < len(u.used) {
			parts = append(parts, fmt.Sprintf("%s %.0f ms", p.name, float64(u.used[i].Milliseconds())/units))
		}
	}
	busy := 0.0
	if u.wall > 0 {
		busy = u.busy.Seconds() / u.wall.Seconds()
	}
	return fmt.Sprintf("per %s: %s; the machine busy %.2f of %d CPUs", unit, strings.Join(parts, ", "), busy, runtime.NumCPU())
}

// total is the CPU time of all the metered processes.
func (u cpuUse) total() time.Duration {
	var t time.Duration
	for _, d := range u.used {
		t += d
	}
	return t
}
