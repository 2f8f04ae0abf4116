package helper

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// credential writes a credential file, as a projected Secret would hold it.
func credential(t *testing.T, name, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// balanceIs checks an account's balance through the API, for eventually.
func balanceIs(t *testing.T, cfg *config.Config, account int64, want string) func() error {
	return func() error {
		var a struct{ Balance string }
		call(t, cfg, "GET", fmt.Sprintf("/v1/accounts/%d", account), testassets.APIToken, nil, nil, &a)
		if a.Balance != want {
			return fmt.Errorf("balance %s, want %s", a.Balance, want)
		}
		return nil
	}
}
