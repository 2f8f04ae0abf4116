package walletnotify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/redis/go-redis/v9"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/redistest"
)

// sink records what a source passed on and what it refused.
type sink struct {
	mu        sync.Mutex
	txids     []string
	rejected  []string
	connected int
	healthErr error
}

func (s *sink) notify(_ context.Context, txid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txids = append(s.txids, txid)
	return nil
}

func (s *sink) reject(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected = append(s.rejected, reason)
}

func (s *sink) snapshot() (txids, rejected []string, connected int, health error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.txids...), append([]string(nil), s.rejected...), s.connected, s.healthErr
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomTxID(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// badInput is what every source must refuse, and why.
func badInput() map[string]string {
	return map[string]string{
		"non-hex":   strings.Repeat("zz", 32),
		"too short": "abcdef",
		"too long":  strings.Repeat("ab", 33),
		"oversized": strings.Repeat("a", 5000),
		"JSON":      `{"txid": 1}`,
	}
}

func TestPipe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "walletnotify")
	s := &sink{}
	p := &Pipe{Path: path, Notify: s.notify, Rejected: s.reject, Log: testr.New(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "the FIFO", func() bool { st, err := os.Stat(path); return err == nil && st.Mode()&fs.ModeNamedPipe != 0 })
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("FIFO mode %v, want owner-only", st.Mode().Perm())
	}

	// bitcoind runs `echo %s >> FIFO` once per transaction: every writer opens and closes it.
	var want []string
	for range 5 {
		txid := randomTxID(t)
		want = append(want, txid)
		if out, err := exec.Command("sh", "-c", "echo "+txid+" >> "+path).CombinedOutput(); err != nil {
			t.Fatalf("echo: %v %s", err, out)
		}
	}
	upper := strings.ToUpper(randomTxID(t))
	want = append(want, strings.ToLower(upper))
	bad := badInput()
	var lines strings.Builder
	lines.WriteString("\n  " + upper + "  \n")
	for _, v := range bad {
		lines.WriteString(v + "\n")
	}
	if err := os.WriteFile(path, []byte(lines.String()), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every line", func() bool {
		got, rej, _, _ := s.snapshot()
		return len(got) == len(want) && len(rej) == len(bad)
	})
	got, rej, _, _ := s.snapshot()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("txids %v, want %v", got, want)
	}
	if !strings.Contains(strings.Join(rej, "|"), "longer than 4096 bytes") {
		t.Errorf("rejections %v", rej)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("FIFO left behind: %v", err)
	}

	// Something else at the path is refused, not removed.
	if err := os.WriteFile(path, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := (&Pipe{Path: path, Notify: s.notify, Log: testr.New(t)}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not a named pipe") {
		t.Fatalf("regular file at the path: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "mine" {
		t.Fatal("the file in the way was changed")
	}
}

func TestRedis(t *testing.T) {
	srv, err := redistest.Start("redis-pass")
	if err != nil {
		if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	defer srv.Close()
	s := &sink{}
	src := &Redis{
		Options: &redis.Options{Addr: srv.Addr(), Password: "redis-pass", MaxRetries: -1},
		Channel: DefaultRedisChannel, Notify: s.notify, Rejected: s.reject, Log: testr.New(t),
		Connected: func() { s.mu.Lock(); s.connected++; s.mu.Unlock() },
		Health:    func(err error) { s.mu.Lock(); s.healthErr = err; s.mu.Unlock() },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	waitFor(t, "the subscription", func() bool { _, _, c, h := s.snapshot(); return c == 1 && h == nil })

	// What bitcoind's walletnotify runs, with the real redis-cli.
	publish := func(msg string) {
		t.Helper()
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(srv.Port), "--no-auth-warning", "-a", "redis-pass",
			"publish", DefaultRedisChannel, msg).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Fatalf("redis-cli publish: %v %q", err, out)
		}
	}
	first := randomTxID(t)
	publish(first)
	bad := badInput()
	for _, v := range bad {
		publish(v)
	}
	publish("")
	waitFor(t, "the first txid and the refusals", func() bool {
		got, rej, _, _ := s.snapshot()
		return len(got) == 1 && len(rej) == len(bad)+1
	})

	// Redis goes away: the source reports it; it comes back: the source subscribes again and
	// asks for a catch-up, which is what finds anything published meanwhile.
	srv.Stop()
	waitFor(t, "unhealthy", func() bool { _, _, _, h := s.snapshot(); return h != nil })
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resubscribed", func() bool { _, _, c, h := s.snapshot(); return c == 2 && h == nil })
	second := randomTxID(t)
	publish(second)
	waitFor(t, "the txid after the restart", func() bool { got, _, _, _ := s.snapshot(); return len(got) == 2 })
	got, _, _, _ := s.snapshot()
	if got[0] != first || got[1] != second {
		t.Fatalf("txids %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A wrong password is reported, not silently retried forever in the dark.
	s2 := &sink{}
	bad2 := &Redis{Options: &redis.Options{Addr: srv.Addr(), Password: "wrong", MaxRetries: -1}, Channel: DefaultRedisChannel,
		Notify: s2.notify, Log: testr.New(t), Health: func(err error) { s2.mu.Lock(); s2.healthErr = err; s2.mu.Unlock() }}
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { _ = bad2.Run(ctx2) }()
	waitFor(t, "the auth error", func() bool {
		_, _, _, h := s2.snapshot()
		return h != nil && strings.Contains(h.Error(), "WRONGPASS")
	})
	cancel2()
}
