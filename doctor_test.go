package main

// Tests of `ssm-proxy doctor` through run, against the emulator and local
// servers that refuse, hang or are not what they should be. What each
// failure's error and hint say for the proxy command is tested in
// endpoints_test.go and targets_test.go; here, that doctor reports each
// problem at its check, runs the checks that can still tell something,
// and fails only what fails.

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// doctorLines splits doctor's output into check lines and hints.
func doctorLines(out string) (checks, hints []string) {
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if strings.HasPrefix(l, "    hint: ") {
			hints = append(hints, strings.TrimPrefix(l, "    hint: "))
		} else {
			checks = append(checks, l)
		}
	}
	return checks, hints
}

// marks is the first rune of every check line, in order.
func marks(checks []string) string {
	var b strings.Builder
	for _, c := range checks {
		r := []rune(c)
		if len(r) > 0 {
			b.WriteRune(r[0])
		}
	}
	return b.String()
}

// sshConfig writes an ssh_config for doctor's --ssh-config (real ssh -G
// reads it; the user's files are never read).
func sshConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// viaSSMProxy is an ssh_config that sends every host through ssm-proxy.
const viaSSMProxy = "Host *\n    ProxyCommand ssm-proxy %h %p\n"

// runDoctor runs doctor with c, reading ssh configuration from config.
func runDoctor(t *testing.T, c *cli, config string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runWith(t, c, "", append([]string{"doctor", "--ssh-config", sshConfig(t, config)}, args...)...)
}

// fastAWS keeps the bounds on API calls short.
var fastAWS = awscfg.Timeouts{Connect: time.Second, Attempt: 300 * time.Millisecond, Call: time.Second, MaxBackoff: 50 * time.Millisecond}

func TestDoctorAllPass(t *testing.T) {
	emu := startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, true)})
	code, stdout, stderr := runDoctor(t, &cli{}, viaSSMProxy, "web-1")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checks, hints := doctorLines(stdout)
	api := strings.TrimPrefix(emu.Endpoint(), "http://")
	want := []string{
		"✓ ssh config: ssh web-1 runs ProxyCommand ssm-proxy %h %p: checking target web-1, port 22",
		"✓ credentials: environment variables (AWS_ACCESS_KEY_ID)",
		"✓ region: us-east-1 (from AWS_REGION)",
		"✓ identity: " + ssmtest.CallerARN + " (account 123456789012)",
		"✓ ssm endpoint: " + api + " (AWS_ENDPOINT_URL_SSM): resolves to 127.0.0.1, TCP connects, plain http",
		// The emulator serves the data channel too: a stand-in's host.
		"✓ ssmmessages endpoint: " + api + " (AWS_ENDPOINT_URL_SSM): resolves to 127.0.0.1, TCP connects, plain http",
		"✓ target: web-1 is i-0123456789abcdef0, registered with Systems Manager (EC2Instance, Amazon Linux",
		"✓ ping status: Online, last ping",
		"✓ agent version: 3.3.1142.0 (SSH needs 2.3.672.0 or later)",
		"✓ session: started ",
		"✓ port 22: answers: SSH-2.0-ssmtest",
	}
	if len(checks) != len(want) || len(hints) != 0 {
		t.Fatalf("checks:\n%s\nwant %d lines", stdout, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(checks[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i+1, checks[i], w)
		}
	}
	if !strings.HasSuffix(checks[9], "; handshake complete") {
		t.Errorf("session line %q", checks[9])
	}
	if stderr != "" {
		t.Errorf("stderr:\n%s", stderr)
	}
	if st := emu.Stats(); st.SessionsStarted != 1 || st.Active != 0 {
		t.Errorf("sessions started %d, active %d", st.SessionsStarted, st.Active)
	}
}

// silentServer accepts connections and sends nothing.
func silentServer(t *testing.T) string {
	return testenv.ServeTCP(t, func(c net.Conn) { c.Read(make([]byte, 1)) })
}

func TestDoctorSilentPort(t *testing.T) {
	startEmulator(t, ssmtest.Options{TargetAddr: silentServer(t)})
	code, stdout, _ := runDoctor(t, &cli{bannerWait: 300 * time.Millisecond}, viaSSMProxy, "i-0123456789abcdef0", "5432")
	if code != exitOK || !strings.Contains(stdout, "✓ port 5432: the agent connected; nothing received within 300ms") {
		t.Fatalf("exit %d:\n%s", code, stdout)
	}
}

// TestDoctorFailures: each failure is reported at its check with a fix;
// the checks that can still tell something run after it, the others say
// what they lack; and the run ends with exit 1.
func TestDoctorFailures(t *testing.T) {
	extra := append(ssmtest.DefaultInstances(),
		ssmtest.Instance{ID: "i-0eeeeeeeeeeeeeee6", Name: "gone", PingStatus: "Inactive"})
	// Marks, one per line: ssh config, credentials, region, identity, ssm
	// endpoint, ssmmessages endpoint, target, ping, agent, session[, port].
	cases := []struct {
		name   string
		emu    ssmtest.Options
		env    map[string]string
		config string // the ssh_config; "" for viaSSMProxy
		args   []string
		marks  string
		fail   string // the ✗ line's prefix
		hints  []string
	}{
		{"no credentials", ssmtest.Options{}, map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, "", []string{"web-1"},
			"✓✗✓-✓✓----", "✗ credentials: no AWS credentials found: tried environment variables",
			[]string{"configure credentials: pass --profile"}},
		{"refused credentials", ssmtest.Options{}, map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong"}, "", []string{"web-1"},
			"✓✓✓✗✓✓----", "✗ identity: STS GetCallerIdentity: SignatureDoesNotMatch", []string{"system clock"}},
		{"no region", ssmtest.Options{}, map[string]string{"AWS_REGION": ""}, "", []string{"web-1"},
			"✓✓✗✓------", "✗ region: no AWS region configured", []string{"--region"}},
		{"unregistered id", ssmtest.Options{}, nil, "", []string{"i-00000000000000000"},
			"✓✓✓✓✓✓✗---", "✗ target: i-00000000000000000 is not registered with Systems Manager in us-east-1",
			[]string{"AmazonSSMManagedInstanceCore", "ssm, ssmmessages and ec2messages", "443", "check the region and account"}},
		{"unknown name", ssmtest.Options{}, nil, "", []string{"web-9"},
			"✓✓✓✓✓✓✗---", `✗ target: no managed node is named "web-9"`, []string{"check the tag Name=web-9 (tag keys and values are case-sensitive), the region and the profile"}},
		{"name in another case", ssmtest.Options{}, nil, "Host *\n    ProxyCommand ssm-proxy %n %p\n", []string{"WEB-1"},
			"✓✓✓✓✓✓✗---", `✗ target: no managed node is named "WEB-1"`, []string{"did you mean web-1? i-0123456789abcdef0 has the tag Name=web-1"}},
		{"ambiguous tag", ssmtest.Options{}, nil, "", []string{"tag:Role=web"},
			"✓✓✓✓✓✓✗---", "✗ target: tag:Role=web matches 2 managed nodes: i-0123456789abcdef0", []string{"connect by instance id"}},
		{"connection lost", ssmtest.Options{}, nil, "", []string{"stopped-1"},
			"✓✓✓✓✓✓✓✗✓-", "✗ ping status: ConnectionLost, last ping", []string{"amazon-ssm-agent", "AmazonSSMManagedInstanceCore", "ssmmessages"}},
		{"inactive", ssmtest.Options{Instances: extra}, nil, "", []string{"gone"},
			"✓✓✓✓✓✓✓✗✓-", "✗ ping status: Inactive", []string{"stopped or terminated"}},
		{"old agent", ssmtest.Options{}, nil, "", []string{"old-agent"},
			"✓✓✓✓✓✓✓✓✗-", "✗ agent version: 2.3.612.0 is too old for SSH sessions (needs 2.3.672.0 or later)", []string{"AWS-UpdateSSMAgent"}},
		{"start session denied", ssmtest.Options{}, nil, "", []string{"secret-1"},
			"✓✓✓✓✓✓✓✓✓✗", "✗ session: start session: SSM StartSession: AccessDeniedException", []string{"ssm:StartSession on the instance and on the document"}},
		{"unknown document", ssmtest.Options{}, nil, "", []string{"--document", "No-Such-Doc", "web-1"},
			"✓✓✓✓✓✓✓✓✓✗", "✗ session: start session: SSM StartSession: InvalidDocument", []string{`"No-Such-Doc"`}},
		{"nothing on the port", ssmtest.Options{TargetAddr: "127.0.0.1:1"}, nil, "", []string{"web-1"},
			"✓✓✓✓✓✓✓✓✓✓✗", "✗ port 22: the agent could not connect to it: Unable to connect to specified port", []string{"sshd is running"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu := startEmulator(t, c.emu)
			setEnv(t, c.env)
			config := c.config
			if config == "" {
				config = viaSSMProxy
			}
			code, stdout, stderr := runDoctor(t, &cli{}, config, c.args...)
			if code != exitError {
				t.Errorf("exit %d, want %d", code, exitError)
			}
			checks, hints := doctorLines(stdout)
			if got := marks(checks); got != c.marks {
				t.Fatalf("marks %s, want %s:\n%s\nstderr:\n%s", got, c.marks, stdout, stderr)
			}
			var failed string
			for _, l := range checks {
				if strings.HasPrefix(l, "✗") {
					failed = l
					break
				}
			}
			if !strings.HasPrefix(failed, c.fail) {
				t.Errorf("failed check %q, want prefix %q", failed, c.fail)
			}
			all := strings.Join(hints, "\n")
			for _, h := range c.hints {
				if !strings.Contains(all, h) {
					t.Errorf("hints lack %q:\n%s", h, all)
				}
			}
			if strings.Contains(all, "--resume-timeout") || strings.Contains(all, "ssm-proxy doctor") {
				t.Errorf("a hint doctor cannot follow:\n%s", all)
			}
			if st := emu.Stats(); st.Active != 0 {
				t.Errorf("%d sessions left active", st.Active)
			}
		})
	}
}

// hangServer accepts connections on loopback, reads what is sent and never
// answers; it returns its address and the number of connections made.
func hangServer(t *testing.T) (string, func() int) {
	t.Helper()
	var conns atomic.Int32
	addr := testenv.ServeTCP(t, func(c net.Conn) {
		conns.Add(1)
		io.Copy(io.Discard, c) // until the client or the cleanup closes c
	})
	return addr, func() int { return int(conns.Load()) }
}

// untrustedTLS is a TLS server whose certificate nothing trusts.
func untrustedTLS(t *testing.T) string {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestDoctorSTSUnreachable: with only AWS_ENDPOINT_URL_SSM set (an SSM VPC
// endpoint, the usual private-subnet set-up) STS cannot be reached: a
// warning naming AWS_ENDPOINT_URL_STS, every other check passes, exit 0.
func TestDoctorSTSUnreachable(t *testing.T) {
	for name, sts := range map[string]func(t *testing.T) (string, func() int){
		"hangs":   hangServer,
		"refused": func(t *testing.T) (string, func() int) { return testenv.ClosedPort(t), nil },
	} {
		t.Run(name, func(t *testing.T) {
			startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, true)})
			addr, conns := sts(t)
			t.Setenv("AWS_ENDPOINT_URL_STS", "http://"+addr)
			code, stdout, stderr := runDoctor(t, &cli{awsTimeouts: fastAWS}, viaSSMProxy, "web-1")
			checks, hints := doctorLines(stdout)
			if code != exitOK || marks(checks) != "✓✓✓!✓✓✓✓✓✓✓" {
				t.Fatalf("exit %d, marks %s:\n%s\nstderr:\n%s", code, marks(checks), stdout, stderr)
			}
			if !strings.HasPrefix(checks[3], "! identity: STS GetCallerIdentity: ") || !strings.Contains(checks[3], addr) {
				t.Errorf("identity line %q", checks[3])
			}
			all := strings.Join(hints, "\n")
			for _, w := range []string{"AWS_ENDPOINT_URL_STS points STS at " + addr, "needs STS only to assume a role"} {
				if !strings.Contains(all, w) {
					t.Errorf("hints lack %q:\n%s", w, all)
				}
			}
			if conns != nil && conns() == 0 {
				t.Error("STS was never called")
			}
		})
	}
}

// TestDoctorEndpoints: an SSM endpoint that refuses and a messages host
// that does not resolve, accepts TCP but does no TLS, or has a certificate
// that is not trusted, each fail their own check with the VPC endpoint
// hints.
func TestDoctorEndpoints(t *testing.T) {
	hang, _ := hangServer(t)
	untrusted := untrustedTLS(t)
	deadProxy := testenv.ClosedPort(t)
	cases := []struct {
		name  string
		env   func(emu *ssmtest.Server) map[string]string
		marks string
		line  string
		hints []string
	}{
		{"ssm refused", func(*ssmtest.Server) map[string]string {
			return map[string]string{"AWS_ENDPOINT_URL_SSM": "http://" + testenv.ClosedPort(t)}
		}, "✓✓✓✓✗✗✗---", "✗ ssm endpoint: ", []string{"AWS_ENDPOINT_URL_SSM points ssm at "}},
		{"messages name does not resolve", func(*ssmtest.Server) map[string]string {
			return map[string]string{awscfg.EndpointEnvSSMMessages: "https://vpce-0123.ssmmessages.us-east-1.onion"}
		}, "✓✓✓✓✓✗✓✓✓-", "✗ ssmmessages endpoint: vpce-0123.ssmmessages.us-east-1.onion:443 (AWS_ENDPOINT_URL_SSMMESSAGES): DNS failed", []string{"AWS_ENDPOINT_URL_SSMMESSAGES points ssmmessages at vpce-0123.ssmmessages.us-east-1.onion:443"}},
		{"messages no TLS", func(*ssmtest.Server) map[string]string {
			return map[string]string{awscfg.EndpointEnvSSMMessages: "https://" + hang}
		}, "✓✓✓✓✓✗✓✓✓-", "✗ ssmmessages endpoint: " + hang + " (AWS_ENDPOINT_URL_SSMMESSAGES): TLS failed: no TLS handshake within 1s", []string{"AWS_CA_BUNDLE"}},
		{"messages through a dead proxy", func(*ssmtest.Server) map[string]string {
			return map[string]string{"HTTPS_PROXY": "http://" + deadProxy, awscfg.EndpointEnvSSMMessages: "https://vpce-0123.ssmmessages.us-east-1.onion"}
		}, "✓✓✓✓✓✗✓✓✓-", "✗ ssmmessages endpoint: vpce-0123.ssmmessages.us-east-1.onion:443 (AWS_ENDPOINT_URL_SSMMESSAGES): proxy failed: cannot reach the proxy " + deadProxy + " (HTTPS_PROXY)",
			[]string{"the proxy in HTTPS_PROXY does not work for vpce-0123.ssmmessages.us-east-1.onion:443"}},
		{"messages untrusted", func(*ssmtest.Server) map[string]string {
			return map[string]string{awscfg.EndpointEnvSSMMessages: "https://" + untrusted}
		}, "✓✓✓✓✓✗✓✓✓-", "✗ ssmmessages endpoint: " + untrusted + " (AWS_ENDPOINT_URL_SSMMESSAGES): TLS failed", []string{"set AWS_CA_BUNDLE"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu := startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, true)})
			setEnv(t, c.env(emu))
			code, stdout, stderr := runDoctor(t, &cli{awsTimeouts: fastAWS}, viaSSMProxy, "web-1")
			checks, hints := doctorLines(stdout)
			if code != exitError || marks(checks) != c.marks {
				t.Fatalf("exit %d, marks %s, want %s:\n%s\nstderr:\n%s", code, marks(checks), c.marks, stdout, stderr)
			}
			found := false
			for _, l := range checks {
				found = found || strings.HasPrefix(l, c.line)
			}
			if !found {
				t.Errorf("no line %q:\n%s", c.line, stdout)
			}
			all := strings.Join(hints, "\n")
			for _, h := range c.hints {
				if !strings.Contains(all, h) {
					t.Errorf("hints lack %q:\n%s", h, all)
				}
			}
		})
	}
}

// TestDoctorSSHConfig: doctor checks what ssh would connect to — HostName,
// Port, the ProxyCommand's flags — and says when ssh would not use
// ssm-proxy at all.
func TestDoctorSSHConfig(t *testing.T) {
	const config = `Host prod-*
    ProxyCommand /usr/local/bin/ssm-proxy --strip-prefix prod- --region us-east-1 %n %p
Host db
    HostName i-0aaaaaaaaaaaaaaa2
    Port 2222
    ProxyCommand exec ssm-proxy %h %p
Host legacy
    ProxyCommand sh -c "aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters portNumber=%p"
Host jumped
    ProxyJump bastion
`
	cases := []struct {
		args  []string
		first string // the ssh config line
		check string // a later line
		code  int
	}{
		{[]string{"prod-web-1"}, "✓ ssh config: ssh prod-web-1 runs ProxyCommand /usr/local/bin/ssm-proxy --strip-prefix prod- --region us-east-1 %n %p: checking target web-1, port 22, region us-east-1",
			"✓ target: web-1 is i-0123456789abcdef0", exitOK},
		{[]string{"db"}, "✓ ssh config: ssh db runs ProxyCommand exec ssm-proxy %h %p: checking target i-0aaaaaaaaaaaaaaa2, port 2222",
			"✓ port 2222: answers: SSH-2.0-ssmtest", exitOK},
		{[]string{"db", "2200"}, "✓ ssh config: ssh db runs ProxyCommand exec ssm-proxy %h %p: checking target i-0aaaaaaaaaaaaaaa2, port 2200",
			"✓ port 2200: answers", exitOK},
		{[]string{"legacy"}, "! ssh config: ssh legacy runs ProxyCommand sh -c \"aws ssm start-session",
			"✗ target: no managed node is named \"legacy\"", exitError},
		{[]string{"jumped"}, "! ssh config: ssh jumped jumps through bastion (ProxyJump)", "✗ target", exitError},
		{[]string{"i-0123456789abcdef0"}, "✓ ssh config: ssh i-0123456789abcdef0 runs ProxyCommand", "✓ session", exitOK},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, true)})
			text := config
			if c.args[0] == "i-0123456789abcdef0" {
				text = viaSSMProxy
			}
			code, stdout, stderr := runDoctor(t, &cli{}, text, c.args...)
			checks, _ := doctorLines(stdout)
			if code != c.code || len(checks) == 0 || !strings.HasPrefix(checks[0], c.first) {
				t.Fatalf("exit %d:\n%s\nstderr:\n%s\nwant first line %q", code, stdout, stderr, c.first)
			}
			if !strings.Contains(stdout, "\n"+c.check) {
				t.Errorf("no line %q:\n%s", c.check, stdout)
			}
		})
	}
	// No ProxyCommand for the name: a warning, and the checks go on.
	startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, true)})
	code, stdout, _ := runDoctor(t, &cli{}, "", "web-1")
	if checks, hints := doctorLines(stdout); code != exitOK || marks(checks) != "!✓✓✓✓✓✓✓✓✓✓" || !strings.Contains(hints[0], "ssm-proxy ssh-config --install") {
		t.Errorf("exit %d:\n%s", code, stdout)
	}
}

// TestDoctorHintsWording: doctor's hints never point to flags doctor does
// not take or to doctor itself.
func TestDoctorHintsWording(t *testing.T) {
	u := &used{target: "web-1", aws: awscfg.Info{Region: "us-east-1"}}
	err := &proxy.ResumeError{Attempts: 3, Err: errors.New("dial tcp: i/o timeout")}
	if h := strings.Join(hints(err, options{}, u), "\n"); !strings.Contains(h, "--resume-timeout") {
		t.Errorf("proxy command hints lack --resume-timeout:\n%s", h)
	}
	if h := strings.Join(doctorHints(err, options{}, u), "\n"); strings.Contains(h, "--resume-timeout") || !strings.Contains(h, "ssmmessages") {
		t.Errorf("doctor hints:\n%s", h)
	}
}

func TestDoctorUsage(t *testing.T) {
	for _, args := range [][]string{{"doctor"}, {"doctor", "a", "22", "x"}, {"doctor", "web-1", "ssh"}, {"doctor", "--nope", "web-1"}} {
		code, stdout, stderr := runCLI(t, "", args...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "`ssm-proxy doctor --help`") {
			t.Errorf("%q: exit %d stdout %q stderr %q", args, code, stdout, stderr)
		}
	}
	if code, stdout, _ := runCLI(t, "", "doctor", "-h"); code != exitOK || !strings.Contains(stdout, "doctor") {
		t.Errorf("doctor -h: exit %d", code)
	}
}

// TestDoctorMFA: doctor asks for the MFA code (on the terminal in real
// use) and caches the role's credentials, so the ProxyCommand that follows
// needs no terminal.
func TestDoctorMFA(t *testing.T) {
	identityEnv(t)
	asked := 0
	prompt := func(string) (string, error) { asked++; return ssmtest.MFATokenCode, nil }
	code, stdout, _ := runDoctor(t, &cli{prompt: prompt, bannerWait: 100 * time.Millisecond}, viaSSMProxy, "--profile", "mfa", "web-1")
	if code != exitOK || asked != 1 || !strings.Contains(stdout, "✓ identity: "+ssmtest.CallerARN) ||
		!strings.Contains(stdout, `✓ credentials: profile "mfa": role arn:aws:iam::123456789012:role/Admin with MFA via profile "base"`) {
		t.Fatalf("doctor: exit %d, asked %d:\n%s", code, asked, stdout)
	}
	noTerminal := func(string) (string, error) { t.Error("asked again"); return "", errNoTerminalForTest }
	if code, stdout, stderr := runWith(t, &cli{prompt: noTerminal}, "", "--profile", "mfa", "web-1", "22"); code != exitOK || stdout != sshBanner {
		t.Fatalf("ssm-proxy after doctor: exit %d stdout %q stderr:\n%s", code, stdout, stderr)
	}
}
