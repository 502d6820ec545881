package awscfg

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// proxyEnv is the proxy configuration of the environment, read the way Go's
// net/http reads it (HTTPS_PROXY, HTTP_PROXY and NO_PROXY, upper case first,
// then lower case; loopback never proxied), but read when the AWS
// configuration is loaded rather than once per process as
// http.ProxyFromEnvironment does. The API client and the websocket dialer
// both use it, so that they always go the same way.
type proxyEnv struct {
	https, http proxyVar
	noProxy     []noProxyRule
	cgi         bool // REQUEST_METHOD is set: HTTP_PROXY is not trusted
}

// proxyVar is one proxy variable: its name as set (HTTPS_PROXY or
// https_proxy) and its parsed value.
type proxyVar struct {
	name string
	url  *url.URL
	err  error
}

// noProxyRule is one NO_PROXY entry.
type noProxyRule struct {
	all       bool
	prefix    netip.Prefix // an IP or CIDR entry
	domain    string       // ".example.com"; matches the domain and below
	matchHost bool         // the entry had no leading dot: the bare domain matches too
	port      string       // "" matches any port
}

// readProxyEnv reads the proxy variables now.
func readProxyEnv() *proxyEnv {
	e := &proxyEnv{
		https: lookupProxyVar("HTTPS_PROXY", "https_proxy"),
		http:  lookupProxyVar("HTTP_PROXY", "http_proxy"),
		cgi:   os.Getenv("REQUEST_METHOD") != "",
	}
	no := os.Getenv("NO_PROXY")
	if no == "" {
		no = os.Getenv("no_proxy")
	}
	for _, entry := range strings.Split(no, ",") {
		if r, ok := parseNoProxy(entry); ok {
			e.noProxy = append(e.noProxy, r)
		}
	}
	return e
}

func lookupProxyVar(names ...string) proxyVar {
	for _, name := range names {
		if v := os.Getenv(name); v != "" {
			u, err := parseProxyURL(v)
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
			return proxyVar{name: name, url: u, err: err}
		}
	}
	return proxyVar{}
}

// parseProxyURL parses a proxy variable as net/http does: a bare host:port
// is taken as http://host:port. Unlike net/http, a value that has a scheme
// is never re-read with "http://" in front: for an unencoded "/" in a
// password, that would turn "http://alice:pa/ss@proxy:3128" into a proxy
// named "http:". Such a value, and one without a host, is an error that
// names the fix.
func parseProxyURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if !strings.Contains(s, "://") && (err != nil || u.Scheme == "" || u.Host == "") {
		u, err = url.Parse("http://" + s)
	}
	if err != nil {
		// Neither s nor url.Parse's error (which quotes s, or the bad
		// escape inside its password) is shown: only the address without
		// its user information.
		return nil, fmt.Errorf("the proxy address %s is not a valid URL: a user name or password in it must be percent-encoded (%% as %%25, @ as %%40, : as %%3A, / as %%2F)", withoutUserinfo(s))
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("the proxy address %s names no host: set it as http://host:port", withoutUserinfo(s))
	}
	return u, nil
}

// withoutUserinfo is a proxy address with anything before its last "@"
// (after the scheme) replaced: the user name and password.
func withoutUserinfo(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "", s
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = "…@" + rest[i+1:]
	}
	if scheme != "" {
		return scheme + "://" + rest
	}
	return rest
}

func parseNoProxy(entry string) (noProxyRule, bool) {
	entry = strings.ToLower(strings.TrimSpace(entry))
	switch {
	case entry == "":
		return noProxyRule{}, false
	case entry == "*":
		return noProxyRule{all: true}, true
	}
	if p, err := netip.ParsePrefix(entry); err == nil {
		return noProxyRule{prefix: p.Masked()}, true
	}
	host, port := entry, ""
	if h, p, err := net.SplitHostPort(entry); err == nil {
		host, port = h, p
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return noProxyRule{prefix: netip.PrefixFrom(ip, ip.BitLen()), port: port}, true
	}
	host = strings.TrimPrefix(host, "*")
	r := noProxyRule{domain: host, port: port}
	if !strings.HasPrefix(host, ".") {
		r.domain, r.matchHost = "."+host, true
	}
	return r, true
}

// forURL returns the proxy for a request to u and the variable that names
// it; nil when the request goes direct.
func (e *proxyEnv) forURL(u *url.URL) (*url.URL, string, error) {
	var v proxyVar
	switch u.Scheme {
	case "https", "wss":
		v = e.https
	case "http", "ws":
		v = e.http
		if v.url != nil && e.cgi {
			return nil, v.name, errors.New("refusing to use HTTP_PROXY in a CGI environment (REQUEST_METHOD is set)")
		}
	}
	if v.name == "" || !e.useProxy(u) {
		return nil, "", nil
	}
	return v.url, v.name, v.err
}

// useProxy applies the loopback rule and NO_PROXY to u's host.
func (e *proxyEnv) useProxy(u *url.URL) bool {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	if host == "localhost" {
		return false
	}
	ip, ipErr := netip.ParseAddr(host)
	if ipErr == nil && ip.IsLoopback() {
		return false
	}
	for _, r := range e.noProxy {
		switch {
		case r.all:
			return false
		case r.prefix.IsValid():
			if ipErr == nil && r.prefix.Contains(ip.Unmap()) && (r.port == "" || r.port == port) {
				return false
			}
		case strings.HasSuffix(host, r.domain) || r.matchHost && host == r.domain[1:]:
			if r.port == "" || r.port == port {
				return false
			}
		}
	}
	return true
}

// proxyFunc is forURL as http.Transport.Proxy.
func (e *proxyEnv) proxyFunc(req *http.Request) (*url.URL, error) {
	u, _, err := e.forURL(req.URL)
	return u, err
}

// describe names the proxy a request to u goes through, for messages:
// "127.0.0.1:3128 (HTTPS_PROXY)", the URL's password left out; "" for none.
func (e *proxyEnv) describe(u *url.URL) string {
	p, name, _ := e.forURL(u)
	if p == nil {
		return ""
	}
	return p.Host + " (" + name + ")"
}

// checkConnectResponse is http.Transport.OnProxyConnectResponse: a proxy
// that refuses CONNECT becomes a *ProxyError instead of net/http's bare
// status text.
func (e *proxyEnv) checkConnectResponse(_ context.Context, proxyURL *url.URL, req *http.Request, resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	name := e.https.name
	if proxyURL != e.https.url {
		name = e.http.name
	}
	return &ProxyError{Proxy: proxyURL.Host + " (" + name + ")", Target: req.Host, Status: resp.Status}
}

// ProxyError reports a proxy that could not be reached or refused to
// connect to the endpoint.
type ProxyError struct {
	// Proxy is the proxy's host:port and the variable that names it, as
	// "127.0.0.1:3128 (HTTPS_PROXY)".
	Proxy string
	// Target is the host:port the proxy was asked to connect to.
	Target string
	// Status is the proxy's answer to CONNECT when it refused; "" when
	// it could not be reached (Err).
	Status string
	Err    error
}

func (e *ProxyError) Error() string {
	if e.Status != "" {
		return fmt.Sprintf("the proxy %s refused to connect to %s: %s", e.Proxy, e.Target, e.Status)
	}
	return fmt.Sprintf("cannot reach the proxy %s: %v", e.Proxy, e.Err)
}

func (e *ProxyError) Unwrap() error { return e.Err }

// ProxyVariable is the variable ("HTTPS_PROXY", "http_proxy", …) in
// e.Proxy.
func (e *ProxyError) ProxyVariable() string {
	_, after, ok := strings.Cut(e.Proxy, " (")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(after, ")")
}

func defaultPort(scheme string) string {
	if scheme == "http" || scheme == "ws" {
		return "80"
	}
	return "443"
}

// dialThrough connects to addr (host:port) through the proxy the
// environment names for target, with an HTTP CONNECT, or directly when
// none applies. roots verifies an https:// proxy.
func (e *proxyEnv) dialThrough(ctx context.Context, target *url.URL, addr string, roots *tls.Config) (net.Conn, error) {
	proxyURL, name, err := e.forURL(target)
	if err != nil {
		return nil, err
	}
	var nd net.Dialer
	if proxyURL == nil {
		return nd.DialContext(ctx, "tcp", addr)
	}
	desc := proxyURL.Host + " (" + name + ")"
	paddr := proxyURL.Host
	if proxyURL.Port() == "" {
		paddr = net.JoinHostPort(proxyURL.Hostname(), defaultPort(proxyURL.Scheme))
	}
	conn, err := nd.DialContext(ctx, "tcp", paddr)
	if err != nil {
		return nil, &ProxyError{Proxy: desc, Target: addr, Err: err}
	}
	if proxyURL.Scheme == "https" {
		tc := &tls.Config{ServerName: proxyURL.Hostname()}
		if roots != nil {
			tc.RootCAs = roots.RootCAs
		}
		tlsConn := tls.Client(conn, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, &ProxyError{Proxy: desc, Target: addr, Err: err}
		}
		conn = tlsConn
	}
	c, err := connect(ctx, conn, proxyURL, addr)
	if err != nil {
		conn.Close()
		var pe *ProxyError
		if errors.As(err, &pe) {
			pe.Proxy = desc
			return nil, pe
		}
		return nil, &ProxyError{Proxy: desc, Target: addr, Err: err}
	}
	return c, nil
}

// connect asks the proxy on conn to connect to addr.
func connect(ctx context.Context, conn net.Conn, proxyURL *url.URL, addr string) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	// Cancelling ctx unblocks the exchange.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: make(http.Header),
	}
	if u := proxyURL.User; u != nil {
		pass, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	if err := req.Write(conn); err != nil {
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &ProxyError{Target: addr, Status: resp.Status}
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn is a connection whose first bytes were read ahead.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
