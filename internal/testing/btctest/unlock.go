package btctest

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/proc"
)

// unlockPatience is how long one walletpassphrase may take before the harness takes the wallet
// for wedged (Node.unlockPatience, for a test, sets another). An unlock is one scrypt (256 MiB; seconds on a loaded machine), queued behind the
// helpers' own unlocks, which allow themselves two minutes (the bitcoind backend's
// unlockTimeout).
const unlockPatience = 3 * time.Minute

// errNoAnswer is a walletpassphrase btcwallet did not answer within unlockPatience.
var errNoAnswer = errors.New("btcwallet did not answer walletpassphrase")

// Unlock unlocks the wallet for d.
//
// Seen once, in a CI run on two busy CPUs (TestEndToEnd step 5, stop 46): just after a restart
// with a new RPC password, btcwallet logged an unlock and then answered no walletpassphrase for
// ten minutes, rpcclient's ten tries of a minute each. Every unlock, and every send (which holds
// the unlock while it signs), goes through one goroutine of btcwallet's, so a wallet in that
// state serves no payment again. walletpassphrase changes nothing but the lock, so a wallet that
// does not answer within unlockPatience is stopped with SIGQUIT, which has the Go runtime write
// every goroutine's stack to its stderr: the notice keeps the goroutines blocked for a minute or
// more, the cause to look for. The wallet is then started again and asked once more; a second
// failure is the caller's.
func (n *Node) Unlock(d time.Duration) error {
	patience := cmp.Or(n.unlockPatience, unlockPatience)
	err := n.unlockWithin(d, patience)
	if !errors.Is(err, errNoAnswer) {
		return err
	}
	stuck, dump := n.quitWallet()
	// The old client is still retrying its request; Shutdown cancels it.
	n.Wallet.Shutdown()
	if n.Wallet, err = client(n.walletPort, n.user, n.walletPass); err != nil {
		return err
	}
	if err := n.startWallet(false); err != nil {
		return fmt.Errorf("restarting btcwallet, which answered no walletpassphrase in %s: %w", patience, err)
	}
	if err := n.unlockWithin(d, patience); err != nil {
		return fmt.Errorf("unlocking btcwallet, restarted because it answered no walletpassphrase in %s: %w; its goroutines that were blocked:\n%s", patience, err, stuck)
	}
	notice(fmt.Sprintf("btctest: btcwallet answered no walletpassphrase in %s; restarted, it unlocked. %sIts goroutines blocked for a minute or more:\n%s", patience, dump, stuck))
	return nil
}

// unlockWithin asks for the unlock, and gives up waiting after patience with errNoAnswer.
func (n *Node) unlockWithin(d, patience time.Duration) error {
	w := n.Wallet
	done := make(chan error, 1)
	go func() {
		done <- whileBusy(func() error { return w.WalletPassphrase(WalletPassphrase, int64(d/time.Second)) })
	}()
	t := time.NewTimer(patience)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return errNoAnswer
	}
}

// quitWallet stops btcwallet with SIGQUIT and returns, from the stacks the runtime writes to its
// stderr, those of the goroutines blocked for a minute or more. The whole dump is kept beside the
// TEST_NOTICES file when there is one (the test's directory goes with Stop); dump says where.
func (n *Node) quitWallet() (stuck, dump string) {
	stderr := filepath.Join(n.dir, "btcwallet.log")
	var offset int64
	if fi, err := os.Stat(stderr); err == nil {
		offset = fi.Size()
	}
	proc.Stop(n.wallet.cmd.Process, syscall.SIGQUIT, 15*time.Second, n.wallet.done)
	n.wallet = nil
	b, err := os.ReadFile(stderr)
	if err != nil {
		return err.Error(), ""
	}
	stacks := string(b[min(offset, int64(len(b))):])
	if notices := os.Getenv("TEST_NOTICES"); notices != "" {
		path := filepath.Join(filepath.Dir(notices), fmt.Sprintf("btcwallet-goroutines-%d.txt", time.Now().Unix()))
		if err := os.WriteFile(path, []byte(stacks), 0o644); err == nil {
			dump = "All its goroutines are in " + path + ". "
		}
	}
	return blockedGoroutines(stacks, 60), dump
}

// longWait matches the header of a goroutine blocked for minutes: "goroutine 7 [select, 9 minutes]:".
var longWait = regexp.MustCompile(`^goroutine \d+ \[[^\]]*\d+ minutes[^\]]*\]:$`)

// blockedGoroutines keeps, from a Go runtime's stack dump, the goroutines blocked for minutes:
// each one's header and the functions of its first frames, at most maxLines lines in all.
func blockedGoroutines(stacks string, maxLines int) string {
	var out []string
	for _, g := range strings.Split(stacks, "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if !longWait.MatchString(lines[0]) {
			continue
		}
		out = append(out, lines[0])
		frames := 0
		// A frame is a function line, then its file and line, indented by a tab.
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, "\t") || frames == 6 {
				continue
			}
			out = append(out, "    "+l)
			frames++
		}
	}
	if len(out) == 0 {
		return "(none)"
	}
	if len(out) > maxLines {
		out = append(out[:maxLines], fmt.Sprintf("(%d more lines)", len(out)-maxLines))
	}
	return strings.Join(out, "\n")
}
