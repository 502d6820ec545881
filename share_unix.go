//go:build unix

package main

// Shared sessions: `ssm-proxy --share DUR TARGET PORT` carries each ssh
// connection as one smux stream of a port-forwarding session that a
// background ssm-proxy (the hidden command shareServeCommand) keeps open
// for TARGET and PORT while it is used, and DUR after the last connection
// ends. The first connection starts that process and waits until it is
// ready; every later one reaches it through a Unix socket and pays no
// StartSession, TLS or websocket of its own: what ControlPersist does for
// one ssh, for every tool that runs ssh (Ansible without ControlPersist,
// scp and rsync loops, git).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/forward"
	"github.com/ssm-proxy/ssm-proxy/internal/share"
)

// shareServeCommand is the hidden command of the shared process.
const shareServeCommand = "__share"

// shareStartTimeout bounds the wait for a shared session to start: more
// than StartSession's own bound and a handshake.
const shareStartTimeout = 90 * time.Second

// proxyShared is the ProxyCommand with --share: connect to the shared
// session of args (the command line as given, the socket's identity),
// starting it first when there is none.
func (c *cli) proxyShared(ctx context.Context, o options, args []string, log *slog.Logger) int {
	var fdOut *os.File
	if o.fdpass {
		// Before anything starts: a session for an ssh that cannot take
		// the socket would only idle out.
		var err error
		if fdOut, err = fdpassStdout(c.stdout); err != nil {
			return c.shareFailed(err, o)
		}
	}
	dir, err := share.Dir()
	if err != nil {
		return c.shareFailed(err, o)
	}
	exe, err := os.Executable()
	if err != nil {
		return c.shareFailed(fmt.Errorf("--share: %w", err), o)
	}
	sock := share.Socket(dir, shareKey(exe, args)...)
	conn, err := dialShared(sock)
	if err != nil {
		warm := func(ctx context.Context) error { return c.warmMFA(ctx, o, log) }
		if conn, err = c.startShared(ctx, exe, sock, args, warm, log); err != nil {
			var st shareStatus
			if errors.As(err, &st) {
				return int(st) // the shared process has said why
			}
			return c.shareFailed(err, o)
		}
	} else {
		log.Debug("using the shared session", "socket", sock)
	}
	defer conn.Close()
	if fdOut != nil {
		if err := passConn(fdOut, conn); err != nil {
			return c.shareFailed(err, o)
		}
		log.Debug("passed the shared session's connection to ssh")
		return exitOK
	}
	in, out, restore := sessionStdio(c.stdin, c.stdout, log)
	defer restore()
	select {
	case <-ctx.Done():
		return exitOK // withSignals' code wins in the caller
	case d := <-carryStdio(in, out, conn):
		if d.err != nil {
			return c.shareFailed(fmt.Errorf("the shared session's connection: %w", d.err), o)
		}
		if d.n == 0 {
			return c.shareFailed(fmt.Errorf("the shared session closed the connection before any byte came back (its log: %s.log)", sock), o)
		}
		return exitOK
	}
}

func (c *cli) shareFailed(err error, o options) int {
	reportError(c.stderr, err, o, &used{}, false)
	return exitError
}

// fdpassStdout returns stdout if it is the socket ssh gives a ProxyCommand
// with ProxyUseFdpass yes.
func fdpassStdout(stdout io.Writer) (*os.File, error) {
	notSocket := errors.New("--fdpass: stdout is not a socket: ssh passes one only with ProxyUseFdpass yes in ssh_config (or leave --fdpass out)")
	out, ok := stdout.(*os.File)
	if !ok {
		return nil, notSocket
	}
	fi, err := out.Stat()
	if err != nil || fi.Mode().Type() != os.ModeSocket {
		return nil, notSocket
	}
	return out, nil
}

// passConn hands conn to ssh (ProxyUseFdpass yes): its descriptor, in
// blocking mode, over out, the socket ssh gave the ProxyCommand. ssh then
// reads and writes the shared session's socket itself, and this process
// exits: no copy through it, nothing of it left running.
func passConn(out *os.File, conn *net.UnixConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if serr = syscall.SetNonblock(int(fd), false); serr == nil {
			serr = syscall.Sendmsg(int(out.Fd()), []byte{0}, syscall.UnixRights(int(fd)), nil, 0)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("--fdpass: pass the connection to ssh: %w", err)
	}
	return nil
}

// warmMFA resolves the credentials here, before the shared process starts,
// when the profile assumes a role with MFA: that process has no terminal
// to ask for the code on, and finds the role's credentials in the cache
// this fills. Other configurations are left to the shared process, which
// reports their failures as a ProxyCommand would.
func (c *cli) warmMFA(ctx context.Context, o options, log *slog.Logger) error {
	u := &used{}
	cfg, err := c.loadAWS(ctx, o, u, log)
	if err != nil || u.aws.MFASerial == "" || cfg.Credentials == nil {
		return nil
	}
	log.Debug("asking for the MFA code before the shared session starts", "profile", u.aws.Profile)
	_, err = cfg.Credentials.Retrieve(ctx)
	return err
}

// shareStatus is the exit status of a shared process that failed to start;
// it has printed why on the waiting client's stderr.
type shareStatus int

func (s shareStatus) Error() string {
	return fmt.Sprintf("the shared session exited with status %d", int(s))
}

// shareKey is what tells shared sessions apart: the command line and the
// AWS environment it reads (not its secrets: the access key id stands for
// the credentials), and the binary.
func shareKey(exe string, args []string) []string {
	parts := []string{exe, version(), strings.Join(args, "\x01")}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") && k != "AWS_SECRET_ACCESS_KEY" && k != "AWS_SESSION_TOKEN" && k != "AWS_SECURITY_TOKEN" {
			parts = append(parts, kv)
		}
	}
	return parts
}

// dialShared connects to the shared session's socket.
func dialShared(sock string) (*net.UnixConn, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// startShared starts the shared process for sock under its lock (unless
// another has started it meanwhile) and connects to it. The process's
// start-up diagnostics come to this process's stderr, so that a failure
// reads as it would without --share; its later ones go to sock.log.
func (c *cli) startShared(ctx context.Context, exe, sock string, args []string, warm func(context.Context) error, log *slog.Logger) (*net.UnixConn, error) {
	ctx, cancel := context.WithTimeout(ctx, shareStartTimeout)
	defer cancel()
	unlock, err := share.Lock(ctx, sock)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if conn, err := dialShared(sock); err == nil {
		return conn, nil // started by another while this one waited
	}
	if err := warm(ctx); err != nil {
		return nil, err
	}
	os.Remove(sock) // a stale socket: its process has gone
	// A new file, not a truncated one: a process that ended idle may still
	// be writing its last lines to the old one.
	os.Remove(sock + ".log")
	logf, err := os.OpenFile(sock+".log", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd := exec.Command(exe, append([]string{shareServeCommand, sock}, args...)...)
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{pw} // fd 3: start-up diagnostics, closed when ready
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return nil, fmt.Errorf("start the shared session: %w", err)
	}
	log.Debug("starting a shared session", "socket", sock, "pid", cmd.Process.Pid)
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	copied := make(chan struct{})
	go func() {
		io.Copy(c.stderr, pr)
		close(copied)
	}()
	select {
	case <-copied:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM) // ours, by its PID: it terminates its session
		return nil, fmt.Errorf("the shared session did not start: %w", context.Cause(ctx))
	}
	if conn, err := dialShared(sock); err == nil {
		return conn, nil
	}
	select {
	case <-exited:
		if code := cmd.ProcessState.ExitCode(); code > 0 {
			return nil, shareStatus(code) // it has said why
		}
		// Killed by a signal (exit code -1), or ended without error
		// before it listened: nothing was printed.
		return nil, fmt.Errorf("the shared session ended (%s) before it listened on %s (its log: %s.log)", cmd.ProcessState, sock, sock)
	case <-time.After(10 * time.Second):
		cmd.Process.Signal(syscall.SIGTERM)
		return nil, fmt.Errorf("the shared session closed its diagnostics but does not listen on %s", sock)
	}
}

// shareServe runs the shared process: `ssm-proxy __share SOCKET ARGS...`,
// ARGS being the ProxyCommand's. It starts the session, listens on SOCKET,
// writes its PID to SOCKET.pid, closes fd 3 (its start-up stderr, read by
// the client that started it), and serves connections until none has come for --share.
func (c *cli) shareServe(ctx context.Context, args []string) int {
	if len(args) < 1 {
		return c.usageError(errors.New("want SOCKET and the ProxyCommand's arguments"))
	}
	sock := args[0]
	status := os.NewFile(3, "start-up stderr")
	if status == nil {
		return c.usageError(errors.New("fd 3 (start-up stderr) is not open"))
	}
	// Not for children (a credential_process): the client reads fd 3 to
	// its end, which one of theirs still holding it would postpone.
	syscall.CloseOnExec(3)
	catchSIGPIPE()
	sw := &switchWriter{w: status}
	later := c.stderr
	c.stderr = sw
	p, code, ok := c.parseProxy(args[1:])
	if !ok {
		return code
	}
	log := newLogger(c.stderr, p.o.verbose)
	ctx, sig := withSignals(ctx)
	u := &used{target: p.name}
	pidFile := sock + ".pid"
	ready := func() {
		os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
		sw.set(later)
		status.Close()
		// Measured over 40 ssh connections: 5.6 ms of the shared
		// process's CPU each on one P, 8.3 ms on two, the difference
		// being threads handing goroutines to each other.
		onOneP(log, "serving the shared socket")
	}
	defer removeOwnPIDFile(pidFile)
	err := c.serveShared(ctx, p, u, sock, ready, log)
	if n := sig(); n != 0 {
		return exitSignalsBase + n
	}
	if err == nil {
		return exitOK
	}
	code = exitCode(err)
	reportError(c.stderr, err, p.o, u, code == exitError)
	return code
}

// removeOwnPIDFile removes path if it still names this process. A process
// that ended idle has removed its socket, so the next connection may have
// started a successor, which wrote its own PID there.
func removeOwnPIDFile(path string) {
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// serveShared starts the session of p and serves sock with it.
func (c *cli) serveShared(ctx context.Context, p proxyArgs, u *used, sock string, ready func(), log *slog.Logger) error {
	sf, err := c.prepare(ctx, p.o, u, log)
	if err != nil {
		return err
	}
	defer sf.close()
	sp := p.to
	if p.o.to == "" {
		sp = forward.Spec{Port: p.portNumber()}
	}
	var logged sync.WaitGroup
	defer logged.Wait()
	ln := &shareListener{path: sock, ready: ready}
	fw := c.forwarder(sf, u, sp, ln, log, &logged, func(t *forward.Tunnel) {
		log.Debug("shared session started", "session", t.ID(), "to", sp.Destination(u.id), "socket", sock)
	})
	fw.Idle = p.o.share
	err = fw.Serve(ctx)
	if ln.err != nil {
		return ln.err
	}
	return err
}

// shareListener listens on its path at its first Accept, when the
// Forwarder has started the session, and then calls ready: a client that
// finds the socket finds a session behind it.
type shareListener struct {
	path  string
	ready func()

	mu     sync.Mutex
	ln     *net.UnixListener
	err    error
	closed bool
}

func (l *shareListener) listen() (*net.UnixListener, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil || l.err != nil {
		return l.ln, l.err
	}
	if l.closed {
		return nil, net.ErrClosed
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: l.path, Net: "unix"})
	if err == nil {
		err = os.Chmod(l.path, 0o600)
	}
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		l.err = fmt.Errorf("--share: listen on %s: %w", l.path, err)
		return nil, l.err
	}
	l.ln = ln
	l.ready()
	return ln, nil
}

func (l *shareListener) Accept() (net.Conn, error) {
	ln, err := l.listen()
	if err != nil {
		return nil, err
	}
	return ln.Accept()
}

// Close closes the listener and removes the socket.
func (l *shareListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.ln != nil {
		return l.ln.Close()
	}
	return nil
}

func (l *shareListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// switchWriter is a writer whose destination can change under it.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}
