package ledger

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey serialises concurrent initializedb runs (two helper pods starting at once).
const migrationLockKey = 0x63727970746f6462 // "cryptodb"

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: versions must run 1, 2, 3... without gaps", m.name)
		}
	}
	return out, nil
}

// SchemaVersion is the newest schema this binary knows.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Migrate brings the schema to SchemaVersion. It is idempotent, safe to run from several processes
// at once, applies each migration in its own transaction, and refuses a database whose schema is
// newer than this binary knows (an older helper must not write to a newer ledger).
func Migrate(ctx context.Context, pool *pgxpool.Pool) (applied []string, err error) {
	return migrate(ctx, pool, SchemaVersion())
}

// migrate brings the schema to version upTo; tests of a migration start below it.
func migrate(ctx context.Context, pool *pgxpool.Pool, upTo int) (applied []string, err error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	if upTo < 1 || upTo > len(ms) {
		return nil, fmt.Errorf("there is no schema version %d", upTo)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to the ledger database: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLockKey)); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrationLockKey))
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS cryptoassets_schema (
		version    integer PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("creating the schema version table: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM cryptoassets_schema").Scan(&current); err != nil {
		return nil, fmt.Errorf("reading the schema version: %w", err)
	}
	if latest := ms[len(ms)-1].version; current > latest {
		return nil, fmt.Errorf("the ledger schema is at version %d, newer than this binary's %d: upgrade cryptoassets", current, latest)
	}
	for _, m := range ms[min(current, upTo):upTo] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO cryptoassets_schema (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("applying migration %s: %w", m.name, err)
		}
		applied = append(applied, m.name)
	}
	return applied, nil
}

// CheckSchema fails unless the database is at exactly this binary's schema version.
func CheckSchema(ctx context.Context, pool *pgxpool.Pool) error {
	var current int
	err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM cryptoassets_schema").Scan(&current)
	if err != nil {
		return fmt.Errorf("reading the ledger schema version (has initializedb run?): %w", err)
	}
	if want := SchemaVersion(); current != want {
		return fmt.Errorf("the ledger schema is at version %d, this binary needs %d: run `cryptoassets initializedb`", current, want)
	}
	return nil
}

// PoolIdleTime is how long a pool connection stays open unused, at the least: it is closed at
// the pool's next check after that, within another PoolIdleTime.
const PoolIdleTime = time.Minute

// PoolConfig parses the ledger database's URL and sizes the pool: the one place the helper and
// the maintenance commands set up their connections. pgx's own parse error can quote the URL,
// password included, so the error says what is wrong without it.
func PoolConfig(url string, maxConns int32) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errors.New("database.urlFile does not hold a valid PostgreSQL URL (postgres://user:password@host:5432/db?sslmode=...)")
	}
	if maxConns > 0 {
		pc.MaxConns = maxConns
	}
	closeIdle(pc, PoolIdleTime)
	pc.ShouldPing = shouldPing
	return pc, nil
}

// shouldPing decides whether the pool pings a connection before it hands it out. pgxpool pings
// every one idle for over a second, which made a ping of every idle helper's every poll, broadcast
// check and outbox read: about a quarter of the round trips an idle helper sends its database
// (BenchmarkHelperFootprint, pg-requests/helper/min). What that ping is for is a connection the
// server ended while it sat idle, and a peek at its socket finds that without asking the server;
// the ping stays for a connection whose socket cannot be looked at or that the server spoke on
// (through TLS as in the clear).
func shouldPing(_ context.Context, p pgxpool.ShouldPingParams) bool {
	if p.IdleDuration <= time.Second {
		return false
	}
	// A closed connection is pinged too: the ping fails at once, and the pool then drops it and
	// hands out another, as it would have with pgxpool's rule.
	return idleState(p.Conn) != connQuiet
}

// closeIdle makes pc's pool hold only what it uses: maxConns is a ceiling for bursts (API
// traffic, a catch-up beside a broadcast), not what an idle helper holds. Many helpers share one
// database, so a connection left unused for idle is closed, and nothing is opened in advance.
//
// The pool closes idle connections when it checks its health, and every check hands the idle
// ones back in the reverse of the order it found them, so the one used least becomes the next
// one taken. Checked more often than idle, a helper's one-at-a-time users (a poll, a ping, the
// dispatcher) took each of its connections in turn, and the two or three a start-up burst opened
// stayed open for good: 2.84 connections per idle helper of 50 (BenchmarkHelperFootprint).
// Checked once per idle period, a connection unused over a whole period between two checks has
// been idle for longer than that at the second one, and is closed there: 2.04, the lock's and
// one pool connection.
func closeIdle(pc *pgxpool.Config, idle time.Duration) {
	pc.MinConns = 0
	pc.MaxConnIdleTime = idle
	pc.HealthCheckPeriod = idle
}
