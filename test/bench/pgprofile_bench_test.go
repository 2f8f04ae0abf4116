package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
)

// PostgreSQL's side of a benchmark, for BENCH_PG_PROFILE_DIR: the Go profiles show where the
// helper's own time goes, but most of a booking's is the server's, and there the costs are
// per statement and per row (index entries, the foreign keys' checks) where a CPU profile of
// the postmaster shows only executor functions.
//
// With BENCH_PG_PROFILE_DIR=DIR, the server of each benchmark that starts one runs with
// pg_stat_statements (nested statements too, so each foreign key's check query is counted, and
// planning time kept apart from execution) and auto_explain (EXPLAIN ANALYZE, with buffers and
// trigger times, of every statement that takes BENCH_PG_EXPLAIN_MS, default 5, or longer; 0 for
// all; "off" for none, so the statements' times are read without EXPLAIN ANALYZE's overhead).
// At the end it writes
//   - DIR/<benchmark>.statements: the statements by total time, over all the run's databases
//     (the baselines' too; BenchmarkHelperFootprint's, of its idle window only);
//   - DIR/<benchmark>.plans: the server's log, with auto_explain's plans;
//
// and logs the first statements and the time of each constraint's trigger in the plans. The
// instrumentation slows the server (EXPLAIN ANALYZE times every plan node), so ratios measured
// with it are not the benchmark's figures.

// pgStatementsListed is how many statements the .statements file lists; pgStatementsLogged, the
// benchmark's log.
const (
	pgStatementsListed = 40
	pgStatementsLogged = 8
)

// pgProfileSettings are the server settings BENCH_PG_PROFILE_DIR asks for; none without it.
func pgProfileSettings(b *testing.B) []string {
	if os.Getenv("BENCH_PG_PROFILE_DIR") == "" {
		return nil
	}
	statements := []string{
		"pg_stat_statements.track=all",
		"pg_stat_statements.track_planning=on",
	}
	ms, explain := explainMs(b)
	if !explain {
		// auto_explain with log_analyze instruments every statement, logged or not: off means
		// not loaded at all.
		return append([]string{"shared_preload_libraries=pg_stat_statements"}, statements...)
	}
	return append([]string{"shared_preload_libraries=pg_stat_statements,auto_explain"}, append(statements,
		"auto_explain.log_min_duration="+strconv.Itoa(ms)+"ms",
		"auto_explain.log_analyze=on",
		"auto_explain.log_buffers=on",
		"auto_explain.log_triggers=on",
		"auto_explain.log_nested_statements=on",
	)...)
}

// resetPGStatements starts pg_stat_statements' counts afresh, for a benchmark that profiles only
// part of its run (the footprint bench: the idle window, not the helpers' start-up).
func resetPGStatements(b *testing.B, srv *pgtest.Server) {
	ctx := context.Background()
	conn, err := pgStatementsConn(ctx, srv)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		b.Fatal(err)
	}
}

// pgStatementsConn connects to srv's maintenance database, where pg_stat_statements is read and
// reset, creating the extension there if it is not yet.
func pgStatementsConn(ctx context.Context, srv *pgtest.Server) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

// pgStatement is one statement's line of pg_stat_statements, summed over databases.
type pgStatement struct {
	calls, rows int64
	// totalMs is the time spent executing, planMs planning (a statement re-planned for each
	// call's values shows here, not in its execution).
	totalMs, planMs float64
	query           string
}

// writePGProfile writes the .statements and .plans files of the benchmark's server and logs their
// head. It runs before the server stops (the log goes with it).
func writePGProfile(b *testing.B, srv *pgtest.Server) {
	dir := os.Getenv("BENCH_PG_PROFILE_DIR")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	stmts, err := pgStatements(context.Background(), srv)
	if err != nil {
		b.Fatalf("reading pg_stat_statements: %v", err)
	}
	var list strings.Builder
	fmt.Fprintf(&list, "%10s %12s %10s %10s %10s  %s\n", "calls", "total ms", "mean ms", "plan ms", "rows", "statement")
	for i, s := range stmts {
		line := fmt.Sprintf("%10d %12.1f %10.3f %10.1f %10d  %s\n", s.calls, s.totalMs, s.totalMs/float64(max(s.calls, 1)), s.planMs, s.rows, s.query)
		list.WriteString(line)
		if i < pgStatementsLogged {
			b.Logf("PostgreSQL: %s", strings.TrimRight(shorten(line, 220), "\n"))
		}
	}
	statements, plans := filepath.Join(dir, b.Name()+".statements"), filepath.Join(dir, b.Name()+".plans")
	if err := os.WriteFile(statements, []byte(list.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := copyFile(srv.LogPath(), plans); err != nil {
		b.Fatalf("saving the server's log: %v", err)
	}
	triggers, err := triggerTimes(plans)
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range triggers {
		b.Logf("PostgreSQL, in the explained statements: trigger %s: %d calls, %.1f ms", t.name, t.calls, t.ms)
	}
	if ms, explain := explainMs(b); explain {
		b.Logf("PostgreSQL's statements in %s, plans of those over %d ms in %s", statements, ms, plans)
	} else {
		b.Logf("PostgreSQL's statements in %s, its log in %s (no plans: BENCH_PG_EXPLAIN_MS=off)", statements, plans)
	}
}

// explainMs is BENCH_PG_EXPLAIN_MS, the duration from which auto_explain logs a statement's
// plan: 5 ms unless set; 0 logs every statement's; explain is false for off.
func explainMs(b *testing.B) (ms int, explain bool) {
	s := os.Getenv("BENCH_PG_EXPLAIN_MS")
	switch s {
	case "":
		return 5, true
	case "off":
		return 0, false
	}
	ms, err := strconv.Atoi(s)
	if err != nil || ms < 0 {
		b.Fatalf("BENCH_PG_EXPLAIN_MS=%q is neither a number of milliseconds nor off", s)
	}
	return ms, true
}

// pgStatements reads pg_stat_statements, summed by statement text over databases, slowest first,
// without the schema's migrations, the databases' creation and the extension's own scripts.
func pgStatements(ctx context.Context, srv *pgtest.Server) ([]pgStatement, error) {
	conn, err := pgStatementsConn(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT sum(calls)::bigint, sum(rows)::bigint, sum(total_exec_time), sum(total_plan_time), q
		FROM (SELECT calls, rows, total_exec_time, total_plan_time, regexp_replace(query, '\s+', ' ', 'g') AS q FROM pg_stat_statements) s
		WHERE q !~* '^ ?(--.*)?(CREATE|ALTER|DROP|COMMENT) ' AND q !~ 'pg_stat_statements'
		GROUP BY q ORDER BY 3 DESC LIMIT $1`, pgStatementsListed)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (pgStatement, error) {
		var s pgStatement
		err := row.Scan(&s.calls, &s.rows, &s.totalMs, &s.planMs, &s.query)
		return s, err
	})
}

// triggerTime is the time auto_explain's plans give one trigger, summed.
type triggerTime struct {
	name  string
	calls int64
	ms    float64
}

var triggerLine = regexp.MustCompile(`^\s*Trigger (?:for constraint )?(\S+?)(?: on \S+)?: time=([0-9.]+) calls=([0-9]+)`)

// triggerTimes sums the trigger lines of the plans in a server log, slowest first.
func triggerTimes(log string) ([]triggerTime, error) {
	f, err := os.Open(log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sums := map[string]*triggerTime{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20) // a plan line can list a thousand ids
	for sc.Scan() {
		m := triggerLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ms, _ := strconv.ParseFloat(m[2], 64)
		calls, _ := strconv.ParseInt(m[3], 10, 64)
		t := sums[m[1]]
		if t == nil {
			t = &triggerTime{name: m[1]}
			sums[m[1]] = t
		}
		t.ms += ms
		t.calls += calls
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", log, err)
	}
	out := make([]triggerTime, 0, len(sums))
	for _, t := range sums {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b triggerTime) int { return cmp.Compare(b.ms, a.ms) })
	return out, nil
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
