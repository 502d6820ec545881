package proxy

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// signingService is the SigV4 service name of the message gateway (§2).
const signingService = "ssmmessages"

// emptySHA256 is the payload hash of the upgrade GET's empty body.
var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

// UpgradeError reports a websocket upgrade the gateway refused with an HTTP
// status. 4xx statuses other than 408 and 429 are permanent: a refused
// signature, a missing ssmmessages:OpenDataChannel permission or an unknown
// session do not heal by retrying.
type UpgradeError struct {
	StatusCode int
	Status     string
	Err        error
}

func (e *UpgradeError) Error() string {
	return fmt.Sprintf("open data channel: the gateway refused the websocket: HTTP %s", e.Status)
}

func (e *UpgradeError) Unwrap() error { return e.Err }

func (e *UpgradeError) permanent() bool {
	c := e.StatusCode
	return c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests
}

// isPresigned reports whether a StreamUrl already carries a SigV4 query
// signature, in which case the upgrade is not signed again (§2).
func isPresigned(u *url.URL) bool {
	for k := range u.Query() {
		switch strings.ToLower(k) {
		case "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
			"x-amz-signedheaders", "x-amz-signature", "x-amz-security-token":
			return true
		}
	}
	return false
}

// signUpgrade returns the SigV4 headers for the websocket upgrade GET of u:
// service ssmmessages, the session's region, empty payload (§2). remember,
// if not nil, is given the credentials used.
func signUpgrade(ctx context.Context, creds aws.CredentialsProvider, region string, u *url.URL, remember func(aws.Credentials)) (http.Header, error) {
	if isPresigned(u) || creds == nil {
		return http.Header{}, nil
	}
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return nil, &CredentialsError{Err: err}
	}
	if remember != nil {
		remember(c)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if err := v4.NewSigner().SignHTTP(ctx, c, req, emptySHA256, signingService, region, time.Now()); err != nil {
		return nil, fmt.Errorf("sign websocket upgrade: %w", err)
	}
	h := http.Header{}
	for _, k := range []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token"} {
		if v := req.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	return h, nil
}

// dialLink opens the websocket at streamURL and sends the OpenDataChannel
// frame with token (§2). The URL is checked first (§15.3): nothing is
// signed for, and no token sent to, a host that is not a messages endpoint.
// The token is never logged. events receives the link's write failure.
// Signing and the dial end by deadline (the resume budget's end), whatever
// the dialer's own handshake timeout: a stream host that accepts TCP and
// never answers must not outlast the budget.
func (s *Session) dialLink(ctx context.Context, deadline time.Time, streamURL, token string, gen int, events chan<- frameEvent) (*link, error) {
	u, err := checkStreamURL(streamURL, s.region, s.opts.StreamHosts)
	if err != nil {
		return nil, err
	}
	dctx := ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		dctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	h, err := signUpgrade(dctx, s.creds, s.region, u, s.rememberCreds)
	if err != nil {
		return nil, err
	}
	// The dial goes through batchingDial: catch this dial's connection.
	// Once connected, gorilla's dialer obeys only the deadline, not ctx:
	// the guard closes the connection when ctx ends first, so that a
	// session being torn down is not left with an upgrade in flight.
	var bc *batchConn
	var guard dialGuard
	stop := context.AfterFunc(dctx, guard.cancel)
	defer stop()
	d := *s.dialer
	d.NetDialContext = batchingDial(s.dialer.NetDialContext, func(c *batchConn) { bc = c; guard.set(c) })
	if pre := s.takePredial(dctx, u); pre != nil {
		// The connection opened while StartSession was in flight.
		bc = pre.bc
		guard.set(pre.conn)
		if pre.tls {
			d.NetDialTLSContext = func(context.Context, string, string) (net.Conn, error) { return pre.conn, nil }
		} else {
			d.NetDialContext = func(context.Context, string, string) (net.Conn, error) { return pre.conn, nil }
		}
	}
	ws, resp, err := d.DialContext(dctx, streamURL, h)
	if err != nil {
		if resp != nil {
			return nil, &UpgradeError{StatusCode: resp.StatusCode, Status: resp.Status, Err: err}
		}
		if dctx.Err() != nil {
			err = dctx.Err() // the guard's close, not its symptom
		}
		return nil, fmt.Errorf("open data channel: %w", err)
	}
	if !stop() {
		ws.Close() // ctx ended as the upgrade completed
		return nil, fmt.Errorf("open data channel: %w", dctx.Err())
	}
	if bc == nil {
		ws.Close()
		return nil, errors.New("open data channel: dialer bypassed NetDialContext")
	}
	// Not s.rand: that belongs to the loop's goroutine, and a resume dials
	// on its own.
	reqID, err := protocol.NewUUID(crand.Reader)
	if err != nil {
		ws.Close()
		return nil, err
	}
	open, _ := json.Marshal(protocol.OpenDataChannel{
		MessageSchemaVersion: protocol.OpenDataChannelSchemaVersion,
		RequestID:            reqID.String(),
		TokenValue:           token,
		ClientID:             s.clientID.String(),
		ClientVersion:        s.opts.ClientVersion,
	})
	ws.SetReadLimit(maxFrame)
	l := &link{gen: gen, ws: ws, conn: bc, opened: time.Now()}
	bc.onError = func(err error) {
		select {
		case events <- frameEvent{gen: gen, err: fmt.Errorf("write: %w", err)}:
		case <-ctx.Done():
		}
	}
	bc.Hold()
	l.lastHeard.Store(time.Now().UnixNano())
	ws.SetPongHandler(func(string) error {
		l.heardNow()
		return nil
	})
	err = l.write(websocket.TextMessage, open)
	if err == nil {
		// A ping right away, as the official client does (§2): its pong
		// shows that the gateway talks to us (see link.healthy).
		err = l.ping()
	}
	if err == nil {
		err = l.flush()
	}
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("send open data channel: %w", err)
	}
	return l, nil
}

// dialGuard closes a dial's connection once cancel is called, whether the
// connection is known by then or comes later.
type dialGuard struct {
	mu       sync.Mutex
	conn     net.Conn
	canceled bool
}

func (g *dialGuard) set(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conn = c
	if g.canceled {
		c.Close()
	}
}

func (g *dialGuard) cancel() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.canceled = true
	if g.conn != nil {
		g.conn.Close()
	}
}

// Predial is a connection to the messages endpoint opened before the
// StreamUrl is known: its host follows from the region and the endpoint
// configuration, so the websocket's TCP and TLS handshakes need not wait
// for StartSession (or for a name lookup before it). Nothing is sent on it
// before a StreamUrl has been checked and found to name the same host. A
// Predial is used by at most one session (Options.Predial), or closed.
type Predial struct {
	ch   chan *predialed
	once sync.Once
}

// predialed is what a Predial's dial produced.
type predialed struct {
	hostPort string // the host and port dialed
	tls      bool
	conn     net.Conn // *tls.Conn over bc, or bc itself
	bc       *batchConn
	err      error
	took     time.Duration // from the start of the dial to the connection
}

// StartPredial opens a connection to rawURL's host (ws or wss) in the
// background with dialer's network settings, bounded by its handshake
// timeout (45 s if unset). It returns nil — nothing to gain — for a URL
// that is not a websocket URL, or when an HTTP proxy applies (gorilla then
// tunnels through it itself). The dial logs nothing itself: Close does not
// wait for it, and a line written after the caller's own last one (its
// error, say) would race with it; the session that takes the connection
// says how it went.
func StartPredial(ctx context.Context, dialer *websocket.Dialer, rawURL string) *Predial {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		return nil
	}
	d := websocket.Dialer{Proxy: http.ProxyFromEnvironment}
	if dialer != nil {
		d = *dialer
	}
	if d.Proxy != nil {
		req := &http.Request{URL: &url.URL{Scheme: strings.Replace(u.Scheme, "ws", "http", 1), Host: u.Host}}
		if p, err := d.Proxy(req); err != nil || p != nil {
			return nil
		}
	}
	p := &Predial{ch: make(chan *predialed, 1)}
	go func() { p.ch <- predialOnce(context.WithoutCancel(ctx), &d, u) }()
	return p
}

func predialOnce(ctx context.Context, d *websocket.Dialer, u *url.URL) *predialed {
	start := time.Now()
	p := &predialed{hostPort: hostPort(u), tls: u.Scheme == "wss"}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(d.HandshakeTimeout, defaultHandshakeTimeout))
	defer cancel()
	dial := d.NetDialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	raw, err := dial(ctx, "tcp", p.hostPort)
	if err != nil {
		p.err = err
		return p
	}
	p.bc = newBatchConn(raw)
	p.conn = p.bc
	if p.tls {
		cfg := &tls.Config{}
		if d.TLSClientConfig != nil {
			cfg = d.TLSClientConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		cfg.NextProtos = nil // HTTP/1.1 for the upgrade
		tc := tls.Client(p.bc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			p.err = err
			return p
		}
		p.conn = tc
	}
	p.took = time.Since(start)
	return p
}

// Close closes the connection if no session took it, without waiting for
// it to finish opening. It is safe to call more than once, and on nil.
func (p *Predial) Close() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		go func() {
			if r := <-p.ch; r.conn != nil {
				r.conn.Close()
			}
		}()
	})
}

// takePredial returns the early connection if it reached u's host and
// port, waiting for it if it is still being opened; any other is closed.
// Only the first dial looks.
func (s *Session) takePredial(ctx context.Context, u *url.URL) *predialed {
	pd := s.predial
	if pd == nil {
		return nil
	}
	s.predial = nil
	var p *predialed
	select {
	case p = <-pd.ch:
	case <-ctx.Done():
		pd.Close()
		return nil
	}
	switch {
	case p.err != nil:
		s.log.Debug("early connection to the messages endpoint failed; dialing again", "err", p.err)
		return nil
	case p.hostPort != hostPort(u) || p.tls != (u.Scheme == "wss"):
		s.log.Debug("the stream URL names another host than expected; dialing it", "expected", p.hostPort)
		p.conn.Close()
		return nil
	}
	s.log.Debug("data-channel connection opened early, while StartSession ran", "host", p.hostPort, "took", p.took.Round(time.Millisecond))
	return p
}

// dropPredial closes the early connection if no dial took it.
func (s *Session) dropPredial() {
	s.predial.Close()
	s.predial = nil
}

// hostPort is u's host and port, with the scheme's default port.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "ws" || u.Scheme == "http" {
			port = "80"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
