package main

// The ProxyCommand through run with the emulator in-process: usage errors
// (exit 2), help and version, each command's flags against its help, API
// failures (exit 1), an unsupported document, the agent failing to dial
// (exit 3); and the helpers this package's tests share (setAWSEnv, runCLI,
// startEmulator, bannerServer, checkOneError). The built binary's exit codes
// are e2e/exitcodes_test.go's; the session itself is proxy/'s.

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
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
	// Tests of other things write no session log; sessionlog_test.go
	// turns it on where it is the subject.
	t.Setenv(sessionLogEnv, "off")
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

// TestUsageErrors: bad usage is one error line and a pointer to --help
// on stderr, nothing on stdout, exit 2; not the whole usage text.
func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"no args", nil, []string{"want TARGET and PORT, got 0", "`ssm-proxy --help`"}},
		{"one arg", []string{"i-0123456789abcdef0"}, []string{"want TARGET and PORT, got 1"}},
		{"three args", []string{"a", "22", "x"}, []string{"got 3"}},
		{"bad port", []string{"i-0123456789abcdef0", "ssh"}, []string{`invalid PORT "ssh"`}},
		{"port zero", []string{"i-0123456789abcdef0", "0"}, []string{`invalid PORT "0"`}},
		{"port too big", []string{"i-0123456789abcdef0", "65536"}, []string{`invalid PORT "65536"`}},
		{"unknown flag", []string{"--nope", "i-1", "22"}, []string{"flag provided but not defined: -nope", "`ssm-proxy --help`"}},
		{"flag value missing", []string{"--profile"}, []string{"flag needs an argument: -profile"}},
		{"bad duration", []string{"--resume-timeout", "soon", "i-1", "22"}, []string{`invalid value "soon" for flag -resume-timeout`}},
		{"flag after args", []string{"i-0123456789abcdef0", "22", "-v"}, []string{"flag -v comes after the arguments; flags go first: ssm-proxy [flags] TARGET PORT"}},
		{"flag between args", []string{"i-0123456789abcdef0", "--region", "eu-west-1", "22"}, []string{"flag --region comes after the arguments"}},
		{"to with push-key", []string{"--to", "db:22", "--push-key", "bastion"}, []string{"--push-key cannot go with --to"}},
		{"push-key with a space", []string{"--push-key", "ephemeral", "i-0123456789abcdef0", "22"}, []string{"--push-key takes its value after '=': --push-key=ephemeral"}},
		{"os-user without push-key", []string{"--os-user", "ubuntu", "i-0123456789abcdef0", "22"}, []string{"--os-user goes with --push-key"}},
		{"os-user with push-key=false", []string{"--push-key=false", "--os-user", "ubuntu", "i-0123456789abcdef0", "22"}, []string{"--os-user goes with --push-key"}},
		{"to with document", []string{"--to", "db:22", "--document", "AWS-StartSSHSession", "bastion"}, []string{"--document cannot go with --to"}},
		{"share with push-key", []string{"--share", "60s", "--push-key", "i-0123456789abcdef0", "22"}, []string{"--push-key cannot go with --share yet"}},
		{"share with document", []string{"--share", "60s", "--document", "AWS-StartSSHSession", "i-0123456789abcdef0", "22"}, []string{"--document cannot go with --share"}},
		{"fdpass without share", []string{"--fdpass", "i-0123456789abcdef0", "22"}, []string{"--fdpass goes with --share"}},
		{"share negative", []string{"--share", "-1s", "i-0123456789abcdef0", "22"}, []string{"--share -1s: want how long"}},
		{"share too short", []string{"--share", "1ns", "i-0123456789abcdef0", "22"}, []string{"--share 1ns: want how long", "at least 1s"}},
		{"to without port", []string{"--to", "db", "bastion"}, []string{`--to "db": want HOST:PORT`}},
		{"to with two targets", []string{"--to", "db:22", "bastion", "22"}, []string{"--to HOST:PORT wants one TARGET"}},
		{"forward bad spec", []string{"forward", "bastion", "5432"}, []string{`forward "5432": want [BIND:]LOCALPORT:[HOST:]PORT`}},
		{"forward no spec", []string{"forward", "bastion"}, []string{"forward: want TARGET and at least one"}},
		{"misspelt command", []string{"lsit"}, []string{`unknown command "lsit"`, "did you mean `ssm-proxy list`?"}},
		{"abbreviated command", []string{"doc"}, []string{"did you mean `ssm-proxy doctor`?"}},
		{"misspelt command with a target", []string{"doctr", "i-0123456789abcdef0"}, []string{`unknown command "doctr"`, "did you mean `ssm-proxy doctor`?"}},
		{"command after flags", []string{"-v", "--region", "eu-west-1", "list"}, []string{"the command list comes after flags", "`ssm-proxy list -v --region eu-west-1`"}},
		{"command after flags with target", []string{"-v", "doctor", "web-1"}, []string{"the command doctor comes after flags", "`ssm-proxy doctor -v web-1`"}},
		{"command after flags it does not take", []string{"-v", "--document", "X", "version"}, []string{"`ssm-proxy version`"}},
		{"doctor flag after args", []string{"doctor", "web-1", "-v"}, []string{"flags go first: ssm-proxy doctor [flags] TARGET [PORT]", "`ssm-proxy doctor --help`"}},
		{"doctor unknown flag", []string{"doctor", "--nope", "web-1"}, []string{"flag provided but not defined: -nope", "`ssm-proxy doctor --help`"}},
		{"list argument", []string{"list", "web-1"}, []string{`list: unexpected argument "web-1" (to narrow the list: --filter web-1)`}},
		{"list bad filter", []string{"list", "--filter", "tag:Env"}, []string{"list: --filter: invalid target", "tag:Key=Value"}},
		{"help two", []string{"help", "a", "b"}, []string{"help: want at most one COMMAND"}},
		{"help unknown", []string{"help", "nosuch"}, []string{`unknown command "nosuch"`}},
		{"version argument", []string{"version", "x"}, []string{`version: unexpected argument "x"`}},
		{"completion no shell", []string{"completion"}, []string{"completion: want one shell (bash, zsh, fish, powershell)"}},
		{"completion unknown shell", []string{"completion", "tcsh"}, []string{`unknown shell "tcsh"`}},
		{"ssh-config argument", []string{"ssh-config", "extra"}, []string{`ssh-config: unexpected argument "extra"`}},
		{"ssh-config file without install", []string{"ssh-config", "--file", "x"}, []string{"--file and --replace go with --install"}},
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
			checkOneError(t, stderr, c.want...)
			if strings.Contains(stderr, "Usage:") {
				t.Errorf("a usage error prints the whole usage:\n%s", stderr)
			}
			for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if !strings.HasPrefix(l, "ssm-proxy: error: ") && !strings.HasPrefix(l, "ssm-proxy: hint: ") {
					t.Errorf("stray line %q", l)
				}
			}
			if n := strings.Count(stderr, "\n"); n != 2 {
				t.Errorf("%d lines, want an error and a hint:\n%s", n, stderr)
			}
		})
	}
}

// TestHelp: --help, -h, help and help COMMAND print to stdout and exit 0;
// each command has its own help, and the overview lists every command.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}} {
		code, stdout, stderr := runCLI(t, "", args...)
		if code != exitOK || stderr != "" || stdout != topUsage() {
			t.Errorf("%q: exit %d stderr %q stdout:\n%s", args, code, stderr, stdout)
		}
	}
	overview := topUsage()
	for _, cmd := range commands() {
		if cmd.hidden {
			if strings.Contains(overview, cmd.name) {
				t.Errorf("the overview lists hidden %s", cmd.name)
			}
			continue
		}
		if !strings.Contains(overview, "    "+cmd.name+" ") {
			t.Errorf("the overview does not list %s", cmd.name)
		}
		if !strings.HasPrefix(cmd.usage, "Usage: ssm-proxy "+cmd.name) {
			t.Errorf("%s: usage starts %q", cmd.name, strings.SplitN(cmd.usage, "\n", 2)[0])
		}
		for _, args := range [][]string{{"help", cmd.name}, {cmd.name, "--help"}, {cmd.name, "-h"}} {
			code, stdout, stderr := runCLI(t, "", args...)
			if code != exitOK || stderr != "" || stdout != cmd.usage {
				t.Errorf("%q: exit %d stderr %q stdout:\n%s", args, code, stderr, stdout)
			}
		}
	}
}

// TestFlagsMatchUsage: every flag a command defines is in its help, and
// every flag its help names is defined; the flag sets are the commands'
// own, caught the way completion catches them.
func TestFlagsMatchUsage(t *testing.T) {
	flagRE := regexp.MustCompile(`(?:^|[\s,\[(])(--?[a-z][a-z0-9-]*)|(?:^\s+|,\s)(-[A-Z])\b`)
	c := &cli{}
	for _, cmd := range append([]command{proxyCommandEntry()}, commands()...) {
		if cmd.hidden {
			continue
		}
		name := cmd.name
		usage := usageOf(name)
		t.Run(cmp.Or(name, "proxy"), func(t *testing.T) {
			fs := c.flagsOf(context.Background(), name)
			if fs == nil {
				t.Fatal("no flag set caught")
			}
			defined := map[string]bool{}
			fs.VisitAll(func(f *flag.Flag) { defined[f.Name] = true })
			documented := map[string]bool{}
			for _, l := range strings.Split(usage, "\n") {
				if strings.Contains(l, "ProxyCommand") {
					continue // an example of the ProxyCommand's own flags
				}
				l = regexp.MustCompile("ssm-proxy --?[a-z-]+").ReplaceAllString(l, "")
				for _, m := range flagRE.FindAllStringSubmatch(l, -1) {
					documented[strings.TrimLeft(m[1]+m[2], "-")] = true
				}
			}
			delete(documented, "h")
			delete(documented, "help")
			for f := range defined {
				if !documented[f] {
					t.Errorf("flag %s is not in the help", f)
				}
			}
			for f := range documented {
				if !defined[f] {
					t.Errorf("the help names -%s, which is not defined", f)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, stdout, stderr := runCLI(t, "", args...)
		if code != exitOK || stderr != "" || stdout != "ssm-proxy "+version()+"\n" {
			t.Errorf("%q: exit %d stdout %q stderr %q", args, code, stdout, stderr)
		}
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

// TestTargetNamedLikeCommand: after --, a TARGET spelt like a command is
// the ProxyCommand's TARGET.
func TestTargetNamedLikeCommand(t *testing.T) {
	startEmulator(t, ssmtest.Options{
		TargetAddr: bannerServer(t, false),
		Instances:  []ssmtest.Instance{{ID: "i-0123456789abcdef0", Name: "list"}},
	})
	code, stdout, stderr := runCLI(t, "", "--session-log", "off", "--", "list", "22")
	if code != exitOK || stdout != sshBanner {
		t.Errorf("exit %d stdout %q stderr:\n%s", code, stdout, stderr)
	}
}

// TestDeferGC: the process starts with GOGC=400 and returns to its old
// percentage when the timer fires; a GOGC in the environment is left alone.
func TestDeferGC(t *testing.T) {
	var fire func()
	defer func(f func(time.Duration, func())) { afterFunc = f }(afterFunc)
	afterFunc = func(d time.Duration, f func()) {
		if d != 3*time.Second {
			t.Errorf("restored after %v, want 3s", d)
		}
		fire = f
	}
	percent := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	defer debug.SetGCPercent(debug.SetGCPercent(100))

	t.Setenv("GOGC", "")
	deferGC(3 * time.Second)
	if got := percent(); got != 400 || fire == nil {
		t.Fatalf("after deferGC: GOGC %d (timer set: %v), want 400 and a timer", got, fire != nil)
	}
	fire()
	if got := percent(); got != 100 {
		t.Fatalf("after the timer: GOGC %d, want 100 again", got)
	}

	fire = nil
	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	deferGC(3 * time.Second)
	if got := percent(); got != 50 || fire != nil {
		t.Fatalf("with GOGC=50 set: GOGC %d (timer set: %v), want 50 and no timer", got, fire != nil)
	}
}
