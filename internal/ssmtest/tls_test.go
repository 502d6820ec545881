package ssmtest

// Tests of where the emulator says it is: TLS (https and wss), the host the
// StreamUrl names, and an advertised address in front of it. The command's
// -tls-ca-out is cmd/ssm-emulator/main_test.go's. No ssm-proxy test uses the
// emulator's TLS: e2e/network_test.go puts a TLS-inspecting proxy in front.

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// startSessionAPI calls StartSession for AWS-StartSSHSession on the first
// default instance through client.
func startSessionAPI(t *testing.T, client *ssm.Client) *ssm.StartSessionOutput {
	t.Helper()
	out, err := client.StartSession(apiContext(t), &ssm.StartSessionInput{
		Target:       aws.String(DefaultInstances()[0].ID),
		DocumentName: aws.String(docSSH),
		Parameters:   map[string][]string{"portNumber": {"22"}},
	})
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	return out
}

// echoOnce sends one Output message on a fresh data channel and waits for
// its echo.
func echoOnce(t *testing.T, s *Server, d rawDial) {
	t.Helper()
	c, err := tryDialRawWith(t, d)
	if err != nil {
		t.Fatalf("dial %s: %v", d.URL, err)
	}
	c.ss = s.lookupSession(sessionIDOf(t, d.URL))
	c.handshakeReady()
	c.sendStream(1, protocol.PayloadOutput, []byte("ping"))
	out := c.expect(5*time.Second, "echo", isStream(protocol.PayloadOutput))
	if string(out.Payload) != "ping" {
		t.Errorf("echo %q", out.Payload)
	}
}

func sessionIDOf(t *testing.T, streamURL string) string {
	t.Helper()
	u, err := url.Parse(streamURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/v1/data-channel/")
}

// TestTLS: with Options.TLS the API is https and the StreamUrl wss, both
// trusted through the throw-away CA of NewTLSConfig, and plain HTTP is not
// served.
func TestTLS(t *testing.T) {
	t.Parallel()
	cfg, caPEM, err := NewTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Options{TargetAddr: echoServer(t), TLS: cfg})
	if !strings.HasPrefix(s.Endpoint(), "https://127.0.0.1:") {
		t.Fatalf("Endpoint %s", s.Endpoint())
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA PEM does not parse")
	}
	tlsClient := &tls.Config{RootCAs: roots}
	client := ssm.New(ssm.Options{
		Region:           DefaultRegion,
		BaseEndpoint:     aws.String(s.Endpoint()),
		Credentials:      Credentials(),
		RetryMaxAttempts: 1,
		HTTPClient:       &http.Client{Transport: &http.Transport{TLSClientConfig: tlsClient}},
	})
	out := startSessionAPI(t, client)
	u := aws.ToString(out.StreamUrl)
	if !strings.HasPrefix(u, "wss://"+strings.TrimPrefix(s.Endpoint(), "https://")+"/v1/data-channel/") {
		t.Fatalf("StreamUrl %s", u)
	}
	echoOnce(t, s, rawDial{URL: u, Token: aws.ToString(out.TokenValue),
		Dialer: &websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: tlsClient}})

	// The CA is needed: the system roots do not know it.
	_, err = tryDialRawWith(t, rawDial{URL: u, Token: "x", Dialer: &websocket.Dialer{HandshakeTimeout: 5 * time.Second}})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("dial without the CA: %v", err)
	}
	// Plain HTTP on the TLS port gets no API answer.
	resp, err := http.Post(strings.Replace(s.Endpoint(), "https://", "http://", 1), apiContentType, strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP answered %s", resp.Status)
		}
	}
	if st := s.Stats(); st.SessionsStarted != 1 || st.UnsignedUpgrades != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestStreamURLHost: the StreamUrl names the configured messages host
// while the emulator is reached at its own address, as a client with a
// messages-endpoint override reaches it; the Host it sends (and signs) is
// accepted.
func TestStreamURLHost(t *testing.T) {
	t.Parallel()
	const host = "ssmmessages.us-east-1.amazonaws.com"
	s := startServer(t, Options{TargetAddr: echoServer(t), StreamURLHost: host})
	out := startSessionAPI(t, apiTestClient(s))
	u, err := url.Parse(aws.ToString(out.StreamUrl))
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "ws" || u.Host != host || !strings.HasPrefix(u.Path, "/v1/data-channel/") || u.Query().Get("cell-number") == "" {
		t.Fatalf("StreamUrl %s", u)
	}
	if strings.Contains(s.Endpoint(), host) {
		t.Errorf("Endpoint %s names the messages host", s.Endpoint())
	}
	// What a client with AWS_ENDPOINT_URL_SSMMESSAGES=Endpoint() dials.
	u.Host = strings.TrimPrefix(s.Endpoint(), "http://")
	hdr := signedHeader(t, u.String(), SecretAccessKey)
	echoOnce(t, s, rawDial{URL: u.String(), Token: aws.ToString(out.TokenValue), Header: hdr})
	if st := s.Stats(); st.SignedUpgrades != 1 {
		t.Errorf("stats %+v", st)
	}
	for _, bad := range []string{"host/path", "a b", "user@host"} {
		if _, err := Start(Options{StreamURLHost: bad}); err == nil {
			t.Errorf("Start accepted StreamURLHost %q", bad)
		}
	}
}

// TestAdvertiseAddr: with a proxy in front, Endpoint() and the StreamUrl
// name the proxy, and both the API call and the data channel go through
// it. Without it both name the listener.
func TestAdvertiseAddr(t *testing.T) {
	t.Parallel()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Options{TargetAddr: echoServer(t), AdvertiseAddr: front.Addr().String()})
	var forwarded atomic.Int64
	go func() {
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			forwarded.Add(1)
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", s.Addr())
				if err != nil {
					return
				}
				defer b.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(b, c); done <- struct{}{} }()
				go func() { io.Copy(c, b); done <- struct{}{} }()
				<-done // either side closing closes both
			}()
		}
	}()
	t.Cleanup(func() { front.Close() })

	if s.Endpoint() != "http://"+front.Addr().String() || s.Addr() == front.Addr().String() {
		t.Fatalf("Endpoint %s, Addr %s, front %s", s.Endpoint(), s.Addr(), front.Addr())
	}
	out := startSessionAPI(t, apiTestClient(s))
	u := aws.ToString(out.StreamUrl)
	if !strings.HasPrefix(u, "ws://"+front.Addr().String()+"/") {
		t.Fatalf("StreamUrl %s", u)
	}
	echoOnce(t, s, rawDial{URL: u, Token: aws.ToString(out.TokenValue)})
	if n := forwarded.Load(); n < 2 {
		t.Errorf("%d connections through the front, want the API's and the data channel's", n)
	}

	plain := startServer(t, Options{})
	if plain.Endpoint() != "http://"+plain.Addr() {
		t.Errorf("Endpoint %s, Addr %s", plain.Endpoint(), plain.Addr())
	}
	ss := startSession(t, plain)
	if !strings.HasPrefix(ss.streamURL, "ws://"+plain.Addr()+"/v1/data-channel/") {
		t.Errorf("StreamUrl %s", ss.streamURL)
	}
}

// TestNewTLSConfigHosts: the certificate covers loopback and the hosts
// given, with or without a port.
func TestNewTLSConfigHosts(t *testing.T) {
	t.Parallel()
	cfg, caPEM, err := NewTLSConfig("ssmmessages.us-east-1.amazonaws.com:443", "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"127.0.0.1", "::1", "localhost", "ssmmessages.us-east-1.amazonaws.com", "10.1.2.3"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: roots}); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "ssm.us-east-1.amazonaws.com", Roots: roots}); err == nil {
		t.Error("the certificate covers a host it was not made for")
	}
}
