// Package testenv provides a reusable end-to-end test environment for
// ssm-proxy: a real OpenSSH server on loopback, ssh/scp/rsync client
// invocations driven by a generated ssh_config, a throw-away PostgreSQL
// server, and helpers for deterministic test data.
//
// Everything listens on 127.0.0.1 only, lives under temporary directories and
// is torn down with tb.Cleanup. Processes are only ever stopped by the PID this
// package started. Missing binaries are a hard failure (tb.Fatal), never a
// skip: run .ci/install-deps.sh (or .ci/run) to install them.
//
// The package uses only the standard library and targets Linux (Debian 12 in
// CI), where tests usually run as root.
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// installHint is appended to every "binary missing" failure.
const installHint = "run .ci/run (or .ci/install-deps.sh as root), or: apt-get install -y openssh-server openssh-client rsync socat postgresql"

// packageFor maps binaries to the Debian package providing them (for error
// messages only).
var packageFor = map[string]string{
	"sshd":       "openssh-server",
	"ssh":        "openssh-client",
	"scp":        "openssh-client",
	"sftp":       "openssh-client",
	"ssh-keygen": "openssh-client",
	"rsync":      "rsync",
	"socat":      "socat",
	"psql":       "postgresql-client",
	"pg_isready": "postgresql-client",
	"initdb":     "postgresql",
	"postgres":   "postgresql",
	"curl":       "curl",
	"ssh-agent":  "openssh-client",
	"ssh-add":    "openssh-client",
}

// extraBinDirs are searched after $PATH; sshd lives in /usr/sbin which is not
// on a non-root user's PATH, and Debian keeps the PostgreSQL server binaries
// in /usr/lib/postgresql/<version>/bin.
var extraBinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"}

// LookPath finds a binary in $PATH, then in the sbin directories, then (for
// PostgreSQL tools) in the newest /usr/lib/postgresql/*/bin.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, nil
		}
		return p, nil
	}
	dirs := append([]string(nil), extraBinDirs...)
	if d, err := PostgresBinDir(); err == nil {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: executable not found in $PATH or %s", name, strings.Join(dirs, ", "))
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Bin returns the absolute path of a required binary or fails the test with
// an install hint.
func Bin(tb testing.TB, name string) string {
	tb.Helper()
	p, err := LookPath(name)
	if err != nil {
		tb.Fatalf("testenv: required binary %q not found (%v). It is provided by Debian package %q; %s",
			name, err, pkgName(name), installHint)
	}
	return p
}

func pkgName(bin string) string {
	if p, ok := packageFor[bin]; ok {
		return p
	}
	return bin
}

// Require fails the test (never skips) if any of bins is missing.
func Require(tb testing.TB, bins ...string) {
	tb.Helper()
	var missing []string
	for _, b := range bins {
		if _, err := LookPath(b); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", b, pkgName(b)))
		}
	}
	if len(missing) > 0 {
		tb.Fatalf("testenv: required binaries missing: %s; %s", strings.Join(missing, ", "), installHint)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Start functions in this package retry with a new port if they lose the race.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: FreePort: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		tb.Fatalf("testenv: FreePort: close: %v", err)
	}
	return port
}

// CurrentUser returns the login name of the user running the tests.
func CurrentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return strconv.Itoa(os.Geteuid())
}

// proc is a child process started by this package, identified by its PID.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
	once sync.Once
}

// startProc starts cmd and reaps it in the background.
func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the PID we started, waits up to grace, then SIGKILLs it.
// Safe to call more than once.
func (p *proc) stop(sig os.Signal, grace time.Duration) {
	p.once.Do(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
}

// readTail returns the last max bytes of a (log) file, for error messages.
func readTail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("<cannot read %s: %v>", path, err)
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "<empty>"
	}
	return s
}

// errExited is returned by wait loops when the child died during startup.
var errExited = errors.New("process exited during startup")

// sortVersionsDesc sorts dotted version strings numerically, newest first.
func sortVersionsDesc(vs []string) {
	key := func(v string) []int {
		var out []int
		for _, f := range strings.Split(v, ".") {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
		return out
	}
	sort.SliceStable(vs, func(i, j int) bool {
		a, b := key(vs[i]), key(vs[j])
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] > b[k]
			}
		}
		return len(a) > len(b)
	})
}

// sshQuote quotes a value for ssh_config if needed.
func sshQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'#") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// rsyncQuote quotes one argument of rsync's -e command (rsync splits on spaces
// and honours single/double quotes, not backslashes).
func rsyncQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'") {
		return s
	}
	if !strings.Contains(s, "'") {
		return "'" + s + "'"
	}
	return `"` + s + `"`
}
