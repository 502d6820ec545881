package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
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

// writeTimeout bounds every websocket write, so that a black-holed
// connection turns into a resume instead of a hang.
const writeTimeout = 15 * time.Second

// link is one websocket to the data channel. The event loop is its only
// writer (WriteMessage); the reader goroutine is its only reader; pings go
// through WriteControl, which gorilla allows concurrently.
type link struct {
	gen       int
	ws        *websocket.Conn
	conn      *batchConn   // under ws (and TLS); Flush sends held frames
	lastHeard atomic.Int64 // unix nanos of the last frame or pong
}

// frameEvent is what a link's reader hands the event loop.
type frameEvent struct {
	gen int
	msg protocol.Message
	err error // non-nil: the link is dead
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

// signUpgrade returns the SigV4 headers for the websocket upgrade GET of
// streamURL: service ssmmessages, the session's region, empty payload (§2).
// remember, if not nil, is given the credentials used.
func signUpgrade(ctx context.Context, creds aws.CredentialsProvider, region, streamURL string, now time.Time, remember func(aws.Credentials)) (http.Header, error) {
	u, err := url.Parse(streamURL)
	if err != nil {
		return nil, fmt.Errorf("parse stream url: %w", err)
	}
	if isPresigned(u) || creds == nil {
		return http.Header{}, nil
	}
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("retrieve credentials: %w", err)
	}
	if remember != nil {
		remember(c)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, streamURL, nil)
	if err != nil {
		return nil, err
	}
	if err := v4.NewSigner().SignHTTP(ctx, c, req, emptySHA256, signingService, region, now); err != nil {
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
// frame with token (§2). The token is never logged.
func (s *Session) dialLink(ctx context.Context, token string, gen int) (*link, error) {
	h, err := signUpgrade(ctx, s.creds, s.region, s.streamURL, s.now(), s.rememberCreds)
	if err != nil {
		return nil, err
	}
	// The dial goes through batchingDial: catch this dial's connection.
	var bc *batchConn
	d := *s.dialer
	d.NetDialContext = batchingDial(s.dialer.NetDialContext, func(c *batchConn) { bc = c })
	ws, resp, err := d.DialContext(ctx, s.streamURL, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("open data channel: %w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("open data channel: %w", err)
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
	if bc == nil {
		ws.Close()
		return nil, errors.New("open data channel: dialer bypassed NetDialContext")
	}
	bc.Hold()
	l := &link{gen: gen, ws: ws, conn: bc}
	err = l.write(websocket.TextMessage, open)
	if err == nil {
		err = l.flush()
	}
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("send open data channel: %w", err)
	}
	l.lastHeard.Store(time.Now().UnixNano())
	ws.SetPongHandler(func(string) error {
		l.lastHeard.Store(time.Now().UnixNano())
		return nil
	})
	return l, nil
}

// read runs the link's reader until the websocket fails, handing every
// decodable frame to events. Frames that fail validation are dropped
// unacknowledged, as both official peers do (§3).
func (l *link) read(ctx context.Context, events chan<- frameEvent, log *slog.Logger) {
	defer l.ws.Close()
	// One buffer for every frame: UnmarshalBinary copies the payload, so
	// the frame need not outlive the iteration (ReadMessage allocates and
	// grows a fresh one per frame).
	var data []byte
	for {
		typ, r, err := l.ws.NextReader()
		if err == nil {
			data, err = readFrame(data[:0], r)
		}
		if err != nil {
			select {
			case events <- frameEvent{gen: l.gen, err: err}:
			case <-ctx.Done():
			}
			return
		}
		l.lastHeard.Store(time.Now().UnixNano())
		if typ != websocket.BinaryMessage && typ != websocket.TextMessage {
			continue
		}
		var m protocol.Message
		if err := m.UnmarshalBinary(data); err != nil {
			log.Debug("dropping malformed frame", "err", err, "len", len(data))
			continue
		}
		select {
		case events <- frameEvent{gen: l.gen, msg: m}:
		case <-ctx.Done():
			return
		}
	}
}

// readFrame appends all of r to b.
func readFrame(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// write queues one frame; flush sends it. Only the event loop calls it.
func (l *link) write(typ int, frame []byte) error {
	l.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	return l.ws.WriteMessage(typ, frame)
}

// flush sends the frames held in the connection.
func (l *link) flush() error {
	l.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	return l.conn.Flush()
}

// ping sends a websocket ping (§2: the plugin's payload is "keepalive").
func (l *link) ping() error {
	return l.ws.WriteControl(websocket.PingMessage, []byte("keepalive"), time.Now().Add(writeTimeout))
}

// close closes the websocket, politely if possible.
func (l *link) close() {
	l.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	l.flush()
	l.ws.Close()
}

// isCloseNormal reports a peer close frame, e.g. the gateway's 1000 "Bye".
func isCloseNormal(err error) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce)
}
