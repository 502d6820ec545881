package interop

// End-to-end runs of the OFFICIAL session-manager-plugin 1.3.0.0 against
// our emulator (internal/ssmtest), as the ProxyCommand of the real OpenSSH
// client talking to a real sshd (internal/testenv). The ProxyCommand is a
// small script that does what `aws ssm start-session` does (docs/protocol.md
// §1.6) through cmd/startsession-shim: StartSession, then run the plugin
// with the CLI's argv. Everything is on loopback; the fake credentials and
// the emulator endpoint are set in the script, and the shim refuses any
// endpoint that is not loopback.
//
// The plugin runs as a child of the shim, as it runs as a child of the AWS
// CLI, except in TestOfficialPluginExecSIGHUP: when the plugin itself is the
// ProxyCommand process (shim default, syscall.Exec), the SIGHUP ssh sends its
// ProxyCommand on exit often kills the plugin before it has forwarded ssh's
// last packets, and the session then stays open (see NOTES.md).
//
// ssm-proxy under the same ssh and sshd is the main module's e2e/; the codec
// cross-checks are crosscheck_test.go's.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// e2eTarget is the emulator's default instance the tests connect to.
const e2eTarget = testenv.ExampleInstanceID

// officialTools holds the plugin and shim binaries, built once per test
// binary into a directory TestMain removes.
var officialTools struct {
	once              sync.Once
	dir, plugin, shim string
	err               error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if officialTools.dir != "" {
		os.RemoveAll(officialTools.dir)
	}
	os.Exit(code)
}

// buildOfficialTools builds the official plugin and the shim (once).
func buildOfficialTools(t *testing.T) (plugin, shim string) {
	t.Helper()
	officialTools.once.Do(func() {
		o := &officialTools
		if o.dir, o.err = os.MkdirTemp("", "interop-e2e-"); o.err != nil {
			return
		}
		if o.plugin, o.err = BuildPlugin(o.dir); o.err != nil {
			return
		}
		o.shim, o.err = BuildStartSessionShim(o.dir)
	})
	if officialTools.err != nil {
		t.Fatal(officialTools.err)
	}
	return officialTools.plugin, officialTools.shim
}

// pluginHarness is one sshd, one emulator routing every session to it, and
// an ssh client whose ProxyCommand runs the official plugin.
type pluginHarness struct {
	t       *testing.T
	sshd    *testenv.SSHD
	emu     *ssmtest.Server
	client  *testenv.Client
	env     []string // environment of ssh/scp: ours without AWS_*
	dir     string
	stderr  string // the shim's and plugin's stderr
	pidFile string // one line per ProxyCommand: the plugin's PID
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// pluginMode is how the ProxyCommand runs the plugin.
type pluginMode int

const (
	// childMode: the plugin is a child of the shim, as of the AWS CLI.
	childMode pluginMode = iota
	// execMode: the shim execs the plugin, which becomes the ProxyCommand.
	execMode
)

// newPluginHarness starts sshd and the emulator and writes the ProxyCommand
// script; shimFlags are extra flags for the shim (e.g. -env-response).
func newPluginHarness(t *testing.T, mode pluginMode, opts ssmtest.Options, shimFlags ...string) *pluginHarness {
	t.Helper()
	testenv.Require(t, "ssh", "sshd")
	plugin, shim := buildOfficialTools(t)
	sshd := testenv.StartSSHD(t)
	opts.TargetAddr = sshd.Addr
	if opts.Logf == nil && os.Getenv("INTEROP_EMULATOR_LOG") != "" {
		opts.Logf = t.Logf
	}
	emu, err := ssmtest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })

	dir := t.TempDir()
	h := &pluginHarness{
		t: t, sshd: sshd, emu: emu, dir: dir,
		stderr:  filepath.Join(dir, "plugin.stderr"),
		pidFile: filepath.Join(dir, "plugin.pids"),
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	flags := []string{"-v", "-pidfile", shQuote(h.pidFile)}
	if mode == childMode {
		flags = append(flags, "-child")
	}
	flags = append(flags, shimFlags...)
	script := fmt.Sprintf(`#!/bin/sh
# ssh ProxyCommand: what "aws ssm start-session --target %%h
# --document-name AWS-StartSSHSession --parameters portNumber=%%p" does.
for v in $(env | sed -n 's/^\(AWS_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
export AWS_ACCESS_KEY_ID=%[2]s
export AWS_SECRET_ACCESS_KEY=%[3]s
export AWS_REGION=%[4]s
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null
export AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_ENDPOINT_URL_SSM=%[5]s
export HOME=%[6]s
exec %[7]s -plugin %[8]s -endpoint %[5]s -region %[4]s %[1]s "$1" "$2" 2>>%[9]s
`, strings.Join(flags, " "), shQuote(ssmtest.AccessKeyID), shQuote(ssmtest.SecretAccessKey),
		shQuote(ssmtest.DefaultRegion), shQuote(emu.Endpoint()), shQuote(home), shQuote(shim),
		shQuote(plugin), shQuote(h.stderr))
	scriptPath := filepath.Join(dir, "proxy.sh")
	if err := os.WriteFile(scriptPath, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h.client = sshd.Client(t, shQuote(scriptPath)+" %h %p")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			h.env = append(h.env, kv)
		}
	}
	// Runs before emu.Close (cleanups are LIFO): a plugin still alive at
	// the end is one we started; stop it by its PID.
	t.Cleanup(h.killLeftovers)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("plugin stderr:\n%s", readFileOr(h.stderr))
			t.Logf("emulator stats: %+v", emu.Stats())
		}
	})
	return h
}

func readFileOr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return "<empty>"
	}
	return string(b)
}

func (h *pluginHarness) ssh(ctx context.Context, args ...string) *exec.Cmd {
	c := h.client.SSH(ctx, args...)
	c.Env = h.env
	return c
}

// run runs cmd, fails the test with its stderr if it fails, and returns
// stdout (unless cmd.Stdout was set) and the time it took.
func (h *pluginHarness) run(cmd *exec.Cmd) (string, time.Duration) {
	h.t.Helper()
	var out, errb bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		h.t.Fatalf("%s: %v after %s\nstderr:\n%s", strings.Join(cmd.Args, " "), err, d.Round(time.Millisecond), errb.String())
	}
	if errb.Len() > 0 {
		h.t.Logf("%s: stderr:\n%s", filepath.Base(cmd.Args[0]), errb.String())
	}
	return out.String(), d
}

// pluginPIDs returns the PIDs the ProxyCommand script recorded.
func (h *pluginHarness) pluginPIDs() []int {
	b, _ := os.ReadFile(h.pidFile)
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sessionIDs returns the SessionIds the shim printed (-v), in order.
func (h *pluginHarness) sessionIDs() []string {
	b, _ := os.ReadFile(h.stderr)
	var ids []string
	for _, line := range strings.Split(string(b), "\n") {
		if id, ok := strings.CutPrefix(line, "startsession-shim: SessionId "); ok {
			ids = append(ids, strings.TrimSpace(id))
		}
	}
	return ids
}

// terminateSession calls the emulator's TerminateSession API.
func (h *pluginHarness) terminateSession(ctx context.Context, id string) error {
	cfg := aws.Config{
		Region:           ssmtest.DefaultRegion,
		Credentials:      credentials.NewStaticCredentialsProvider(ssmtest.AccessKeyID, ssmtest.SecretAccessKey, ""),
		RetryMaxAttempts: 1,
	}
	c := ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.BaseEndpoint = aws.String(h.emu.Endpoint()) })
	_, err := c.TerminateSession(ctx, &ssm.TerminateSessionInput{SessionId: aws.String(id)})
	return err
}

// alivePlugin reports whether pid is still one of our plugin processes (and
// not a PID the kernel has reused meanwhile).
func alivePlugin(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// A zombie is an exited child nobody reaped yet (ssh reaps its
		// ProxyCommand); it is gone for our purposes.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return false
		}
	}
	return filepath.Base(exe) == PluginBinaryName
}

// waitPluginsExited waits until every plugin process of this harness has
// exited and returns the PIDs still running after timeout.
func (h *pluginHarness) waitPluginsExited(timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, pid := range h.pluginPIDs() {
			if alivePlugin(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *pluginHarness) killLeftovers() {
	for _, pid := range h.pluginPIDs() {
		if alivePlugin(pid) {
			h.t.Logf("killing leftover plugin process %d", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// checkEnded waits for the emulator to have no active session, checks that
// want sessions were started in all and that every plugin process has
// exited. what names the ssh run for messages.
func (h *pluginHarness) checkEnded(what string, want int64) ssmtest.Stats {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), idleTimeout)
	defer cancel()
	start := time.Now()
	if err := h.emu.WaitIdle(ctx); err != nil {
		h.t.Errorf("%s: emulator session left open after ssh exited: %v", what, err)
	}
	st := h.emu.Stats()
	if st.SessionsStarted != want {
		h.t.Errorf("%s: sessions started = %d, want %d", what, st.SessionsStarted, want)
	}
	if st.Active != 0 {
		h.t.Errorf("%s: active sessions = %d, want 0", what, st.Active)
	}
	if alive := h.waitPluginsExited(10 * time.Second); len(alive) > 0 {
		h.t.Errorf("%s: official plugin processes %v still running after their ssh exited", what, alive)
	}
	h.t.Logf("%s: idle after %s; endings %v; signed/unsigned/refused upgrades %d/%d/%d; bytes up/down %d/%d; retransmissions %d, duplicates %d",
		what, time.Since(start).Round(time.Millisecond), st.Endings, st.SignedUpgrades, st.UnsignedUpgrades,
		st.RefusedUpgrades, st.BytesUp, st.BytesDown, st.Retransmissions, st.DuplicatesReceived)
	return st
}

// endedOrTerminated is checkEnded for a transfer that ends with ssh's
// stdin: the plugin exits the moment its stdin ends, telling nobody, and
// under load it can exit before it has forwarded ssh's last packets
// (NOTES.md), so sshd never sees the client finish and the session stays
// open, as it would on AWS until the idle timeout. That is the plugin's
// race, not the emulator's: it is logged, the session is ended with
// TerminateSession as the emulator's cleanup, and the rest is checked.
func (h *pluginHarness) endedOrTerminated(ctx context.Context, what string, want int64) ssmtest.Stats {
	h.t.Helper()
	wctx, cancel := context.WithTimeout(ctx, idleTimeout)
	err := h.emu.WaitIdle(wctx)
	cancel()
	if err != nil {
		if alive := h.waitPluginsExited(10 * time.Second); len(alive) > 0 {
			h.t.Fatalf("%s: session open and official plugin processes %v still running after their ssh exited", what, alive)
		}
		st := h.emu.Stats()
		ids := h.sessionIDs()
		h.t.Logf("LINGERING SESSION (%s): the plugin exited before ssh's last packets reached sshd; %d active, endings %v", what, st.Active, st.Endings)
		if st.Active != 1 || len(ids) == 0 {
			h.t.Fatalf("%s: active sessions %d, session ids %q; want one open session", what, st.Active, ids)
		}
		if err := h.terminateSession(ctx, ids[len(ids)-1]); err != nil {
			h.t.Fatalf("%s: TerminateSession: %v", what, err)
		}
	}
	return h.checkEnded(what, want)
}

// idleTimeout bounds the wait for the emulator to see a session end after
// ssh has exited.
const idleTimeout = 10 * time.Second

// TestOfficialPluginSSHEcho: `ssh i-… 'echo ok'` through the official
// plugin, with the StartSession response in argv[1] and, as CLIs do for
// plugins newer than 1.2.497.0, in AWS_SSM_START_SESSION_RESPONSE.
func TestOfficialPluginSSHEcho(t *testing.T) {
	for _, c := range []struct {
		name  string
		flags []string
	}{
		{"argv", nil},
		{"env-response", []string{"-env-response"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newPluginHarness(t, childMode, ssmtest.Options{}, c.flags...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, d := h.run(h.ssh(ctx, e2eTarget, "echo ok"))
			if out != "ok\n" {
				t.Fatalf("stdout = %q, want %q", out, "ok\n")
			}
			t.Logf("ssh echo through the official plugin: %s", d.Round(time.Millisecond))
			st := h.checkEnded("ssh echo", 1)
			if st.SignedUpgrades != 1 || st.UnsignedUpgrades != 0 {
				t.Errorf("upgrades signed=%d unsigned=%d, want 1/0 (1.3.0.0 signs the upgrade, §2)", st.SignedUpgrades, st.UnsignedUpgrades)
			}
		})
	}
}

// TestOfficialPluginTransfer copies 8 MiB up and 8 MiB down through the
// official plugin, with the emulator requiring a signed websocket upgrade,
// and again with the agent's pacing (1024-byte reads, 1 ms per message).
func TestOfficialPluginTransfer(t *testing.T) {
	const size = 8 << 20
	cases := []struct {
		name  string
		opts  ssmtest.Options
		short bool // runs with -short
	}{
		{"signed", ssmtest.Options{RequireSignedUpgrade: true}, true},
		{"signed+paced", ssmtest.Options{RequireSignedUpgrade: true, Pacing: true}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && !c.short {
				t.Skip("8 MiB each way at the agent's ~1 MB/s pacing takes ~20 s")
			}
			h := newPluginHarness(t, childMode, c.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			src := filepath.Join(h.dir, "src.bin")
			want := testenv.RandomFile(t, src, size, 42)
			remote := filepath.Join(h.dir, "remote.bin")
			back := filepath.Join(h.dir, "back.bin")

			// Up: ssh host 'cat > remote' < src.
			in, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			up := h.ssh(ctx, e2eTarget, "cat > "+shQuote(remote))
			up.Stdin = in
			_, dUp := h.run(up)
			if got := testenv.FileSHA256(t, remote); got != want {
				t.Fatalf("uploaded sha256 %s, want %s", got, want)
			}
			h.endedOrTerminated(ctx, "upload", 1)

			// Down: ssh host 'cat remote' > back.
			outf, err := os.Create(back)
			if err != nil {
				t.Fatal(err)
			}
			down := h.ssh(ctx, e2eTarget, "cat "+shQuote(remote))
			down.Stdout = outf
			_, dDown := h.run(down)
			if err := outf.Close(); err != nil {
				t.Fatal(err)
			}
			if got := testenv.FileSHA256(t, back); got != want {
				t.Fatalf("downloaded sha256 %s, want %s", got, want)
			}
			mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
			t.Logf("8 MiB up %s (%.2f MB/s), down %s (%.2f MB/s)",
				dUp.Round(time.Millisecond), mbps(dUp), dDown.Round(time.Millisecond), mbps(dDown))

			st := h.endedOrTerminated(ctx, "download", 2)
			if st.SignedUpgrades == 0 || st.RefusedUpgrades != 0 {
				t.Errorf("upgrades signed=%d refused=%d, want >0 and 0", st.SignedUpgrades, st.RefusedUpgrades)
			}
			if st.BytesUp < size || st.BytesDown < size {
				t.Errorf("emulator counted %d bytes up, %d down; want at least %d each", st.BytesUp, st.BytesDown, size)
			}
		})
	}
}

// TestOfficialPluginExecSIGHUP runs the plugin as the ProxyCommand process
// itself (the shim execs it), which is how the brief for this suite and some
// hand-written ProxyCommands run it, unlike the AWS CLI. When ssh exits it
// sends SIGHUP to its ProxyCommand; that kills the plugin, which may not yet
// have forwarded ssh's last packets (its reader sleeps 1 ms per chunk). sshd
// then never sees the client finish, keeps the TCP connection to the agent
// open, and the session stays open: on AWS until the idle timeout. It is a
// race, so the test reports which way it went rather than failing on it,
// and checks that the emulator keeps such a session resumable and ends it
// on TerminateSession.
func TestOfficialPluginExecSIGHUP(t *testing.T) {
	h := newPluginHarness(t, execMode, ssmtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const size = 1 << 20
	src := filepath.Join(h.dir, "src.bin")
	want := testenv.RandomFile(t, src, size, 7)
	remote := filepath.Join(h.dir, "remote.bin")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	up := h.ssh(ctx, e2eTarget, "cat > "+shQuote(remote))
	up.Stdin = in
	_, d := h.run(up)
	if got := testenv.FileSHA256(t, remote); got != want {
		t.Fatalf("uploaded sha256 %s, want %s", got, want)
	}
	t.Logf("1 MiB up in %s", d.Round(time.Millisecond))
	if alive := h.waitPluginsExited(5 * time.Second); len(alive) > 0 {
		t.Errorf("official plugin processes %v still running after ssh exited", alive)
	}

	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	defer wcancel()
	if err := h.emu.WaitIdle(wctx); err == nil {
		t.Logf("the session ended by itself this time (endings %v): the plugin forwarded ssh's last packets before the SIGHUP", h.emu.Stats().Endings)
		return
	}
	st := h.emu.Stats()
	t.Logf("LINGERING SESSION (official plugin exec'd as the ProxyCommand, killed by ssh's SIGHUP): 3 s after ssh exited the emulator still has %d active session(s), endings %v", st.Active, st.Endings)
	if st.Active != 1 {
		t.Fatalf("active sessions = %d, want 1", st.Active)
	}
	ids := h.sessionIDs()
	if len(ids) != 1 {
		t.Fatalf("session ids from the shim: %q", ids)
	}
	if err := h.terminateSession(ctx, ids[0]); err != nil {
		t.Fatalf("TerminateSession: %v", err)
	}
	h.checkEnded("after TerminateSession", 1)
	if st := h.emu.Stats(); st.Endings[ssmtest.EndTerminated] != 1 || st.TerminatedByAPI != 1 {
		t.Errorf("endings %v, terminated by API %d; want one %q", st.Endings, st.TerminatedByAPI, ssmtest.EndTerminated)
	}
}
