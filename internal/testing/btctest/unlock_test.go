package btctest

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil/v2"
)

func TestBlockedGoroutines(t *testing.T) {
	dump := strings.Join([]string{
		"SIGQUIT: quit\nPC=0x47a1c1 m=0 sigcode=0",
		"goroutine 1 [chan receive, 12 minutes]:\nmain.main()\n\t/src/main.go:10 +0x1",
		"goroutine 7 [select]:\nnet/http.(*persistConn).writeLoop(0xc0)\n\t/go/net/http/transport.go:2,000",
		"goroutine 21 [select, 9 minutes]:\n" +
			"github.com/btcsuite/btcwallet/wallet.(*Wallet).walletLocker(0xc0)\n\t/w/wallet.go:1343 +0x2\n" +
			"created by github.com/btcsuite/btcwallet/wallet.(*Wallet).Start in goroutine 1\n\t/w/wallet.go:200 +0x3",
		"goroutine 22 [semacquire, 1 minutes]:\na()\n\ta.go:1\nb()\n\tb.go:1\nc()\n\tc.go:1\nd()\n\td.go:1\ne()\n\te.go:1\nf()\n\tf.go:1\ng()\n\tg.go:1",
	}, "\n\n")
	cases := []struct {
		name     string
		stacks   string
		maxLines int
		want     string
	}{
		{"only goroutines blocked for minutes, their functions, six frames at most", dump, 100, strings.Join([]string{
			"goroutine 1 [chan receive, 12 minutes]:",
			"    main.main()",
			"goroutine 21 [select, 9 minutes]:",
			"    github.com/btcsuite/btcwallet/wallet.(*Wallet).walletLocker(0xc0)",
			"    created by github.com/btcsuite/btcwallet/wallet.(*Wallet).Start in goroutine 1",
			"goroutine 22 [semacquire, 1 minutes]:",
			"    a()", "    b()", "    c()", "    d()", "    e()", "    f()",
		}, "\n")},
		{"cut at maxLines", dump, 3, "goroutine 1 [chan receive, 12 minutes]:\n    main.main()\ngoroutine 21 [select, 9 minutes]:\n(9 more lines)"},
		{"none blocked that long", "goroutine 7 [select]:\nx()\n\tx.go:1", 10, "(none)"},
		{"no dump at all", "", 10, "(none)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := blockedGoroutines(c.stacks, c.maxLines); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// TestUnlockRestartsAWalletThatDoesNotAnswer points the harness's wallet client at a listener
// that takes requests and never answers, as the wedged wallet did: Unlock must give up waiting,
// stop the real wallet for its stacks, start it again, unlock it, and say so in a notice.
func TestUnlockRestartsAWalletThatDoesNotAnswer(t *testing.T) {
	n := startNode(t)
	notices := filepath.Join(t.TempDir(), "notices.log")
	t.Setenv("TEST_NOTICES", notices)

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, unanswered, until the listener goes
		}
	}()
	n.Wallet.Shutdown()
	if n.Wallet, err = client(silent.Addr().(*net.TCPAddr).Port, n.user, n.walletPass); err != nil {
		t.Fatal(err)
	}
	n.unlockPatience = 5 * time.Second
	_, before := n.PIDs()

	if err := n.Unlock(10 * time.Minute); err != nil {
		t.Fatalf("Unlock of a wallet that does not answer: %v", err)
	}
	if _, after := n.PIDs(); after == before || after == 0 {
		t.Errorf("btcwallet pid %d before, %d after: want it restarted", before, after)
	}
	// Restarted and unlocked, the wallet pays.
	to, err := n.NewAddress()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Wallet.SendToAddress(to, btcutil.Amount(100_000_000)); err != nil {
		t.Fatalf("paying from the restarted wallet: %v", err)
	}
	b, err := os.ReadFile(notices)
	if err != nil || !strings.Contains(string(b), "btcwallet answered no walletpassphrase in 5s; restarted, it unlocked") {
		t.Fatalf("notice %q, %v", b, err)
	}
	dumps, _ := filepath.Glob(filepath.Join(filepath.Dir(notices), "btcwallet-goroutines-*.txt"))
	if len(dumps) != 1 {
		t.Fatalf("goroutine dumps %v, want one", dumps)
	}
	if d, err := os.ReadFile(dumps[0]); err != nil || !strings.Contains(string(d), "walletLocker") {
		t.Errorf("the dump does not hold btcwallet's goroutines (%v):\n%.2000s", err, d)
	}
}
