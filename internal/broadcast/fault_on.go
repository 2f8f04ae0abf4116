//go:build faultinject

package broadcast

import (
	"os"
	"strings"
	"syscall"
)

// faultHook, in test builds only, kills the process right after the backend accepted a send and
// before the ledger records it, when CRYPTOASSETS_FAULT=kill-after-send:<file>. The txid is written
// to the file first so the test knows which payment to look for.
func faultHook() func(string) error {
	path, ok := strings.CutPrefix(os.Getenv("CRYPTOASSETS_FAULT"), "kill-after-send:")
	if !ok || path == "" {
		return nil
	}
	return func(txid string) error {
		_ = os.WriteFile(path, []byte(txid), 0o644)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; nothing after this runs
	}
}
