package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// RedisTarget publishes each event's JSON on a Redis channel. Pub/sub keeps nothing: an event
// published while no one listens is lost, so a publish that reached no subscriber counts as a
// failed delivery and is retried with the usual backoff.
type RedisTarget struct {
	name    string
	channel string
	client  *redis.Client
}

// NewRedisTarget makes a Redis target.
func NewRedisTarget(name, channel string, opts *redis.Options) *RedisTarget {
	return &RedisTarget{name: name, channel: channel, client: redis.NewClient(opts)}
}

// Name is the target's name from the config.
func (r *RedisTarget) Name() string { return r.name }

// Close releases the connection pool.
func (r *RedisTarget) Close() error { return r.client.Close() }

// Deliver publishes one event.
func (r *RedisTarget) Deliver(ctx context.Context, d ledger.Delivery) error {
	body, err := Body(d)
	if err != nil {
		return err
	}
	n, err := r.client.Publish(ctx, r.channel, body).Result()
	if err != nil {
		return fmt.Errorf("publishing on redis channel %s: %w", r.channel, err)
	}
	if n == 0 {
		return fmt.Errorf("no subscriber on redis channel %s", r.channel)
	}
	return nil
}

// ScriptTarget runs a command per event, as cryptoassets.core's script handler did: the event
// name and JSON in CRYPTOASSETS_EVENT_NAME and CRYPTOASSETS_EVENT_DATA (and the whole envelope on
// stdin, with CRYPTOASSETS_EVENT_ID for deduplication). Exit status 0 is delivered; anything
// else, or running past the timeout (the command's process group is killed), is retried.
type ScriptTarget struct {
	name    string
	command []string
	timeout time.Duration
}

// NewScriptTarget makes a script target.
func NewScriptTarget(name string, command []string, timeout time.Duration) *ScriptTarget {
	return &ScriptTarget{name: name, command: append([]string(nil), command...), timeout: timeout}
}

// Name is the target's name from the config.
func (s *ScriptTarget) Name() string { return s.name }

// Deliver runs the command once.
func (s *ScriptTarget) Deliver(ctx context.Context, d ledger.Delivery) error {
	if len(s.command) == 0 {
		return errors.New("script target without a command")
	}
	body, err := Body(d)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.command[0], s.command[1:]...)
	cmd.Env = append(os.Environ(),
		"CRYPTOASSETS_EVENT_NAME="+d.Name,
		"CRYPTOASSETS_EVENT_DATA="+string(d.Payload),
		"CRYPTOASSETS_EVENT_ID="+d.EventID)
	cmd.Stdin = bytes.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so a timeout also ends whatever the script started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("script %s ran longer than %s", s.command[0], s.timeout)
	}
	if err != nil {
		return fmt.Errorf("script %s: %v: %s", s.command[0], err, tail(out.String()))
	}
	return nil
}

// tail keeps the end of a script's output for the error message.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 500 {
		s = "…" + s[len(s)-500:]
	}
	return s
}
