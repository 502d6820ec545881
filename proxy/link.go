package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// maxFrame bounds one incoming websocket message: a ClientMessage header
// and the largest payload the codec accepts. A bigger frame is a protocol
// error, not a reason to buffer it (§3).
const maxFrame = protocol.FrameHeaderLen + protocol.MaxPayload

// link is one websocket to the data channel (§2).
//
// Concurrency: the event loop is its only caller of write, flush, ping and
// close; one reader goroutine (read) is its only reader. Neither ever waits
// for the network to take bytes: writes are held by the batchConn under
// the websocket, whose own goroutine sends them (batch.go).
type link struct {
	gen       int
	ws        *websocket.Conn
	conn      *batchConn   // under ws (and TLS)
	opened    time.Time    // when the OpenDataChannel frame was queued
	lastHeard atomic.Int64 // unix nanos of the last frame or pong
	heard     atomic.Bool  // a frame or pong arrived: the gateway talks to us
	relayed   atomic.Int64 // frames of agent stream data and acks: the session works
}

// frameEvent is what a link's goroutines hand the event loop.
type frameEvent struct {
	gen int
	msg protocol.Message
	err error // non-nil: the link is dead
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
		l.heardNow()
		if typ != websocket.BinaryMessage && typ != websocket.TextMessage {
			continue
		}
		var m protocol.Message
		if err := m.UnmarshalBinary(data); err != nil {
			log.Debug("dropping malformed frame", "err", err, "len", len(data))
			continue
		}
		if m.Type == protocol.OutputStreamData || m.Type == protocol.Acknowledge {
			l.relayed.Add(1)
		}
		select {
		case events <- frameEvent{gen: l.gen, msg: m}:
		case <-ctx.Done():
			return
		}
	}
}

func (l *link) heardNow() {
	l.lastHeard.Store(time.Now().UnixNano())
	l.heard.Store(true)
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

// write queues one frame; it is sent at the next flush or sooner.
func (l *link) write(typ int, frame []byte) error {
	return l.ws.WriteMessage(typ, frame)
}

// flush hands the held frames to the network writer.
func (l *link) flush() error { return l.conn.Flush() }

// backlog is how many written bytes the network has not taken yet.
func (l *link) backlog() int { return l.conn.Backlog() }

// ping queues a websocket ping (§2: the plugin's payload is "keepalive").
func (l *link) ping() error {
	return l.ws.WriteControl(websocket.PingMessage, []byte("keepalive"), time.Now().Add(time.Second))
}

// closeGrace bounds how long a polite close waits for held frames (the
// TerminateSession flag among them) to reach the network.
const closeGrace = time.Second

// close closes the websocket, politely if the network takes the close frame
// within closeGrace.
func (l *link) close() {
	l.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
	l.conn.Drain(ctx)
	cancel()
	l.ws.Close()
}

// abandon gives the websocket up without waiting: its reader may still
// deliver what the kernel already received (frames that survive a reset are
// not lost), and the connection is closed after closeGrace at the latest so
// that a black-holed reader does not linger.
func (l *link) abandon() {
	time.AfterFunc(closeGrace, func() { l.ws.Close() })
}

// isCloseFrame reports a peer close frame, e.g. the gateway's 1000 "Bye".
func isCloseFrame(err error) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce)
}

// healthy reports whether l worked: the gateway answered on it and it
// lived for healthyLife, or it relayed healthyFrames of the agent's stream
// data and acks (a link that carries a transfer may be short-lived, as
// when the gateway recycles websockets). A link that fails before either
// counts as a failed attempt (see resumePlan), so that a gateway that
// accepts and closes at once — or relays a frame and closes — meets
// backoff and the budget instead of a reconnect storm.
func (l *link) healthy(now time.Time) bool {
	return l.relayed.Load() >= healthyFrames || (l.heard.Load() && now.Sub(l.opened) >= healthyLife)
}
