package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Postgres is a throw-away PostgreSQL server on 127.0.0.1:<free port> with
// trust authentication. When the tests run as root (PostgreSQL refuses to run
// as root), initdb and postgres run as an unprivileged OS user, see OSUser.
type Postgres struct {
	Host     string // "127.0.0.1"
	Port     int
	Dir      string // base directory (data dir, unix socket, logs)
	DataDir  string // Dir/data
	User     string // database superuser ("postgres"), trust auth
	Database string // "postgres"
	OSUser   string // OS user the server runs as
	BinDir   string // directory with initdb, postgres, psql
	LogPath  string // server log

	tb       testing.TB
	proc     *proc
	stopOnce sync.Once
}

// PostgresBinDir locates the PostgreSQL server binaries: $TESTENV_PG_BINDIR,
// the directory of initdb on $PATH, or the newest /usr/lib/postgresql/*/bin
// (Debian keeps them there, off $PATH).
func PostgresBinDir() (string, error) {
	if d := os.Getenv("TESTENV_PG_BINDIR"); d != "" {
		if isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
		return "", fmt.Errorf("TESTENV_PG_BINDIR=%s has no postgres binary", d)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	var versions []string
	for _, m := range matches {
		versions = append(versions, filepath.Base(filepath.Dir(filepath.Dir(m))))
	}
	sortVersionsDesc(versions)
	for _, v := range versions {
		d := filepath.Join("/usr/lib/postgresql", v, "bin")
		if isExecutable(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	for _, d := range []string{"/usr/local/pgsql/bin", "/usr/pgsql/bin"} {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found on $PATH or in /usr/lib/postgresql/*/bin")
}

// StartPostgres runs initdb in a fresh directory and starts postgres on
// 127.0.0.1:<free port>. It fails the test (never skips) if PostgreSQL is not
// installed.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	binDir, err := PostgresBinDir()
	if err != nil {
		tb.Fatalf("testenv: %v; %s", err, installHint)
	}
	for _, b := range []string{"initdb", "postgres"} {
		if !isExecutable(filepath.Join(binDir, b)) {
			tb.Fatalf("testenv: %s missing in %s; %s", b, binDir, installHint)
		}
	}

	p := &Postgres{
		Host:     "127.0.0.1",
		User:     "postgres",
		Database: "postgres",
		BinDir:   binDir,
		OSUser:   CurrentUser(),
		tb:       tb,
	}

	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, c, err := unprivilegedUser()
		if err != nil {
			tb.Fatalf("testenv: postgres refuses to run as root and no unprivileged user is usable: %v", err)
		}
		cred, p.OSUser = c, u
		// t.TempDir() lives under a 0700 root-owned directory the
		// unprivileged user cannot traverse, so make our own directory
		// and hand it over.
		dir, err := os.MkdirTemp(traversableTempRoot(), "testenv-pg-")
		if err != nil {
			tb.Fatalf("testenv: %v", err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatalf("testenv: chown %s: %v", dir, err)
		}
		p.Dir = dir
	} else {
		p.Dir = tb.TempDir()
	}
	p.DataDir = filepath.Join(p.Dir, "data")
	p.LogPath = filepath.Join(p.Dir, "postgres.log")
	initLog := filepath.Join(p.Dir, "initdb.log")

	env := pgEnv(p.Dir)
	run := func(logPath string, name string, args ...string) (*exec.Cmd, *os.File) {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			tb.Fatalf("testenv: %v", err)
		}
		cmd := exec.Command(filepath.Join(binDir, name), args...)
		cmd.Dir = p.Dir // the cwd must be accessible to the unprivileged user
		cmd.Env = env
		cmd.Stdout = f
		cmd.Stderr = f
		cmd.SysProcAttr = sysProcAttr(cred)
		return cmd, f
	}

	start := time.Now()
	cmd, f := run(initLog, "initdb",
		"-D", p.DataDir, "-U", p.User, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	err = cmd.Run()
	f.Close()
	if err != nil {
		tb.Fatalf("testenv: initdb (as %s) failed: %v\n%s", p.OSUser, err, readTail(initLog, 4000))
	}

	// Unix sockets are limited to ~107 bytes; fall back to TCP only.
	sockDir := p.Dir
	if len(sockDir)+len("/.s.PGSQL.65535") >= 100 {
		sockDir = ""
	}

	const attempts = 5
	for attempt := 1; ; attempt++ {
		p.Port = FreePort(tb)
		cmd, f := run(p.LogPath, "postgres",
			"-D", p.DataDir,
			"-p", strconv.Itoa(p.Port),
			"-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories="+sockDir,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "logging_collector=off",
			"-c", "max_connections=100",
			"-c", "shared_buffers=32MB",
		)
		fmt.Fprintf(f, "=== testenv: starting postgres on 127.0.0.1:%d as %s (attempt %d)\n", p.Port, p.OSUser, attempt)
		pr, err := startProc(cmd)
		f.Close()
		if err != nil {
			tb.Fatalf("testenv: start postgres as %s: %v", p.OSUser, err)
		}
		p.proc = pr
		err = p.waitReady(30 * time.Second)
		if err == nil {
			break
		}
		pr.stop(syscall.SIGQUIT, 3*time.Second)
		logTail := readTail(p.LogPath, 4000)
		if attempt < attempts && strings.Contains(logTail, "already in use") {
			continue // lost the FreePort race
		}
		tb.Fatalf("testenv: postgres did not become ready on 127.0.0.1:%d: %v\nlog:\n%s", p.Port, err, logTail)
	}
	tb.Cleanup(p.Stop)
	tb.Logf("testenv: postgres ready on %s as OS user %s in %v", p.Addr(), p.OSUser, time.Since(start).Round(time.Millisecond))
	return p
}

// waitReady waits for the server to accept TCP connections and queries,
// using pg_isready when available, else the "ready to accept connections" log
// line.
func (p *Postgres) waitReady(timeout time.Duration) error {
	isready := filepath.Join(p.BinDir, "pg_isready")
	haveIsready := isExecutable(isready)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.proc.exited() {
			return fmt.Errorf("%w: %v", errExited, p.proc.err)
		}
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err == nil {
			c.Close()
			if haveIsready {
				cmd := exec.Command(isready, "-q", "-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", p.User, "-d", p.Database, "-t", "2")
				cmd.Env = pgEnv(p.Dir)
				if cmd.Run() == nil && !p.proc.exited() {
					return nil
				}
			} else if b, _ := os.ReadFile(p.LogPath); strings.Contains(string(b), "ready to accept connections") {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("timeout after %v", timeout)
}

// Stop shuts the server down (SIGINT = fast shutdown to the PID we started,
// SIGKILL after 10s). Registered with tb.Cleanup; safe to call twice.
func (p *Postgres) Stop() {
	p.stopOnce.Do(func() {
		if p.proc == nil {
			return
		}
		p.proc.stop(syscall.SIGINT, 10*time.Second)
		if p.tb.Failed() {
			p.tb.Logf("testenv: postgres log (%s):\n%s", p.LogPath, readTail(p.LogPath, 8000))
		}
	})
}

// PID returns the postmaster's process ID.
func (p *Postgres) PID() int { return p.proc.pid() }

// Addr returns "127.0.0.1:<port>".
func (p *Postgres) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// DSN returns a libpq keyword/value connection string.
func (p *Postgres) DSN() string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", p.Host, p.Port, p.User, p.Database)
}

// URL returns a postgres:// connection URL.
func (p *Postgres) URL() string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", p.User, p.Addr(), p.Database)
}

// PSQLBin returns the psql matching the server version if present, else psql
// from $PATH (Debian's /usr/bin/psql wrapper).
func (p *Postgres) PSQLBin() string {
	if b := filepath.Join(p.BinDir, "psql"); isExecutable(b) {
		return b
	}
	if b, err := LookPath("psql"); err == nil {
		return b
	}
	return "psql"
}

// PSQL returns `psql -X -h 127.0.0.1 -p <port> -U <user> -d <db> args...`
// (running as the current user; authentication is trust over TCP). Pass a
// different -h/-p after the defaults to go through a tunnel instead: psql
// uses the last occurrence.
func (p *Postgres) PSQL(ctx context.Context, args ...string) *exec.Cmd {
	base := []string{"-X", "-v", "ON_ERROR_STOP=1", "-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", p.User, "-d", p.Database}
	cmd := exec.CommandContext(ctx, p.PSQLBin(), append(base, args...)...)
	cmd.Env = pgEnv("")
	cmd.WaitDelay = waitDelay
	return cmd
}

// pgEnv is the environment for PostgreSQL tools: no PG* variables from the
// caller, C locale, and HOME set to home (if non-empty) so nothing touches
// the invoking user's home directory.
func pgEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || k == "LANG" || strings.HasPrefix(k, "LC_") || (home != "" && k == "HOME") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LANG=C", "LC_ALL=C")
	if home != "" {
		env = append(env, "HOME="+home)
	}
	return env
}

// unprivilegedUser picks the OS user to run PostgreSQL as when we are root:
// $TESTENV_PG_OSUSER, else "postgres" (created by Debian's postgresql-common),
// else "nobody". It returns a credential with that user's primary group as
// the only supplementary group.
func unprivilegedUser() (string, *syscall.Credential, error) {
	candidates := []string{"postgres", "nobody"}
	if u := os.Getenv("TESTENV_PG_OSUSER"); u != "" {
		candidates = []string{u}
	}
	var errs []error
	for _, name := range candidates {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			errs = append(errs, fmt.Errorf("user %s: unusable uid/gid %s/%s", name, u.Uid, u.Gid))
			continue
		}
		return name, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}, nil
	}
	return "", nil, errors.Join(errs...)
}

// traversableTempRoot returns os.TempDir() if every ancestor is
// world-searchable (so an unprivileged user can reach a directory we chown to
// it), else /tmp.
func traversableTempRoot() string {
	dir := os.TempDir()
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}
