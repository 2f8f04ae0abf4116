package memlimit

import (
	"errors"
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func TestGoLimit(t *testing.T) {
	const mi = 1 << 20
	for _, tc := range []struct {
		name             string
		container, files int64
		want             int64
	}{
		{"the chart's default limit", 256 * mi, 32 * mi, 256*mi - 32*mi - 16*mi},
		{"a tight limit", 64 * mi, 32 * mi, 28 * mi},
		{"a limit the binary's pages nearly fill: a quarter still bounds the heap", 40 * mi, 36 * mi, 10 * mi},
		{"nothing mapped from files", 64 * mi, 0, 60 * mi},
	} {
		if got := GoLimit(tc.container, tc.files); got != tc.want {
			t.Errorf("%s: GoLimit(%d, %d) = %d, want %d", tc.name, tc.container, tc.files, got, tc.want)
		}
	}
}

func TestApply(t *testing.T) {
	// Apply changes the process's limit: each case starts from none and the test leaves none.
	defer debug.SetMemoryLimit(math.MaxInt64)
	files := func() (int64, error) { return 32 << 20, nil }
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		files   func() (int64, error)
		applied bool
		goLimit int64
		err     string
	}{
		{name: "the container's limit, the binary's pages left out", vars: map[string]string{EnvVar: "268435456"}, files: files,
			applied: true, goLimit: 256<<20 - 32<<20 - 16<<20},
		{name: "an explicit GOMEMLIMIT wins", vars: map[string]string{EnvVar: "268435456", "GOMEMLIMIT": "100MiB"}, files: files},
		{name: "no limit given", vars: map[string]string{}, files: files},
		{name: "a quantity, not bytes", vars: map[string]string{EnvVar: "256Mi"}, files: files, err: EnvVar + `="256Mi"`},
		{name: "zero", vars: map[string]string{EnvVar: "0"}, files: files, err: EnvVar + `="0"`},
		{name: "the process's memory cannot be read", vars: map[string]string{EnvVar: "268435456"},
			files: func() (int64, error) { return 0, errors.New("no /proc") }, err: "no /proc"},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		l, applied, err := Apply(env(tc.vars), tc.files)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want one naming %q", tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case applied != tc.applied:
			t.Errorf("%s: applied = %v, want %v", tc.name, applied, tc.applied)
		}
		// The runtime's limit, read back: what it now collects against.
		got := debug.SetMemoryLimit(-1)
		want := tc.goLimit
		if !tc.applied {
			want = math.MaxInt64
		}
		if got != want || (tc.applied && l.Go != want) {
			t.Errorf("%s: runtime limit %d (reported %d), want %d", tc.name, got, l.Go, want)
		}
	}
}

func TestFileResident(t *testing.T) {
	n, err := FileResident()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's own code is mapped from its file and has run.
	if n <= 0 {
		t.Fatalf("FileResident = %d, want the test binary's resident pages", n)
	}
}
