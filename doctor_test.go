package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// doctorLines splits doctor's output into check lines (✓/✗) and hints.
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

func TestDoctorAllPass(t *testing.T) {
	emu := startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, true)})
	code, stdout, stderr := runCLI(t, "", "doctor", "web-1")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checks, hints := doctorLines(stdout)
	want := []string{
		"✓ credentials: " + ssmtest.CallerARN + " (account 123456789012), from environment variables",
		"✓ region: us-east-1 (from AWS_REGION)",
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
	if !strings.HasSuffix(checks[5], "; handshake complete") {
		t.Errorf("session line %q", checks[5])
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
	code, stdout, _ := runWith(t, &cli{bannerWait: 300 * time.Millisecond}, "", "doctor", "i-0123456789abcdef0", "5432")
	if code != exitOK || !strings.Contains(stdout, "✓ port 5432: the agent connected; nothing received within 300ms") {
		t.Fatalf("exit %d:\n%s", code, stdout)
	}
}

// TestDoctorFailures: each failure is reported at its check, with a fix,
// after the checks that passed, and ends the run with exit 1.
func TestDoctorFailures(t *testing.T) {
	extra := append(ssmtest.DefaultInstances(),
		ssmtest.Instance{ID: "i-0eeeeeeeeeeeeeee6", Name: "gone", PingStatus: "Inactive"})
	cases := []struct {
		name   string
		emu    ssmtest.Options
		env    map[string]string
		args   []string
		passed int    // ✓ lines before the ✗
		fail   string // the ✗ line's prefix
		hints  []string
	}{
		{"no credentials", ssmtest.Options{}, map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, []string{"web-1"},
			0, "✗ credentials: cannot get AWS credentials", []string{"no AWS credentials found"}},
		{"refused credentials", ssmtest.Options{}, map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong"}, []string{"web-1"},
			0, "✗ credentials: STS GetCallerIdentity: SignatureDoesNotMatch", []string{"system clock"}},
		{"no region", ssmtest.Options{}, map[string]string{"AWS_REGION": ""}, []string{"web-1"},
			1, "✗ region: no AWS region configured", []string{"--region"}},
		{"unregistered id", ssmtest.Options{}, nil, []string{"i-00000000000000000"},
			2, "✗ target: i-00000000000000000 is not registered with Systems Manager in us-east-1",
			[]string{"AmazonSSMManagedInstanceCore", "ssm, ssmmessages and ec2messages", "443", "check the region and account"}},
		{"unknown name", ssmtest.Options{}, nil, []string{"web-9"},
			2, `✗ target: no managed node is named "web-9"`, []string{"check the Name tag, the region and the profile"}},
		{"ambiguous tag", ssmtest.Options{}, nil, []string{"tag:Role=web"},
			2, "✗ target: tag:Role=web matches 2 managed nodes: i-0123456789abcdef0", []string{"connect by instance id"}},
		{"connection lost", ssmtest.Options{}, nil, []string{"stopped-1"},
			3, "✗ ping status: ConnectionLost, last ping", []string{"amazon-ssm-agent", "AmazonSSMManagedInstanceCore", "ssmmessages"}},
		{"inactive", ssmtest.Options{Instances: extra}, nil, []string{"gone"},
			3, "✗ ping status: Inactive", []string{"stopped or terminated"}},
		{"old agent", ssmtest.Options{}, nil, []string{"old-agent"},
			4, "✗ agent version: 2.3.612.0 is too old for SSH sessions (needs 2.3.672.0 or later)", []string{"AWS-UpdateSSMAgent"}},
		{"start session denied", ssmtest.Options{}, nil, []string{"secret-1"},
			5, "✗ session: start session: SSM StartSession: AccessDeniedException", []string{"ssm:StartSession on the instance and on the document"}},
		{"unknown document", ssmtest.Options{}, nil, []string{"--document", "No-Such-Doc", "web-1"},
			5, "✗ session: start session: SSM StartSession: InvalidDocument", []string{`"No-Such-Doc"`}},
		{"nothing on the port", ssmtest.Options{TargetAddr: "127.0.0.1:1"}, nil, []string{"web-1"},
			6, "✗ port 22: the agent could not connect to it: Unable to connect to specified port", []string{"sshd is running"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu := startEmulator(t, c.emu)
			setEnv(t, c.env)
			code, stdout, stderr := runCLI(t, "", append([]string{"doctor"}, c.args...)...)
			if code != exitError {
				t.Errorf("exit %d, want %d", code, exitError)
			}
			checks, hints := doctorLines(stdout)
			if len(checks) != c.passed+1 {
				t.Fatalf("%d check lines, want %d:\n%s\nstderr:\n%s", len(checks), c.passed+1, stdout, stderr)
			}
			for i, l := range checks[:c.passed] {
				if !strings.HasPrefix(l, "✓ ") {
					t.Errorf("line %d not passed: %q", i+1, l)
				}
			}
			if !strings.HasPrefix(checks[c.passed], c.fail) {
				t.Errorf("failed check %q, want prefix %q", checks[c.passed], c.fail)
			}
			all := strings.Join(hints, "\n")
			for _, h := range c.hints {
				if !strings.Contains(all, h) {
					t.Errorf("hints lack %q:\n%s", h, all)
				}
			}
			if st := emu.Stats(); st.Active != 0 {
				t.Errorf("%d sessions left active", st.Active)
			}
		})
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
	code, stdout, _ := runWith(t, &cli{prompt: prompt, bannerWait: 100 * time.Millisecond}, "", "doctor", "--profile", "mfa", "web-1")
	if code != exitOK || asked != 1 || !strings.Contains(stdout, "✓ credentials: "+ssmtest.CallerARN) ||
		!strings.Contains(stdout, `role arn:aws:iam::123456789012:role/Admin with MFA via profile "base"`) {
		t.Fatalf("doctor: exit %d, asked %d:\n%s", code, asked, stdout)
	}
	noTerminal := func(string) (string, error) { t.Error("asked again"); return "", errNoTerminalForTest }
	if code, stdout, stderr := runWith(t, &cli{prompt: noTerminal}, "", "--profile", "mfa", "web-1", "22"); code != exitOK || stdout != sshBanner {
		t.Fatalf("ssm-proxy after doctor: exit %d stdout %q stderr:\n%s", code, stdout, stderr)
	}
}
