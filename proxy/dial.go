package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
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
func (s *Session) dialLink(ctx context.Context, streamURL, token string, gen int, events chan<- frameEvent) (*link, error) {
	u, err := checkStreamURL(streamURL, s.region, s.opts.StreamHosts)
	if err != nil {
		return nil, err
	}
	h, err := signUpgrade(ctx, s.creds, s.region, u, s.rememberCreds)
	if err != nil {
		return nil, err
	}
	// The dial goes through batchingDial: catch this dial's connection.
	var bc *batchConn
	d := *s.dialer
	d.NetDialContext = batchingDial(s.dialer.NetDialContext, func(c *batchConn) { bc = c })
	if pre := s.takePredial(ctx, u); pre != nil {
		// The connection opened while StartSession was in flight.
		bc = pre.bc
		if pre.tls {
			d.NetDialTLSContext = func(context.Context, string, string) (net.Conn, error) { return pre.conn, nil }
		} else {
			d.NetDialContext = func(context.Context, string, string) (net.Conn, error) { return pre.conn, nil }
		}
	}
	ws, resp, err := d.DialContext(ctx, streamURL, h)
	if err != nil {
		if resp != nil {
			return nil, &UpgradeError{StatusCode: resp.StatusCode, Status: resp.Status, Err: err}
		}
		return nil, fmt.Errorf("open data channel: %w", err)
	}
	if bc == nil {
		ws.Close()
		return nil, errors.New("open data channel: dialer bypassed NetDialContext")
	}
	reqID, err := protocol.NewUUID(s.rand)
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

// predialed is a connection to the messages endpoint opened while
// StartSession is in flight: its host follows from the region and the
// endpoint configuration, so the websocket's TCP and TLS handshakes need
// not wait for the StreamUrl (Options.PredialURL). Nothing is sent on it
// before the StreamUrl has been checked and found to name the same host.
type predialed struct {
	hostPort string // the host and port dialed
	tls      bool
	conn     net.Conn // *tls.Conn over bc, or bc itself
	bc       *batchConn
	err      error
}

// startPredial opens a connection to raw's host in the background, unless
// an HTTP proxy applies (gorilla then tunnels through it itself).
func (s *Session) startPredial(ctx context.Context, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		return
	}
	if s.dialer.Proxy != nil {
		req := &http.Request{URL: &url.URL{Scheme: strings.Replace(u.Scheme, "ws", "http", 1), Host: u.Host}}
		if p, err := s.dialer.Proxy(req); err != nil || p != nil {
			return
		}
	}
	ch := make(chan *predialed, 1)
	s.predial = ch
	log := s.log
	go func() { ch <- s.predialOnce(ctx, u, log) }()
}

func (s *Session) predialOnce(ctx context.Context, u *url.URL, log *slog.Logger) *predialed {
	p := &predialed{hostPort: hostPort(u), tls: u.Scheme == "wss"}
	ctx, cancel := context.WithTimeout(ctx, s.dialer.HandshakeTimeout)
	defer cancel()
	dial := s.dialer.NetDialContext
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
		if s.dialer.TLSClientConfig != nil {
			cfg = s.dialer.TLSClientConfig.Clone()
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
	log.Debug("messages endpoint connected while StartSession was in flight", "host", p.hostPort)
	return p
}

// takePredial returns the predialed connection if it reached u's host and
// port, waiting for it if it is still being opened; any other is closed.
// Only the first dial looks.
func (s *Session) takePredial(ctx context.Context, u *url.URL) *predialed {
	if s.predial == nil {
		return nil
	}
	var p *predialed
	select {
	case p = <-s.predial:
		s.predial = nil
	case <-ctx.Done():
		s.dropPredial()
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
	return p
}

// dropPredial closes the early connection if no dial took it, without
// waiting for it to finish opening.
func (s *Session) dropPredial() {
	ch := s.predial
	s.predial = nil
	if ch != nil {
		go func() {
			if p := <-ch; p.conn != nil {
				p.conn.Close()
			}
		}()
	}
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
