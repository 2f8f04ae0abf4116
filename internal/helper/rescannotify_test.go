package helper

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/jackc/pgx/v5"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/events/eventstest"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// TestRescanTellsTheActiveHelper: the rescan command, another process than the active helper,
// notifies the helper's lock connection (which listens on eventsChannel) when what it booked
// commits events, so the helper delivers them at once instead of at its idle poll.
func TestRescanTellsTheActiveHelper(t *testing.T) {
	ctx := context.Background()
	dbURL, pool := ledgertest.DB(t, pg)
	cfg := testassets.HelperConfig(t, node, dbURL, "")
	l, be, closeBackend, err := openAsset(ctx, cfg, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeBackend()
	acct, err := l.CreateAccount(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := be.NewAddress(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddReceivingAddress(ctx, acct.ID, addr, ""); err != nil {
		t.Fatal(err)
	}
	tip, err := be.Tip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node.MustPay(t, addr, 100_000_000)
	node.MustMine(t, 1)

	// The active helper's lock connection, listening as listen has it.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{eventsChannel(cfg.Asset)}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	r, err := Rescan(ctx, cfg, pool, tip.Height, testr.New(t), nil)
	if err != nil || r.Booked != 1 {
		t.Fatalf("rescan: %+v %v, want the deposit booked", r, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("no notification of the rescan's events: %v", err)
	}
	if n.Channel != eventsChannel(cfg.Asset) {
		t.Fatalf("notified on %q, want %q", n.Channel, eventsChannel(cfg.Asset))
	}
}

// TestRescanCommandEventsAreDeliveredAtOnce: a running helper, whose event delivery polls
// hourly here, delivers an event that the rescan command (another process, here its function on
// a pool of its own) committed: the command's notification reaches the helper's lock connection,
// which wakes delivery.
func TestRescanCommandEventsAreDeliveredAtOnce(t *testing.T) {
	ctx := context.Background()
	app := &eventstest.EventReceiver{Key: []byte(testassets.SigningKey)}
	appSrv := httptest.NewServer(app)
	defer appSrv.Close()
	dbURL, pool := ledgertest.DB(t, pg)
	cfg := testassets.HelperConfig(t, node, dbURL, appSrv.URL)
	// The helper's own catch-up must not book the deposit before the rescan does.
	cfg.Notify.PollInterval = config.Duration{Duration: time.Hour}
	startWith(t, cfg, Options{EventsIdlePoll: time.Hour})
	testassets.Eventually(t, 120*time.Second, "helper ready", func() error { return ready(cfg) })

	var acct struct{ ID int64 }
	call(t, cfg, "POST", "/v1/accounts", testassets.APIToken, map[string]string{"name": "shop"}, nil, &acct)
	var addr struct{ Address string }
	call(t, cfg, "POST", fmt.Sprintf("/v1/accounts/%d/addresses", acct.ID), testassets.APIToken, map[string]string{}, nil, &addr)
	_, be, closeBackend, err := openAsset(ctx, cfg, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	tip, err := be.Tip(ctx)
	closeBackend()
	if err != nil {
		t.Fatal(err)
	}
	txid := node.MustPay(t, addr.Address, 70_000_000)
	node.MustMine(t, 1)

	r, err := Rescan(ctx, cfg, pool, tip.Height, testr.New(t), nil)
	if err != nil || r.Booked != 1 {
		t.Fatalf("rescan: %+v %v, want the deposit booked by it", r, err)
	}
	testassets.Eventually(t, 60*time.Second, "the rescan's event delivered by the helper", func() error {
		evs := app.Events()
		for _, e := range evs {
			var u ledger.TxUpdate
			if err := json.Unmarshal(e.Data, &u); err == nil && u.TxID == txid {
				return nil
			}
		}
		if _, bad := app.Counts(); bad > 0 {
			return fmt.Errorf("%d events received, %d badly signed, none about %s", len(evs), bad, txid)
		}
		return fmt.Errorf("%d events received, none about %s", len(evs), txid)
	})
}
