package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// TestTargetNames: names, tags and the .ssm suffix reach the right
// instance.
func TestTargetNames(t *testing.T) {
	for _, args := range [][]string{
		{"web-1", "22"},
		{"tag:Role=bastion", "22"},
		{"--strip-suffix", ".ssm", "web-1.ssm", "22"},
		{"--strip-suffix", ".ssm", "i-0123456789abcdef0.ssm", "22"},
		{"--strip-prefix", "prod-", "prod-web-1", "22"},
		{"onprem-1", "22"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			emu := startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, false)})
			code, stdout, stderr := runCLI(t, "", args...)
			if code != exitOK || stdout != sshBanner {
				t.Fatalf("exit %d stdout %q stderr:\n%s", code, stdout, stderr)
			}
			if st := emu.Stats(); st.SessionsStarted != 1 {
				t.Errorf("sessions started %d", st.SessionsStarted)
			}
		})
	}
}

// TestTargetErrors: a name that matches nothing, several nodes or an
// offline node, and ids Session Manager cannot reach, each say what is
// wrong and start no session.
func TestTargetErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"no match", []string{"web-9", "22"}, []string{
			`no managed node is named "web-9"`, "only nodes registered with Systems Manager in us-east-1", "ssm-proxy doctor web-9"}},
		{"no tag match", []string{"tag:Role=cache", "22"}, []string{"no managed node has the tag Role=cache"}},
		{"several matches", []string{"tag:Role=web", "22"}, []string{
			"tag:Role=web matches 2 managed nodes: i-0123456789abcdef0", "i-0123456789abcdef1", "connect by instance id"}},
		{"name offline", []string{"stopped-1", "22"}, []string{
			"stopped-1 (i-0ccccccccccccccc4) is not connected to Systems Manager: PingStatus ConnectionLost, last ping", "ago",
			"systemctl status amazon-ssm-agent", "AmazonSSMManagedInstanceCore", "ssmmessages"}},
		{"id offline", []string{"i-0ccccccccccccccc4", "22"}, []string{
			"TargetNotConnected", "Systems Manager reports PingStatus ConnectionLost, last ping", "AmazonSSMManagedInstanceCore"}},
		{"id unknown", []string{"i-00000000000000000", "22"}, []string{
			"TargetNotConnected", "Systems Manager does not know this instance in us-east-1", "ec2messages"}},
		{"bad tag syntax", []string{"tag:Role", "22"}, []string{"want tag:Key=Value"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu := startEmulator(t, ssmtest.Options{})
			code, stdout, stderr := runCLI(t, "", c.args...)
			want := exitError
			if c.name == "bad tag syntax" {
				want = exitUsage
			} else {
				c.want = append(c.want, "ssm-proxy: hint: used target "+c.args[0]+", region us-east-1 (AWS_REGION), credentials from environment variables")
			}
			if code != want || stdout != "" {
				t.Errorf("exit %d, stdout %q", code, stdout)
			}
			checkOneError(t, stderr, c.want...)
			if st := emu.Stats(); st.SessionsStarted != 0 {
				t.Errorf("sessions started %d", st.SessionsStarted)
			}
		})
	}
}

// TestHints maps every error path of docs/protocol.md §10, and the proxy's
// own, to its hint.
func TestHints(t *testing.T) {
	api := func(code, msg string) error {
		return fmt.Errorf("start session: %w", &smithy.OperationError{ServiceID: "SSM", OperationName: "StartSession",
			Err: &smithy.GenericAPIError{Code: code, Message: msg}})
	}
	remote := func(out string) error { return &proxy.RemoteError{Output: out} }
	cases := []struct {
		name string
		err  error
		want string
		code int
	}{
		{"target not connected", api("TargetNotConnected", "i-1 is not connected."), "AmazonSSMManagedInstanceCore", exitError},
		{"start session denied", api("AccessDeniedException", "User: x is not authorized to perform: ssm:StartSession on resource: y"), "ssm:StartSession on the instance and on the document", exitError},
		{"describe denied", fmt.Errorf("look up web-1: %w", &smithy.OperationError{ServiceID: "SSM", OperationName: "DescribeInstanceInformation",
			Err: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User: x is not authorized to perform: ssm:DescribeInstanceInformation on resource: *"}}),
			"needs ssm:DescribeInstanceInformation", exitError},
		{"invalid document", api("InvalidDocument", "Document with name X does not exist."), `the document "AWS-StartSSHSession" does not exist`, exitError},
		{"expired token", api("ExpiredTokenException", "expired"), "were refused; refresh them", exitError},
		{"unrecognized client", api("UnrecognizedClientException", "The security token included in the request is invalid."), "system clock", exitError},
		{"invalid signature", api("InvalidSignatureException", "mismatch"), "system clock", exitError},
		{"throttling", api("ThrottlingException", "Rate exceeded"), "rate-limiting", exitError},
		{"old agent", remote("Plugin with name Port is not supported by this version of ssm agent, please update to latest version. Step name: Port"), "2.3.672.0", exitRemote},
		{"handshake timeout", remote("Encountered error while initiating handshake. Handshake timed out."), "handshake", exitRemote},
		{"port closed", remote("Unable to connect to specified port: dial tcp 127.0.0.1:22: connect: connection refused"), "sshd is running", exitRemote},
		{"forbidden address", remote("Forwarding to IP address 169.254.169.254 is forbidden."), "forbidden", exitRemote},
		{"idle timeout", proxy.ErrIdleTimeout, "ServerAliveInterval", exitIdle},
		{"resume failed", &proxy.ResumeError{Attempts: 9, Err: errors.New("dial tcp: i/o timeout")}, "--resume-timeout", exitLost},
		{"session ended", proxy.ErrSessionEnded, "already ended the session", exitLost},
		{"sso expired before a resume", &proxy.CredentialsError{Err: &awscfg.CredentialsError{Err: errors.New("cached SSO token is expired")}},
			"aws sso login --profile dev", exitError},
		{"resume denied", fmt.Errorf("resume session: %w", &smithy.OperationError{ServiceID: "SSM", OperationName: "ResumeSession",
			Err: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User: x is not authorized to perform: ssm:ResumeSession on resource: arn:aws:ssm:us-east-1:1:session/x-1"}}),
			"ssm:ResumeSession/ssm:TerminateSession on its own sessions", exitError},
		{"unsupported session type", &proxy.HandshakeError{Reason: "session type LocalPortForwarding"}, "AWS-StartSSHSession", exitError},
		{"no region", errNoRegion, "--region", exitError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := &used{target: "web-1", aws: awscfg.Info{Profile: "dev", SSOProfile: "dev", Region: "us-east-1"}}
			if c.name == "expired token" {
				u.aws.SSOProfile = ""
			}
			hs := strings.Join(hints(c.err, options{document: "AWS-StartSSHSession"}, u), "\n")
			if !strings.Contains(hs, c.want) {
				t.Errorf("hints lack %q:\n%s", c.want, hs)
			}
			if got := exitCode(c.err); got != c.code {
				t.Errorf("exit code %d, want %d", got, c.code)
			}
			if txt := errorText(c.err); strings.Contains(txt, "\n") || txt == "" {
				t.Errorf("error text %q", txt)
			}
		})
	}
}
