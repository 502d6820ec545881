package main

// The failures of the way to AWS as a user meets them, through run: an
// endpoint that never answers, refuses or is something else; a proxy that
// is dead; STS unreachable for assume-role; a CA bundle that is missing or
// not PEM; no credentials anywhere; a signature for the wrong region;
// errors that echo a session token. Each is one error line naming the
// cause, hints naming the fix, exit 1, nothing on stdout and no session.
// internal/awscfg's tests check the bounds themselves (attempts, which
// bound fired); these check what is printed.

import (
	"encoding/json"
	"io"
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
)

// fakeAPI is an AWS JSON 1.1 endpoint that answers every call with the
// error code and message; it counts the calls.
func fakeAPI(t *testing.T, status int, code, msg string) (string, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &calls
}

// checkFailure checks a failed run: exit 1, one error line with want,
// nothing on stdout.
func checkFailure(t *testing.T, code int, stdout, stderr string, want ...string) {
	t.Helper()
	if code != exitError || stdout != "" {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	checkOneError(t, stderr, want...)
}

// TestAPIEndpointFailures: the SSM endpoint hangs, refuses, or is not the
// SSM API.
func TestAPIEndpointFailures(t *testing.T) {
	hang, conns := hangServer(t)
	notAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<html><body>Not Found</body></html>")
	}))
	defer notAPI.Close()
	refused := testenv.ClosedPort(t)
	cases := []struct {
		name     string
		endpoint string
		want     []string
	}{
		{"hangs", "http://" + hang, []string{
			"ssm-proxy: error: start session: SSM StartSession: no answer from " + hang + " (AWS_ENDPOINT_URL_SSM) within 1s",
			"ssm-proxy: hint: AWS_ENDPOINT_URL_SSM points SSM at " + hang + ": check that it is right"}},
		{"refused", "http://" + refused, []string{
			"ssm-proxy: error: start session: SSM StartSession: " + refused + " (AWS_ENDPOINT_URL_SSM) refused the connection",
			"ssm-proxy: hint: AWS_ENDPOINT_URL_SSM points SSM at " + refused}},
		{"not the API", notAPI.URL, []string{
			"ssm-proxy: error: start session: SSM StartSession: " + strings.TrimPrefix(notAPI.URL, "http://") + " (AWS_ENDPOINT_URL_SSM) answered (HTTP 404) with something that is not the SSM API",
			"but not as the SSM API: check AWS_ENDPOINT_URL_SSM"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu := startEmulator(t, ssmtest.Options{})
			t.Setenv("AWS_ENDPOINT_URL_SSM", c.endpoint)
			code, stdout, stderr := runWith(t, &cli{awsTimeouts: fastAWS}, "", "i-0123456789abcdef0", "22")
			checkFailure(t, code, stdout, stderr, c.want...)
			if st := emu.Stats(); st.SessionsStarted != 0 {
				t.Errorf("sessions started %d", st.SessionsStarted)
			}
		})
	}
	if conns() == 0 {
		t.Error("the hanging endpoint was never called")
	}
}

// TestDeadProxy: HTTPS_PROXY names a proxy that is not there.
func TestDeadProxy(t *testing.T) {
	startEmulator(t, ssmtest.Options{})
	dead := testenv.ClosedPort(t)
	t.Setenv("HTTPS_PROXY", "http://"+dead)
	// A .onion name is never looked up: nothing leaves loopback even if
	// the proxy were bypassed.
	t.Setenv("AWS_ENDPOINT_URL_SSM", "https://ssm.proxied.onion")
	code, stdout, stderr := runWith(t, &cli{awsTimeouts: fastAWS}, "", "i-0123456789abcdef0", "22")
	checkFailure(t, code, stdout, stderr,
		"ssm-proxy: error: start session: SSM StartSession: cannot reach the proxy "+dead+" (HTTPS_PROXY)",
		"ssm-proxy: hint: the proxy in HTTPS_PROXY does not work for ssm.proxied.onion: fix HTTPS_PROXY or unset it")
}

// TestAssumeRoleSTSUnreachable: a profile that assumes a role while STS
// cannot be reached names AWS_ENDPOINT_URL_STS and STS VPC endpoints.
func TestAssumeRoleSTSUnreachable(t *testing.T) {
	emu := identityEnv(t)
	for name, env := range map[string]map[string]string{
		"configured":  {"AWS_ENDPOINT_URL_STS": "http://" + testenv.ClosedPort(t)},
		"default STS": {"AWS_ENDPOINT_URL_STS": "", "HTTPS_PROXY": "http://" + testenv.ClosedPort(t)},
	} {
		t.Run(name, func(t *testing.T) {
			setEnv(t, env)
			code, stdout, stderr := runWith(t, &cli{awsTimeouts: fastAWS}, "", "--profile", "role", "i-0123456789abcdef0", "22")
			want := []string{"ssm-proxy: error: cannot get AWS credentials: STS AssumeRole: ",
				`profile "role" needs STS to assume arn:aws:iam::123456789012:role/Dev`}
			if name == "configured" {
				want = append(want, "refused the connection", "AWS_ENDPOINT_URL_STS points STS at 127.0.0.1:")
			} else {
				// The default STS endpoint, through a dead proxy: the
				// proxy is named first.
				want = append(want, "cannot reach the proxy", "HTTPS_PROXY")
			}
			checkFailure(t, code, stdout, stderr, want...)
		})
	}
	if st := emu.Stats(); st.SessionsStarted != 0 {
		t.Errorf("sessions started %d", st.SessionsStarted)
	}
}

// TestSTSDefaultEndpointHint: the hint for the default STS endpoint names
// AWS_ENDPOINT_URL_STS and STS VPC endpoints.
func TestSTSDefaultEndpointHint(t *testing.T) {
	ee := &awscfg.EndpointError{Service: "STS", Operation: "AssumeRole", Host: "sts.us-east-1.amazonaws.com", Timeout: time.Second, Attempts: 3}
	hs := strings.Join(endpointHints(ee), "\n")
	for _, w := range []string{"STS interface VPC endpoint", "AWS_ENDPOINT_URL_STS"} {
		if !strings.Contains(hs, w) {
			t.Errorf("hints lack %q:\n%s", w, hs)
		}
	}
}

// TestCABundleFailures: AWS_CA_BUNDLE names a missing file or one without
// a certificate.
func TestCABundleFailures(t *testing.T) {
	startEmulator(t, ssmtest.Options{})
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "bundle.pem")
	os.WriteFile(notPEM, []byte("-----BEGIN NOTHING-----\n"), 0o600)
	for path, why := range map[string]string{filepath.Join(dir, "missing.pem"): "does not exist", notPEM: "holds no PEM certificate"} {
		t.Setenv("AWS_CA_BUNDLE", path)
		code, stdout, stderr := runCLI(t, "", "i-0123456789abcdef0", "22")
		checkFailure(t, code, stdout, stderr,
			"ssm-proxy: error: load AWS configuration: AWS_CA_BUNDLE names "+path+", which "+why,
			"ssm-proxy: hint: fix or unset AWS_CA_BUNDLE")
	}
}

// TestNoCredentialsAnywhere: nothing configured and instance metadata that
// does not answer: the sources tried are listed, the wait is bounded, and
// instance metadata is not named as the source used.
func TestNoCredentialsAnywhere(t *testing.T) {
	identityEnv(t)
	imds, conns := hangServer(t)
	setEnv(t, map[string]string{"AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://" + imds})
	code, stdout, stderr := runCLI(t, "", "i-0123456789abcdef0", "22")
	checkFailure(t, code, stdout, stderr,
		"ssm-proxy: error: no AWS credentials found: tried environment variables (AWS_ACCESS_KEY_ID",
		`profile "default" in `,
		"EC2 instance metadata (no answer from "+imds+" within 1s: not on EC2)",
		"ssm-proxy: hint: configure credentials: pass --profile",
		"used target i-0123456789abcdef0, region us-east-1 (AWS_REGION), no credentials configured")
	if strings.Contains(stderr, "credentials from EC2 instance metadata") {
		t.Errorf("instance metadata named as the source:\n%s", stderr)
	}
	if conns() == 0 {
		t.Error("instance metadata was never asked")
	}
}

// TestRegionMismatch: a signature the endpoint refuses as made for another
// region gets the region/endpoint hint, not the clock's.
func TestRegionMismatch(t *testing.T) {
	startEmulator(t, ssmtest.Options{}) // serves us-east-1
	t.Setenv("AWS_REGION", "eu-west-1")
	code, stdout, stderr := runCLI(t, "", "i-0123456789abcdef0", "22")
	checkFailure(t, code, stdout, stderr,
		"InvalidSignatureException: Credential should be scoped to a valid region",
		"ssm-proxy: hint: the request was signed for region eu-west-1 (from AWS_REGION), but the SSM endpoint serves another region",
		"AWS_ENDPOINT_URL_SSM")
	for _, w := range []string{"system clock", "refresh them"} {
		if strings.Contains(stderr, w) {
			t.Errorf("stderr says %q:\n%s", w, stderr)
		}
	}
}

// TestSignatureErrorRedacted: an InvalidSignatureException whose message
// echoes the canonical request, session token included, prints no token,
// with or without -v; without -v it leaves the canonical request out.
func TestSignatureErrorRedacted(t *testing.T) {
	const token = "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKENvalue0123456789"
	msg := "The request signature we calculated does not match the signature you provided. The Canonical String for this request should have been\n" +
		"'POST\n/\n\ncontent-type:application/x-amz-json-1.1\nx-amz-security-token:" + token + "\nx-amz-target:AmazonSSM.StartSession\n'"
	startEmulator(t, ssmtest.Options{})
	endpoint, calls := fakeAPI(t, http.StatusBadRequest, "InvalidSignatureException", msg)
	setEnv(t, map[string]string{"AWS_ENDPOINT_URL_SSM": endpoint, "AWS_SESSION_TOKEN": token})
	for _, v := range [][]string{nil, {"-v"}} {
		code, stdout, stderr := runCLI(t, "", append(v, "i-0123456789abcdef0", "22")...)
		if v == nil {
			// Without -v the canonical request is left out, with a pointer.
			checkFailure(t, code, stdout, stderr, "InvalidSignatureException: The request signature we calculated does not match the signature you provided. (-v shows the canonical request AWS expected)")
			if strings.Contains(stderr, "x-amz-target") {
				t.Errorf("the canonical request is on stderr without -v:\n%s", stderr)
			}
		} else {
			checkFailure(t, code, stdout, stderr, "InvalidSignatureException", "x-amz-security-token:[redacted]")
		}
		if strings.Contains(stderr, token) {
			t.Errorf("%v: the session token is on stderr:\n%s", v, stderr)
		}
	}
	if calls.Load() == 0 {
		t.Error("the endpoint was never called")
	}
}

// TestStreamHostRefused: a StreamUrl naming a host that is not a messages
// endpoint of the region (nor one the user configured) is refused before
// anything is signed for it: exit 1, one line naming the host and the
// setting that would allow it, and the session terminated.
func TestStreamHostRefused(t *testing.T) {
	emu := startEmulator(t, ssmtest.Options{StreamURLHost: "ssmmessages.evil.example.net"})
	code, stdout, stderr := runCLI(t, "", "i-0123456789abcdef0", "22")
	checkFailure(t, code, stdout, stderr, `refusing the stream URL "ws://ssmmessages.evil.example.net": ssmmessages.evil.example.net is not a Session Manager messages endpoint for us-east-1`, "set AWS_ENDPOINT_URL_SSMMESSAGES to it")
	st := emu.Stats()
	if st.SessionsStarted != 1 || st.TerminatedByAPI != 1 || st.Active != 0 {
		t.Errorf("started %d, terminated %d, active %d: want the one session terminated", st.SessionsStarted, st.TerminatedByAPI, st.Active)
	}
}

// TestAdvancedTier: StartSession's refusal of an on-premises node on the
// standard-instances tier gets its own hint.
func TestAdvancedTier(t *testing.T) {
	emu := startEmulator(t, ssmtest.Options{Instances: []ssmtest.Instance{{ID: "mi-0123456789abcdef0", StandardTier: true}}})
	code, stdout, stderr := runCLI(t, "", "mi-0123456789abcdef0", "22")
	if st := emu.Stats(); st.SessionsStarted != 0 {
		t.Errorf("%d sessions started on a standard-tier node", st.SessionsStarted)
	}
	checkFailure(t, code, stdout, stderr,
		"SSM StartSession: BadRequest: Enable advanced-instances tier",
		"ssm-proxy: hint: Session Manager reaches on-premises and other non-EC2 managed nodes (mi-…) only with the advanced-instances tier",
		"--setting-id arn:aws:ssm:us-east-1:ACCOUNT_ID:servicesetting/ssm/managed-instance/activation-tier --setting-value advanced")
}

// TestVerboseCalls: -v shows each API call (service, operation, host,
// time) and the name→id lookup, and no secret.
func TestVerboseCalls(t *testing.T) {
	emu := startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, false)})
	code, stdout, stderr := runCLI(t, "", "-v", "web-1", "22")
	if code != exitOK || stdout != sshBanner {
		t.Fatalf("exit %d stdout %q stderr:\n%s", code, stdout, stderr)
	}
	host := strings.TrimPrefix(emu.Endpoint(), "http://")
	for _, w := range []string{
		"service=SSM operation=DescribeInstanceInformation host=" + host,
		"service=SSM operation=StartSession host=" + host,
		"target=web-1 id=i-0123456789abcdef0",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("-v lacks %q:\n%s", w, stderr)
		}
	}
	for _, secret := range []string{ssmtest.SecretAccessKey, "Signature=", "TokenValue"} {
		if strings.Contains(stderr, secret) {
			t.Errorf("-v shows %q:\n%s", secret, stderr)
		}
	}
}

// TestMessagesOverrideThroughProxy: with AWS_ENDPOINT_URL_SSMMESSAGES the
// websocket follows the proxy settings, as the API does: CONNECT to the
// override host through the proxy, and the session carries its bytes.
func TestMessagesOverrideThroughProxy(t *testing.T) {
	emu := startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, false)})
	p := testenv.StartConnectProxy(t, strings.TrimPrefix(emu.Endpoint(), "http://"), false)
	// The emulator's StreamUrls are ws://, so the override is http:// and
	// HTTP_PROXY applies; the .onion name is never looked up.
	setEnv(t, map[string]string{awscfg.EndpointEnvSSMMessages: "http://ssmmessages.proxied.onion", "HTTP_PROXY": "http://" + p.Addr})
	code, stdout, stderr := runCLI(t, "", "i-0123456789abcdef0", "22")
	if code != exitOK || stdout != sshBanner {
		t.Fatalf("exit %d stdout %q stderr:\n%s", code, stdout, stderr)
	}
	if got, _ := p.Seen(); len(got) == 0 || got[0] != "ssmmessages.proxied.onion:80" {
		t.Errorf("proxy CONNECTs %q, want ssmmessages.proxied.onion:80", got)
	}
	if st := emu.Stats(); st.SessionsStarted != 1 {
		t.Errorf("sessions started %d", st.SessionsStarted)
	}
}
