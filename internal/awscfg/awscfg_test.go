package awscfg

// Loading the AWS configuration: where profile, region and credentials come
// from as Info describes them, an unknown profile, the MFA code's input loop
// (Ask), the owner-only disk cache of role credentials (one fetch for
// concurrent misses), and the dialer's CA bundle and ssmmessages override.
// Connecting with each source is the root package's identity_test.go;
// proxies and endpoints are proxy_test.go's, bounds bounds_test.go's.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

// isolate clears the AWS environment and points the SDK at configFile
// (written from config) and an empty credentials file, with HOME and the
// cache directory in a temporary directory, so that nothing can reach
// real AWS or the user's files.
func isolate(t *testing.T, config string) (dir string) {
	t.Helper()
	dir = t.TempDir()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	cfgFile := filepath.Join(dir, "config")
	credsFile := filepath.Join(dir, "credentials")
	for _, f := range []string{cfgFile, credsFile} {
		data := ""
		if f == cfgFile {
			data = config
		}
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("AWS_CONFIG_FILE", cfgFile)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credsFile)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	return dir
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const baseProfile = `
[profile base]
aws_access_key_id = ` + ssmtest.AccessKeyID + `
aws_secret_access_key = ` + ssmtest.SecretAccessKey + `
region = eu-west-1
`

func TestDescribe(t *testing.T) {
	config := baseProfile + `
[profile role]
role_arn = arn:aws:iam::123456789012:role/Dev
source_profile = base
mfa_serial = arn:aws:iam::123456789012:mfa/alice

[profile sso]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Dev
region = eu-central-1

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = eu-central-1

[profile sso-role]
role_arn = arn:aws:iam::123456789012:role/Admin
source_profile = sso

[profile proc]
credential_process = /bin/false
`
	cases := []struct {
		name    string
		env     map[string]string
		opts    Options
		want    Info
		creds   string
		noCache bool
	}{
		{name: "environment keys", env: map[string]string{"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1"},
			want: Info{Region: "us-east-1", RegionFrom: "AWS_REGION"}, creds: "environment variables"},
		{name: "flag beats environment", env: map[string]string{"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"},
			opts: Options{Profile: "base", Region: "ap-south-1"},
			want: Info{Profile: "base", ProfileFrom: "--profile", Region: "ap-south-1", RegionFrom: "--region"}, creds: `profile "base": static keys`},
		{name: "AWS_PROFILE", env: map[string]string{"AWS_PROFILE": "base"},
			want: Info{Profile: "base", ProfileFrom: "AWS_PROFILE", Region: "eu-west-1", RegionFrom: `profile "base"`}, creds: "static keys"},
		{name: "AWS_DEFAULT_REGION", env: map[string]string{"AWS_PROFILE": "base", "AWS_DEFAULT_REGION": "us-west-2"},
			want: Info{Profile: "base", ProfileFrom: "AWS_PROFILE", Region: "us-west-2", RegionFrom: "AWS_DEFAULT_REGION"}, creds: "static keys"},
		{name: "assume role with MFA", opts: Options{Profile: "role"},
			want: Info{Profile: "role", ProfileFrom: "--profile", // the region is not inherited from the source profile
				RoleARN: "arn:aws:iam::123456789012:role/Dev", MFASerial: "arn:aws:iam::123456789012:mfa/alice"},
			creds: `profile "role": role arn:aws:iam::123456789012:role/Dev with MFA via profile "base" (static keys)`},
		{name: "sso", opts: Options{Profile: "sso"},
			want:  Info{Profile: "sso", ProfileFrom: "--profile", Region: "eu-central-1", RegionFrom: `profile "sso"`, SSOProfile: "sso"},
			creds: "IAM Identity Center (SSO)"},
		{name: "role from sso", opts: Options{Profile: "sso-role"},
			want:  Info{Profile: "sso-role", ProfileFrom: "--profile", SSOProfile: "sso", RoleARN: "arn:aws:iam::123456789012:role/Admin"},
			creds: `role arn:aws:iam::123456789012:role/Admin via profile "sso" (IAM Identity Center (SSO))`},
		{name: "credential_process", opts: Options{Profile: "proc"},
			want: Info{Profile: "proc", ProfileFrom: "--profile", Process: true}, creds: "credential_process"},
		{name: "nothing configured", want: Info{Profile: "default", ProfileFrom: "default", Fallback: true}, creds: "EC2 instance metadata (instance profile), as nothing else is configured"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			isolate(t, config)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			_, info, err := Load(testCtx(t), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(info.Credentials, c.creds) {
				t.Errorf("Credentials = %q, want it to contain %q", info.Credentials, c.creds)
			}
			if (info.CachePath != "") != (c.want.RoleARN != "") {
				t.Errorf("CachePath = %q with RoleARN %q", info.CachePath, c.want.RoleARN)
			}
			info.Credentials, info.CachePath = "", ""
			if info != c.want {
				t.Errorf("Info =\n%+v, want\n%+v", info, c.want)
			}
		})
	}
}

func TestLoadUnknownProfile(t *testing.T) {
	isolate(t, baseProfile)
	_, _, err := Load(testCtx(t), Options{Profile: "nope"})
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v", err)
	}
}

func TestAsk(t *testing.T) {
	cases := []struct {
		name, input, want, err string
		prompts                int
	}{
		{"code", "123456\n", "123456", "", 1},
		{"spaces", "  654321 \r\n", "654321", "", 1},
		{"no newline", "111111", "111111", "", 1},
		{"retry", "12345\nabcdef\n222222\n", "222222", "", 3},
		{"give up", "1\n2\n3\n444444\n", "", "no valid code", 3},
		{"eof", "", "", "no MFA code entered", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out strings.Builder
			got, err := Ask(strings.NewReader(c.input), &out, "arn:aws:iam::123456789012:mfa/alice")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
			} else if err != nil || got != c.want {
				t.Fatalf("Ask = %q, %v; want %q", got, err, c.want)
			}
			if n := strings.Count(out.String(), "ssm-proxy: MFA code for arn:aws:iam::123456789012:mfa/alice: "); n != c.prompts {
				t.Errorf("%d prompts, want %d:\n%s", n, c.prompts, out.String())
			}
		})
	}
}

// fakeProvider hands out credentials that expire after ttl and counts
// calls; it takes delay to answer.
type fakeProvider struct {
	calls atomic.Int32
	ttl   time.Duration
	delay time.Duration
	err   error
}

func (f *fakeProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	n := f.calls.Add(1)
	time.Sleep(f.delay)
	if f.err != nil {
		return aws.Credentials{}, f.err
	}
	return aws.Credentials{
		AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "secret", SessionToken: "token-" + string(rune('0'+n)),
		CanExpire: f.ttl > 0, Expires: time.Now().Add(f.ttl),
	}, nil
}

func TestDiskCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache", "ssm-proxy")
	path := filepath.Join(dir, "k.json")
	inner := &fakeProvider{ttl: time.Hour}
	ctx := testCtx(t)

	c1, err := (&diskCache{inner: inner, path: path, log: discard}).Retrieve(ctx)
	if err != nil || inner.calls.Load() != 1 {
		t.Fatalf("first: %v, %d calls", err, inner.calls.Load())
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	// A new process: same file, new provider.
	c2, err := (&diskCache{inner: inner, path: path, log: discard}).Retrieve(ctx)
	if err != nil || inner.calls.Load() != 1 {
		t.Fatalf("second: %v, %d calls", err, inner.calls.Load())
	}
	if c2.SessionToken != c1.SessionToken || c2.Source != cacheSource || !c2.Expires.Equal(c1.Expires.Truncate(time.Second)) && !c2.Expires.Equal(c1.Expires) {
		t.Errorf("cached %+v, stored %+v", c2, c1)
	}

	// Readable by others: not trusted.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&diskCache{inner: inner, path: path, log: discard}).Retrieve(ctx); err != nil || inner.calls.Load() != 2 {
		t.Fatalf("world-readable cache used: %v, %d calls", err, inner.calls.Load())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("rewritten with mode %v", fi.Mode().Perm())
	}

	// About to expire: refreshed.
	short := &fakeProvider{ttl: minValidity - time.Second}
	p := filepath.Join(dir, "short.json")
	for i := range 2 {
		if _, err := (&diskCache{inner: short, path: p, log: discard}).Retrieve(ctx); err != nil || short.calls.Load() != int32(i+1) {
			t.Fatalf("short-lived %d: %v, %d calls", i, err, short.calls.Load())
		}
	}

	// Non-expiring credentials are not written; failures are passed on.
	static := &fakeProvider{}
	p = filepath.Join(dir, "static.json")
	if _, err := (&diskCache{inner: static, path: p, log: discard}).Retrieve(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("static credentials written: %v", err)
	}
	failing := &fakeProvider{err: errors.New("boom")}
	if _, err := (&diskCache{inner: failing, path: filepath.Join(dir, "f.json"), log: discard}).Retrieve(ctx); err == nil || err.Error() != "boom" {
		t.Errorf("err = %v", err)
	}
}

// TestDiskCacheConcurrent: processes that miss the cache together obtain
// credentials once (one MFA prompt).
func TestDiskCacheConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssm-proxy", "k.json")
	inner := &fakeProvider{ttl: time.Hour, delay: 200 * time.Millisecond}
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := (&diskCache{inner: inner, path: path, log: discard}).Retrieve(testCtx(t)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := inner.calls.Load(); n != 1 {
		t.Errorf("%d retrievals, want 1", n)
	}
}

// TestDialerCABundle: AWS_CA_BUNDLE reaches the websocket's TLS
// configuration, not only the API client's.
func TestDialerCABundle(t *testing.T) {
	dir := isolate(t, "")
	srv := httptest.NewUnstartedServer(wsEcho(t))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	bundle := filepath.Join(dir, "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(bundle, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	wsURL := "wss" + strings.TrimPrefix(srv.URL, "https")

	t.Setenv("AWS_REGION", "us-east-1")
	cfg, _, err := Load(testCtx(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Dialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.DialContext(testCtx(t), wsURL, nil); err == nil {
		t.Fatal("dial without the CA bundle succeeded")
	}

	t.Setenv("AWS_CA_BUNDLE", bundle)
	cfg, _, err = Load(testCtx(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d, err = Dialer(cfg); err != nil {
		t.Fatal(err)
	}
	ws, _, err := d.DialContext(testCtx(t), wsURL, nil)
	if err != nil {
		t.Fatalf("dial with AWS_CA_BUNDLE: %v", err)
	}
	ws.Close()
	if d.HandshakeTimeout != 0 || d.ReadBufferSize != 0 {
		t.Errorf("dialer sets timing or buffers, which are proxy.Options' to set: %+v", d)
	}
}

// TestDialerEndpointOverride: the websocket goes to the ssmmessages
// override, keeping the StreamUrl's host name for TLS.
func TestDialerEndpointOverride(t *testing.T) {
	for _, via := range []string{"env", "profile"} {
		t.Run(via, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(wsEcho(t))
			cert, pool := testCert(t, "ssmmessages.us-east-1.amazonaws.com")
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
			srv.StartTLS()
			defer srv.Close()
			endpoint := "https://" + srv.Listener.Addr().String()
			config := ""
			if via == "profile" {
				config = "[default]\nservices = vpce\n[services vpce]\nssmmessages =\n  endpoint_url = " + endpoint + "\n"
			}
			isolate(t, config)
			t.Setenv("AWS_REGION", "us-east-1")
			if via == "env" {
				t.Setenv(EndpointEnvSSMMessages, endpoint)
			}
			cfg, _, err := Load(testCtx(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			d, err := Dialer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			d.TLSClientConfig = &tls.Config{RootCAs: pool}
			ws, _, err := d.DialContext(testCtx(t), "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1?role=publish_subscribe", nil)
			if err != nil {
				t.Fatalf("dial through the override: %v", err)
			}
			ws.Close()
		})
	}
}

func TestEndpointAddr(t *testing.T) {
	for in, want := range map[string]string{
		"https://vpce-1.ssmmessages.us-east-1.vpce.amazonaws.com": "vpce-1.ssmmessages.us-east-1.vpce.amazonaws.com:443",
		"http://127.0.0.1:8080":                                   "127.0.0.1:8080",
		"ws://h":                                                  "h:80",
	} {
		if got, err := endpointAddr(in); err != nil || got != want {
			t.Errorf("endpointAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := endpointAddr("vpce-1"); err == nil {
		t.Error("a bare name was accepted")
	}
}

// wsEcho is a websocket server that accepts and closes.
func wsEcho(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ws.Close()
	})
}

// testCert is a self-signed certificate for host and a pool trusting it.
func testCert(t *testing.T, host string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, err := selfSigned(host)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return cert, pool
}
