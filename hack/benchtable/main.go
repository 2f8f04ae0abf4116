// Command benchtable reads `go test -bench` output on stdin (as ./test/bench prints it) and
// prints one table: what was measured, our figure, the baseline measured in the same run, the
// ratio and the goal, and whether the goal is met. It exits non-zero when a benchmark failed or
// printed nothing, never because a goal is missed: goals are for people to read, not to gate.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
)

// row is one line of the table, computed from one benchmark's metrics.
type row struct {
	bench string
	name  string
	// ours and base name metrics; base "" means the goal is an absolute figure.
	ours, base string
	// sum adds further metrics to the baseline (a baseline made of two bare parts).
	sum []string
	// higher: the figures are throughputs, so the ratio is ours/base and the goal a minimum.
	higher bool
	goal   float64
	unit   string
	// optional rows are left out when their benchmark ran without them (an option not set).
	optional bool
}

var rows = []row{
	{bench: "OperatorConvergence", name: "operator: converge N assets vs direct writes", ours: "operator-s", base: "direct-s", goal: 1.25, unit: "s"},
	{bench: "OperatorConvergence", name: "operator: converge CPU, all processes vs direct", ours: "converge-cpu-s", base: "direct-cpu-s", unit: "s"},
	{bench: "OperatorConvergence", name: "operator: peak RSS", ours: "peak-rss-MiB", goal: 64, unit: "MiB"},
	{bench: "OperatorConvergence", name: "operator: peak anonymous memory (no binary pages)", ours: "peak-anon-MiB", unit: "MiB"},
	{bench: "OperatorConvergence", name: "operator: RSS when ready, before any asset", ours: "ready-rss-MiB", unit: "MiB"},
	{bench: "OperatorConvergence", name: "operator: start-up alone, peak RSS", ours: "startup-rss-MiB", unit: "MiB"},
	{bench: "OperatorConvergence", name: "operator: working set under BENCH_OPERATOR_MEMORY_LIMIT", ours: "limited-working-set-MiB", unit: "MiB", optional: true},
	{bench: "OperatorConvergence", name: "operator: OOM kills under BENCH_OPERATOR_MEMORY_LIMIT", ours: "oom-kills", unit: "kills", optional: true},
	{bench: "OperatorConvergence", name: "operator: writes while idle", ours: "idle-writes", goal: 0, unit: "writes"},
	{bench: "HelperFootprint", name: "helper idle: backend calls per poll interval", ours: "calls/helper/poll", goal: 1, unit: "calls"},
	{bench: "HelperFootprint", name: "helper idle: RSS per helper", ours: "rss-MiB/helper", unit: "MiB"},
	{bench: "HelperFootprint", name: "helper idle: PSS per helper (binary pages shared)", ours: "pss-MiB/helper", unit: "MiB"},
	{bench: "HelperFootprint", name: "helper idle: CPU per helper per minute", ours: "cpu-ms/helper/min", unit: "ms"},
	{bench: "HelperFootprint", name: "helper idle: PostgreSQL CPU per helper per minute", ours: "pg-cpu-ms/helper/min", unit: "ms"},
	{bench: "HelperFootprint", name: "helper idle: PostgreSQL connections per helper", ours: "pg-conns/helper", unit: "conns"},
	{bench: "HelperFootprint", name: "helper idle: PostgreSQL round trips per helper per minute", ours: "pg-requests/helper/min", unit: "trips"},
	{bench: "HelperFootprint", name: "helper idle: PostgreSQL sessions opened per helper per minute", ours: "pg-sessions/helper/min", unit: "sessions"},
	{bench: "IdleCatchUp", name: "idle poll: catch-up, long history vs none", ours: "history-catchup-ms", base: "fresh-catchup-ms", goal: 1.5, unit: "ms"},
	{bench: "Intake", name: "intake: deposits booked vs bare RPC + bare insert", ours: "catchup-s", base: "bare-rpc-s", sum: []string{"bare-insert-s"}, goal: 1.3, unit: "s"},
	{bench: "Intake", name: "intake: on an old ledger vs fresh", ours: "catchup-old-s", base: "catchup-s", unit: "s"},
	{bench: "Rescan", name: "rescan: first pass vs bare RPC + bare insert", ours: "rescan-s", base: "bare-rpc-s", sum: []string{"bare-insert-s"}, goal: 1.5, unit: "s"},
	{bench: "Rescan", name: "rescan: second pass vs bare RPC", ours: "rescan-again-s", base: "bare-rpc-s", goal: 1.1, unit: "s"},
	{bench: "Rescan", name: "rescan: of which the backend's scan", ours: "scan-only-s", base: "bare-rpc-s", unit: "s"},
	{bench: "Rescan", name: "rescan: first pass's ledger part vs bare insert", ours: "ledger-first-s", base: "bare-insert-s", unit: "s"},
	{bench: "Rescan", name: "rescan: second pass's ledger part", ours: "ledger-only-s", unit: "s"},
	{bench: "Broadcast", name: "broadcast: queued sends vs bare sendmany", ours: "broadcast-s", base: "bare-sendmany-s", goal: 1.2, unit: "s"},
	{bench: "Broadcast", name: "broadcast: its CPU over all cores vs bare sendmany", ours: "cpu-floor-s", base: "bare-sendmany-s", unit: "s"},
	{bench: "BroadcastBacklog", name: "broadcast: taking 1,000 sends, old ledger and backlog vs fresh", ours: "backlog-open-ms", base: "fresh-open-ms", unit: "ms"},
	{bench: "OutboxStats", name: "metrics scrape: shared database, another's backlog vs alone", ours: "shared-scrape-ms", base: "alone-scrape-ms", unit: "ms"},
	{bench: "OutboxStats", name: "metrics scrape: of the asset with the backlog", ours: "backlog-scrape-ms", unit: "ms"},
	{bench: "EventDelivery", name: "events: delivered vs bare HTTP posts", ours: "events/s", base: "bare-posts/s", higher: true, goal: 0.9, unit: "/s"},
	{bench: "EventDelivery", name: "events: of which signed posts alone, no outbox", ours: "signed-posts/s", base: "bare-posts/s", higher: true, unit: "/s"},
	{bench: "LedgerTransfers", name: "ledger: transfers vs pgbench tpcb-like", ours: "transfers/s", base: "pgbench-tps", higher: true, goal: 1.0, unit: "/s"},
}

var benchLine = regexp.MustCompile(`^Benchmark(\w+?)(-\d+)?\s+\d+\s+\d+ ns/op(.*)$`)

// parse collects each benchmark's metrics ("value unit" pairs after ns/op) and the lines that
// say a benchmark failed.
func parse(r io.Reader, echo io.Writer) (map[string]map[string]float64, []string, error) {
	metrics := map[string]map[string]float64{}
	var failed []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(echo, line)
		if strings.HasPrefix(line, "--- FAIL: Benchmark") {
			failed = append(failed, strings.TrimPrefix(line, "--- FAIL: "))
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := strings.Fields(m[3])
		ms := map[string]float64{}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, nil, fmt.Errorf("benchmark %s: metric %q is not a number", m[1], f[i])
			}
			ms[f[i+1]] = v
		}
		metrics[m[1]] = ms
	}
	return metrics, failed, sc.Err()
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func table(w io.Writer, metrics map[string]map[string]float64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "name\tours\tbaseline\tratio\tgoal\tmet")
	for _, r := range rows {
		ms, ok := metrics[r.bench]
		if !ok {
			continue
		}
		ours, ok := ms[r.ours]
		if !ok && r.optional {
			continue
		}
		if !ok {
			fmt.Fprintf(tw, "%s\t(no %s)\t\t\t\t\n", r.name, r.ours)
			continue
		}
		if r.base == "" {
			goal, met := "-", "-"
			if r.goal > 0 || r.unit == "writes" {
				goal, met = fmt.Sprintf("<= %s %s", format(r.goal), r.unit), yes(ours <= r.goal)
			}
			fmt.Fprintf(tw, "%s\t%s %s\t-\t-\t%s\t%s\n", r.name, format(ours), r.unit, goal, met)
			continue
		}
		base := ms[r.base]
		for _, s := range r.sum {
			base += ms[s]
		}
		if base == 0 {
			fmt.Fprintf(tw, "%s\t%s %s\t(no baseline)\t\t\t\n", r.name, format(ours), r.unit)
			continue
		}
		ratio := ours / base
		goal, met := fmt.Sprintf("<= %.2fx", r.goal), yes(ratio <= r.goal)
		switch {
		case r.goal == 0: // a breakdown of the row above, without a goal of its own
			goal, met = "-", "-"
		case r.higher:
			goal, met = fmt.Sprintf(">= %.2fx", r.goal), yes(ratio >= r.goal)
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%.2fx\t%s\t%s\n", r.name, format(ours), r.unit, format(base), r.unit, ratio, goal, met)
	}
	tw.Flush()
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func main() {
	metrics, failed, err := parse(os.Stdin, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(2)
	}
	fmt.Printf("\n%d CPUs\n", runtime.NumCPU())
	table(os.Stdout, metrics)
	if len(failed) > 0 {
		fmt.Fprintf(os.Stderr, "benchtable: failed: %s\n", strings.Join(failed, ", "))
		os.Exit(1)
	}
	if len(metrics) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark results on stdin")
		os.Exit(1)
	}
}
