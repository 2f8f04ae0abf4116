package node

import (
	"os"
	"os/exec"
	"testing"
)

// A node marker names a running node only while the process that wrote it runs: a PID reused by
// another process (a fresh machine, a restarted container) must not keep every later node out.
func TestMarkerRunningChecksTheProcessStartTime(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	started := processStart(pid)
	if started == "" {
		t.Fatalf("no start time for pid %d", pid)
	}

	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		st   hostState
		want bool
	}{
		{"the process that wrote it", hostState{PID: pid, Started: started}, true},
		{"a marker from before start times were recorded", hostState{PID: pid}, true},
		{"the PID given to another process", hostState{PID: pid, Started: started + "1"}, false},
		{"a process that has exited", hostState{PID: exited.Process.Pid, Started: started}, false},
		{"this process", hostState{PID: os.Getpid(), Started: processStart(os.Getpid())}, false},
		{"no PID", hostState{}, false},
	} {
		if got := tc.st.running(); got != tc.want {
			t.Errorf("%s: running() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
