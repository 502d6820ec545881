// Package e2e runs the real ssm-proxy binary as the ProxyCommand of the real
// OpenSSH client against a real sshd, through the Session Manager emulator,
// and compares bytes.
package e2e

// The harness the other files share: TestMain builds ssm-proxy (and
// bench/cmd/rusage-exec) once; newHarness gives a test its own sshd,
// emulator and ssh client with ssm-proxy as the ProxyCommand. No tests here;
// the sshd and clients are tested on their own in internal/testenv.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// proxyBin is the ssm-proxy binary built once for the whole package;
// rusageBin is bench/cmd/rusage-exec, which reports a child's peak RSS
// (measured from this test process, a child's peak would include the
// parent's memory it shared until exec).
var proxyBin, rusageBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ssm-proxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	proxyBin = filepath.Join(dir, "ssm-proxy")
	rusageBin = filepath.Join(dir, "rusage-exec")
	for bin, pkg := range map[string]string{proxyBin: "..", rusageBin: "../bench/cmd/rusage-exec"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg+":", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// instance is the default emulator instance the tests connect to.
const instance = "i-0123456789abcdef0"

// harness is one sshd, one emulator routing every session to it, and an ssh
// client whose ProxyCommand is ssm-proxy.
type harness struct {
	t      *testing.T
	sshd   *testenv.SSHD
	emu    *ssmtest.Server
	client *testenv.Client
	env    []string
}

type harnessOptions struct {
	emu        ssmtest.Options
	proxyFlags []string // extra ssm-proxy flags
	sshExtra   []string // extra ssh_config lines
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	sshd := testenv.StartSSHD(t)
	o.emu.TargetAddr = sshd.Addr
	emu, err := ssmtest.Start(o.emu)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sshd: sshd, emu: emu, env: ssmtest.ClientEnv(t, emu.Endpoint())}
	t.Cleanup(func() { emu.Close() })
	pc := strings.Join(append(append([]string{proxyBin}, o.proxyFlags...), "%h", "%p"), " ")
	h.client = sshd.Client(t, pc, o.sshExtra...)
	return h
}

func (h *harness) ssh(ctx context.Context, args ...string) *exec.Cmd {
	c := h.client.SSH(ctx, args...)
	c.Env = h.env
	return c
}

func (h *harness) scp(ctx context.Context, args ...string) *exec.Cmd {
	c := h.client.SCP(ctx, args...)
	c.Env = h.env
	return c
}

func (h *harness) rsync(ctx context.Context, args ...string) *exec.Cmd {
	c := h.client.Rsync(ctx, args...)
	c.Env = h.env
	return c
}

// run runs cmd and fails the test with its output if it fails.
func run(t testing.TB, cmd *exec.Cmd) (stdout string) {
	t.Helper()
	var out, errb bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v after %s\nstderr:\n%s", strings.Join(cmd.Args, " "), err, time.Since(start).Round(time.Millisecond), errb.String())
	}
	if errb.Len() > 0 {
		t.Logf("%s: stderr:\n%s", filepath.Base(cmd.Args[0]), errb.String())
	}
	return out.String()
}

// checkEnded waits until the emulator has no active session and checks that
// exactly want sessions were started, none left open.
func (h *harness) checkEnded(want int64) ssmtest.Stats {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.emu.WaitIdle(ctx); err != nil {
		h.t.Fatalf("sessions left open: %v (stats %+v)", err, h.emu.Stats())
	}
	st := h.emu.Stats()
	if st.SessionsStarted != want {
		h.t.Errorf("sessions started = %d, want %d", st.SessionsStarted, want)
	}
	if st.Active != 0 {
		h.t.Errorf("active sessions = %d, want 0", st.Active)
	}
	return st
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening after %s: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
