package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ExampleInstanceID is a syntactically valid EC2 instance ID usable as an ssh
// host alias with clients created by SSHD.Client.
const ExampleInstanceID = "i-0123456789abcdef0"

// DirectHost is an ssh host alias, defined in every generated client config,
// that connects straight to the test sshd over TCP (no ProxyCommand). Useful
// as a baseline in benchmarks.
const DirectHost = "testenv-direct"

// DefaultHostPatterns are the ssh_config Host patterns that get the caller's
// ProxyCommand, and for which the known_hosts file vouches for the sshd key.
var DefaultHostPatterns = []string{"i-*", "mi-*", "*.ssm"}

// SSHD is a real OpenSSH server on 127.0.0.1:<free port> with its own host
// key, accepting exactly one generated user key, running as the current user
// (root in CI) with a private config under tb.TempDir().
type SSHD struct {
	Addr string // "127.0.0.1:<port>"
	Port int
	Dir  string // private directory holding config, keys and log
	User string // user that clients log in as (the current user)

	ConfigPath     string // sshd_config
	LogPath        string // sshd stderr (-e), LogLevel as configured
	HostKeyPath    string // private host key
	HostKeyPublic  string // "ssh-ed25519 AAAA..." (no comment)
	ClientKeyPath  string // private user key accepted by this sshd (public key at +".pub")
	AuthorizedKeys string // authorized_keys path

	tb       testing.TB
	proc     *proc
	stopOnce sync.Once
}

// SSHDOptions customises StartSSHDWith.
type SSHDOptions struct {
	// ExtraConfig lines are added to sshd_config before the testenv
	// defaults, so they override them (sshd uses the first value of most
	// keywords). Lines from the first "Match" line on are appended at the
	// end instead, where Match blocks must live.
	ExtraConfig []string
	// LogLevel overrides the sshd LogLevel (default ERROR, or
	// $TESTENV_SSHD_LOGLEVEL if set; e.g. DEBUG1 when debugging).
	LogLevel string
	// InstanceConnect, if set, makes sshd also accept the keys an EC2
	// Instance Connect listing gives for the user logging in, through an
	// AuthorizedKeysCommand as on an instance (instanceconnect.go).
	InstanceConnect *InstanceConnect
	// NoAuthorizedKeys leaves the generated client key out of
	// authorized_keys, which is then empty: the key gets in only if
	// something else (InstanceConnect) vouches for it.
	NoAuthorizedKeys bool
}

// StartSSHD starts an sshd with default options. It fails the test (never
// skips) if OpenSSH is not installed.
func StartSSHD(tb testing.TB) *SSHD {
	tb.Helper()
	return StartSSHDWith(tb, SSHDOptions{})
}

// StartSSHDWith starts an sshd with the given options.
func StartSSHDWith(tb testing.TB, opts SSHDOptions) *SSHD {
	tb.Helper()
	sshdBin := Bin(tb, "sshd")
	keygen := Bin(tb, "ssh-keygen")
	Require(tb, "ssh")

	if os.Geteuid() == 0 {
		// Privilege separation directory; normally created by the init
		// script, which never runs in containers.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			tb.Fatalf("testenv: mkdir /run/sshd: %v (%s)", err, installHint)
		}
		warnIfRootLocked(tb)
	}

	dir := tb.TempDir()
	s := &SSHD{
		Dir:            dir,
		User:           CurrentUser(),
		ConfigPath:     filepath.Join(dir, "sshd_config"),
		LogPath:        filepath.Join(dir, "sshd.log"),
		HostKeyPath:    filepath.Join(dir, "ssh_host_ed25519_key"),
		ClientKeyPath:  filepath.Join(dir, "id_ed25519"),
		AuthorizedKeys: filepath.Join(dir, "authorized_keys"),
		tb:             tb,
	}
	genKey(tb, keygen, s.HostKeyPath, "testenv-host")
	genKey(tb, keygen, s.ClientKeyPath, "testenv-client")
	s.HostKeyPublic = readPubKey(tb, s.HostKeyPath+".pub")
	clientPub := readPubKey(tb, s.ClientKeyPath+".pub")
	authorized := clientPub + " testenv-client\n"
	if opts.NoAuthorizedKeys {
		authorized = ""
	}
	if err := os.WriteFile(s.AuthorizedKeys, []byte(authorized), 0o600); err != nil {
		tb.Fatalf("testenv: write authorized_keys: %v", err)
	}
	extra := opts.ExtraConfig
	if opts.InstanceConnect != nil { // before any Match line of ExtraConfig
		extra = append(opts.InstanceConnect.sshdConfig(tb), extra...)
	}

	logLevel := opts.LogLevel
	if logLevel == "" {
		logLevel = os.Getenv("TESTENV_SSHD_LOGLEVEL")
	}
	if logLevel == "" {
		logLevel = "ERROR"
	}
	penalties := sshdSupportsPerSourcePenalties(sshdBin)

	const attempts = 5
	for attempt := 1; ; attempt++ {
		s.Port = FreePort(tb)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		s.writeConfig(tb, logLevel, penalties, extra)

		logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			tb.Fatalf("testenv: open sshd log: %v", err)
		}
		fmt.Fprintf(logf, "=== testenv: starting sshd on %s (attempt %d)\n", s.Addr, attempt)
		// sshd re-execs itself and therefore needs an absolute path.
		cmd := exec.Command(sshdBin, "-D", "-e", "-f", s.ConfigPath)
		cmd.Stdout = logf
		cmd.Stderr = logf
		cmd.Dir = dir
		cmd.SysProcAttr = sysProcAttr(nil)
		p, err := startProc(cmd)
		logf.Close()
		if err != nil {
			tb.Fatalf("testenv: start sshd: %v", err)
		}
		s.proc = p

		err = waitSSHBanner(p, s.Addr, 15*time.Second)
		if err == nil {
			break
		}
		p.stop(syscall.SIGTERM, 2*time.Second)
		logTail := readTail(s.LogPath, 4000)
		if attempt < attempts && strings.Contains(logTail, "Address already in use") {
			continue // lost the FreePort race; try another port
		}
		tb.Fatalf("testenv: sshd did not become ready on %s: %v\nconfig: %s\nsshd log:\n%s", s.Addr, err, s.ConfigPath, logTail)
	}
	tb.Cleanup(s.Stop)
	return s
}

func (s *SSHD) writeConfig(tb testing.TB, logLevel string, penalties bool, extra []string) {
	tb.Helper()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# generated by internal/testenv")
	head, match := extra, []string(nil)
	for i, l := range extra {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "Match") {
			head, match = extra[:i], extra[i:]
			break
		}
	}
	for _, l := range head {
		w("%s", l)
	}
	w("ListenAddress 127.0.0.1")
	w("Port %d", s.Port)
	w("AddressFamily inet")
	w("HostKey %s", sshQuote(s.HostKeyPath))
	w("AuthorizedKeysFile %s", sshQuote(s.AuthorizedKeys))
	w("PidFile %s", sshQuote(filepath.Join(s.Dir, "sshd.pid")))
	w("UsePAM no")
	w("PermitRootLogin prohibit-password")
	w("StrictModes no")
	w("PubkeyAuthentication yes")
	w("PasswordAuthentication no")
	w("KbdInteractiveAuthentication no")
	w("HostbasedAuthentication no")
	w("UseDNS no")
	w("PrintMotd no")
	w("PrintLastLog no")
	w("X11Forwarding no")
	w("AllowTcpForwarding yes")
	w("AllowStreamLocalForwarding yes")
	w("PermitTTY yes")
	w("AcceptEnv *")
	w("Subsystem sftp internal-sftp")
	w("MaxStartups 100:30:200")
	w("MaxSessions 50")
	w("MaxAuthTries 6")
	w("LoginGraceTime 60")
	w("ClientAliveInterval 0")
	if penalties {
		// OpenSSH >= 9.8 penalises sources that fail auth or crash
		// sessions; every test client is 127.0.0.1.
		w("PerSourcePenalties no")
	}
	w("LogLevel %s", logLevel)
	for _, l := range match {
		w("%s", l)
	}
	if err := os.WriteFile(s.ConfigPath, []byte(b.String()), 0o600); err != nil {
		tb.Fatalf("testenv: write sshd_config: %v", err)
	}
}

// Stop stops the sshd (SIGTERM to the PID we started, SIGKILL after 5s). It is
// registered with tb.Cleanup and may be called more than once. Sessions that
// are still connected keep their own per-connection sshd process until the
// client disconnects.
func (s *SSHD) Stop() {
	s.stopOnce.Do(func() {
		if s.proc == nil {
			return
		}
		s.proc.stop(syscall.SIGTERM, 5*time.Second)
		if s.tb.Failed() {
			s.tb.Logf("testenv: sshd log (%s):\n%s", s.LogPath, readTail(s.LogPath, 8000))
		}
	})
}

// PID returns the process ID of the listening sshd.
func (s *SSHD) PID() int { return s.proc.pid() }

// Log returns the sshd log so far.
func (s *SSHD) Log() string { return readTail(s.LogPath, 1<<20) }

// SocatProxyCommand returns a ProxyCommand that relays straight to this sshd
// with socat; handy to test the harness (or a baseline) without SSM.
func (s *SSHD) SocatProxyCommand(tb testing.TB) string {
	tb.Helper()
	return Bin(tb, "socat") + " STDIO TCP:" + s.Addr
}

// KnownHostsLine returns a known_hosts line vouching for this sshd's host key
// under the given host patterns, plus [pattern]:* variants (ssh looks up
// "[host]:port" when the port is not 22), the DirectHost alias and the
// literal loopback address.
func (s *SSHD) KnownHostsLine(patterns []string) string {
	var names []string
	for _, p := range patterns {
		names = append(names, p, "["+p+"]:*")
	}
	names = append(names, DirectHost, "["+DirectHost+"]:*", "127.0.0.1", fmt.Sprintf("[127.0.0.1]:%d", s.Port))
	return strings.Join(names, ",") + " " + s.HostKeyPublic
}

func genKey(tb testing.TB, keygen, path, comment string) {
	tb.Helper()
	out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path).CombinedOutput()
	if err != nil {
		tb.Fatalf("testenv: ssh-keygen %s: %v\n%s", path, err, out)
	}
}

// readPubKey returns "type base64" from a .pub file, dropping the comment.
func readPubKey(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		tb.Fatalf("testenv: malformed public key %s: %q", path, b)
	}
	return f[0] + " " + f[1]
}

// waitSSHBanner waits until addr answers with an SSH banner, failing early if
// the process exits.
func waitSSHBanner(p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%w: %v", errExited, p.err)
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			if rerr == nil {
				// Answer with our own identification so sshd does not log
				// "kex_exchange_identification: Connection closed" at ERROR.
				_, _ = c.Write([]byte("SSH-2.0-testenv_probe\r\n"))
				time.Sleep(10 * time.Millisecond)
			}
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "SSH-2.0-") {
				if p.exited() { // someone else's server on our port?
					return fmt.Errorf("%w: %v", errExited, p.err)
				}
				return nil
			}
			lastErr = fmt.Errorf("bad banner %q: %v", line, rerr)
		} else {
			lastErr = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("timeout after %v: %v", timeout, lastErr)
}

var opensshVersionRE = regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`)

// sshdSupportsPerSourcePenalties reports whether sshd is OpenSSH >= 9.8.
func sshdSupportsPerSourcePenalties(sshdBin string) bool {
	out, _ := exec.Command(sshdBin, "-V").CombinedOutput() // exits non-zero on old versions
	m := opensshVersionRE.FindSubmatch(out)
	if m == nil {
		return false
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return major > 9 || (major == 9 && minor >= 8)
}

// warnIfRootLocked logs a hint when root's password field starts with "!":
// with UsePAM no, OpenSSH then refuses root logins even by public key
// ("account is locked", logged at INFO only).
func warnIfRootLocked(tb testing.TB) {
	tb.Helper()
	b, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) >= 2 && f[0] == CurrentUser() && strings.HasPrefix(f[1], "!") {
			tb.Logf("testenv: warning: the password of %q is locked (%q) in /etc/shadow; sshd with UsePAM no will refuse logins. Fix with: usermod -p '*' %s", f[0], f[1][:1], f[0])
		}
	}
}

// Client builds ssh/scp/rsync invocations using a generated ssh_config.
type Client struct {
	ConfigPath     string // ssh_config passed with -F
	KnownHostsPath string // UserKnownHostsFile
	IdentityFile   string // private key
	Dir            string // directory holding the generated files
	SSHD           *SSHD
	Host           string // a host alias routed through ProxyCommand (ExampleInstanceID)

	sshBin, scpBin, rsyncBin string
}

// ClientOptions customises SSHD.ClientWith.
type ClientOptions struct {
	// ProxyCommand for hosts matching HostPatterns (ssh tokens like %h %p
	// are expanded by ssh; write a literal % as %%). Empty means none.
	ProxyCommand string
	// HostPatterns default to DefaultHostPatterns (i-* mi-* *.ssm).
	HostPatterns []string
	// Extra ssh_config option lines (e.g. "SetEnv FOO=bar",
	// "ServerAliveInterval 5"). They apply to all hosts and take
	// precedence over the defaults written by testenv.
	Extra []string
}

// Client writes an ssh_config in which hosts i-*, mi-* and *.ssm use
// proxyCommand, log in as the sshd user with the generated key and verify the
// sshd host key (StrictHostKeyChecking yes, BatchMode yes, LogLevel ERROR).
// extra are additional ssh_config option lines (see ClientOptions.Extra).
func (s *SSHD) Client(tb testing.TB, proxyCommand string, extra ...string) *Client {
	tb.Helper()
	return s.ClientWith(tb, ClientOptions{ProxyCommand: proxyCommand, Extra: extra})
}

// ClientWith is Client with full options.
func (s *SSHD) ClientWith(tb testing.TB, opts ClientOptions) *Client {
	tb.Helper()
	patterns := opts.HostPatterns
	if len(patterns) == 0 {
		patterns = DefaultHostPatterns
	}
	dir := tb.TempDir()
	c := &Client{
		ConfigPath:     filepath.Join(dir, "ssh_config"),
		KnownHostsPath: filepath.Join(dir, "known_hosts"),
		IdentityFile:   s.ClientKeyPath,
		Dir:            dir,
		SSHD:           s,
		Host:           ExampleInstanceID,
		sshBin:         Bin(tb, "ssh"),
	}
	if err := os.WriteFile(c.KnownHostsPath, []byte(s.KnownHostsLine(patterns)+"\n"), 0o600); err != nil {
		tb.Fatalf("testenv: write known_hosts: %v", err)
	}

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# generated by internal/testenv")
	w("Host %s", strings.Join(patterns, " "))
	if opts.ProxyCommand != "" {
		w("  ProxyCommand %s", opts.ProxyCommand)
	}
	w("")
	w("Host %s", DirectHost)
	w("  HostName 127.0.0.1")
	w("  Port %d", s.Port)
	w("")
	w("Host *")
	for _, l := range opts.Extra {
		w("  %s", l)
	}
	w("  User %s", s.User)
	w("  IdentityFile %s", sshQuote(c.IdentityFile))
	w("  IdentitiesOnly yes")
	w("  IdentityAgent none")
	w("  UserKnownHostsFile %s", sshQuote(c.KnownHostsPath))
	w("  GlobalKnownHostsFile /dev/null")
	w("  StrictHostKeyChecking yes")
	w("  UpdateHostKeys no")
	w("  CheckHostIP no")
	w("  HashKnownHosts no")
	w("  BatchMode yes")
	w("  PasswordAuthentication no")
	w("  KbdInteractiveAuthentication no")
	w("  ControlMaster no")
	w("  ControlPath none")
	w("  ForwardAgent no")
	w("  ForwardX11 no")
	w("  LogLevel ERROR")
	if err := os.WriteFile(c.ConfigPath, []byte(b.String()), 0o600); err != nil {
		tb.Fatalf("testenv: write ssh_config: %v", err)
	}
	if p, err := LookPath("scp"); err == nil {
		c.scpBin = p
	}
	if p, err := LookPath("rsync"); err == nil {
		c.rsyncBin = p
	}
	return c
}

// waitDelay bounds how long Wait blocks on inherited pipes after ssh exits or
// is killed (the ProxyCommand child shares ssh's stderr).
const waitDelay = 10 * time.Second

// SSH returns `ssh -F <config> args...`.
func (c *Client) SSH(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.sshBin, append([]string{"-F", c.ConfigPath}, args...)...)
	cmd.WaitDelay = waitDelay
	return cmd
}

// SCP returns `scp -F <config> args...`. OpenSSH 9 scp uses the SFTP
// protocol by default (add -O for the legacy protocol).
func (c *Client) SCP(ctx context.Context, args ...string) *exec.Cmd {
	bin := c.scpBin
	if bin == "" {
		bin = "scp" // fails at Run with a clear "executable not found"
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"-F", c.ConfigPath}, args...)...)
	cmd.WaitDelay = waitDelay
	return cmd
}

// RemoteShell returns the ssh command line suitable for rsync -e,
// GIT_SSH_COMMAND and similar: `ssh -F <config>`.
func (c *Client) RemoteShell() string {
	return rsyncQuote(c.sshBin) + " -F " + rsyncQuote(c.ConfigPath)
}

// Rsync returns `rsync -e "ssh -F <config>" args...`.
func (c *Client) Rsync(ctx context.Context, args ...string) *exec.Cmd {
	bin := c.rsyncBin
	if bin == "" {
		bin = "rsync"
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"-e", c.RemoteShell()}, args...)...)
	cmd.WaitDelay = waitDelay
	return cmd
}
