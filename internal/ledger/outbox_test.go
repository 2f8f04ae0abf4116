package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// addEvents appends n events for target to l's outbox, never tried, and returns their Seqs.
func addEvents(t *testing.T, l *Ledger, target string, n int) []int64 {
	t.Helper()
	rows, err := l.pool.Query(context.Background(), `WITH e AS (INSERT INTO outbox_events (asset_id, name, payload)
			SELECT $1, 'txupdate', jsonb_build_object('n', g) FROM generate_series(1, $3) g RETURNING id),
		d AS (INSERT INTO outbox_deliveries (event_id, target) SELECT id, $2 FROM e)
		SELECT id FROM e ORDER BY id`, l.assetID, target, n)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// readDue pages through the deliveries due at target, limit at a time, calling between(page)
// after each page, and returns the Seqs read in order.
func readDue(t *testing.T, l *Ledger, target string, limit int, between func(page int)) []int64 {
	t.Helper()
	var (
		got  []int64
		from DueCursor
	)
	for page := 0; ; page++ {
		evs, next, err := l.DueDeliveries(context.Background(), target, from, limit)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			got = append(got, ev.Seq)
		}
		if between != nil {
			between(page)
		}
		if len(evs) < limit {
			return got
		}
		from = next
		if page > 100 {
			t.Fatalf("still reading after %d pages: %v", page, got)
		}
	}
}

// TestDueDeliveriesReadsDueRetriesThenNewEvents: the retries that are due come first, in the
// order they fell due, then the events never tried, in event order; retries backing off and given
// up are not read; paging at any size reads each once; a retry that fails again while the reading
// goes on is not read twice; an event added meanwhile is read at the end, unless the page
// before was the last.
func TestDueDeliveriesReadsDueRetriesThenNewEvents(t *testing.T) {
	ctx := context.Background()
	for _, limit := range []int{1, 2, 3, 10} {
		t.Run(fmt.Sprint("pages of ", limit), func(t *testing.T) {
			l := open(t, newPool(t), "app")
			e := addEvents(t, l, "app", 8)
			addEvents(t, l, "other", 2)
			for _, r := range []struct {
				seq      int64
				attempts int
				next     string
			}{
				{e[1], 1, "now() - interval '3 minutes'"},
				{e[4], 2, "now() - interval '5 minutes'"},
				{e[6], 1, "now() + interval '1 hour'"},
				{e[3], 3, "'infinity'"},
			} {
				if _, err := l.pool.Exec(ctx, `UPDATE outbox_deliveries SET attempts = $1, next_attempt_at = `+r.next+`, last_error = 'down'
					WHERE event_id = $2 AND target = 'app'`, r.attempts, r.seq); err != nil {
					t.Fatal(err)
				}
			}
			var late int64
			got := readDue(t, l, "app", limit, func(page int) {
				if page != 0 {
					return
				}
				// The first retry read fails again and is due again at once; a new event comes.
				if err := l.MarkAttemptFailed(ctx, e[4], "app", "down again", time.Now()); err != nil {
					t.Fatal(err)
				}
				late = addEvents(t, l, "app", 1)[0]
			})
			want := []int64{e[4], e[1], e[0], e[2], e[5], e[7]}
			if limit <= len(want) {
				want = append(want, late) // a short first page would have ended the reading
			}
			if !slices.Equal(got, want) {
				t.Errorf("read %v, want %v", got, want)
			}
			// A new reading takes the retry that failed again, now due.
			if again := readDue(t, l, "app", limit, nil); !slices.Contains(again, e[4]) || slices.Contains(again, e[6]) {
				t.Errorf("a second reading got %v", again)
			}
		})
	}
}

// TestDueDeliveriesSkipBackingOffRetries: a read of a target with thousands of events backing
// off visits only what it returns, even on statistics from before they started failing (as
// after an outage that began since the last ANALYZE): one index over both sets, in event order,
// walked past all of them on every read.
func TestDueDeliveriesSkipBackingOffRetries(t *testing.T) {
	ctx := context.Background()
	l := open(t, newPool(t), "app")
	addEvents(t, l, "app", 5000)
	if _, err := l.pool.Exec(ctx, `ANALYZE outbox_deliveries; ANALYZE outbox_events`); err != nil {
		t.Fatal(err)
	}
	// The target goes down: every event is tried and backs off; then three more come.
	if _, err := l.pool.Exec(ctx, `UPDATE outbox_deliveries SET attempts = 1, next_attempt_at = now() + interval '1 hour', last_error = 'down'`); err != nil {
		t.Fatal(err)
	}
	fresh := addEvents(t, l, "app", 3)
	for i := range 6 { // past pgx's five custom plans, onto the generic one
		evs, _, err := l.DueDeliveries(ctx, "app", DueCursor{}, 500)
		if err != nil || len(evs) != 3 || evs[0].Seq != fresh[0] {
			t.Fatalf("read %d: %+v %v", i, evs, err)
		}
	}
	_, blocks, out := analyzed(t, l.pool, dueDeliveriesSQL, "app", l.assetID, nil, time.Time{}, int64(0), 500, false, int64(0))
	// About a hundred pages here (the index entries the update left behind among them); the
	// single index in event order visited 2,070, a heap fetch for each event backing off.
	t.Logf("reading 3 due events of 5003 visited %d pages", blocks)
	if blocks > 500 {
		t.Errorf("reading 3 due events visited %d pages:\n%s", blocks, out)
	}
}

// Events written before their payloads were stored as json (migration 10) are delivered after
// the upgrade as they were: the same JSON, still due, the pull API reading them too.
func TestEventsWrittenAsJSONBAreDeliveredAfterTheUpgrade(t *testing.T) {
	ctx := context.Background()
	pool := poolAt(t, 9)
	const payload = `{"state": "credited", "amount": "0.00010000", "confirmations": 3, "note": "caf\u00e9 \"x\""}`
	if _, err := pool.Exec(ctx, `WITH a AS (INSERT INTO assets (name, coin, network) VALUES ('btc', 'bitcoin', 'regtest') RETURNING id),
			e AS (INSERT INTO outbox_events (asset_id, name, payload) SELECT id, 'txupdate', $1::jsonb FROM a RETURNING id)
		INSERT INTO outbox_deliveries (event_id, target) SELECT id, 'app' FROM e`, payload); err != nil {
		t.Fatal(err)
	}
	if applied, err := Migrate(ctx, pool); err != nil || len(applied) != SchemaVersion()-9 {
		t.Fatalf("upgrade applied %v: %v", applied, err)
	}
	var typ string
	if err := pool.QueryRow(ctx, `SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = 'outbox_events'::regclass AND attname = 'payload'`).Scan(&typ); err != nil || typ != "json" {
		t.Fatalf("payload column is %q (%v), want json", typ, err)
	}
	l := open(t, pool, "app")
	due, _, err := l.DueDeliveries(ctx, "app", DueCursor{}, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due after the upgrade: %d %v", len(due), err)
	}
	var got, want any
	if err := json.Unmarshal(due[0].Payload, &got); err != nil {
		t.Fatalf("delivered payload %s: %v", due[0].Payload, err)
	}
	if err := json.Unmarshal([]byte(payload), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delivered payload %s, want %s", due[0].Payload, payload)
	}
	pulled, err := l.Events(ctx, 0, 10)
	if err != nil || len(pulled) != 1 || string(pulled[0].Payload) != string(due[0].Payload) {
		t.Errorf("pulled after the upgrade: %+v %v", pulled, err)
	}
}

// TestEventIDsFollowTheirOrder: the ids the ledger gives its events, in one statement with many
// (a deposit batch) or one (a transfer), are UUIDs of version 7 drawn when the event was
// written, each later than the one before, so the unique index on them is appended to; each
// event is due at every target under the id it is pulled with.
func TestEventIDsFollowTheirOrder(t *testing.T) {
	ctx := context.Background()
	l, _, alice := withAlice(t, "app")
	start := time.Now().Truncate(time.Millisecond)
	var obs []Observation
	for i := range 3 {
		obs = append(obs, Observation{TxID: fmt.Sprintf("tx-%d", i), Address: "addr-alice", Amount: 50_000, Confirmations: 6})
	}
	if _, err := l.RecordDeposits(ctx, obs); err != nil {
		t.Fatal(err)
	}
	bob, err := l.CreateAccount(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.SendInternal(ctx, alice.ID, bob.ID, 10_000, ""); err != nil {
		t.Fatal(err)
	}
	end := time.Now()

	pulled, err := l.Events(ctx, 0, 100)
	if err != nil || len(pulled) != 4 {
		t.Fatalf("pulled %d events (%v), want 3 deposits and a transfer", len(pulled), err)
	}
	due, _, err := l.DueDeliveries(ctx, "app", DueCursor{}, 100)
	if err != nil || len(due) != len(pulled) {
		t.Fatalf("%d events due at app (%v), want %d", len(due), err, len(pulled))
	}
	var last uuid.UUID
	for i, e := range pulled {
		id, err := uuid.Parse(e.EventID)
		if err != nil || id.Version() != 7 {
			t.Fatalf("event %d has id %q (%v), want a UUID of version 7", e.Position, e.EventID, err)
		}
		if at := time.Unix(id.Time().UnixTime()); at.Before(start) || at.After(end) {
			t.Errorf("event %d's id %s was drawn at %s, not while the test wrote it (%s to %s)", e.Position, id, at, start, end)
		}
		if i > 0 && bytes.Compare(id[:], last[:]) <= 0 {
			t.Errorf("event %d's id %s does not follow the one before it, %s", e.Position, id, last)
		}
		last = id
		if due[i].EventID != e.EventID {
			t.Errorf("event %d is due at app as %s, pulled as %s", e.Position, due[i].EventID, e.EventID)
		}
	}
}

// TestOutboxStatsOnASharedDatabase: the outbox gauges of an asset count its own undelivered
// events, on a database where another asset's target is down, and read only what they count.
// The deliveries are written as a helper of an earlier version wrote them, without their
// asset (addEvents), as one still running for another asset during an upgrade does.
func TestOutboxStatsOnASharedDatabase(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	openTenant := func(namespace string) *Ledger {
		l, err := Open(ctx, pool, Options{Namespace: namespace, Asset: "btc", Coin: "bitcoin", Network: "regtest",
			Confirmations: 3, MaxTrackedConfirmations: 6, ValidateAddress: testAddress, EventTargets: []string{"app"}})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	shop, payroll := openTenant("shop"), openTenant("payroll")
	// shop's history, delivered.
	if err := shop.MarkDelivered(ctx, "app", addEvents(t, shop, "app", 2000)...); err != nil {
		t.Fatal(err)
	}
	// payroll's target is down: 2,000 events backing off, the first 5 given up.
	down := addEvents(t, payroll, "app", 2000)
	if _, err := pool.Exec(ctx, `UPDATE outbox_deliveries SET attempts = 3, last_error = 'down',
			next_attempt_at = CASE WHEN event_id <= $1 THEN 'infinity' ELSE now() + interval '1 hour' END`, down[4]); err != nil {
		t.Fatal(err)
	}
	waiting := addEvents(t, shop, "app", 3)
	// As autovacuum would, so that the pages counted below are the query's own and not index
	// entries of shop's delivered events still waiting to be vacuumed.
	for _, q := range []string{`VACUUM ANALYZE outbox_deliveries`, `ANALYZE outbox_events`} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	created := func(seq int64) time.Time {
		var at time.Time
		if err := pool.QueryRow(ctx, `SELECT created_at FROM outbox_events WHERE id = $1`, seq).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	for _, c := range []struct {
		l     *Ledger
		want  OutboxStats
		first int64
	}{
		{shop, OutboxStats{Undelivered: 3}, waiting[0]},
		{payroll, OutboxStats{Undelivered: 1995, GivenUp: 5}, down[5]},
	} {
		s, err := c.l.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := s.Outbox["app"]
		if got.Undelivered != c.want.Undelivered || got.GivenUp != c.want.GivenUp || got.OldestCreated == nil ||
			!got.OldestCreated.Equal(created(c.first)) || len(s.Outbox) != 1 {
			t.Errorf("%s: outbox stats %+v (oldest %v), want %+v, oldest %v", c.l.AssetRef(), s.Outbox, got.OldestCreated, c.want, created(c.first))
		}
	}

	// shop's scrape reads its 3 deliveries and one event: 8 pages. Joining every undelivered
	// delivery in the database to its event, to pick out shop's, it visited 92 (payroll's 2,000
	// deliveries, hashed against shop's 2,003 events), and that grows with both.
	_, blocks, out := analyzed(t, pool, outboxStatsSQL, shop.assetID)
	t.Logf("shop's outbox stats visited %d pages", blocks)
	if blocks > 30 {
		t.Errorf("shop's outbox stats visited %d pages:\n%s", blocks, out)
	}
}

// Deliveries written before they carried their asset (migration 13) get it from their events, as
// do those a helper of an earlier version writes after the upgrade (still running for another
// asset on a shared database): each asset reads and counts its own, and only its own.
func TestDeliveriesWrittenWithoutTheirAssetTakeTheirEvents(t *testing.T) {
	ctx := context.Background()
	pool := poolAt(t, 12)
	// The statement an earlier version's outbox wrote events with.
	const write = `WITH a AS (SELECT id FROM assets WHERE namespace = $1),
			e AS (INSERT INTO outbox_events (asset_id, name, payload) SELECT a.id, 'txupdate', json_build_object('n', g) FROM a, generate_series(1, $2) g RETURNING id)
		INSERT INTO outbox_deliveries (event_id, target) SELECT id, 'app' FROM e`
	if _, err := pool.Exec(ctx, `INSERT INTO assets (namespace, name, coin, network) VALUES ('shop', 'btc', 'bitcoin', 'regtest'), ('payroll', 'btc', 'bitcoin', 'regtest')`); err != nil {
		t.Fatal(err)
	}
	for ns, n := range map[string]int{"shop": 2, "payroll": 3} {
		if _, err := pool.Exec(ctx, write, ns, n); err != nil {
			t.Fatal(err)
		}
	}
	if applied, err := Migrate(ctx, pool); err != nil || len(applied) != SchemaVersion()-12 {
		t.Fatalf("upgrade applied %v: %v", applied, err)
	}
	if _, err := pool.Exec(ctx, write, "shop", 1); err != nil { // after the upgrade
		t.Fatalf("an earlier version's write after the upgrade: %v", err)
	}
	for ns, want := range map[string]int{"shop": 3, "payroll": 3} {
		l, err := Open(ctx, pool, Options{Namespace: ns, Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 3,
			MaxTrackedConfirmations: 6, ValidateAddress: testAddress, EventTargets: []string{"app"}})
		if err != nil {
			t.Fatal(err)
		}
		due, _, err := l.DueDeliveries(ctx, "app", DueCursor{}, 10)
		if err != nil || len(due) != want {
			t.Errorf("%s: %d events due (%v), want %d", ns, len(due), err, want)
		}
		for _, d := range due {
			var asset int64
			if err := pool.QueryRow(ctx, `SELECT asset_id FROM outbox_events WHERE id = $1`, d.Seq).Scan(&asset); err != nil || asset != l.assetID {
				t.Errorf("%s read event %d of asset %d (%v)", ns, d.Seq, asset, err)
			}
		}
		if s, err := l.Stats(ctx); err != nil || s.Outbox["app"].Undelivered != int64(want) {
			t.Errorf("%s: outbox stats %+v (%v), want %d undelivered", ns, s.Outbox, err, want)
		}
	}
}

// analyzed runs EXPLAIN ANALYZE of query on q, and returns the rows its top node returned, the
// pages it read (shared buffers hit or read) and the plan: for tests that a statement reads no
// more than it must.
func analyzed(t *testing.T, q queryRower, query string, args ...any) (rows, pages int, plan []byte) {
	t.Helper()
	if err := q.QueryRow(context.Background(), `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+query, args...).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	var p []struct {
		Plan struct {
			Rows       int `json:"Actual Rows"`
			SharedHit  int `json:"Shared Hit Blocks"`
			SharedRead int `json:"Shared Read Blocks"`
		}
	}
	if err := json.Unmarshal(plan, &p); err != nil || len(p) != 1 {
		t.Fatalf("plan %s: %v", plan, err)
	}
	return p[0].Plan.Rows, p[0].Plan.SharedHit + p[0].Plan.SharedRead, plan
}

// poolAt opens a database of its own at schema version v, for tests of what an upgrade from
// there does.
func poolAt(t *testing.T, v int) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), server.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := migrate(context.Background(), pool, v); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestOnEventsAfterCommit: Options.OnEvents is called once for each write that added events, and
// only once they are committed (another connection sees them when it is called); never for a
// write that added none, was refused, or replayed an earlier request.
func TestOnEventsAfterCommit(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	committed := func() int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var seen []int // the events another connection saw at each call
	l, err := Open(ctx, pool, Options{Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 3, MaxTrackedConfirmations: 6,
		ValidateAddress: testAddress, EventTargets: []string{"app"}, OnEvents: func() { seen = append(seen, committed()) }})
	if err != nil {
		t.Fatal(err)
	}
	var alice, bob Account
	var send Transaction
	deposit := func(confirmations int32) func() error {
		return func() error {
			_, err := l.RecordDeposit(ctx, Observation{TxID: "tx-1", Address: "addr-alice", Amount: 10_000, Confirmations: confirmations})
			return err
		}
	}
	for _, step := range []struct {
		name    string
		do      func() error
		refused bool
		events  bool
	}{
		{name: "accounts and an address", do: func() (err error) {
			if alice, err = l.CreateAccount(ctx, "alice"); err != nil {
				return err
			}
			if bob, err = l.CreateAccount(ctx, "bob"); err != nil {
				return err
			}
			_, err = l.AddReceivingAddress(ctx, alice.ID, "addr-alice", "")
			return err
		}},
		{name: "a deposit seen", do: deposit(1), events: true},
		{name: "the same observation again", do: deposit(1)},
		{name: "the deposit credited", do: deposit(3), events: true},
		{name: "an internal transfer, a statement on the pool", do: func() error {
			_, err := l.SendInternal(ctx, alice.ID, bob.ID, 1_000, "move-1")
			return err
		}, events: true},
		{name: "the transfer replayed", do: func() error {
			_, err := l.SendInternal(ctx, alice.ID, bob.ID, 1_000, "move-1")
			return err
		}},
		{name: "a transfer refused", do: func() error {
			_, err := l.SendInternal(ctx, alice.ID, bob.ID, 1_000_000, "move-2")
			return err
		}, refused: true},
		{name: "an external send queued", do: func() (err error) {
			send, err = l.SendExternal(ctx, alice.ID, "addr-shop", 2_000, "pay-1", false)
			return err
		}},
		{name: "the send cancelled", do: func() error {
			_, err := l.CancelSend(ctx, send.ID)
			return err
		}, events: true},
	} {
		before, calls := committed(), len(seen)
		if err := step.do(); (err != nil) != step.refused {
			t.Fatalf("%s: %v", step.name, err)
		}
		after := committed()
		switch {
		case (after > before) != step.events:
			t.Fatalf("%s: %d events before, %d after; the step is wrong, not the hook", step.name, before, after)
		case !step.events && len(seen) != calls:
			t.Errorf("%s: OnEvents called %d times for no new event", step.name, len(seen)-calls)
		case step.events && len(seen) != calls+1:
			t.Errorf("%s: OnEvents called %d times, want once", step.name, len(seen)-calls)
		case step.events && seen[calls] != after:
			t.Errorf("%s: OnEvents called when %d events were committed, want %d", step.name, seen[calls], after)
		}
	}
}

// TestNextRetry: the earliest retry still to come at a target, not one given up on (scheduled
// at infinity), another target's or another tenant's; zero when none is scheduled.
func TestNextRetry(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool, "app", "audit")
	if at, err := l.NextRetry(ctx, "app"); err != nil || !at.IsZero() {
		t.Fatalf("no events: %v %v", at, err)
	}
	seqs := addEvents(t, l, "app", 3)
	if at, err := l.NextRetry(ctx, "app"); err != nil || !at.IsZero() {
		t.Fatalf("events never tried: %v %v", at, err)
	}
	soon := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	for i, next := range []time.Time{soon.Add(time.Minute), soon, {}} {
		if err := l.MarkAttemptFailed(ctx, seqs[i], "app", "down", next); err != nil {
			t.Fatal(err)
		}
	}
	audit := addEvents(t, l, "audit", 1)
	if err := l.MarkAttemptFailed(ctx, audit[0], "audit", "down", soon.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if at, err := l.NextRetry(ctx, "app"); err != nil || !at.Equal(soon) {
		t.Fatalf("next retry at app: %v %v, want %v", at, err, soon)
	}
	if at, err := l.NextRetry(ctx, "audit"); err != nil || !at.Equal(soon.Add(-time.Minute)) {
		t.Fatalf("next retry at audit: %v %v, want %v", at, err, soon.Add(-time.Minute))
	}
	other, err := Open(ctx, pool, Options{Namespace: "payroll", Asset: "btc", Coin: "bitcoin", Network: "regtest", Confirmations: 3,
		MaxTrackedConfirmations: 6, ValidateAddress: testAddress, EventTargets: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	if at, err := other.NextRetry(ctx, "app"); err != nil || !at.IsZero() {
		t.Fatalf("another tenant's next retry: %v %v", at, err)
	}
}
