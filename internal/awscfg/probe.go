package awscfg

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// Probe steps, ProbeResult.Step of the one that failed.
const (
	StepDNS   = "DNS"
	StepTCP   = "TCP"
	StepProxy = "proxy"
	StepTLS   = "TLS"
)

// ProbeResult is what Probe found.
type ProbeResult struct {
	// Addr is the host:port probed.
	Addr string
	// Proxy is the proxy the connection went through, as "host:port
	// (HTTPS_PROXY)"; "" for a direct one.
	Proxy string
	// Addrs are the addresses the host resolved to (direct connections).
	Addrs []string
	// TLS reports a verified TLS handshake; false for an http:// URL.
	TLS bool
	// Took is the time of the whole probe.
	Took time.Duration
	// Step is the step that failed ("" when all passed) and Err why.
	Step string
	Err  error
}

// Probe checks that e answers as cfg's clients would reach it: the name
// resolves, TCP connects (or, through a proxy, the proxy connects with
// CONNECT), and TLS verifies with cfg's CA bundle. Each step is bounded by
// t.Connect. Nothing is sent beyond the TLS handshake.
func Probe(ctx context.Context, cfg aws.Config, e Endpoint, t Timeouts) ProbeResult {
	t = t.withDefaults()
	start := time.Now()
	r := ProbeResult{Addr: e.URL.Host}
	if e.URL.Port() == "" {
		r.Addr = net.JoinHostPort(e.URL.Hostname(), defaultPort(e.URL.Scheme))
	}
	fail := func(step string, err error) ProbeResult {
		r.Step, r.Err, r.Took = step, err, time.Since(start)
		return r
	}
	proxies := readProxyEnv()
	var tlsConf *tls.Config
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		tlsConf = bc.GetTransport().TLSClientConfig
	}
	var conn net.Conn
	if p, _, err := proxies.forURL(e.URL); err != nil {
		return fail(StepProxy, err)
	} else if p != nil {
		r.Proxy = proxies.describe(e.URL)
		cctx, cancel := context.WithTimeout(ctx, t.Connect)
		conn, err = proxies.dialThrough(cctx, e.URL, r.Addr, tlsConf)
		cancel()
		if err != nil {
			return fail(StepProxy, err)
		}
	} else {
		host, _, _ := net.SplitHostPort(r.Addr)
		dctx, cancel := context.WithTimeout(ctx, t.Connect)
		addrs, err := net.DefaultResolver.LookupHost(dctx, host)
		cancel()
		if err == nil && len(addrs) == 0 {
			err = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		if err != nil {
			return fail(StepDNS, err)
		}
		r.Addrs = addrs
		var nd net.Dialer
		cctx, cancel := context.WithTimeout(ctx, t.Connect)
		conn, err = nd.DialContext(cctx, "tcp", r.Addr)
		cancel()
		if err != nil {
			return fail(StepTCP, err)
		}
	}
	defer conn.Close()
	if e.URL.Scheme == "http" || e.URL.Scheme == "ws" {
		r.Took = time.Since(start)
		return r
	}
	tc := &tls.Config{ServerName: e.ServerName}
	if tlsConf != nil {
		tc = tlsConf.Clone()
		tc.ServerName = e.ServerName
	}
	if tc.ServerName == "" {
		tc.ServerName = e.URL.Hostname()
	}
	tctx, cancel := context.WithTimeout(ctx, t.Connect)
	defer cancel()
	if err := tls.Client(conn, tc).HandshakeContext(tctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no TLS handshake within %s", t.Connect)
		}
		return fail(StepTLS, err)
	}
	r.TLS = true
	r.Took = time.Since(start)
	return r
}
