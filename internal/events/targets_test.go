package events

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/redistest"
)

func delivery() ledger.Delivery {
	return ledger.Delivery{Seq: 7, EventID: "5b0f2f0e-8f3c-4c1e-9d7a-2b1c3d4e5f60", Name: "txupdate",
		Payload: json.RawMessage(`{"txid":"ab","credited":true}`), CreatedAt: time.Unix(1_700_000_000, 0)}
}

func TestRedisTarget(t *testing.T) {
	srv, err := redistest.Start("")
	if err != nil {
		if os.Getenv("REQUIRE_TEST_ASSETS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	defer srv.Close()
	ctx := context.Background()
	target := NewRedisTarget("app", "cryptoassets-events", &redis.Options{Addr: srv.Addr()})
	defer target.Close()

	// Nobody listening: the event would be lost, so it is not delivered (it is retried).
	if err := target.Deliver(ctx, delivery()); err == nil || !strings.Contains(err.Error(), "no subscriber") {
		t.Fatalf("without a subscriber: %v", err)
	}
	sub := redis.NewClient(&redis.Options{Addr: srv.Addr()}).Subscribe(ctx, "cryptoassets-events")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}
	if err := target.Deliver(ctx, delivery()); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var e Envelope
	if err := json.Unmarshal([]byte(msg.Payload), &e); err != nil || e.ID != delivery().EventID || e.Event != "txupdate" || string(e.Data) != `{"txid":"ab","credited":true}` {
		t.Fatalf("published %q (%v)", msg.Payload, err)
	}
	srv.Stop()
	if err := target.Deliver(ctx, delivery()); err == nil {
		t.Fatal("delivered with redis down")
	}
}

func TestScriptTarget(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	out := filepath.Join(dir, "events")
	script := filepath.Join(dir, "handler.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s %s %s\\n' \"$CRYPTOASSETS_EVENT_NAME\" \"$CRYPTOASSETS_EVENT_ID\" \"$CRYPTOASSETS_EVENT_DATA\" >> "+out+"\ncat >> "+out+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := NewScriptTarget("sh", []string{script}, 5*time.Second).Deliver(ctx, delivery()); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	lines := strings.SplitN(string(got), "\n", 2)
	if lines[0] != `txupdate 5b0f2f0e-8f3c-4c1e-9d7a-2b1c3d4e5f60 {"txid":"ab","credited":true}` || !strings.Contains(lines[1], `"event":"txupdate"`) {
		t.Fatalf("the script saw %q", got)
	}

	err := NewScriptTarget("fails", []string{"sh", "-c", "echo handler broke >&2; exit 3"}, 5*time.Second).Deliver(ctx, delivery())
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "handler broke") {
		t.Fatalf("failing script: %v", err)
	}
	start := time.Now()
	// The child sleep would hold the pipe open if only the shell were killed.
	err = NewScriptTarget("slow", []string{"sh", "-c", "sleep 30 & sleep 30"}, 300*time.Millisecond).Deliver(ctx, delivery())
	if err == nil || !strings.Contains(err.Error(), "longer than 300ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("slow script: %v after %s", err, time.Since(start))
	}
	if err := NewScriptTarget("missing", []string{filepath.Join(dir, "nope")}, time.Second).Deliver(ctx, delivery()); err == nil {
		t.Fatal("a missing command delivered")
	}
}
