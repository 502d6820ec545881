package e2e

// The built binary on the networks users have: a TLS-inspecting HTTPS proxy
// with AWS_CA_BUNDLE (API and websocket both through it; the errors without
// the bundle or with NO_PROXY), and AWS_ENDPOINT_URL_SSMMESSAGES to a VPC
// endpoint stand-in whose loss for good is exit 5. The proxy and CA
// mechanics are internal/awscfg's proxy_test.go; each error through run the
// root package's endpoints_test.go.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// bannerTarget listens on loopback, sends an SSH banner to each connection
// and closes it; the address is the emulator's TargetAddr.
func bannerTarget(t *testing.T) string {
	return testenv.ServeTCP(t, func(c net.Conn) { io.WriteString(c, "SSH-2.0-e2e\r\n") })
}

// testCA issues certificates for any host name.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ssm-proxy e2e inspecting proxy CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(host string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// inspectingProxy is an HTTPS proxy that terminates TLS with certificates
// from its own CA, as corporate proxies do, and relays to the emulator,
// which it presents as https://ssm.test and, as the real service names its
// data channel, wss://ssmmessages.us-east-1.amazonaws.com. A
// client gets through only if it uses the proxy for the API and the
// websocket and trusts the CA for both.
type inspectingProxy struct {
	URL     string
	mu      sync.Mutex
	tunnels []string // CONNECT targets, in order
	conns   chan net.Conn
}

// messagesHost is the AWS messages endpoint of the emulator's region.
const messagesHost = "ssmmessages.us-east-1.amazonaws.com"

func startInspectingProxy(t *testing.T, ca *testCA, emulator string) *inspectingProxy {
	t.Helper()
	emuURL, _ := url.Parse(emulator)
	p := &inspectingProxy{conns: make(chan net.Conn)}
	relay := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(emuURL)
			r.Out.Host = r.In.Host // the host the client signed
		},
		ModifyResponse: func(resp *http.Response) error {
			// The service's StreamUrl, as the relay presents it. An
			// upgraded connection's body is the connection: left alone.
			if !strings.Contains(resp.Header.Get("Content-Type"), "json") {
				return nil
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			body = bytes.ReplaceAll(body, []byte("ws://"+emuURL.Host+"/"), []byte("wss://"+messagesHost+"/"))
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			return nil
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	inner := &http.Server{Handler: relay, ErrorLog: log.New(io.Discard, "", 0)}
	go inner.Serve(&chanListener{conns: p.conns})
	t.Cleanup(func() { inner.Close() })

	front := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		p.mu.Lock()
		p.tunnels = append(p.tunnels, r.Host)
		p.mu.Unlock()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		host, _, _ := net.SplitHostPort(r.Host)
		tc := tls.Server(conn, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.issue(host) }})
		p.conns <- tc
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(ln)
	t.Cleanup(func() { front.Close() })
	p.URL = "http://" + ln.Addr().String()
	return p
}

func (p *inspectingProxy) Tunnels() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tunnels...)
}

// chanListener hands the proxy's decrypted connections to an http.Server.
type chanListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	l.once.Do(func() { l.done = make(chan struct{}) })
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { l.done = make(chan struct{}) })
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// noProxyEnv is awsEnv without the machine's proxy settings.
func noProxyEnv(t *testing.T, endpoint string) []string {
	var env []string
	for _, kv := range ssmtest.ClientEnv(t, endpoint) {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// TestProxyAndCABundle: with HTTPS_PROXY pointing at a TLS-inspecting
// proxy and AWS_CA_BUNDLE holding its CA, the API calls and the websocket
// both go through the proxy and both trust the CA. Without the bundle the
// error names the fix; with NO_PROXY the proxy is bypassed.
func TestProxyAndCABundle(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: bannerTarget(t), RequireSignedUpgrade: true})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	ca := newTestCA(t)
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}

	proxyRun := func(t *testing.T, extra ...string) (*inspectingProxy, int, string, string) {
		p := startInspectingProxy(t, ca, emu.Endpoint())
		env := append(noProxyEnv(t, emu.Endpoint()), "HTTPS_PROXY="+p.URL, "AWS_ENDPOINT_URL_SSM=https://ssm.test")
		cmd := exec.CommandContext(testCtx(t, time.Minute), proxyBin, "--resume-timeout", "3s", instance, "22")
		cmd.Env = append(env, extra...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		stdin, _ := cmd.StdinPipe()
		defer stdin.Close()
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return p, code, stdout.String(), stderr.String()
	}

	t.Run("trusted", func(t *testing.T) {
		before := emu.Stats()
		p, code, stdout, stderr := proxyRun(t, "AWS_CA_BUNDLE="+bundle)
		if code != 0 || stdout != "SSH-2.0-e2e\r\n" {
			t.Fatalf("exit %d stdout %q stderr:\n%s", code, stdout, stderr)
		}
		tunnels := strings.Join(p.Tunnels(), " ")
		for _, want := range []string{"ssm.test:443", messagesHost + ":443"} {
			if !strings.Contains(tunnels, want) {
				t.Errorf("proxy tunnels %q lack %s", tunnels, want)
			}
		}
		if st := emu.Stats(); st.SignedUpgrades != before.SignedUpgrades+1 {
			t.Errorf("signed upgrades %d → %d", before.SignedUpgrades, st.SignedUpgrades)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		p, code, stdout, stderr := proxyRun(t)
		if code != 1 || stdout != "" {
			t.Errorf("exit %d stdout %q", code, stdout)
		}
		for _, want := range []string{"certificate signed by unknown authority", "ssm-proxy: hint: the server's TLS certificate is not trusted", "AWS_CA_BUNDLE"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if len(p.Tunnels()) == 0 {
			t.Error("the proxy was not used")
		}
	})
	t.Run("no_proxy", func(t *testing.T) {
		p, code, _, stderr := proxyRun(t, "AWS_CA_BUNDLE="+bundle, "NO_PROXY=ssm.test")
		if code != 1 || len(p.Tunnels()) != 0 {
			t.Errorf("exit %d, tunnels %q; stderr:\n%s", code, p.Tunnels(), stderr)
		}
	})
}

// TestSSMMessagesEndpoint: AWS_ENDPOINT_URL_SSMMESSAGES sends the
// websocket to a VPC endpoint's address while the StreamUrl's host name
// stays in the signed request; losing that endpoint for good is exit 5.
func TestSSMMessagesEndpoint(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: holdTarget(t), RequireSignedUpgrade: true})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	fwd := startForwarder(t, strings.TrimPrefix(emu.Endpoint(), "http://"))
	env := append(noProxyEnv(t, emu.Endpoint()), "AWS_ENDPOINT_URL_SSMMESSAGES=http://"+fwd.addr)
	cmd := exec.CommandContext(testCtx(t, time.Minute), proxyBin, "--resume-timeout", "2s", "--dead-peer-timeout", "1s", "--ping-interval", "300ms", instance, "22")
	cmd.Env = env
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for emu.Stats().SignedUpgrades == 0 || !strings.Contains(stdout.String(), "SSH-2.0-") {
		if time.Now().After(deadline) {
			t.Fatalf("no session through the forwarder; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fwd.count() == 0 {
		t.Fatal("the websocket did not go to the endpoint override")
	}
	fwd.close() // the endpoint is gone
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 {
		t.Fatalf("exit %v, want 5; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "ssm-proxy: error: connection to Session Manager lost and not restored") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

// holdTarget greets each connection with an SSH banner and keeps it open.
func holdTarget(t *testing.T) string {
	return testenv.ServeTCP(t, func(c net.Conn) {
		io.WriteString(c, "SSH-2.0-e2e\r\n")
		io.Copy(io.Discard, c)
	})
}

// forwarder relays TCP connections to an address, counting them, until
// closed, when it also cuts the relayed connections.
type forwarder struct {
	addr  string
	ln    net.Listener
	mu    sync.Mutex
	n     int
	conns []net.Conn
}

func startForwarder(t *testing.T, to string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{addr: ln.Addr().String(), ln: ln}
	t.Cleanup(f.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.n++
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return f
}

func (f *forwarder) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *forwarder) close() {
	f.ln.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}
