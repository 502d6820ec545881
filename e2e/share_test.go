//go:build unix

package e2e

// ssm-proxy --share: many ssh, scp and rsync connections carried by one
// port-forwarding session that a background ssm-proxy keeps while it is
// used; it ends (TerminateSession) once idle, or on SIGTERM; a start that
// fails reads as it would without --share; a stale socket is replaced.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// shareHarness is a harness whose ProxyCommand is `ssm-proxy --share
// persist`, with its sockets in a directory of the test's own.
func shareHarness(t *testing.T, persist string, emu ssmtest.Options) (*harness, string) {
	t.Helper()
	return shareHarnessWith(t, emu, harnessOptions{proxyFlags: []string{"--share", persist}})
}

// shareHarnessWith is shareHarness with o's ssm-proxy flags and ssh_config
// lines.
func shareHarnessWith(t *testing.T, emu ssmtest.Options, o harnessOptions) (*harness, string) {
	t.Helper()
	o.emu = emu
	h := newHarness(t, o)
	run := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	h.env = append(h.env, "XDG_RUNTIME_DIR="+run)
	return h, filepath.Join(run, "ssm-proxy")
}

// waitGone waits until pid has exited (it is not ours to reap: its parent,
// the ProxyCommand that started it, has exited) and its socket is gone.
func waitGone(t *testing.T, pid int, dir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		alive := !testenv.ProcessGone(pid)
		socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
		if !alive && len(socks) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shared process %d alive %v, sockets %v after %s", pid, alive, socks, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopShared ends the shared processes of dir, ours by their PIDs, when a
// test fails before they idle out.
func stopShared(t *testing.T, dir string) {
	t.Cleanup(func() {
		for _, pid := range testenv.SharedPIDs(dir) {
			if testenv.IsSharedProcess(pid, dir) {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	})
}

// sshSHA runs `ssh instance sha256sum` with src as stdin and checks the
// digest.
func sshSHA(ctx context.Context, h *harness, src, want string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	c := h.ssh(ctx, instance, "sha256sum")
	c.Stdin = f
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return fmt.Errorf("%v: %s", err, stderr.String())
	}
	if got := strings.Fields(string(out)); len(got) == 0 || got[0] != want {
		return fmt.Errorf("remote sha256 %q, want %s", out, want)
	}
	return nil
}

// sshThenSCP sends a random file of size through ssh n times and fetches it
// back with scp, checking every sha256; it returns the file and its digest.
func sshThenSCP(ctx context.Context, t *testing.T, h *harness, dir string, size int64, n int) (src, want string) {
	t.Helper()
	src = filepath.Join(dir, "in")
	want = testenv.RandomFile(t, src, size, 41)
	for i := range n {
		if err := sshSHA(ctx, h, src, want); err != nil {
			t.Fatalf("ssh %d: %v", i, err)
		}
	}
	back := filepath.Join(dir, "back")
	run(t, h.scp(ctx, instance+":"+src, back))
	if got := testenv.FileSHA256(t, back); got != want {
		t.Fatalf("scp: sha256 %s, want %s", got, want)
	}
	return src, want
}

// TestShare: ssh, scp and rsync, one after another, through one session;
// then it ends by itself once idle, terminated.
func TestShare(t *testing.T) {
	h, dir := shareHarness(t, "2s", ssmtest.Options{})
	stopShared(t, dir)
	ctx := testCtx(t, 2*time.Minute)
	tmp := t.TempDir()
	src, want := sshThenSCP(ctx, t, h, tmp, 1<<20, 3)
	tree := filepath.Join(tmp, "tree")
	testenv.MakeTree(t, tree, 42)
	run(t, h.rsync(ctx, "-a", tree+"/", instance+":"+filepath.Join(tmp, "copy")+"/"))
	if got, want := testenv.TreeDigest(t, filepath.Join(tmp, "copy")), testenv.TreeDigest(t, tree); got != want {
		t.Fatalf("rsync: tree digest %s, want %s", got, want)
	}
	st := h.emu.Stats()
	if st.SessionsStarted != 1 || st.Active != 1 {
		t.Fatalf("5 connections: sessions started %d, active %d; want 1 and 1", st.SessionsStarted, st.Active)
	}
	pids := testenv.SharedPIDs(dir)
	if len(pids) != 1 {
		t.Fatalf("shared processes %v, want one", pids)
	}
	// Idle for 2 s: it terminates its session and exits.
	st = h.checkEnded(1)
	if n := st.TerminatedByAPI + st.Endings[ssmtest.EndTerminateFlag]; n != 1 {
		t.Errorf("sessions terminated by the client = %d, want 1 (endings %v)", n, st.Endings)
	}
	waitGone(t, pids[0], dir, 15*time.Second)
	// The next connection starts a new one.
	if err := sshSHA(ctx, h, src, want); err != nil {
		t.Fatal(err)
	}
	if st := h.emu.Stats(); st.SessionsStarted != 2 {
		t.Fatalf("after the idle end: sessions started %d, want 2", st.SessionsStarted)
	}
	h.checkEnded(2)
}

// TestShareFdpass: with ProxyUseFdpass yes and --fdpass, ssm-proxy hands
// ssh the shared session's socket and exits; ssh reads and writes it
// itself (ssh refuses a ProxyCommand that passes no descriptor back).
func TestShareFdpass(t *testing.T) {
	h, dir := shareHarnessWith(t, ssmtest.Options{}, harnessOptions{
		proxyFlags: []string{"--share", "1s", "--fdpass"},
		sshExtra:   []string{"ProxyUseFdpass yes"},
	})
	stopShared(t, dir)
	ctx := testCtx(t, 2*time.Minute)
	sshThenSCP(ctx, t, h, t.TempDir(), 2<<20, 2)
	h.checkEnded(1)
}

// TestShareFdpassWithoutSocket: --fdpass where ssh hands over pipes (no
// ProxyUseFdpass) is one error line naming the setting, before any session
// starts.
func TestShareFdpassWithoutSocket(t *testing.T) {
	h, dir := shareHarnessWith(t, ssmtest.Options{}, harnessOptions{proxyFlags: []string{"--share", "60s", "--fdpass"}})
	stopShared(t, dir)
	c := h.ssh(testCtx(t, time.Minute), instance, "true")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Run(); err == nil {
		t.Fatal("ssh succeeded through --fdpass without ProxyUseFdpass")
	}
	if n := strings.Count(stderr.String(), "ssm-proxy: error:"); n != 1 || !strings.Contains(stderr.String(), "ProxyUseFdpass yes") {
		t.Errorf("stderr has %d error lines, want one naming ProxyUseFdpass:\n%s", n, stderr.String())
	}
	if pids := testenv.SharedPIDs(dir); len(pids) != 0 {
		t.Errorf("shared processes started: %v", pids)
	}
	h.checkEnded(0)
}

// TestShareConcurrentStart: connections that all find no shared session
// start one between them, and all are carried.
func TestShareConcurrentStart(t *testing.T) {
	h, dir := shareHarness(t, "1s", ssmtest.Options{})
	stopShared(t, dir)
	ctx := testCtx(t, 2*time.Minute)
	tmp := t.TempDir()
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		src := filepath.Join(tmp, fmt.Sprintf("in%d", i))
		want := testenv.RandomFile(t, src, 200<<10+int64(i)*777, int64(50+i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sshSHA(ctx, h, src, want); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h.checkEnded(1)
}

// TestShareSIGTERM: the shared process ends its session when told to.
func TestShareSIGTERM(t *testing.T) {
	h, dir := shareHarness(t, "10m", ssmtest.Options{})
	stopShared(t, dir)
	ctx := testCtx(t, time.Minute)
	run(t, h.ssh(ctx, instance, "true"))
	pids := testenv.SharedPIDs(dir)
	if len(pids) != 1 {
		t.Fatalf("shared processes %v, want one", pids)
	}
	if st := h.emu.Stats(); st.Active != 1 {
		t.Fatalf("active sessions %d after the connection ended, want 1 (the shared one)", st.Active)
	}
	syscall.Kill(pids[0], syscall.SIGTERM) // started by the ProxyCommand this test ran
	if st := h.checkEnded(1); st.TerminatedByAPI+st.Endings[ssmtest.EndTerminateFlag] != 1 {
		t.Errorf("sessions terminated by the client = %d + %d, want 1", st.TerminatedByAPI, st.Endings[ssmtest.EndTerminateFlag])
	}
	waitGone(t, pids[0], dir, 15*time.Second)
}

// TestShareStartFails: a session that cannot start reports as it would
// without --share — one error line from ssm-proxy, ssh fails — and leaves
// no process, socket or session behind.
func TestShareStartFails(t *testing.T) {
	h, dir := shareHarness(t, "60s", ssmtest.Options{Instances: []ssmtest.Instance{{ID: instance, Denied: true}}})
	ctx := testCtx(t, time.Minute)
	c := h.ssh(ctx, instance, "true")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	var ee interface{ ExitCode() int }
	if !errors.As(err, &ee) || ee.ExitCode() != 255 {
		t.Fatalf("ssh: %v, want exit status 255\n%s", err, stderr.String())
	}
	if len(out) != 0 {
		t.Errorf("stdout %q, want nothing", out)
	}
	if n := strings.Count(stderr.String(), "ssm-proxy: error:"); n != 1 || !strings.Contains(stderr.String(), "AccessDenied") {
		t.Errorf("stderr has %d error lines, want one naming AccessDenied:\n%s", n, stderr.String())
	}
	if pids := testenv.SharedPIDs(dir); len(pids) != 0 {
		t.Errorf("shared processes left: %v", pids)
	}
	if socks, _ := filepath.Glob(filepath.Join(dir, "*.sock")); len(socks) != 0 {
		t.Errorf("sockets left: %v", socks)
	}
	h.checkEnded(0)
}

// TestShareStaleSocket: a socket left by a process that died without
// removing it is replaced by a new shared session.
func TestShareStaleSocket(t *testing.T) {
	h, dir := shareHarness(t, "1s", ssmtest.Options{})
	stopShared(t, dir)
	ctx := testCtx(t, time.Minute)
	run(t, h.ssh(ctx, instance, "true"))
	pids := testenv.SharedPIDs(dir)
	h.checkEnded(1)
	// The session's end and the socket's removal race (the idle end
	// cancels both at once): what must hold is that nothing is left
	// once the shared process has exited.
	for _, pid := range pids {
		waitGone(t, pid, dir, 15*time.Second)
	}
	socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	if len(pids) != 1 || len(socks) != 0 {
		t.Fatalf("shared processes %v; sockets left after the idle end: %v", pids, socks)
	}
	// Find the socket's name: the one the log names.
	logs, _ := filepath.Glob(filepath.Join(dir, "*.sock.log"))
	if len(logs) != 1 {
		t.Fatalf("logs %v, want one", logs)
	}
	sock := strings.TrimSuffix(logs[0], ".log")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens: stale
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket not there: %v", err)
	}
	out := run(t, h.ssh(ctx, instance, "echo", "fresh"))
	if strings.TrimSpace(out) != "fresh" {
		t.Fatalf("ssh through a replaced socket: %q", out)
	}
	h.checkEnded(2)
}

// TestShareCredentialProcessFds: the shared process's descriptor 3 (its
// start-up stderr, which the starting client reads to its end) is not
// inherited by a credential_process — one that left a child running would
// otherwise hold the client's start-up until that child exited, up to the
// 90 s start limit, and then the client gave up on a healthy session.
func TestShareCredentialProcessFds(t *testing.T) {
	h, dir := shareHarnessWith(t, ssmtest.Options{}, harnessOptions{proxyFlags: []string{"--share", "2s", "--profile", "rotating"}})
	stopShared(t, dir)
	env, counter := rotatingProfile(t, h, 0)
	c := h.ssh(testCtx(t, time.Minute), instance, "echo ok")
	c.Env = env
	if out := run(t, c); out != "ok\n" {
		t.Fatalf("stdout %q", out)
	}
	if n := calls(t, counter); n < 1 {
		t.Fatal("the credential_process never ran")
	}
	if fd3, err := os.ReadFile(counter + ".fd3"); err == nil && len(bytes.TrimSpace(fd3)) > 0 {
		t.Errorf("the credential_process inherited descriptor 3: %s", fd3)
	}
}
