// Package testassets decides whether tests that need real servers can run. Under `make test`
// (REQUIRE_TEST_ASSETS=1) a missing asset is a failure; in a plain `go test ./...` on a machine
// that never ran the setup, those tests are skipped with a note saying how to run them.
package testassets

import (
	"fmt"
	"os"
	"strings"
)

// Check returns the exit code a TestMain should end with when an environment variable it needs is
// unset, and ok=false; or ok=true when all are set.
func Check(vars ...string) (code int, ok bool) {
	var missing []string
	for _, v := range vars {
		if os.Getenv(v) == "" {
			missing = append(missing, v)
		}
	}
	if len(missing) == 0 {
		return 0, true
	}
	if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
		fmt.Fprintf(os.Stderr, "%s not set; `make test` installs the test servers and sets them\n", strings.Join(missing, ", "))
		return 1, false
	}
	fmt.Fprintf(os.Stderr, "SKIP: %s not set; `make test` runs these tests against real servers\n", strings.Join(missing, ", "))
	return 0, false
}
