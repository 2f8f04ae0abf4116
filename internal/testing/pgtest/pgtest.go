// Package pgtest starts a throwaway PostgreSQL server for tests: initdb in a temporary directory,
// a free loopback port, fsync off, and a fresh database per test. It uses the PostgreSQL binaries
// on the machine (PG_BIN, or the newest /usr/lib/postgresql/*/bin). When run as root it runs the
// server as the postgres user, since PostgreSQL refuses to run as root.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/testing/loopback"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/proc"
	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL.
type Server struct {
	dir  string
	port int
	// host is an extra address it listens on (besides 127.0.0.1), for clients in pods.
	host string
	cmd  *exec.Cmd
	exit chan error
	dbs  atomic.Int64
	// What launch needs to start the server again after Down.
	bin, listen string
	attr        *syscall.SysProcAttr
	maxConns    int
	settings    []string
	// tlsDir holds StartTLS's certificate and key, outside the data directory.
	tlsDir string
}

const superuser = "cryptoassets"

func binDir() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL binaries: set PG_BIN or install postgresql (initdb, postgres)")
}

// credential runs the server as the postgres user when we are root.
func credential(dir string) (*syscall.SysProcAttr, error) {
	// Pdeathsig: a test binary that panics or times out must not leave a server running.
	if os.Geteuid() != 0 {
		return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Pdeathsig: syscall.SIGKILL}, nil
}

// Start initialises and starts a server on 127.0.0.1. Stop it with Stop.
func Start() (*Server, error) { return StartOn("") }

// StartSized is Start with room for maxConnections clients (Start allows 200), for runs of many
// helpers on one database, and with StartWith's settings if any.
func StartSized(maxConnections int, settings ...string) (*Server, error) {
	return start("", maxConnections, settings...)
}

// StartOn starts a server that also listens on host and trusts clients of host's subnet: pods on
// a node's bridge reach it at the bridge's address (they cannot reach 127.0.0.1 on the host).
func StartOn(host string) (*Server, error) { return start(host, 200) }

// StartWith is Start with more server settings, each name=value as `postgres -c` takes it: for
// diagnostics such as pg_stat_statements or auto_explain, whose output LogPath holds.
func StartWith(settings ...string) (*Server, error) {
	return start("", 200, settings...)
}

func start(host string, maxConns int, settings ...string) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	attr, err := credential(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", superuser, "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C")
	initdb.SysProcAttr = attr
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	port, err := loopback.FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	listen := "127.0.0.1"
	if host != "" {
		listen += "," + host
		hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, err = hba.WriteString("host all all samenet trust\n")
			hba.Close()
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pg_hba.conf: %w", err)
		}
	}
	s := &Server{dir: dir, port: port, host: host, bin: bin, attr: attr, listen: listen, maxConns: maxConns, settings: settings}
	if err := s.launch(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// launch starts the server process on the data directory and waits until it takes connections.
func (s *Server) launch() error {
	s.exit = make(chan error, 1)
	args := []string{"-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=" + s.listen, "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=" + strconv.Itoa(s.maxConns), "-c", "log_min_messages=warning"}
	for _, setting := range s.settings {
		args = append(args, "-c", setting)
	}
	s.cmd = exec.Command(filepath.Join(s.bin, "postgres"), args...)
	s.cmd.SysProcAttr = s.attr
	logFile, err := os.OpenFile(s.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting postgres: %w", err)
	}
	exit := s.exit
	go func() { exit <- s.cmd.Wait(); logFile.Close() }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(context.Background(), s.URL("postgres"))
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case werr := <-exit:
			log, _ := os.ReadFile(s.LogPath())
			return fmt.Errorf("postgres exited (%v): %s", werr, log)
		default:
		}
		if time.Now().After(deadline) {
			s.shutdown()
			return fmt.Errorf("postgres did not accept connections within 30s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shutdown stops the server process (fast shutdown: sessions are ended, as `pg_ctl stop -m fast`
// does) and keeps its data.
func (s *Server) shutdown() {
	if s.cmd == nil {
		return
	}
	proc.Stop(s.cmd.Process, syscall.SIGINT, 15*time.Second, s.exit)
	s.cmd = nil
}

// PID is the postmaster's process id (0 while the server is down); the backends serving
// connections are its children.
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Down stops the server and keeps its data, as a database restart or outage does to clients.
func (s *Server) Down() { s.shutdown() }

// Up starts a server stopped by Down on the same port and data, and waits for it.
func (s *Server) Up() error { return s.launch() }

// URL is the connection URL of database db.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.port, db)
}

// PodURL is the URL of database db at the extra address StartOn gave, for clients in pods.
func (s *Server) PodURL(db string) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", superuser, s.host, s.port, db)
}

// LogPath is the server's log file (warnings and errors, and what settings such as auto_explain
// log); it is removed with the server by Stop.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "postgres.log") }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return s.URL(name), nil
}

// Database is NewDatabase for a test, failing it on error.
func (s *Server) Database(t testing.TB) string {
	t.Helper()
	url, err := s.NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// Stop shuts the server down (fast shutdown) and removes its directory.
func (s *Server) Stop() {
	s.shutdown()
	os.RemoveAll(s.dir)
	if s.tlsDir != "" {
		os.RemoveAll(s.tlsDir)
	}
}
