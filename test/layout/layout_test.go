// Package layout checks the shape of the tree: what the product may import.
package layout

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cryptoassets/cryptoassets-operator"

// harness says whether a package drives servers or fakes for tests: the harnesses under
// internal/testing, and per-package helpers named *test (ledgertest, backendtest), like httptest.
func harness(path string) bool {
	return strings.HasPrefix(path, module+"/internal/testing/") || strings.HasSuffix(path, "test")
}

// product says whether a package is part of what ships: not a harness, not a test-only package,
// not build tooling under hack/.
func product(path string) bool {
	return !harness(path) && !strings.HasPrefix(path, module+"/test/") && !strings.HasPrefix(path, module+"/hack/")
}

func TestNoProductPackageImportsATestHarness(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Deps", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	products := 0
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if !product(p.ImportPath) {
			continue
		}
		products++
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"/") && harness(d) {
				t.Errorf("%s imports the test harness %s", p.ImportPath, d)
			}
			// Backends speak in amounts (a leaf package), not in the ledger's terms.
			if strings.HasPrefix(p.ImportPath, module+"/internal/backend") && d == module+"/internal/ledger" {
				t.Errorf("%s depends on the ledger", p.ImportPath)
			}
		}
	}
	// The program itself and its packages must have been seen, or the check checked nothing.
	if products < 15 {
		t.Fatalf("only %d product packages listed", products)
	}
}
