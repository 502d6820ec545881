package main

// Targets through run, and the hint table: names, tags, prefixes and
// suffixes reaching the right instance; each target error's text, hint and
// exit status with no session started; every error path of docs/protocol.md
// §10 and the proxy's own mapped to its hint and exit code (TestHints, no
// AWS); signature errors without the token. Parsing, lookup and suggestions
// are internal/target's; exit codes of the built binary e2e/exitcodes_test.go's.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

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
	const context = "ssm-proxy: hint: used target %s, region us-east-1 (AWS_REGION), credentials from environment variables"
	cases := []struct {
		name   string
		args   []string
		status int
		want   []string
	}{
		{"no match", []string{"web-9", "22"}, exitError, []string{
			`no managed node is named "web-9"`, "only nodes registered with Systems Manager in us-east-1", "check the tag Name=web-9", "ssm-proxy doctor web-9",
			fmt.Sprintf(context, "web-9")}},
		{"no tag match", []string{"tag:Role=cache", "22"}, exitError, []string{
			"no managed node has the tag Role=cache", "check the tag Role=cache (tag keys and values are case-sensitive)", fmt.Sprintf(context, "tag:Role=cache")}},
		{"tag in another case", []string{"tag:role=WEB", "22"}, exitError, []string{
			"no managed node has the tag role=WEB", "did you mean tag:Role=web? i-0123456789abcdef0 and i-0123456789abcdef1 have the tag Role=web"}},
		{"several matches", []string{"tag:Role=web", "22"}, exitError, []string{
			"tag:Role=web matches 2 managed nodes: i-0123456789abcdef0", "i-0123456789abcdef1", "connect by instance id", fmt.Sprintf(context, "tag:Role=web")}},
		{"name offline", []string{"stopped-1", "22"}, exitError, []string{
			"stopped-1 (i-0ccccccccccccccc4) is not connected to Systems Manager: PingStatus ConnectionLost, last ping", "ago",
			"systemctl status amazon-ssm-agent", "AmazonSSMManagedInstanceCore", "ssmmessages", fmt.Sprintf(context, "stopped-1")}},
		{"id offline", []string{"i-0ccccccccccccccc4", "22"}, exitError, []string{
			"TargetNotConnected", "Systems Manager reports PingStatus ConnectionLost, last ping", "AmazonSSMManagedInstanceCore", fmt.Sprintf(context, "i-0ccccccccccccccc4")}},
		{"id unknown", []string{"i-00000000000000000", "22"}, exitError, []string{
			"TargetNotConnected", "Systems Manager does not know this instance in us-east-1", "ec2messages", fmt.Sprintf(context, "i-00000000000000000")}},
		{"bad tag syntax", []string{"tag:Role", "22"}, exitUsage, []string{"want tag:Key=Value"}},
		{"bad eks_c id", []string{"eks_c:prod", "22"}, exitUsage, []string{"want eks_c:CLUSTER_ID"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu := startEmulator(t, ssmtest.Options{})
			code, stdout, stderr := runCLI(t, "", c.args...)
			if code != c.status || stdout != "" {
				t.Errorf("exit %d (want %d), stdout %q", code, c.status, stdout)
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
	sso := awscfg.Info{Profile: "dev", SSOProfile: "dev", Region: "us-east-1", RegionFrom: "AWS_REGION"}
	keys := awscfg.Info{Profile: "dev", Region: "us-east-1", RegionFrom: "AWS_REGION"}
	cases := []struct {
		name     string
		err      error
		info     awscfg.Info // the configuration the error happened with
		document string      // --document; "" for the default
		want     string
		not      string // a hint that must not be given
		code     int
	}{
		{name: "target not connected", err: api("TargetNotConnected", "i-1 is not connected."), info: sso, want: "AmazonSSMManagedInstanceCore", code: exitError},
		{name: "start session denied", err: api("AccessDeniedException", "User: x is not authorized to perform: ssm:StartSession on resource: y"), info: sso, want: "ssm:StartSession on the instance and on the document", code: exitError},
		{name: "describe denied", err: fmt.Errorf("look up web-1: %w", &smithy.OperationError{ServiceID: "SSM", OperationName: "DescribeInstanceInformation",
			Err: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User: x is not authorized to perform: ssm:DescribeInstanceInformation on resource: *"}}),
			info: sso, want: "needs ssm:DescribeInstanceInformation", code: exitError},
		{name: "invalid document", err: api("InvalidDocument", "Document with name X does not exist."), info: sso, want: `the document "AWS-StartSSHSession" does not exist`, code: exitError},
		{name: "expired token", err: api("ExpiredTokenException", "expired"), info: keys, want: `the credentials of profile "dev" were refused; refresh them`, code: exitError},
		{name: "unrecognized client", err: api("UnrecognizedClientException", "The security token included in the request is invalid."), info: sso, want: "system clock", code: exitError},
		{name: "invalid signature", err: api("InvalidSignatureException", "mismatch"), info: sso, want: "system clock", code: exitError},
		{name: "signed for another region", err: api("InvalidSignatureException", "Credential should be scoped to a valid region, not 'eu-west-1'. "), info: keys,
			want: "the request was signed for region us-east-1 (from AWS_REGION), but the SSM endpoint serves another region", not: "system clock", code: exitError},
		{name: "signed for another service", err: api("InvalidSignatureException", "Credential should be scoped to correct service: 'ssm'. "), info: keys,
			want: "answers for another AWS service than SSM: check AWS_ENDPOINT_URL_SSM", not: "system clock", code: exitError},
		{name: "advanced-instances tier", err: api("BadRequest", "Enable advanced-instances tier to use Session Manager with your on-premises instances"), info: keys,
			want: "servicesetting/ssm/managed-instance/activation-tier --setting-value advanced", code: exitError},
		{name: "throttling", err: api("ThrottlingException", "Rate exceeded"), info: sso, want: "rate-limiting", code: exitError},
		{name: "old agent", err: remote("Plugin with name Port is not supported by this version of ssm agent, please update to latest version. Step name: Port"), info: sso, want: "2.3.672.0", code: exitRemote},
		{name: "handshake timeout", err: remote("Encountered error while initiating handshake. Handshake timed out."), info: sso, want: "handshake", code: exitRemote},
		{name: "port closed", err: remote("Unable to connect to specified port: dial tcp 127.0.0.1:22: connect: connection refused"), info: sso, want: "sshd is running", code: exitRemote},
		{name: "forbidden address", err: remote("Forwarding to IP address 169.254.169.254 is forbidden."), info: sso, want: "forbidden", code: exitRemote},
		{name: "idle timeout", err: proxy.ErrIdleTimeout, info: sso, want: "ServerAliveInterval", code: exitIdle},
		{name: "resume failed", err: &proxy.ResumeError{Attempts: 9, Err: errors.New("dial tcp: i/o timeout")}, info: sso, want: "--resume-timeout", code: exitLost},
		{name: "resume failed on an endpoint", err: &proxy.ResumeError{Attempts: 4, Err: fmt.Errorf("resume session: %w", &smithy.OperationError{ServiceID: "SSM", OperationName: "ResumeSession",
			Err: &awscfg.EndpointError{Service: "SSM", Operation: "ResumeSession", Host: "vpce-1.ssm.us-east-1.vpce.amazonaws.com", Setting: "AWS_ENDPOINT_URL_SSM", Timeout: time.Second, Attempts: 3}})},
			info: sso, want: "AWS_ENDPOINT_URL_SSM points SSM at vpce-1.ssm.us-east-1.vpce.amazonaws.com", code: exitLost},
		{name: "session ended", err: proxy.ErrSessionEnded, info: sso, want: "already ended the session", code: exitLost},
		{name: "sso expired before a resume", err: &proxy.CredentialsError{Err: &awscfg.CredentialsError{Err: errors.New("cached SSO token is expired")}},
			info: sso, want: "aws sso login --profile dev", code: exitError},
		{name: "resume denied", err: fmt.Errorf("resume session: %w", &smithy.OperationError{ServiceID: "SSM", OperationName: "ResumeSession",
			Err: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User: x is not authorized to perform: ssm:ResumeSession on resource: arn:aws:ssm:us-east-1:1:session/x-1"}}),
			info: sso, want: "ssm:ResumeSession/ssm:TerminateSession on its own sessions", code: exitError},
		{name: "port-forwarding document", err: &proxy.HandshakeError{Reason: "session type LocalPortForwarding"}, info: sso, document: "AWS-StartPortForwardingSession",
			want: `use the document AWS-StartSSHSession (the default) instead of "AWS-StartPortForwardingSession"`, code: exitError},
		{name: "unsupported session type with the default document", err: &proxy.HandshakeError{Reason: "session type LocalPortForwarding"}, info: sso,
			want: "the agent asked for session type LocalPortForwarding, which ssm-proxy does not carry, although the document is AWS-StartSSHSession", not: "instead of", code: exitError},
		{name: "stream host refused", err: &proxy.StreamHostError{URL: "wss://evil.example.net", Region: "us-east-1", Reason: "not a Session Manager messages endpoint of us-east-1"},
			info: sso, want: "set AWS_ENDPOINT_URL_SSMMESSAGES to it", code: exitError},
		{name: "upgrade forbidden", err: &proxy.UpgradeError{StatusCode: http.StatusForbidden, Status: "403 Forbidden"}, info: sso,
			want: "your identity needs ssmmessages:OpenDataChannel", code: exitError},
		{name: "upgrade unknown session", err: &proxy.UpgradeError{StatusCode: http.StatusNotFound, Status: "404 Not Found"}, info: sso,
			want: "does not know the session", code: exitError},
		{name: "stdout closed", err: proxy.ErrStdoutClosed, info: sso, not: "doctor", code: exitError}, // nothing to fix on the AWS side
		{name: "no region", err: errNoRegion, info: sso, want: "--region", code: exitError},
		{name: "CA bundle", err: fmt.Errorf("load AWS configuration: %w", &awscfg.CABundleError{Setting: "AWS_CA_BUNDLE", Path: "/x.pem", Err: errors.New("does not exist")}),
			info: keys, want: "fix or unset AWS_CA_BUNDLE", code: exitError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := &used{target: "web-1", aws: c.info}
			doc := c.document
			if doc == "" {
				doc = defaultDocument
			}
			hs := strings.Join(hints(c.err, options{document: doc}, u), "\n")
			if !strings.Contains(hs, c.want) {
				t.Errorf("hints lack %q:\n%s", c.want, hs)
			}
			if c.not != "" && strings.Contains(hs, c.not) {
				t.Errorf("hints say %q:\n%s", c.not, hs)
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

// TestErrorTextRedacted: AWS echoes the canonical request it expected in
// an InvalidSignatureException, the session token among its headers; the
// error line and hints carry none of it.
func TestErrorTextRedacted(t *testing.T) {
	const token = "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKENvalue"
	msg := "The request signature we calculated does not match the signature you provided. The Canonical String for this request should have been\n" +
		"'POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:ssm.us-east-1.amazonaws.com\nx-amz-date:20260101T000000Z\n" +
		"x-amz-security-token:" + token + "\nx-amz-target:AmazonSSM.StartSession\n\ncontent-type;host;x-amz-date;x-amz-security-token;x-amz-target\n" +
		"abc'\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20260101T000000Z\n20260101/us-east-1/ssm/aws4_request\ndef'\n"
	err := fmt.Errorf("start session: %w", &smithy.OperationError{ServiceID: "SSM", OperationName: "StartSession",
		Err: &smithy.GenericAPIError{Code: "InvalidSignatureException", Message: msg}})
	u := &used{target: "web-1", aws: awscfg.Info{Credentials: "profile \"x\": x-amz-security-token:" + token}}
	all := errorText(err) + "\n" + strings.Join(hints(err, options{document: defaultDocument}, u), "\n") + "\n" + usedHint(u)
	if strings.Contains(all, token) {
		t.Fatalf("the session token is printed:\n%s", all)
	}
	if !strings.Contains(all, "x-amz-security-token:[redacted]") || !strings.Contains(all, "InvalidSignatureException") {
		t.Errorf("text:\n%s", all)
	}
}
