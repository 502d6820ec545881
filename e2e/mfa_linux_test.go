//go:build linux

package e2e

// MFA as ssh runs ssm-proxy, with a pseudo-terminal: the code is asked for
// and read on the controlling terminal, never on stdin or stdout; the next
// process uses the cached role credentials without a terminal; without
// either, one error and its hint. The prompt loop, cache and STS exchange are
// internal/awscfg's; each MFA failure through run is the root package's
// identity_test.go, doctor's MFA check doctor_test.go's.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

// openPTY opens a pseudo-terminal pair with the ptmx ioctls.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlockpt: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("ptsname: %v", e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// mfaSetup is an AWS configuration whose profile "mfa" assumes a role with
// MFA, against emu; cache is where role credentials are kept.
func mfaSetup(t *testing.T, emu *ssmtest.Server) (env []string, cache string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "aws_config")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[profile base]
aws_access_key_id = %s
aws_secret_access_key = %s
[profile mfa]
role_arn = arn:aws:iam::123456789012:role/Admin
source_profile = base
mfa_serial = arn:aws:iam::123456789012:mfa/alice
region = us-east-1
`, ssmtest.AccessKeyID, ssmtest.SecretAccessKey)), 0o600)
	cache = filepath.Join(dir, "cache")
	env = append(ssmtest.ClientEnv(t, emu.Endpoint()), "AWS_CONFIG_FILE="+cfg, "AWS_ENDPOINT_URL_STS="+emu.Endpoint(),
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "XDG_CACHE_HOME="+cache, "HOME="+dir)
	return env, cache
}

// startAsSSH runs ssm-proxy with args as ssh would: stdin and stdout
// pipes, and tty as the controlling terminal (none if nil).
func startAsSSH(t *testing.T, env []string, tty *os.File, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	t.Helper()
	cmd := exec.CommandContext(testCtx(t, time.Minute), proxyBin, args...)
	cmd.Env = env
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close() })
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if tty != nil {
		cmd.ExtraFiles = []*os.File{tty}
		cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, 3
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout, stderr
}

// answerMFA waits for the MFA prompt on master, the terminal of cmd, and
// types the emulator's code.
func answerMFA(t *testing.T, master *os.File, cmd *exec.Cmd, stderr *syncBuffer) {
	t.Helper()
	var screen syncBuffer
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := master.Read(buf)
			screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	const prompt = "ssm-proxy: MFA code for arn:aws:iam::123456789012:mfa/alice: "
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(screen.String(), prompt) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no prompt on the terminal; terminal %q, stderr:\n%s", screen.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	master.Write([]byte(ssmtest.MFATokenCode + "\n"))
}

// TestMFAOnTerminal is the ProxyCommand's life with an MFA role: ssh runs
// ssm-proxy with stdin and stdout as pipes and the user's terminal as its
// controlling terminal. The code is asked for and read there, never on
// stdin/stdout. The next connection, even without a terminal, uses the
// cached role credentials; without them and without a terminal the error
// says what to do.
func TestMFAOnTerminal(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: bannerTarget(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	env, cache := mfaSetup(t, emu)
	start := func(tty *os.File) (*exec.Cmd, *syncBuffer, *syncBuffer) {
		return startAsSSH(t, env, tty, "--profile", "mfa", instance, "22")
	}

	master, slave := openPTY(t)
	cmd, stdout, stderr := start(slave)
	slave.Close() // the child has it
	answerMFA(t, master, cmd, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v; stderr:\n%s", err, stderr.String())
	}
	if stdout.String() != "SSH-2.0-e2e\r\n" {
		t.Errorf("stdout %q: only session bytes belong there", stdout.String())
	}
	if strings.Contains(stderr.String(), "MFA") {
		t.Errorf("prompt on stderr:\n%s", stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(cache, "ssm-proxy", "*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files %v", files)
	}
	if fi, _ := os.Stat(files[0]); fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v", fi.Mode().Perm())
	}

	// No terminal, cached credentials: connects without asking.
	cmd, stdout, stderr = start(nil)
	if err := cmd.Wait(); err != nil || stdout.String() != "SSH-2.0-e2e\r\n" {
		t.Fatalf("cached: %v, stdout %q, stderr:\n%s", err, stdout.String(), stderr.String())
	}

	// No terminal, nothing cached: a clear error, exit 1, no session.
	os.Remove(files[0])
	before := emu.Stats().SessionsStarted
	cmd, stdout, stderr = start(nil)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || stdout.String() != "" {
		t.Fatalf("no terminal: %v, stdout %q", err, stdout.String())
	}
	for _, want := range []string{
		"ssm-proxy: error: cannot get AWS credentials: an MFA code is needed but there is no terminal to ask for it",
		"ssm-proxy: hint: run `ssm-proxy doctor " + instance + "` in a terminal once",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if emu.Stats().SessionsStarted != before {
		t.Error("a session was started without credentials")
	}
}

// TestMFAOnTerminalShare: with --share the session is kept by a background
// process that has no terminal; the code is asked for on the terminal of
// the ssm-proxy that starts it, before it does, and the shared process
// uses the role credentials that fetched.
func TestMFAOnTerminalShare(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: bannerTarget(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	env, _ := mfaSetup(t, emu)
	run := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	env = append(env, "XDG_RUNTIME_DIR="+run)
	stopShared(t, filepath.Join(run, "ssm-proxy"))
	master, slave := openPTY(t)
	cmd, stdout, stderr := startAsSSH(t, env, slave, "--share", "2s", "--profile", "mfa", instance, "22")
	slave.Close()
	answerMFA(t, master, cmd, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v; stderr:\n%s", err, stderr.String())
	}
	if stdout.String() != "SSH-2.0-e2e\r\n" {
		t.Errorf("stdout %q, stderr:\n%s", stdout.String(), stderr.String())
	}
	if st := emu.Stats(); st.SessionsStarted != 1 {
		t.Errorf("%d sessions started, want the shared one", st.SessionsStarted)
	}
}
