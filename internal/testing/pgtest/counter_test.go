package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestCountingProxy: clients talk to the server through the proxy as they would directly, and
// it counts each session once and each request the server answers once, whichever protocol
// carried it.
func TestCountingProxy(t *testing.T) {
	ctx := context.Background()
	srv, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	counts, url := CountingProxy(t, srv.URL("postgres"))

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if got := counts.Sessions(); got != 1 {
		t.Errorf("one connection: %d sessions counted", got)
	}
	before := counts.Requests()
	for range 3 {
		if err := conn.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var sum int
	// Prepared once, then executed: the extended protocol's two round trips, each ending in
	// its Sync.
	if err := conn.QueryRow(ctx, "SELECT $1::int + 1", 41).Scan(&sum); err != nil || sum != 42 {
		t.Fatalf("a statement through the proxy: %d, %v", sum, err)
	}
	// A failed statement is answered too.
	if _, err := conn.Exec(ctx, "SELECT * FROM no_such_table"); err == nil {
		t.Fatal("a statement on a missing table succeeded")
	}
	if got, want := counts.Requests()-before, int64(3+2+1); got != want {
		t.Errorf("3 pings, a prepared statement and a failed one: %d requests counted, want %d", got, want)
	}
	// A batch of statements already prepared: the three go in one write, ended by one Sync.
	batch := func() error {
		b := &pgx.Batch{}
		for i := range 3 {
			b.Queue("SELECT $1::int", i)
		}
		return conn.SendBatch(ctx, b).Close()
	}
	if err := batch(); err != nil {
		t.Fatal(err)
	}
	before = counts.Requests()
	if err := batch(); err != nil {
		t.Fatal(err)
	}
	if got := counts.Requests() - before; got != 1 {
		t.Errorf("a batch of three prepared statements: %d requests counted, want 1", got)
	}

	second, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	second.Close(ctx)
	if got := counts.Sessions(); got != 2 {
		t.Errorf("a second connection: %d sessions counted, want 2", got)
	}
}
