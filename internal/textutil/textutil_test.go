package textutil

// Tests of OneLine and Redact: each form in which AWS and the SDK show a
// session token, signature, access key or secret key (canonical request,
// header, query, Authorization, JSON, config line) is redacted and marked,
// and a text without secrets is left alone. That the logger and error lines
// apply it is the root package's logging_test.go; that no secret value
// reaches -v output of a real session is e2e/ssh_test.go's.

import (
	"strings"
	"testing"
)

func TestOneLine(t *testing.T) {
	if got := OneLine("\n  a\tb\n\nc  "); got != "a b c" {
		t.Errorf("OneLine = %q", got)
	}
}

func TestRedact(t *testing.T) {
	const token = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+secret/token=="
	const sig = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
	cases := []struct{ name, in, secret string }{
		{"canonical request header", "The Canonical String for this request should have been\n'POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:ssm.us-east-1.amazonaws.com\nx-amz-date:20261202T000000Z\nx-amz-security-token:" + token + "\nx-amz-target:AmazonSSM.StartSession\n'", token},
		{"http header", "X-Amz-Security-Token: " + token + "\r\n", token},
		{"query", "GET wss://h/v1/data-channel/s?X-Amz-Security-Token=" + token + "&X-Amz-Signature=" + sig, token},
		{"query signature", "GET wss://h/v1/data-channel/s?X-Amz-Security-Token=x&X-Amz-Signature=" + sig, sig},
		{"authorization", "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/ssm/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + sig, sig},
		{"authorization credential", "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/ssm/aws4_request", "AKIDEXAMPLE"},
		{"bare signature", "the signature Signature=" + sig + " did not match", sig},
		{"token json", `{"TokenValue":"AAEAAsecretvalue","SessionId":"s"}`, "AAEAAsecretvalue"},
		{"config", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"},
		// The SDK's processcreds error quotes the process's output.
		{"process output secret", `parse failed of process output: {"Version": 2, "AccessKeyId": "ASIAX", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG", "SessionToken": "FwoGZXIvYXdz"}, error: version 2 not supported`, "wJalrXUtnFEMI"},
		{"process output token", `{"SessionToken":"FwoGZXIvYXdzEJr","Expiration":"2026-12-02T00:00:00Z"}`, "FwoGZXIvYXdzEJr"},
		{"sso cache", `{"accessToken": "aoaAAAAAGsecret", "refreshToken": "aorAAAAAGsecret"}`, "aoaAAAAAGsecret"},
		{"url password", `proxyconnect tcp: dial http://alice:S3cr%t!pw@proxy.corp:3128: refused`, "S3cr%t!pw"},
		{"url password with @", `HTTPS_PROXY=http://alice:p@ss@proxy.corp:3128`, "ss@"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Redact(c.in)
			if strings.Contains(got, c.secret) {
				t.Errorf("Redact left the secret in:\n%s", got)
			}
			if !strings.Contains(got, Redacted) {
				t.Errorf("Redact did not mark what it removed:\n%s", got)
			}
		})
	}
	for _, u := range []string{"dial http://proxy.corp:3128/x failed", "wss://host:443/v1/data-channel/jane@example.com-0123"} {
		if got := Redact(u); got != u {
			t.Errorf("Redact changed a URL without a password: %s", got)
		}
	}
	const plain = "ssm StartSession: TargetNotConnected: i-0123456789abcdef0 is not connected."
	if got := Redact(plain); got != plain {
		t.Errorf("Redact changed a text without secrets: %q", got)
	}
}
