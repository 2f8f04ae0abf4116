package operator

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
)

func TestPlannedLeaseReleaseIsNotAnError(t *testing.T) {
	var lines []string
	base := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	log := quietPlannedLeaseRelease(ctx, base).WithName("manager").WithValues("k", "v")

	log.Error(errors.New("leader election lost"), "error received after stop sequence was engaged")
	if len(lines) != 1 || !strings.Contains(lines[0], `"error"="leader election lost"`) {
		t.Fatalf("a loss while running must stay an error: %q", lines)
	}
	cancel()
	log.Error(errors.New("leader election lost"), "error received after stop sequence was engaged")
	if len(lines) != 2 || strings.Contains(lines[1], `"error"=`) || !strings.Contains(lines[1], "released on shutdown") {
		t.Fatalf("the planned release on shutdown: %q", lines[1:])
	}
	log.Error(errors.New("something else"), "failed")
	if len(lines) != 3 || !strings.Contains(lines[2], `"error"="something else"`) {
		t.Fatalf("other errors after shutdown stay errors: %q", lines[2:])
	}
}
