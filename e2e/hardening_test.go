package e2e

// The built binary against a hostile or broken AWS side, one test per
// failure an adversarial review found: each runs the real ssm-proxy against
// an emulator fault, checks that the fault fired, and checks the outcome a
// user sees — exit status, one error line, nothing on stdout, no session
// left open. The session logic behind each is tested frame by frame in
// proxy/gateway_test.go.

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// proxyRun is a running ssm-proxy with an open stdin, as ssh runs it.
type proxyRun struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr *syncBuffer
	done           chan struct{}
}

func startProxy(t *testing.T, emu *ssmtest.Server, args ...string) *proxyRun {
	t.Helper()
	if len(args) == 0 || args[0] != rusageBin {
		args = append([]string{proxyBin}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = noProxyEnv(t, emu.Endpoint())
	p := &proxyRun{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	p.stdin, _ = cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill() // ours, by its PID
			<-p.done
		}
	})
	return p
}

// wait waits up to d for the process to exit and returns its status.
func (p *proxyRun) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("ssm-proxy still running after %s; stderr:\n%s", d, p.stderr.String())
		return -1
	}
}

// signalled reports the signal that ended the process, 0 for none.
func (p *proxyRun) signalled() syscall.Signal {
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

// checkOneErrorLine checks stderr has exactly one error line containing want
// and no Go panic.
func checkOneErrorLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	if strings.Contains(stderr, "panic:") || strings.Contains(stderr, "goroutine ") {
		t.Fatalf("a Go panic:\n%s", stderr)
	}
	if n := strings.Count(stderr, "ssm-proxy: error:"); n != 1 {
		t.Errorf("%d error lines, want 1:\n%s", n, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

func startEmu(t *testing.T, o ssmtest.Options) *ssmtest.Server {
	t.Helper()
	emu, err := ssmtest.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	return emu
}

func waitStats(t *testing.T, emu *ssmtest.Server, cond func(ssmtest.Stats) bool) ssmtest.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := emu.WaitStats(ctx, cond)
	if err != nil {
		t.Fatalf("%v (stats %+v)", err, emu.Stats())
	}
	return st
}

// TestBlackholeSIGTERM: with the websocket black-holed mid-upload (the
// network writer stuck on a full socket), SIGTERM still ends ssm-proxy at
// once with 143, and the session is terminated.
func TestBlackholeSIGTERM(t *testing.T) {
	emu := startEmu(t, ssmtest.Options{TargetAddr: holdTarget(t), BlackholeEvery: 256 << 10})
	p := startProxy(t, emu, instance, "22")
	go func() {
		chunk := make([]byte, 64<<10)
		for range 128 { // 8 MiB: far more than the buffers hold
			if _, err := p.stdin.Write(chunk); err != nil {
				return
			}
		}
	}()
	waitStats(t, emu, func(st ssmtest.Stats) bool { return st.Blackholes == 1 })
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 143 && p.signalled() != syscall.SIGTERM {
		t.Errorf("exit %d, want 143", code)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("SIGTERM took %s to end ssm-proxy (TerminateSession is bounded by 2 s)", d)
	}
	waitStats(t, emu, func(st ssmtest.Stats) bool { return st.Active == 0 })
	if st := emu.Stats(); st.TerminatedByAPI != 1 {
		t.Errorf("TerminateSession ended %d sessions, want 1", st.TerminatedByAPI)
	}
}

// TestCloseOnOpenStorm: a data channel that accepts and closes every
// websocket at once costs a bounded number of ResumeSession calls within
// --resume-timeout, then exit 5 with the last failure (issue: 200 calls a
// second).
func TestCloseOnOpenStorm(t *testing.T) {
	emu := startEmu(t, ssmtest.Options{TargetAddr: holdTarget(t), CloseOnOpen: ssmtest.CloseOnOpenOptions{Code: 1011, Text: "internal error"}})
	p := startProxy(t, emu, "--resume-timeout", "4s", instance, "22")
	if code := p.wait(t, 30*time.Second); code != 5 {
		t.Errorf("exit %d, want 5", code)
	}
	checkOneErrorLine(t, p.stderr.String(), "not restored", "internal error")
	st := waitStats(t, emu, func(st ssmtest.Stats) bool { return st.Active == 0 })
	if st.ClosedOnOpen < 2 || st.Resumes > 12 {
		t.Errorf("%d websockets closed on open, %d ResumeSession calls in a 4 s budget: want a few, backed off", st.ClosedOnOpen, st.Resumes)
	}
	if p.stdout.String() != "" {
		t.Errorf("stdout %q", p.stdout.String())
	}
}

// TestCloseOnOpenThenResumeHangs: a gateway that closes the websocket,
// then a ResumeSession that never answers until the budget ends: the
// error names both, the close's reason as well as the hung call (it named
// only the budget's deadline, and TestCloseOnOpenStorm failed whenever the
// budget ran out inside a call).
func TestCloseOnOpenThenResumeHangs(t *testing.T) {
	emu := startEmu(t, ssmtest.Options{TargetAddr: holdTarget(t), HangOperations: []string{"ResumeSession"},
		CloseOnOpen: ssmtest.CloseOnOpenOptions{Code: 1011, Text: "internal error"}})
	p := startProxy(t, emu, "--resume-timeout", "2s", instance, "22")
	if code := p.wait(t, 30*time.Second); code != 5 {
		t.Errorf("exit %d, want 5", code)
	}
	checkOneErrorLine(t, p.stderr.String(), "not restored", "ResumeSession", "internal error")
	if st := emu.Stats(); st.HungCalls == 0 || st.ClosedOnOpen != 1 {
		t.Errorf("hung calls %d, websockets closed on open %d: want both faults", st.HungCalls, st.ClosedOnOpen)
	}
}

// TestResumeBudgetEnds: ResumeSession that never answers after the
// websocket is lost ends ssm-proxy within the budget with exit 5 and one
// line naming the failure — not a Go stack trace (issue: nil dereference).
func TestResumeBudgetEnds(t *testing.T) {
	emu := startEmu(t, ssmtest.Options{TargetAddr: holdTarget(t), ByeEvery: 500 * time.Millisecond, HangOperations: []string{"ResumeSession"}})
	p := startProxy(t, emu, "--resume-timeout", "3s", instance, "22")
	if code := p.wait(t, 30*time.Second); code != 5 {
		t.Errorf("exit %d, want 5", code)
	}
	checkOneErrorLine(t, p.stderr.String(), "not restored", "ResumeSession")
	if st := emu.Stats(); st.HungCalls == 0 || st.Byes != 1 {
		t.Errorf("hung calls %d, byes %d", st.HungCalls, st.Byes)
	}
}

// TestStdoutClosedEarly: when the reader of ssm-proxy's stdout goes away
// (and stdin is not a pipe, so stdout is plain descriptor 1), ssm-proxy is
// not killed by SIGPIPE, the session is terminated, and it exits 1 saying
// that output was lost.
func TestStdoutClosedEarly(t *testing.T) {
	source := testenv.ServeTCP(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	emu := startEmu(t, ssmtest.Options{TargetAddr: source})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(proxyBin, instance, "22")
	cmd.Env = noProxyEnv(t, emu.Endpoint())
	cmd.Stdout = w // stdin: /dev/null
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := io.ReadFull(r, make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	r.Close() // the reader goes away mid-stream
	waitNotSignaled(t, cmd, 20*time.Second, &stderr)
	// Output was lost: not exit 0, and one line that says so.
	if code := cmd.ProcessState.ExitCode(); code != 1 || strings.Count(stderr.String(), "ssm-proxy: error:") != 1 ||
		!strings.Contains(stderr.String(), "stdout was closed while the session's output was still arriving") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one error line saying the output was not delivered", code, stderr.String())
	}
	st := waitStats(t, emu, func(st ssmtest.Stats) bool { return st.Active == 0 })
	if st.TerminatedByAPI+st.Endings[ssmtest.EndTerminateFlag] != 1 {
		t.Errorf("session not terminated: %+v", st.Endings)
	}
}

// waitNotSignaled waits for cmd, ours, whose stdout reader has just gone
// away: it must exit by itself within timeout (else it is killed, by its
// PID) and not by a signal such as SIGPIPE.
func waitNotSignaled(t *testing.T, cmd *exec.Cmd, timeout time.Duration, stderr *syncBuffer) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("ssm-proxy kept running after its stdout closed:\n%s", stderr.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("ssm-proxy died of %v", ws.Signal())
	}
}

// TestStdoutClosedWhileSessionOpen: SIGPIPE cannot kill ssm-proxy while
// it holds a session. doctor writes its report while its test session is
// open; with the reader of its stdout gone after the session line, the
// next line is written into a closed pipe — which used to kill the process
// and leave the session open.
func TestStdoutClosedWhileSessionOpen(t *testing.T) {
	target := testenv.ServeTCP(t, func(c net.Conn) {
		io.WriteString(c, "SSH-2.0-e2e\r\n")
		io.Copy(io.Discard, c)
	})
	emu := startEmu(t, ssmtest.Options{TargetAddr: target})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(proxyBin, "doctor", instance)
	cmd.Env = noProxyEnv(t, emu.Endpoint())
	cmd.Stdout = w
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	lines := bufio.NewScanner(r)
	for lines.Scan() && !strings.Contains(lines.Text(), "session: started") {
	}
	r.Close() // the reader goes away with the session open
	waitNotSignaled(t, cmd, 30*time.Second, &stderr)
	st := waitStats(t, emu, func(st ssmtest.Stats) bool { return st.Active == 0 })
	if st.SessionsStarted != 1 || st.TerminatedByAPI+st.Endings[ssmtest.EndTerminateFlag] != 1 {
		t.Errorf("started %d, endings %v: want the one session terminated", st.SessionsStarted, st.Endings)
	}
}

// TestHostileFrames: a channel_closed that is not JSON, and a 64 MiB frame,
// are protocol errors: exit 1, one line, and the 64 MiB frame is refused
// without reading it into memory (issue: RSS 219 MB).
func TestHostileFrames(t *testing.T) {
	t.Run("malformed channel_closed", func(t *testing.T) {
		emu := startEmu(t, ssmtest.Options{TargetAddr: holdTarget(t), MalformedChannelClosed: true, IdleTimeout: 500 * time.Millisecond})
		p := startProxy(t, emu, instance, "22")
		if code := p.wait(t, 20*time.Second); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		checkOneErrorLine(t, p.stderr.String(), "channel_closed")
		if st := emu.Stats(); st.MalformedChannelCloses != 1 {
			t.Errorf("malformed channel_closed sent %d times", st.MalformedChannelCloses)
		}
	})
	t.Run("64 MiB frame", func(t *testing.T) {
		emu := startEmu(t, ssmtest.Options{TargetAddr: holdTarget(t), HugeFrameBytes: 64 << 20})
		usage := filepath.Join(t.TempDir(), "usage")
		p := startProxy(t, emu, rusageBin, "-o", usage, "-label", "ssm-proxy", "--", proxyBin, instance, "22")
		if code := p.wait(t, 30*time.Second); code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		checkOneErrorLine(t, p.stderr.String(), "protocol error")
		st := waitStats(t, emu, func(st ssmtest.Stats) bool { return st.Active == 0 })
		if st.HugeFrames != 1 || st.TerminatedByAPI != 1 {
			t.Errorf("huge frames %d, terminated %d", st.HugeFrames, st.TerminatedByAPI)
		}
		line, err := os.ReadFile(usage)
		f := strings.Fields(string(line))
		if err != nil || len(f) < 5 {
			t.Fatalf("rusage line %q: %v", line, err)
		}
		if kib, err := strconv.Atoi(f[4]); err != nil || kib > 48<<10 {
			t.Errorf("peak RSS %s KiB: the frame was read into memory", f[4])
		}
	})
}
