package main

import (
	"io"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	in := `goos: linux
BenchmarkIntake-2   	       1	15173366544 ns/op	         0.09 bare-insert-s	         0.08 bare-rpc-s	         0.2 catchup-s	      4271 deposits/s	         1.346 ratio
BenchmarkEventDelivery-2   	       1	1 ns/op	  900 events/s	 950 signed-posts/s	 1000 bare-posts/s
BenchmarkOperatorConvergence-2   	       1	1 ns/op	  80.5 peak-rss-MiB	 0 idle-writes	 10 operator-s	 5 direct-s	 66 converge-cpu-s	 60 direct-cpu-s
BenchmarkRescan-2   	       1	1 ns/op	  0.2 rescan-again-s	 0.1 bare-rpc-s	 0.15 scan-only-s
--- FAIL: BenchmarkRescan
`
	metrics, failed, err := parse(strings.NewReader(in), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0] != "BenchmarkRescan" {
		t.Errorf("failed = %v", failed)
	}
	var out strings.Builder
	table(&out, metrics)
	for _, want := range []string{
		"intake: deposits booked vs bare RPC + bare insert  0.200 s",
		"0.170 s",
		"1.18x",
		"<= 1.30x",
		"events: delivered vs bare HTTP posts",
		"0.90x",
		"events: of which signed posts alone, no outbox",
		"0.95x",
		"operator: converge N assets vs direct writes",
		"2.00x",
		"operator: converge CPU, all processes vs direct",
		"1.10x",
		"operator: peak RSS",
		"80.50 MiB",
		"<= 64.00 MiB",
		"operator: writes while idle",
		"1.50x",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	met := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		met[strings.Join(f[:3], " ")] = f[len(f)-1]
	}
	for name, want := range map[string]string{"intake: deposits booked": "yes", "events: delivered vs": "yes", "operator: converge N": "NO", "operator: converge CPU,": "-", "operator: peak RSS": "NO", "operator: writes while": "yes",
		"rescan: second pass": "NO", "rescan: of which": "-", "events: of which": "-"} {
		if met[name] != want {
			t.Errorf("%s: met = %q, want %q\n%s", name, met[name], want, out.String())
		}
	}
}

// The rows of an option appear only when the benchmark ran with it.
func TestOptionalRows(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
		not  []string
	}{
		{line: "BenchmarkOperatorConvergence-2 1 1 ns/op 80.5 peak-rss-MiB 10 operator-s 5 direct-s",
			not: []string{"BENCH_OPERATOR_MEMORY_LIMIT", "(no limited"}},
		{line: "BenchmarkOperatorConvergence-2 1 1 ns/op 80.5 peak-rss-MiB 10 operator-s 5 direct-s 61.25 limited-working-set-MiB 0 oom-kills",
			want: []string{"operator: working set under BENCH_OPERATOR_MEMORY_LIMIT  61.25 MiB", "operator: OOM kills under BENCH_OPERATOR_MEMORY_LIMIT    0 kills"}},
	} {
		metrics, _, err := parse(strings.NewReader(tc.line), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		table(&out, metrics)
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("table lacks %q:\n%s", w, out.String())
			}
		}
		for _, n := range tc.not {
			if strings.Contains(out.String(), n) {
				t.Errorf("table has %q:\n%s", n, out.String())
			}
		}
	}
}
