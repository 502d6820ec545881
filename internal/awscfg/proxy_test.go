package awscfg

// Tests of the proxy environment (proxy.go), the websocket dialer through
// a proxy (dialer.go), the CA bundle errors (cabundle.go), the endpoint
// settings (endpoints.go) and the endpoint probe (probe.go). What a user
// sees of these is the root package's endpoints_test.go and doctor_test.go;
// the built binary through a TLS-inspecting proxy is e2e/network_test.go's.
//
// Host names that must never be looked up end in .onion: Go's resolver
// refuses them without a query (RFC 7686), so a test that bypassed the
// proxy fails at once, and no test traffic leaves loopback.

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

func TestNoProxy(t *testing.T) {
	isolate(t, "")
	t.Setenv("HTTPS_PROXY", "http://user:secret@proxy.onion:3128")
	t.Setenv("NO_PROXY", "internal.example, .corp.example, 10.0.0.0/8, 192.0.2.1, vpce.example:8443")
	e := readProxyEnv()
	cases := map[string]bool{ // URL → proxied
		"https://ssm.us-east-1.amazonaws.com":       true,
		"https://internal.example":                  false,
		"https://a.internal.example":                false,
		"https://notinternal.example":               true,
		"https://corp.example":                      true, // ".corp.example" is sub-domains only
		"https://x.corp.example":                    false,
		"https://10.1.2.3":                          false,
		"https://11.1.2.3":                          true,
		"https://192.0.2.1":                         false,
		"https://vpce.example:8443":                 false,
		"https://vpce.example":                      true, // another port
		"https://127.0.0.1:4443":                    false,
		"https://localhost":                         false,
		"http://ssm.us-east-1.amazonaws.com":        false, // no HTTP_PROXY
		"wss://ssmmessages.us-east-1.amazonaws.com": true,
	}
	for raw, want := range cases {
		u, _ := url.Parse(raw)
		p, name, err := e.forURL(u)
		if err != nil || (p != nil) != want {
			t.Errorf("%s: proxy %v (%s), %v; want proxied %t", raw, p, name, err, want)
		}
		if p != nil && name != "HTTPS_PROXY" {
			t.Errorf("%s: variable %q", raw, name)
		}
	}
	u, _ := url.Parse("https://ssm.us-east-1.amazonaws.com")
	if d := e.describe(u); d != "proxy.onion:3128 (HTTPS_PROXY)" {
		t.Errorf("describe = %q (the password must not appear)", d)
	}
	t.Setenv("NO_PROXY", "*")
	if p, _, _ := readProxyEnv().forURL(u); p != nil {
		t.Error("NO_PROXY=* still proxied")
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("https_proxy", "127.0.0.1:3128") // lower case, no scheme
	if p, name, _ := readProxyEnv().forURL(u); p == nil || p.String() != "http://127.0.0.1:3128" || name != "https_proxy" {
		t.Errorf("https_proxy: %v %q", p, name)
	}
}

// wssOverride sets up a TLS websocket server with a certificate for the
// regional messages name, and points the ssmmessages override at
// overrideHost. It returns the server's address and a config whose
// dialer trusts the certificate.
func wssOverride(t *testing.T, overrideHost string) (addr string, pemFile string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(wsEcho(t))
	cert, _ := testCert(t, "ssmmessages.us-east-1.amazonaws.com")
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := isolate(t, "")
	pemFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Leaf.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CA_BUNDLE", pemFile)
	t.Setenv(EndpointEnvSSMMessages, "https://"+overrideHost)
	return srv.Listener.Addr().String(), pemFile
}

const streamURL = "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1?role=publish_subscribe"

// TestDialerOverrideThroughProxy: with AWS_ENDPOINT_URL_SSMMESSAGES the
// websocket goes through HTTPS_PROXY, CONNECTing to the override host,
// and not when NO_PROXY names that host.
func TestDialerOverrideThroughProxy(t *testing.T) {
	const override = "vpce-0123.ssmmessages.us-east-1.onion"
	addr, _ := wssOverride(t, override)
	p := testenv.StartConnectProxy(t, addr, false)
	t.Setenv("HTTPS_PROXY", "http://alice:pw@"+p.Addr)
	cfg, _, err := Load(testCtx(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Dialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := d.DialContext(testCtx(t), streamURL, nil)
	if err != nil {
		t.Fatalf("dial through the proxy: %v", err)
	}
	ws.Close()
	targets, auth := p.Seen()
	if len(targets) != 1 || targets[0] != override+":443" {
		t.Errorf("proxy CONNECTs %q, want one to %s:443", targets, override)
	}
	if len(auth) != 1 || auth[0] != "Basic YWxpY2U6cHc=" {
		t.Errorf("Proxy-Authorization %q", auth)
	}

	t.Setenv("NO_PROXY", ".onion")
	if d, err = Dialer(cfg); err != nil {
		t.Fatal(err)
	}
	_, _, err = d.DialContext(testCtx(t), streamURL, nil)
	var pe *ProxyError
	if err == nil || errors.As(err, &pe) || !strings.Contains(err.Error(), override) {
		t.Errorf("NO_PROXY: err = %v, want a direct dial (which cannot resolve %s)", err, override)
	}
	if targets, _ := p.Seen(); len(targets) != 1 {
		t.Errorf("NO_PROXY: proxy saw %d CONNECTs, want still 1", len(targets))
	}
}

// TestDialerProxyRefuses: a proxy that refuses CONNECT, and one that is
// not there, are *ProxyError naming the variable.
func TestDialerProxyRefuses(t *testing.T) {
	addr, _ := wssOverride(t, "vpce-0123.ssmmessages.us-east-1.onion")
	p := testenv.StartConnectProxy(t, addr, true)
	for name, proxyAddr := range map[string]string{"refused": p.Addr, "dead": testenv.ClosedPort(t)} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("HTTPS_PROXY", "http://"+proxyAddr)
			cfg, _, err := Load(testCtx(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			d, err := Dialer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = d.DialContext(testCtx(t), streamURL, nil)
			var pe *ProxyError
			if !errors.As(err, &pe) || pe.Proxy != proxyAddr+" (HTTPS_PROXY)" || pe.ProxyVariable() != "HTTPS_PROXY" {
				t.Fatalf("err = %v, want a ProxyError for %s (HTTPS_PROXY)", err, proxyAddr)
			}
			if (name == "refused") != (pe.Status == "403 Forbidden") {
				t.Errorf("Status %q", pe.Status)
			}
		})
	}
}

// TestAPIDeadProxy: the API client's failure to reach HTTPS_PROXY is an
// EndpointError that names the proxy and the variable.
func TestAPIDeadProxy(t *testing.T) {
	isolate(t, "")
	envKeys(t)
	dead := testenv.ClosedPort(t)
	t.Setenv("HTTPS_PROXY", "http://"+dead)
	t.Setenv("AWS_ENDPOINT_URL_SSM", "https://ssm.proxied.onion")
	cfg, _, err := Load(testCtx(t), Options{Timeouts: short})
	if err != nil {
		t.Fatal(err)
	}
	err = describeOnce(testCtx(t), cfg)
	var ee *EndpointError
	if !errors.As(err, &ee) || ee.Proxy != dead+" (HTTPS_PROXY)" {
		t.Fatalf("err = %v, want an EndpointError through %s", err, dead)
	}
	if want := "SSM DescribeInstanceInformation: cannot reach the proxy " + dead + " (HTTPS_PROXY): connection refused"; ee.Error() != want {
		t.Errorf("Error() = %q, want %q", ee.Error(), want)
	}
}

// TestAPIProxyRefuses: a proxy that refuses CONNECT to the API endpoint.
func TestAPIProxyRefuses(t *testing.T) {
	isolate(t, "")
	envKeys(t)
	p := testenv.StartConnectProxy(t, "", true)
	t.Setenv("HTTPS_PROXY", "http://"+p.Addr)
	t.Setenv("AWS_ENDPOINT_URL_SSM", "https://ssm.proxied.onion")
	cfg, _, err := Load(testCtx(t), Options{Timeouts: short})
	if err != nil {
		t.Fatal(err)
	}
	err = describeOnce(testCtx(t), cfg)
	var pe *ProxyError
	if !errors.As(err, &pe) || pe.Status != "403 Forbidden" || pe.Target != "ssm.proxied.onion:443" {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if targets, _ := p.Seen(); len(targets) == 0 {
		t.Error("the proxy saw no CONNECT")
	}
}

func TestCABundleErrors(t *testing.T) {
	dir := isolate(t, "")
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600)
	missing := filepath.Join(dir, "missing.pem")
	cases := []struct {
		name, env, profile, want string
	}{
		{"env missing", missing, "", "AWS_CA_BUNDLE names " + missing + ", which does not exist"},
		{"env not PEM", notPEM, "", "AWS_CA_BUNDLE names " + notPEM + ", which holds no PEM certificate"},
		{"profile missing", "", missing, `ca_bundle of profile "default" names ` + missing + ", which does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			config := ""
			if c.profile != "" {
				config = "[default]\nca_bundle = " + c.profile + "\n"
			}
			isolate(t, config)
			t.Setenv("AWS_REGION", "us-east-1")
			if c.env != "" {
				t.Setenv("AWS_CA_BUNDLE", c.env)
			}
			_, _, err := Load(testCtx(t), Options{})
			var ce *CABundleError
			if !errors.As(err, &ce) || ce.Error() != c.want {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestEndpointSettings(t *testing.T) {
	cases := []struct {
		name          string
		env           map[string]string
		config        string
		ssm, messages string // settings
		msgHost       string
	}{
		{name: "defaults", ssm: "", messages: "", msgHost: "ssmmessages.us-east-1.amazonaws.com"},
		{name: "service variables", env: map[string]string{"AWS_ENDPOINT_URL_SSM": "https://vpce-1.ssm.us-east-1.vpce.amazonaws.com", EndpointEnvSSMMessages: "https://vpce-2.ssmmessages.us-east-1.vpce.amazonaws.com"},
			ssm: "AWS_ENDPOINT_URL_SSM", messages: EndpointEnvSSMMessages, msgHost: "vpce-2.ssmmessages.us-east-1.vpce.amazonaws.com"},
		{name: "SSM VPC endpoint only", env: map[string]string{"AWS_ENDPOINT_URL_SSM": "https://vpce-1.ssm.us-east-1.vpce.amazonaws.com"},
			ssm: "AWS_ENDPOINT_URL_SSM", messages: "", msgHost: "ssmmessages.us-east-1.amazonaws.com"},
		{name: "a stand-in serves both", env: map[string]string{"AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:4566"},
			ssm: "AWS_ENDPOINT_URL_SSM", messages: "AWS_ENDPOINT_URL_SSM", msgHost: "127.0.0.1:4566"},
		{name: "global variable", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}, ssm: "AWS_ENDPOINT_URL", messages: "AWS_ENDPOINT_URL", msgHost: "127.0.0.1:4566"},
		{name: "services section", config: "[default]\nservices = s\n[services s]\nssm =\n  endpoint_url = https://vpce-1.ssm.us-east-1.vpce.amazonaws.com\nssmmessages =\n  endpoint_url = https://vpce-2.ssmmessages.us-east-1.vpce.amazonaws.com\n",
			ssm: `ssm endpoint_url in the services section of profile "default"`, messages: `ssmmessages endpoint_url in the services section of profile "default"`, msgHost: "vpce-2.ssmmessages.us-east-1.vpce.amazonaws.com"},
		{name: "profile endpoint_url", config: "[default]\nendpoint_url = http://127.0.0.1:4566\n", ssm: `endpoint_url of profile "default"`, messages: `endpoint_url of profile "default"`, msgHost: "127.0.0.1:4566"},
		{name: "ignored", env: map[string]string{"AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:4566", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}, msgHost: "ssmmessages.us-east-1.amazonaws.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			isolate(t, c.config)
			t.Setenv("AWS_REGION", "us-east-1")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			cfg, _, err := Load(testCtx(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			api, err := SSMEndpoint(testCtx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := DataChannelEndpoint(testCtx(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if api.Setting != c.ssm || msg.Setting != c.messages || msg.URL.Host != c.msgHost {
				t.Errorf("ssm %s (%q), messages %s (%q); want %q, %q, host %s", api.URL, api.Setting, msg.URL, msg.Setting, c.ssm, c.messages, c.msgHost)
			}
			if c.ssm == "" && api.URL.String() != "https://ssm.us-east-1.amazonaws.com" {
				t.Errorf("default SSM endpoint %s", api.URL)
			}
			if msg.Setting == EndpointEnvSSMMessages && msg.ServerName != "ssmmessages.us-east-1.amazonaws.com" {
				t.Errorf("override server name %q", msg.ServerName)
			}
		})
	}
	isolate(t, "")
	t.Setenv("AWS_REGION", "cn-north-1")
	cfg, _, _ := Load(testCtx(t), Options{})
	if msg, _ := DataChannelEndpoint(testCtx(t), cfg); msg.URL.Host != "ssmmessages.cn-north-1.amazonaws.com.cn" {
		t.Errorf("China: %s", msg.URL)
	}
}

// TestSSOSetting: IAM Identity Center's endpoints are placed by the
// sso_region of the profile that signs in, through source_profile chains.
func TestSSOSetting(t *testing.T) {
	isolate(t, `[profile sso]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Dev
[profile role]
role_arn = arn:aws:iam::123456789012:role/Admin
source_profile = sso
[profile legacy]
sso_start_url = https://legacy.awsapps.com/start
sso_region = eu-west-1
sso_account_id = 123456789012
sso_role_name = Dev
[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = eu-central-1
`)
	for profile, want := range map[string]string{
		"sso":    `sso_region eu-central-1 of sso-session "corp" (start URL https://corp.awsapps.com/start)`,
		"role":   `sso_region eu-central-1 of sso-session "corp" (start URL https://corp.awsapps.com/start)`,
		"legacy": `sso_region eu-west-1 of profile "legacy" (start URL https://legacy.awsapps.com/start)`,
	} {
		cfg, _, err := Load(testCtx(t), Options{Profile: profile})
		if err != nil {
			t.Fatal(err)
		}
		for _, svc := range []string{"SSO", "SSO OIDC"} {
			if got := endpointSetting(cfg, svc); got != want {
				t.Errorf("%s %s: %q, want %q", profile, svc, got, want)
			}
		}
	}
	t.Setenv("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:1")
	cfg, _, _ := Load(testCtx(t), Options{Profile: "sso"})
	if got := endpointSetting(cfg, "SSO"); got != "AWS_ENDPOINT_URL_SSO" {
		t.Errorf("override: %q", got)
	}
}

// TestProbe: DNS, TCP and TLS, each failing in turn, and a pass.
func TestProbe(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	cert, _ := testCert(t, "ssm.test.example")
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	dir := isolate(t, "")
	bundle := filepath.Join(dir, "ca.pem")
	os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Leaf.Raw}), 0o600)
	hang, _ := hangServer(t)
	tlsAddr := srv.Listener.Addr().String()
	p := testenv.StartConnectProxy(t, tlsAddr, false)
	cases := []struct {
		name    string
		url     string
		bundle  bool
		proxy   bool
		step    string
		wantTLS bool
	}{
		{"trusted", "https://" + tlsAddr, true, false, "", true},
		{"plain http", "http://" + tlsAddr, false, false, "", false},
		{"untrusted", "https://" + tlsAddr, false, false, StepTLS, false},
		{"no TLS answer", "https://" + hang, true, false, StepTLS, false},
		{"refused", "https://" + testenv.ClosedPort(t), true, false, StepTCP, false},
		{"no such name", "https://ssm.nowhere.onion", true, false, StepDNS, false},
		{"through a proxy", "https://ssm.proxied.onion", true, true, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("AWS_REGION", "us-east-1")
			t.Setenv("AWS_CA_BUNDLE", "")
			os.Unsetenv("AWS_CA_BUNDLE")
			if c.bundle {
				t.Setenv("AWS_CA_BUNDLE", bundle)
			}
			if c.proxy {
				t.Setenv("HTTPS_PROXY", "http://"+p.Addr)
			}
			cfg, _, err := Load(testCtx(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(c.url)
			r := Probe(testCtx(t), cfg, Endpoint{URL: u, ServerName: "ssm.test.example"}, short)
			if r.Step != c.step || r.TLS != c.wantTLS || (r.Step == "") != (r.Err == nil) {
				t.Fatalf("Probe = %+v, want step %q, TLS %t", r, c.step, c.wantTLS)
			}
			if c.proxy && (r.Proxy != p.Addr+" (HTTPS_PROXY)" || len(r.Addrs) != 0) {
				t.Errorf("proxy %q, addrs %v", r.Proxy, r.Addrs)
			}
			if c.name == "no TLS answer" && !strings.Contains(r.Err.Error(), "no TLS handshake within 1s") {
				t.Errorf("err %v", r.Err)
			}
		})
	}
	if targets, _ := p.Seen(); len(targets) != 1 || targets[0] != "ssm.proxied.onion:443" {
		t.Errorf("proxy CONNECTs %q", targets)
	}
}

// TestProxyAddressErrorHidesPassword: a proxy variable that does not parse
// (a password with a bare "%") is reported without its user information —
// url.Parse's own error quotes the whole value — and with the fix.
func TestProxyAddressErrorHidesPassword(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://alice:S3cr%t!pw@proxy.corp:3128")
	v := lookupProxyVar("HTTPS_PROXY")
	if v.err == nil {
		t.Fatal("no error for a password with a bare %")
	}
	msg := v.err.Error()
	for _, secret := range []string{"S3cr", "%t!", "alice"} {
		if strings.Contains(msg, secret) {
			t.Errorf("the error shows %q: %s", secret, msg)
		}
	}
	for _, want := range []string{"HTTPS_PROXY", "proxy.corp:3128", "percent-encoded", "%25"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q: %s", want, msg)
		}
	}
}

// TestParseProxyURL: a bare host:port is http, as in net/http; a value with
// a scheme is never re-read as a host named after that scheme; a value
// without a host is refused. No error shows the user information.
func TestParseProxyURL(t *testing.T) {
	for _, c := range []struct {
		in, host, err string
	}{
		{in: "proxy.corp:3128", host: "proxy.corp:3128"},
		{in: "http://proxy.corp:3128", host: "proxy.corp:3128"},
		{in: "http://alice:pa%2Fss@proxy.corp:3128", host: "proxy.corp:3128"},
		{in: "[::1]:3128", host: "[::1]:3128"},
		// net/http would dial a proxy named "http:" for these.
		{in: "http://alice:pa/ss@proxy.corp:3128", err: "percent-encoded"},
		{in: "http://", err: "names no host"},
		{in: "http://:3128", err: "names no host"},
		{in: "http://alice:pw@:3128", err: "names no host"},
	} {
		u, err := parseProxyURL(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, %v; want an error with %q", c.in, u, err, c.err)
			} else if strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "pa/ss") {
				t.Errorf("%q: the error shows the user information: %v", c.in, err)
			}
			continue
		}
		if err != nil || u.Host != c.host || u.Scheme != "http" {
			t.Errorf("%q: %v, %v; want http://%s", c.in, u, err, c.host)
		}
	}
}
