package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// setAWSEnv points the SDK at emu (SSM and STS) with the fixed fake
// credentials, no shared config, and HOME and the cache directory in a
// temporary directory, so nothing can reach real AWS or the user's files.
func setAWSEnv(t *testing.T, endpoint string) {
	t.Helper()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("AWS_ACCESS_KEY_ID", ssmtest.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", ssmtest.SecretAccessKey)
	t.Setenv("AWS_REGION", ssmtest.DefaultRegion)
	t.Setenv("AWS_ENDPOINT_URL_SSM", endpoint)
	t.Setenv("AWS_ENDPOINT_URL_STS", endpoint)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
}

// setEnv sets the variables in env; an empty value unsets one.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
		if v == "" {
			os.Unsetenv(k)
		}
	}
}

// writeAWSConfig makes config the shared config file (after setAWSEnv).
func writeAWSConfig(t *testing.T, config string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONFIG_FILE", p)
}

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runWith(t, &cli{}, stdin, args...)
}

// runWith runs c (its streams replaced) with args. An empty stdin stays
// open, as ssh's does, until run returns; otherwise it is stdin and EOF.
func runWith(t *testing.T, c *cli, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.stdin, c.stdout, c.stderr = strings.NewReader(stdin), &out, &errb
	if stdin == "" {
		r, w := io.Pipe()
		defer w.Close()
		c.stdin = r
	}
	code = c.run(ctx, args)
	return code, out.String(), errb.String()
}

// sshBanner is what bannerServer sends.
const sshBanner = "SSH-2.0-ssmtest\r\n"

// bannerServer listens on loopback and greets every connection with
// sshBanner, then closes it, or with hold keeps it open until the client
// closes. It returns the address, for ssmtest.Options.TargetAddr.
func bannerServer(t testing.TB, hold bool) string {
	return testenv.ServeTCP(t, func(c net.Conn) {
		io.WriteString(c, sshBanner)
		if hold {
			io.Copy(io.Discard, c)
		}
	})
}

// startEmulator starts an emulator with o and points the environment at it.
func startEmulator(t *testing.T, o ssmtest.Options) *ssmtest.Server {
	t.Helper()
	emu, err := ssmtest.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	setAWSEnv(t, emu.Endpoint())
	return emu
}

// checkOneError checks that stderr holds exactly one error line and every
// string in want.
func checkOneError(t *testing.T, stderr string, want ...string) {
	t.Helper()
	if n := strings.Count(stderr, "ssm-proxy: error:"); n != 1 {
		t.Errorf("%d error lines, want 1:\n%s", n, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no args", nil, "want TARGET and PORT, got 0"},
		{"one arg", []string{"i-0123456789abcdef0"}, "want TARGET and PORT, got 1"},
		{"three args", []string{"a", "22", "x"}, "got 3"},
		{"bad port", []string{"i-0123456789abcdef0", "ssh"}, `invalid PORT "ssh"`},
		{"port zero", []string{"i-0123456789abcdef0", "0"}, `invalid PORT "0"`},
		{"port too big", []string{"i-0123456789abcdef0", "65536"}, `invalid PORT "65536"`},
		{"unknown flag", []string{"--nope", "i-1", "22"}, "flag provided but not defined"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", c.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "Usage: ssm-proxy") {
				t.Errorf("stderr lacks %q and usage:\n%s", c.want, stderr)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, stdout, stderr := runCLI(t, "", "--help")
	if code != exitOK || stdout != "" || !strings.Contains(stderr, "Exit status") {
		t.Errorf("--help: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "", "--version")
	if code != exitOK || !strings.HasPrefix(stdout, "ssm-proxy ") {
		t.Errorf("--version: exit %d stdout %q", code, stdout)
	}
}

// TestAPIErrors: each failure is one error line plus hints on stderr, exit
// 1, nothing on stdout, and no session left open.
func TestAPIErrors(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		want   []string
		status int
	}{
		{"unknown target", nil, []string{"i-00000000000000000", "22"},
			[]string{"ssm-proxy: error: ", "TargetNotConnected", "ssm-proxy: hint: ", "AmazonSSMManagedInstanceCore", "ssmmessages"}, exitError},
		{"offline target", nil, []string{"i-0ccccccccccccccc4", "22"},
			[]string{"TargetNotConnected"}, exitError},
		{"denied target", nil, []string{"i-0ddddddddddddddd5", "22"},
			[]string{"AccessDeniedException", "ssm:StartSession"}, exitError},
		{"bad document", nil, []string{"--document", "No-Such-Doc", "i-0123456789abcdef0", "22"},
			[]string{"InvalidDocument", `"No-Such-Doc"`}, exitError},
		{"wrong secret", map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong"}, []string{"i-0123456789abcdef0", "22"},
			[]string{"InvalidSignatureException", "credentials"}, exitError},
		{"unknown key", map[string]string{"AWS_ACCESS_KEY_ID": "AKIDUNKNOWN00000000"}, []string{"i-0123456789abcdef0", "22"},
			[]string{"UnrecognizedClientException"}, exitError},
		{"no region", map[string]string{"AWS_REGION": ""}, []string{"i-0123456789abcdef0", "22"},
			[]string{"no AWS region", "--region"}, exitError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			setAWSEnv(t, emu.Endpoint())
			setEnv(t, c.env)
			before := emu.Stats()
			code, stdout, stderr := runCLI(t, "", c.args...)
			if code != c.status {
				t.Errorf("exit %d, want %d", code, c.status)
			}
			if stdout != "" {
				t.Errorf("stdout = %q", stdout)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if lines := strings.Count(stderr, "ssm-proxy: error:"); lines != 1 {
				t.Errorf("%d error lines, want 1:\n%s", lines, stderr)
			}
			if st := emu.Stats(); st.SessionsStarted != before.SessionsStarted || st.Active != 0 {
				t.Errorf("sessions started %d→%d, active %d", before.SessionsStarted, st.SessionsStarted, st.Active)
			}
		})
	}
}

// TestUnsupportedDocument: a port-forwarding document asks for a session
// type ssm-proxy does not carry; the handshake fails with a clear message
// and the session is ended on the service side.
func TestUnsupportedDocument(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	setAWSEnv(t, emu.Endpoint())
	code, stdout, stderr := runCLI(t, "", "--document", "AWS-StartPortForwardingSession", "i-0123456789abcdef0", "22")
	if code == exitOK || stdout != "" {
		t.Errorf("exit %d stdout %q", code, stdout)
	}
	if !strings.Contains(stderr, "LocalPortForwarding") {
		t.Errorf("stderr does not name the unsupported session type:\n%s", stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := emu.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if st := emu.Stats(); st.SessionsStarted != 1 {
		t.Errorf("sessions started = %d", st.SessionsStarted)
	}
}

// TestDialFailure: nothing listens on the target port; the agent's text is
// shown with a hint, exit code 3.
func TestDialFailure(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	setAWSEnv(t, emu.Endpoint())
	code, stdout, stderr := runCLI(t, "", "i-0123456789abcdef0", "22")
	if code != exitRemote || stdout != "" {
		t.Errorf("exit %d stdout %q", code, stdout)
	}
	for _, w := range []string{"Unable to connect to specified port", "ssm-proxy: hint: nothing is listening"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if st := emu.Stats(); st.Active != 0 || st.Endings[ssmtest.EndDialFailed] != 1 {
		t.Errorf("stats %+v", st)
	}
}
