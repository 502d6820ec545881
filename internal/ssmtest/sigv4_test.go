package ssmtest

// The emulator's SigV4 verifier (sigv4.go): API calls, websocket upgrades and
// presigned URLs, with and without session tokens, against wrong keys,
// regions and services, clock skew, expiry and altered requests; the
// canonical URI's double encoding; AWS's get-vanilla known answer; what a
// mismatch logs. Refusals end to end are api_test.go's and agent_test.go's;
// ssm-proxy's own signing is e2e/ssh_test.go's (TestSSHRequireSigned).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sigNow is the server's clock in these tests.
var sigNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

const (
	// sigStreamPath is a data-channel path whose SessionId contains '@', as
	// SSO callers' ids do (§2).
	sigStreamPath  = "/v1/data-channel/jane%40example.com-0123456789abcdef0"
	sigStreamQuery = "role=publish_subscribe&cell-number=AAEAAb%2Fx%2Bz%3D%3D"
)

func sigCredentials(key, token string) aws.Credentials {
	return aws.Credentials{AccessKeyID: key, SecretAccessKey: SecretAccessKey, SessionToken: token}
}

func sigHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sigReceived sends r through the HTTP/1.1 wire format and parses it as a
// server would, so that Host, RequestURI and Content-Length are where
// net/http's server puts them.
func sigReceived(t *testing.T, r *http.Request) *http.Request {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// sigAPIRequest is an SSM API call as the SDK sends it, signed at signedAt.
func sigAPIRequest(t *testing.T, creds aws.Credentials, region string, signedAt time.Time, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:4566/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", apiContentType)
	r.Header.Set("X-Amz-Target", "AmazonSSM.StartSession")
	err = v4.NewSigner().SignHTTP(context.Background(), creds, r, sigHash([]byte(body)), "ssm", region, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sigUpgradeRequest is a websocket upgrade GET as ssm-proxy and plugin
// 1.3.0.0 send it (§2), signed at signedAt for service.
func sigUpgradeRequest(t *testing.T, creds aws.Credentials, service string, signedAt time.Time) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:4566"+sigStreamPath+"?"+sigStreamQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Version", "13")
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, sigHash(nil), service, DefaultRegion, signedAt); err != nil {
		t.Fatal(err)
	}
	return r
}

// sigPresignedRequest is a StreamUrl presigned for ssmmessages, valid for
// expires from signedAt.
func sigPresignedRequest(t *testing.T, creds aws.Credentials, signedAt time.Time, expires time.Duration) *http.Request {
	t.Helper()
	query := sigStreamQuery + "&X-Amz-Expires=" + strconv.Itoa(int(expires.Seconds()))
	r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:4566"+sigStreamPath+"?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	uri, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), creds, r, sigHash(nil), "ssmmessages", DefaultRegion, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	p, err := http.NewRequest(http.MethodGet, uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k != "Host" {
			p.Header[k] = v
		}
	}
	return p
}

func TestVerifySignature(t *testing.T) {
	body := `{"Target":"i-0123456789abcdef0","DocumentName":"AWS-StartSSHSession"}`
	plain := sigCredentials(AccessKeyID, "")
	cases := []struct {
		name    string
		req     func(t *testing.T) *http.Request
		body    string // body passed to the verifier; "-" for none
		service string
		code    string // "" means valid
		msg     string // substring of the message
	}{
		{name: "api call", service: "ssm", body: body,
			req: func(t *testing.T) *http.Request { return sigAPIRequest(t, plain, DefaultRegion, sigNow, body) }},
		{name: "api call with session token", service: "ssm", body: body,
			req: func(t *testing.T) *http.Request {
				return sigAPIRequest(t, sigCredentials(AccessKeyID, "FwoGZXIvYXdzEXAMPLE//token+="), DefaultRegion, sigNow, body)
			}},
		{name: "temporary key with token", service: "ssm", body: body,
			req: func(t *testing.T) *http.Request {
				return sigAPIRequest(t, sigCredentials(SessionAccessKeyID, "session-token"), DefaultRegion, sigNow, body)
			}},
		{name: "temporary key without token", service: "ssm", body: body, code: "UnrecognizedClientException", msg: msgInvalidToken,
			req: func(t *testing.T) *http.Request {
				return sigAPIRequest(t, sigCredentials(SessionAccessKeyID, ""), DefaultRegion, sigNow, body)
			}},
		{name: "expired session token", service: "ssm", body: body, code: "ExpiredTokenException", msg: msgExpiredToken,
			req: func(t *testing.T) *http.Request {
				return sigAPIRequest(t, sigCredentials(SessionAccessKeyID, ExpiredSessionToken), DefaultRegion, sigNow, body)
			}},
		{name: "unknown key", service: "ssm", body: body, code: "UnrecognizedClientException", msg: msgInvalidToken,
			req: func(t *testing.T) *http.Request {
				return sigAPIRequest(t, sigCredentials("AKIDUNKNOWN00000000", ""), DefaultRegion, sigNow, body)
			}},
		{name: "wrong secret", service: "ssm", body: body, code: "InvalidSignatureException", msg: msgSignatureMismatch,
			req: func(t *testing.T) *http.Request {
				c := plain
				c.SecretAccessKey = "wrong"
				return sigAPIRequest(t, c, DefaultRegion, sigNow, body)
			}},
		{name: "wrong region", service: "ssm", body: body, code: "InvalidSignatureException", msg: "scoped to a valid region, not 'eu-west-1'",
			req: func(t *testing.T) *http.Request { return sigAPIRequest(t, plain, "eu-west-1", sigNow, body) }},
		{name: "wrong service", service: "ssmmessages", body: body, code: "InvalidSignatureException", msg: "scoped to correct service: 'ssmmessages'",
			req: func(t *testing.T) *http.Request { return sigAPIRequest(t, plain, DefaultRegion, sigNow, body) }},
		{name: "within skew", service: "ssm", body: body,
			req: func(t *testing.T) *http.Request {
				return sigAPIRequest(t, plain, DefaultRegion, sigNow.Add(-4*time.Minute), body)
			}},
		{name: "too old", service: "ssm", body: body, code: "InvalidSignatureException", msg: "Signature expired: 20260314T150326Z is now earlier than 20260314T150426Z (20260314T150926Z - 5 min.)",
			req: func(t *testing.T) *http.Request {
				return sigAPIRequest(t, plain, DefaultRegion, sigNow.Add(-6*time.Minute), body)
			}},
		{name: "in the future", service: "ssm", body: body, code: "InvalidSignatureException", msg: "Signature not yet current",
			req: func(t *testing.T) *http.Request {
				return sigAPIRequest(t, plain, DefaultRegion, sigNow.Add(6*time.Minute), body)
			}},
		{name: "body changed", service: "ssm", body: strings.Replace(body, "i-0123456789abcdef0", "i-0aaaaaaaaaaaaaaa2", 1),
			code: "InvalidSignatureException", msg: msgSignatureMismatch,
			req: func(t *testing.T) *http.Request { return sigAPIRequest(t, plain, DefaultRegion, sigNow, body) }},
		{name: "signed header changed", service: "ssm", body: body, code: "InvalidSignatureException", msg: msgSignatureMismatch,
			req: func(t *testing.T) *http.Request {
				r := sigAPIRequest(t, plain, DefaultRegion, sigNow, body)
				r.Header.Set("X-Amz-Target", "AmazonSSM.TerminateSession")
				return r
			}},
		{name: "content hash contradicts body", service: "ssm", body: body, code: "InvalidSignatureException", msg: "x-amz-content-sha256",
			req: func(t *testing.T) *http.Request {
				r := sigAPIRequest(t, plain, DefaultRegion, sigNow, body)
				r.Header.Set("X-Amz-Content-Sha256", sigHash(nil))
				return r
			}},
		{name: "host not signed", service: "ssm", body: body, code: "InvalidSignatureException", msg: "'Host' or ':authority' must be a 'SignedHeader'",
			req: func(t *testing.T) *http.Request {
				r := sigAPIRequest(t, plain, DefaultRegion, sigNow, body)
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=content-length;content-type;host;", "SignedHeaders=content-length;content-type;", 1))
				return r
			}},
		{name: "no signature parameter", service: "ssm", body: body, code: "IncompleteSignatureException", msg: "requires 'Signature' parameter",
			req: func(t *testing.T) *http.Request {
				r := sigAPIRequest(t, plain, DefaultRegion, sigNow, body)
				auth := r.Header.Get("Authorization")
				r.Header.Set("Authorization", auth[:strings.Index(auth, ", Signature=")])
				return r
			}},
		{name: "upgrade", service: "ssmmessages", body: "-",
			req: func(t *testing.T) *http.Request { return sigUpgradeRequest(t, plain, "ssmmessages", sigNow) }},
		{name: "upgrade with session token", service: "ssmmessages", body: "-",
			req: func(t *testing.T) *http.Request {
				return sigUpgradeRequest(t, sigCredentials(SessionAccessKeyID, "IQoJb3JpZ2luX2VjEXAMPLE"), "ssmmessages", sigNow)
			}},
		{name: "upgrade signed for ssm", service: "ssmmessages", body: "-", code: "InvalidSignatureException", msg: "scoped to correct service",
			req: func(t *testing.T) *http.Request { return sigUpgradeRequest(t, plain, "ssm", sigNow) }},
		{name: "upgrade path changed", service: "ssmmessages", body: "-", code: "InvalidSignatureException", msg: msgSignatureMismatch,
			req: func(t *testing.T) *http.Request {
				r := sigUpgradeRequest(t, plain, "ssmmessages", sigNow)
				r.URL.RawPath = strings.Replace(sigStreamPath, "%40", "@", 1)
				r.URL.Path = strings.Replace(sigStreamPath, "%40", "@", 1)
				return r
			}},
		{name: "upgrade query changed", service: "ssmmessages", body: "-", code: "InvalidSignatureException", msg: msgSignatureMismatch,
			req: func(t *testing.T) *http.Request {
				r := sigUpgradeRequest(t, plain, "ssmmessages", sigNow)
				r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "cell-number=AAEAAb", "cell-number=AAEAAc", 1)
				return r
			}},
		{name: "unsigned", service: "ssmmessages", body: "-", code: "unsigned",
			req: func(t *testing.T) *http.Request {
				r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:4566"+sigStreamPath+"?"+sigStreamQuery, nil)
				return r
			}},
		{name: "presigned", service: "ssmmessages", body: "-",
			req: func(t *testing.T) *http.Request {
				return sigPresignedRequest(t, plain, sigNow.Add(-time.Minute), 5*time.Minute)
			}},
		{name: "presigned with session token", service: "ssmmessages", body: "-",
			req: func(t *testing.T) *http.Request {
				return sigPresignedRequest(t, sigCredentials(SessionAccessKeyID, "IQoJb3JpZ2luX2VjEXAMPLE"), sigNow, time.Minute)
			}},
		{name: "presigned expired", service: "ssmmessages", body: "-", code: "InvalidSignatureException", msg: "Signature expired",
			req: func(t *testing.T) *http.Request {
				return sigPresignedRequest(t, plain, sigNow.Add(-2*time.Minute), time.Minute)
			}},
		{name: "presigned wrong secret", service: "ssmmessages", body: "-", code: "InvalidSignatureException", msg: msgSignatureMismatch,
			req: func(t *testing.T) *http.Request {
				c := plain
				c.SecretAccessKey = "wrong"
				return sigPresignedRequest(t, c, sigNow, time.Minute)
			}},
		{name: "presigned expiry changed", service: "ssmmessages", body: "-", code: "InvalidSignatureException", msg: msgSignatureMismatch,
			req: func(t *testing.T) *http.Request {
				r := sigPresignedRequest(t, plain, sigNow, time.Minute)
				r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "X-Amz-Expires=60", "X-Amz-Expires=600", 1)
				return r
			}},
		{name: "presigned and header", service: "ssmmessages", body: "-", code: "IncompleteSignatureException", msg: "Only one auth mechanism",
			req: func(t *testing.T) *http.Request {
				r := sigPresignedRequest(t, plain, sigNow, time.Minute)
				r.Header.Set("Authorization", sigUpgradeRequest(t, plain, "ssmmessages", sigNow).Header.Get("Authorization"))
				return r
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "-" {
				body = []byte(c.body)
			}
			_, err := verifySignature(sigReceived(t, c.req(t)), body, DefaultRegion, c.service, sigNow, false)
			checkSigError(t, err, c.code, c.msg)
		})
	}
}

// checkSigError checks err against the expected code ("" for none,
// "unsigned" for errUnsigned) and message substring.
func checkSigError(t *testing.T, err error, code, msg string) {
	t.Helper()
	switch code {
	case "":
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		return
	case "unsigned":
		if !errors.Is(err, errUnsigned) {
			t.Fatalf("err = %v, want errUnsigned", err)
		}
		return
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want %s", err, code)
	}
	if ae.Code != code || !strings.Contains(ae.Message, msg) || ae.Status != http.StatusBadRequest {
		t.Errorf("err = %d %s %q, want 400 %s containing %q", ae.Status, ae.Code, ae.Message, code, msg)
	}
}

// TestCanonicalURIDoubleEncodes pins §2: the escaped path is encoded once
// more, so %40 becomes %2540, and the query is sorted and RFC 3986-encoded.
func TestCanonicalURIDoubleEncodes(t *testing.T) {
	r := sigReceived(t, sigUpgradeRequest(t, sigCredentials(AccessKeyID, ""), "ssmmessages", sigNow))
	if got, want := canonicalURI(r), "/v1/data-channel/jane%2540example.com-0123456789abcdef0"; got != want {
		t.Errorf("canonical URI = %q, want %q", got, want)
	}
	if got, want := canonicalQuery("b=2&a=x%20y+z&a=%2F&cell-number=AAE%3D", false), "a=%2F&a=x%20y%20z&b=2&cell-number=AAE%3D"; got != want {
		t.Errorf("canonical query = %q, want %q", got, want)
	}
	if got, want := canonicalQuery("X-Amz-Signature=abc&X-Amz-Date=1", true), "X-Amz-Date=1"; got != want {
		t.Errorf("presigned canonical query = %q, want %q", got, want)
	}
}

// TestVerifySignatureKnownAnswer checks the "get-vanilla" case of the
// public SigV4 test suite, which happens to use the emulator's key pair,
// independently of the SDK.
func TestVerifySignatureKnownAnswer(t *testing.T) {
	raw := "GET / HTTP/1.1\r\n" +
		"Host: example.amazonaws.com\r\n" +
		"X-Amz-Date: 20150830T123600Z\r\n" +
		"Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, " +
		"SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	if _, err := verifySignature(r, nil, "us-east-1", "service", now, false); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

// TestSignatureMismatchLogsCanonicalRequest: the log names what the
// emulator signed, without the session token.
func TestSignatureMismatchLogsCanonicalRequest(t *testing.T) {
	var logged []string
	s := &Server{opts: Options{Region: DefaultRegion, Logf: func(f string, a ...any) {
		logged = append(logged, f)
		for _, v := range a {
			logged = append(logged, v.(string))
		}
	}}}
	c := sigCredentials(SessionAccessKeyID, "SECRET-SESSION-TOKEN")
	c.SecretAccessKey = "wrong"
	r := sigReceived(t, sigUpgradeRequest(t, c, "ssmmessages", time.Now()))
	checkSigError(t, s.verifySigV4(r, "ssmmessages", nil), "InvalidSignatureException", msgSignatureMismatch)
	all := strings.Join(logged, "\n")
	if !strings.Contains(all, "jane%2540example.com") || strings.Contains(all, "SECRET-SESSION-TOKEN") {
		t.Errorf("log:\n%s", all)
	}
}
