// Package testassets decides whether tests that need real servers can run. Under `make test`
// (REQUIRE_TEST_ASSETS=1) a missing asset is a failure; in a plain `go test ./...` on a machine
// that never ran the setup, those tests are skipped with a note saying how to run them.
package testassets

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack/node"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
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

// Starter starts one test server and returns how to stop it.
type Starter func() (stop func(), err error)

// Main runs a package's tests with the servers they need: it starts each, runs m, stops them in
// reverse order, and returns the exit code. A server that cannot start skips the package, or fails
// it under `make test` (REQUIRE_TEST_ASSETS).
func Main(m *testing.M, starters ...Starter) int {
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	for _, start := range starters {
		stop, err := start()
		if err != nil {
			if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
				fmt.Fprintln(os.Stderr, "starting test servers:", err)
				return 1
			}
			fmt.Fprintln(os.Stderr, "SKIP: test servers:", err)
			return 0
		}
		stops = append(stops, stop)
	}
	return m.Run()
}

// Postgres starts a PostgreSQL server into *s.
func Postgres(s **pgtest.Server) Starter {
	return func() (func(), error) {
		srv, err := pgtest.Start()
		if err != nil {
			return nil, err
		}
		*s = srv
		return srv.Stop, nil
	}
}

// Bitcoin starts btcd and a funded btcwallet on simnet into *n.
func Bitcoin(n **btctest.Node) Starter {
	return func() (func(), error) {
		node, err := btctest.Start()
		if err != nil {
			return nil, err
		}
		*n = node
		return node.Stop, nil
	}
}

// LitecoinCore starts a Litecoin Core regtest node (Bitcoin Core's RPC dialect) into *c.
func LitecoinCore(c **btctest.Core) Starter {
	return func() (func(), error) {
		core, err := btctest.StartLitecoinCore()
		if err != nil {
			return nil, err
		}
		*c = core
		return core.Stop, nil
	}
}

// RealNode returns the directory of the built tools (E2E_BIN) for a test that runs a real node
// (internal/testing/devstack/node). Outside `make test` it skips the test; under it (REQUIRE_TEST_ASSETS)
// a machine that cannot run a node fails the test with what is missing.
func RealNode(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("E2E_BIN")
	err := node.Preflight(bin)
	if bin == "" {
		err = fmt.Errorf("E2E_BIN is not set")
	}
	if err == nil {
		return bin
	}
	if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
		t.Fatalf("a real node cannot run here: %v", err)
	}
	t.Skipf("a real node cannot run here (%v): `make test` runs this", err)
	return ""
}

// RepoRoot is the repository's root (where go.mod is), found from the test's working directory,
// so a test does not count "../" and break when its package moves.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	t.Fatalf("no go.mod above %s", dir)
	return ""
}

// StartEnv starts an envtest control plane. When the start fails part-way (etcd and the API
// server up, the CRDs refused), it stops what it started, so a failed start leaves no server
// behind.
func StartEnv(env *envtest.Environment) (*rest.Config, error) {
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return cfg, nil
}
