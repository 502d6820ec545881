package e2e

// `ssm-proxy forward` and `--to` through the emulator's multiplexed
// port-forwarding agent (docs/protocol.md §7.4): real psql to a real
// PostgreSQL with no sshd anywhere, many concurrent connections
// sha256-checked both ways, websockets recycled under open connections, and
// ssh through a bastion that runs no sshd of its own. The smux framing
// itself is checked against the official client in interop/, and the agent
// side in internal/ssmtest.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// forwardCmd is a running `ssm-proxy forward`.
type forwardCmd struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}     // closed when the process has exited
	addrs  []string          // the listen addresses its ready lines name, in order
	dests  map[string]string // destination (as the ready line names it) → listen address
}

var readyLine = regexp.MustCompile(`ssm-proxy: forwarding (\S+) → (\S+) `)

// startForward runs `ssm-proxy forward args...` against emu and waits for
// one ready line per spec.
func startForward(t *testing.T, emu *ssmtest.Server, specs int, args ...string) *forwardCmd {
	t.Helper()
	cmd := exec.Command(proxyBin, append([]string{"forward"}, args...)...)
	cmd.Env = ssmtest.ClientEnv(t, emu.Endpoint())
	return startForwardCmd(t, cmd, specs)
}

// startForwardCmd starts cmd, an `ssm-proxy forward`, and waits for one
// ready line per spec.
func startForwardCmd(t *testing.T, cmd *exec.Cmd, specs int) *forwardCmd {
	t.Helper()
	f := &forwardCmd{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{}), dests: map[string]string{}}
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(f.stderr, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		pw.Close()
		close(f.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // ours: by its PID
		select {
		case <-f.done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	})
	ready := make(chan []string, 64) // never blocks the reader: more lines than specs may come
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m
			}
		}
		io.Copy(io.Discard, pr)
	}()
	for len(f.addrs) < specs {
		select {
		case m := <-ready:
			f.addrs = append(f.addrs, m[1])
			f.dests[m[2]] = m[1]
		case <-f.done:
			t.Fatalf("ssm-proxy forward exited (%v) before it was ready:\n%s", cmd.ProcessState, f.stderr.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("ssm-proxy forward not ready after 30 s:\n%s", f.stderr.String())
		}
	}
	return f
}

// stop ends the forwarder with SIGINT and returns its exit code.
func (f *forwardCmd) stop(t *testing.T) int {
	t.Helper()
	f.cmd.Process.Signal(os.Interrupt)
	select {
	case <-f.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("ssm-proxy forward did not exit after SIGINT:\n%s", f.stderr.String())
	}
	return f.cmd.ProcessState.ExitCode()
}

// TestForwardPostgres: psql through `ssm-proxy forward` to a real
// PostgreSQL, AWS-StartPortForwardingSession, no sshd involved.
func TestForwardPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: pg.Addr(), RequireSignedUpgrade: true})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	f := startForward(t, emu, 1, instance, "0:"+strconv.Itoa(pg.Port))
	host, port, _ := net.SplitHostPort(f.addrs[0])
	ctx := testCtx(t, 2*time.Minute)
	psql := func(sql string) string {
		return strings.TrimSpace(run(t, pg.PSQL(ctx, "-h", host, "-p", port, "-tAc", sql)))
	}
	q := "select md5(string_agg(md5(i::text), '' order by i)) from generate_series(1, 20000) i"
	direct := strings.TrimSpace(run(t, pg.PSQL(ctx, "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-tAc", q)))
	for range 3 { // three connections, one smux stream each, one session
		if got := psql(q); got != direct || len(got) != 32 {
			t.Fatalf("through the forwarding %q, direct %q", got, direct)
		}
	}
	if st := emu.Stats(); st.SessionsStarted != 1 {
		t.Errorf("%d sessions for three connections, want 1", st.SessionsStarted)
	}
	if fs := emu.ForwardingStats(); fs.StreamsConnected != 3 {
		t.Errorf("forwarding stats %+v: want 3 streams", fs)
	}
	if code := f.stop(t); code != 128+2 {
		t.Errorf("exit %d after SIGINT, want 130:\n%s", code, f.stderr.String())
	}
	waitIdle(t, emu)
	if st := emu.Stats(); st.TerminatedByAPI+st.Endings[ssmtest.EndTerminateFlag] == 0 {
		t.Errorf("the session was not terminated: %+v", st)
	}
}

// waitIdle waits until the emulator has no active session.
func waitIdle(t *testing.T, emu *ssmtest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := emu.WaitIdle(ctx); err != nil {
		t.Fatalf("sessions left open: %v", err)
	}
}

// echoServer echoes every connection back and hashes what it received.
type echoServer struct {
	addr string
	mu   sync.Mutex
	got  map[[32]byte]int
}

func (e *echoServer) connections() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, k := range e.got {
		n += k
	}
	return n
}

func startEchoServer(t *testing.T) *echoServer {
	e := &echoServer{got: map[[32]byte]int{}}
	e.addr = testenv.ServeTCP(t, func(c net.Conn) {
		h := sha256.New()
		io.Copy(io.MultiWriter(c, h), c)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		e.mu.Lock()
		e.got[sum]++
		e.mu.Unlock()
	})
	return e
}

// echoThrough sends size random bytes through addr in pieces, pausing
// between them for pace, half-closes, and checks the echo.
func echoThrough(addr string, seed int64, size int, pace time.Duration) ([32]byte, error) {
	data := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(data)
	sum := sha256.Sum256(data)
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return sum, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	errc := make(chan error, 1)
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 16<<10)
			if _, err := c.Write(p[:n]); err != nil {
				errc <- err
				return
			}
			p = p[n:]
			if pace > 0 {
				time.Sleep(pace) // a slow client, not synchronisation
			}
		}
		errc <- nil
	}()
	got, err := io.ReadAll(io.LimitReader(c, int64(size)))
	if err != nil {
		return sum, err
	}
	if werr := <-errc; werr != nil {
		return sum, werr
	}
	if !bytes.Equal(got, data) {
		return sum, fmt.Errorf("echo of %d bytes: got %d bytes, different", size, len(got))
	}
	return sum, nil
}

// TestForwardRemoteHost: AWS-StartPortForwardingSessionToRemoteHost to a
// private name the bastion resolves, on a non-default loopback bind
// address, 50 concurrent connections sha256-checked both ways; then the
// same with the websocket recycled every few seconds, dropped, or black-holed
// under connections that stay open across the resumes.
func TestForwardRemoteHost(t *testing.T) {
	for _, c := range []struct {
		name  string
		emu   ssmtest.Options
		conns int
		size  int
		pace  time.Duration
	}{
		{"50 connections", ssmtest.Options{}, 50, 256 << 10, 0},
		{"recycled websockets", ssmtest.Options{ByeEvery: 1500 * time.Millisecond, MoveCellOnResume: true}, 8, 512 << 10, 150 * time.Millisecond},
		// With the real agent's pacing: unpaced at loopback speed a drop
		// loses a window of frames, which the agent resends one per 100 ms
		// tick (§5.4), and the case takes minutes.
		{"drops", ssmtest.Options{Pacing: true, DropEveryBytes: 1 << 20, MoveCellOnResume: true}, 4, 384 << 10, 0},
		{"black hole", ssmtest.Options{Pacing: true, BlackholeEvery: 1 << 20, MoveCellOnResume: true}, 4, 384 << 10, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			echo := startEchoServer(t)
			echoHost, echoPort, _ := net.SplitHostPort(echo.addr)
			c.emu.Forwarding.Hosts = map[string][]string{"db.internal": {echoHost}}
			emu, err := ssmtest.Start(c.emu)
			if err != nil {
				t.Fatal(err)
			}
			defer emu.Close()
			f := startForward(t, emu, 1, append(slices.Clone(fastDetect), "db-bastion", "127.0.0.2:0:db.internal:"+echoPort)...)
			if !strings.HasPrefix(f.addrs[0], "127.0.0.2:") {
				t.Fatalf("listening on %s, want 127.0.0.2", f.addrs[0])
			}
			var wg sync.WaitGroup
			errs := make(chan error, c.conns)
			sums := make(chan [32]byte, c.conns)
			for i := range c.conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sum, err := echoThrough(f.addrs[0], int64(i+1), c.size, c.pace)
					if err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
						return
					}
					sums <- sum
				}()
			}
			wg.Wait()
			close(errs)
			close(sums)
			for err := range errs {
				t.Error(err)
			}
			// The destination records a connection once it has read its
			// end, which the client's close reaches through the agent.
			waitFor(t, 20*time.Second, func() bool { return echo.connections() == c.conns })
			echo.mu.Lock()
			for sum := range sums {
				if echo.got[sum] != 1 {
					t.Errorf("the destination received a stream that differs from what was sent")
				}
			}
			echo.mu.Unlock()
			st := emu.Stats()
			if c.emu.ByeEvery > 0 && (st.Byes < 2 || st.CellMoves < 2) {
				t.Errorf("only %d Byes and %d cell moves during the transfer: the connections did not stay open across recycles", st.Byes, st.CellMoves)
			}
			if c.emu.DropEveryBytes > 0 && (st.Drops == 0 || st.Resumes == 0) || c.emu.BlackholeEvery > 0 && (st.Blackholes == 0 || st.Resumes == 0) {
				t.Errorf("drops %d, black holes %d, resumes %d: the fault did not fire under the connections", st.Drops, st.Blackholes, st.Resumes)
			}
			if st.SessionsStarted != 1 {
				t.Errorf("%d sessions, want 1 (resumed, not restarted)", st.SessionsStarted)
			}
			if code := f.stop(t); code != 130 {
				t.Errorf("exit %d after SIGINT:\n%s", code, f.stderr.String())
			}
			waitIdle(t, emu)
		})
	}
}

// TestForwardBindsAndSIGTERM: an IPv6 bind address and a non-loopback one
// (with its warning, IPv4 only as ssh -L binds it), both carrying bytes,
// and SIGTERM ending the command with 143 after terminating both sessions.
func TestForwardBindsAndSIGTERM(t *testing.T) {
	emu := startEmu(t, ssmtest.Options{})
	echo := startEchoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.addr)
	f := startForward(t, emu, 2, instance, "[::1]:0:"+echoPort, "0.0.0.0:0:"+echoPort)
	var v6, any string
	for _, a := range f.addrs {
		switch {
		case strings.HasPrefix(a, "[::1]:"):
			v6 = a
		case strings.HasPrefix(a, "0.0.0.0:"):
			_, p, _ := net.SplitHostPort(a)
			any = net.JoinHostPort("127.0.0.1", p) // loopback traffic only
		}
	}
	if v6 == "" || any == "" {
		t.Fatalf("listening on %v, want [::1] and 0.0.0.0", f.addrs)
	}
	// The warning follows the ready line.
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(f.stderr.String(), "0.0.0.0 is not a loopback address") })
	if strings.Contains(f.stderr.String(), "::1 is not a loopback") {
		t.Errorf("want the non-loopback warning for 0.0.0.0 only:\n%s", f.stderr.String())
	}
	for i, addr := range []string{v6, any} {
		if _, err := echoThrough(addr, int64(i+1), 64<<10, 0); err != nil {
			t.Fatalf("through %s: %v", addr, err)
		}
	}
	f.cmd.Process.Signal(syscall.SIGTERM) // ours: by its PID
	select {
	case <-f.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("ssm-proxy forward did not exit after SIGTERM:\n%s", f.stderr.String())
	}
	if code := f.cmd.ProcessState.ExitCode(); code != 143 {
		t.Errorf("exit %d after SIGTERM, want 143:\n%s", code, f.stderr.String())
	}
	waitIdle(t, emu)
	if st := emu.Stats(); st.SessionsStarted != 2 || st.TerminatedByAPI+st.Endings[ssmtest.EndTerminateFlag] != 2 {
		t.Errorf("%d sessions started, %d terminated by API, endings %v: want both terminated", st.SessionsStarted, st.TerminatedByAPI, st.Endings)
	}
}

// TestForwardErrors: a destination nothing listens on closes that one
// connection with a message, not the session; a forbidden remote address
// (the agent refuses the whole session) and a busy local port are one-line
// errors with the right exit codes, and a forbidden forwarding beside a
// good one stops only itself.
func TestForwardErrors(t *testing.T) {
	t.Run("nothing listening", func(t *testing.T) {
		emu, err := ssmtest.Start(ssmtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer emu.Close()
		_, closedPort, _ := net.SplitHostPort(testenv.ClosedPort(t))
		echo := startEchoServer(t)
		_, echoPort, _ := net.SplitHostPort(echo.addr)
		f := startForward(t, emu, 2, instance, "0:"+closedPort, "0:"+echoPort)
		closedAddr := f.dests[net.JoinHostPort(instance, closedPort)]
		echoAddr := f.dests[net.JoinHostPort(instance, echoPort)]
		c, err := net.Dial("tcp", closedAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF || n != 0 {
			t.Fatalf("a connection to a closed port read %d bytes, %v; want EOF", n, err)
		}
		c.Close()
		// The other forwarding, and the session, carry on.
		if _, err := echoThrough(echoAddr, 1, 64<<10, 0); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() bool { return strings.Contains(f.stderr.String(), "could not connect to") })
		if st := emu.Stats(); st.Active != 2 {
			t.Errorf("%d sessions active, want both alive", st.Active)
		}
		f.stop(t)
	})
	t.Run("forbidden address", func(t *testing.T) {
		emu, err := ssmtest.Start(ssmtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer emu.Close()
		cmd := exec.CommandContext(testCtx(t, time.Minute), proxyBin, "forward", "db-bastion", "0:169.254.169.254:80")
		cmd.Env = ssmtest.ClientEnv(t, emu.Endpoint())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 3 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "is forbidden") {
			t.Errorf("exit %d, stdout %q, stderr:\n%s", code, stdout.String(), stderr.String())
		}
		waitIdle(t, emu)
	})
	t.Run("forbidden address beside a good one", func(t *testing.T) {
		emu := startEmu(t, ssmtest.Options{})
		echo := startEchoServer(t)
		_, echoPort, _ := net.SplitHostPort(echo.addr)
		f := startForward(t, emu, 1, instance, "0:169.254.169.254:80", "0:"+echoPort)
		// Both forwardings say they are ready (the agent refuses the
		// forbidden one once its session is up); find the good one's.
		var echoAddr string
		waitFor(t, 10*time.Second, func() bool {
			for _, l := range strings.Split(f.stderr.String(), "\n") {
				if m := readyLine.FindStringSubmatch(l); m != nil && m[2] == net.JoinHostPort(instance, echoPort) {
					echoAddr = m[1]
				}
			}
			return echoAddr != "" && strings.Contains(f.stderr.String(), "is forbidden")
		})
		if n := strings.Count(f.stderr.String(), "ssm-proxy: error:"); n != 1 || !strings.Contains(f.stderr.String(), "→ 169.254.169.254:80") {
			t.Errorf("%d error lines, want one naming the forbidden forwarding:\n%s", n, f.stderr.String())
		}
		// The other forwarding carries on.
		if _, err := echoThrough(echoAddr, 1, 64<<10, 0); err != nil {
			t.Fatalf("%v:\n%s", err, f.stderr.String())
		}
		if code := f.stop(t); code != 130 {
			t.Errorf("exit %d after SIGINT, want 130:\n%s", code, f.stderr.String())
		}
		waitIdle(t, emu)
	})
	t.Run("port in use", func(t *testing.T) {
		emu, err := ssmtest.Start(ssmtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer emu.Close()
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		_, p, _ := net.SplitHostPort(busy.Addr().String())
		cmd := exec.CommandContext(testCtx(t, time.Minute), proxyBin, "forward", instance, p+":5432")
		cmd.Env = ssmtest.ClientEnv(t, emu.Endpoint())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "address already in use") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr.String())
		}
		if st := emu.Stats(); st.SessionsStarted != 0 {
			t.Errorf("%d sessions started for a forwarding that could not listen", st.SessionsStarted)
		}
	})
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestForwardTo: ssh to a host with no agent of its own, through a bastion
// that runs no sshd for us: ProxyCommand ssm-proxy --to %h:%p BASTION.
func TestForwardTo(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	emu, err := ssmtest.Start(ssmtest.Options{Forwarding: ssmtest.ForwardingOptions{Hosts: map[string][]string{"db-host": {"127.0.0.1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	client := sshd.ClientWith(t, testenv.ClientOptions{
		ProxyCommand: proxyBin + " --to %h:%p db-bastion",
		HostPatterns: []string{"db-host"},
		Extra:        []string{fmt.Sprintf("Port %d", sshd.Port)},
	})
	ctx := testCtx(t, 2*time.Minute)
	data := make([]byte, 4<<20)
	rand.New(rand.NewSource(7)).Read(data)
	cmd := client.SSH(ctx, "db-host", "sha256sum")
	cmd.Env = ssmtest.ClientEnv(t, emu.Endpoint())
	cmd.Stdin = bytes.NewReader(data)
	out := run(t, cmd)
	if want := fmt.Sprintf("%x", sha256.Sum256(data)); !strings.HasPrefix(out, want) {
		t.Fatalf("remote sha256 %q, want %s", out, want)
	}
	waitIdle(t, emu)
	if fs := emu.ForwardingStats(); fs.StreamsConnected != 1 {
		t.Errorf("forwarding stats %+v", fs)
	}
}

// TestForwardIdleRestart: a session Session Manager ends for inactivity is
// replaced on the next connection; the forwarding itself stays up.
func TestForwardIdleRestart(t *testing.T) {
	echo := startEchoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.addr)
	emu, err := ssmtest.Start(ssmtest.Options{IdleTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	f := startForward(t, emu, 1, instance, "0:"+echoPort)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := emu.WaitStats(ctx, func(st ssmtest.Stats) bool { return st.Endings[ssmtest.EndIdleTimeout] == 1 }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(f.stderr.String(), "the next connection starts a new one") })
	if _, err := echoThrough(f.addrs[0], 3, 64<<10, 0); err != nil {
		t.Fatal(err)
	}
	if st := emu.Stats(); st.SessionsStarted != 2 {
		t.Errorf("%d sessions, want the idle one and its replacement", st.SessionsStarted)
	}
	f.stop(t)
	waitIdle(t, emu)
}

// TestForwardSessionLog: every session forward opens gets its line in the
// local session log, with the port-forwarding document, the bytes it
// carried and the caller's identity.
func TestForwardSessionLog(t *testing.T) {
	echo := startEchoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.addr)
	emu := startEmu(t, ssmtest.Options{Forwarding: ssmtest.ForwardingOptions{Hosts: map[string][]string{"db.internal": {"127.0.0.1"}}}})
	logPath := filepath.Join(t.TempDir(), "sessions.jsonl")
	cmd := exec.Command(proxyBin, "forward", "db-bastion", "0:db.internal:"+echoPort, "0:"+echoPort)
	cmd.Env = append(ssmtest.ClientEnv(t, emu.Endpoint()), "SSM_PROXY_SESSION_LOG="+logPath, "AWS_ENDPOINT_URL_STS="+emu.Endpoint())
	f := startForwardCmd(t, cmd, 2)
	for _, a := range f.addrs {
		if _, err := echoThrough(a, 1, 16<<10, 0); err != nil {
			t.Fatal(err)
		}
	}
	if code := f.stop(t); code != 130 {
		t.Errorf("exit %d", code)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d session-log lines for 2 sessions:\n%s", len(lines), data)
	}
	docs := map[string]bool{}
	for _, l := range lines {
		var e struct {
			Document  string `json:"document"`
			SessionID string `json:"session_id"`
			Identity  string `json:"identity_arn"`
			BytesUp   int64  `json:"bytes_up"`
			Ended     string `json:"ended"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		docs[e.Document] = true
		if e.SessionID == "" || e.BytesUp < 16<<10 || e.Ended != "signal" || e.Identity != ssmtest.CallerARN { // smux framing included
			t.Errorf("entry %s", l)
		}
	}
	if !docs["AWS-StartPortForwardingSession"] || !docs["AWS-StartPortForwardingSessionToRemoteHost"] {
		t.Errorf("documents %v", docs)
	}
}

// TestForwardRestartBackoff: when the session that replaces an idle one
// cannot be started (StartSession throttled), connections wait while the
// start backs off — clients that keep connecting do not make a
// StartSession storm — and the forwarding stays up.
func TestForwardRestartBackoff(t *testing.T) {
	echo := startEchoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.addr)
	// One StartSession an hour: the first passes, every replacement is
	// throttled.
	emu := startEmu(t, ssmtest.Options{IdleTimeout: 300 * time.Millisecond, ThrottleRate: 1.0 / 3600, ThrottleBurst: 1})
	f := startForward(t, emu, 1, instance, "0:"+echoPort)
	waitStats(t, emu, func(st ssmtest.Stats) bool { return st.Endings[ssmtest.EndIdleTimeout] == 1 })
	// The emulator counts the ending a moment before forward knows of it: a
	// connection in that moment is carried by the ending session.
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(f.stderr.String(), "the next connection starts a new one") })
	// Ten clients connect at once and wait up to 8 s each: the window in
	// which the throttled calls are counted.
	const clients, window = 10, 8 * time.Second
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", f.addrs[0])
			if err != nil {
				t.Errorf("the forwarding stopped listening: %v", err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(window))
			c.Read(make([]byte, 1)) // no session: no byte, only the deadline
		}()
	}
	wg.Wait()
	st := emu.Stats()
	if st.Throttled == 0 {
		t.Fatalf("no StartSession was throttled: the test proves nothing (%+v)\n%s", st, f.stderr.String())
	}
	t.Logf("%d throttled StartSession calls in %s", st.Throttled, window)
	// Backoff from 200 ms doubling (plus the SDK's own retries) makes a
	// few dozen calls in the window at most; a storm makes thousands.
	if st.SessionsStarted != 1 || st.Throttled > 40 {
		t.Errorf("%d throttled StartSession calls in %s from %d clients (sessions started %d): no backoff", st.Throttled, window, clients, st.SessionsStarted)
	}
	select {
	case <-f.done:
		t.Fatalf("forward exited on a transient failure:\n%s", f.stderr.String())
	default:
	}
	f.stop(t)
}
