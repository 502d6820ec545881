package ssmtest

// The message gateway's side of a client's data channel (§2, §9.1): the
// websocket upgrade at a StreamUrl, the OpenDataChannel token check, and one
// reader and one writer goroutine per websocket. The faults of Options that
// act on the transport (faults.go) sit between these goroutines and the
// agent (agent.go).

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

const (
	// openTimeout bounds the wait for the OpenDataChannel text frame.
	openTimeout = 10 * time.Second
	// writeTimeout bounds one websocket write; a client that stops reading
	// for that long loses its websocket.
	writeTimeout = 10 * time.Second
	// closeWait is how long a websocket closed with a close frame waits for
	// the client's close frame before the TCP connection is closed.
	closeWait = time.Second
	// stuckFrames is how many frames may wait for one websocket, past their
	// Latency, before the agent stops reading its target: the back-pressure
	// a blocking websocket write gives. With sendBuffer it bounds what a
	// dropped or black-holed websocket loses, which the agent then recovers
	// one message per resend tick (§5.4).
	stuckFrames = 16
	// sendBuffer is the kernel send buffer of a data-channel connection,
	// fixed so that loopback autotuning (megabytes) does not put more in
	// flight than a real gateway connection would.
	sendBuffer = 32 << 10
	// recvBuffer is the kernel receive buffer of a data-channel connection
	// while BlackholeEvery is on: once a black hole stops reading, a
	// client's writes block after this much (plus its own send buffer),
	// not after the megabytes loopback autotuning would take in.
	recvBuffer = 32 << 10
	// maxCloseText is the longest close reason a close frame can carry
	// (RFC 6455 §5.5: 125 bytes of payload, 2 of them the code).
	maxCloseText = 123
	// maxFrame bounds an incoming websocket message.
	maxFrame = protocol.FrameHeaderLen + protocol.MaxPayload
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  8 << 10,
	WriteBufferSize: 8 << 10,
	// Clients send no Origin (§2); accept whatever comes.
	CheckOrigin: func(*http.Request) bool { return true },
}

// serveDataChannel accepts the websocket at a StreamUrl (§2, §9.1). A
// signature, if present, must be valid; RequireSignedUpgrade makes it
// mandatory. Refusals are HTTP 403 and count as RefusedUpgrades; accepted
// upgrades count as SignedUpgrades or UnsignedUpgrades, whatever the
// OpenDataChannel that follows.
//
// Under MoveCellOnResume the URL must also name the session's current
// cell. AWS says only that the old URL "no longer works" after a move; the
// emulator answers it as it answers a session it does not know, HTTP 404
// before the upgrade, because to the cell the client reached the session
// is unknown now. It is neither a transient failure nor the 403 of a bad
// signature, and a client should not retry it as one.
func (s *Server) serveDataChannel(w http.ResponseWriter, r *http.Request) {
	err := s.verifySigV4(r, "ssmmessages", nil)
	signed := err == nil
	switch {
	case err == nil:
	case errors.Is(err, errUnsigned) && !s.opts.RequireSignedUpgrade:
	case errors.Is(err, errUnsigned):
		s.add(func(st *Stats) { st.RefusedUpgrades++ })
		s.logf("ssmtest: data channel: unsigned upgrade refused")
		http.Error(w, "Forbidden: the request must be signed", http.StatusForbidden)
		return
	default:
		s.add(func(st *Stats) { st.RefusedUpgrades++ })
		s.logf("ssmtest: data channel: upgrade refused: %v", firstLine(err.Error()))
		// One line: the gateway's answer body is not known, and the
		// canonical request of a mismatch is only for the log.
		http.Error(w, "Forbidden: "+firstLine(err.Error()), http.StatusForbidden)
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/v1/data-channel/")
	ss := s.lookupSession(id)
	if ss == nil {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	ss.mu.Lock()
	inCell := ss.inCellLocked(r.URL.Query().Get("cell-number"))
	ss.mu.Unlock()
	if !inCell {
		s.add(func(st *Stats) { st.StaleURLRefusals++ })
		s.logf("ssmtest: session %s: upgrade of a URL whose cell the session has left refused", id)
		http.Error(w, "Not Found: the session is not in this cell", http.StatusNotFound)
		return
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.wg.Add(1)
	if signed {
		s.stats.SignedUpgrades++
	} else {
		s.stats.UnsignedUpgrades++
	}
	s.mu.Unlock()
	defer s.wg.Done()

	if tc, ok := tcpConn(conn.UnderlyingConn()).(*net.TCPConn); ok {
		tc.SetWriteBuffer(sendBuffer)
		if s.opts.BlackholeEvery > 0 {
			tc.SetReadBuffer(recvBuffer)
		}
	}
	conn.SetReadLimit(maxFrame)
	conn.SetReadDeadline(time.Now().Add(openTimeout))
	// Close does not wait for a client that never sends OpenDataChannel.
	stop := context.AfterFunc(ss.ctx, func() { conn.Close() })
	typ, p, err := conn.ReadMessage()
	stop()
	if err != nil {
		s.logf("ssmtest: session %s: no OpenDataChannel: %v", id, err)
		conn.Close()
		return
	}
	conn.SetReadDeadline(time.Time{})
	var open protocol.OpenDataChannel
	if typ == websocket.TextMessage {
		open, err = protocol.ParseOpenDataChannel(p)
	} else {
		err = errors.New("first frame is not a text frame")
	}
	if err != nil {
		s.logf("ssmtest: session %s: bad OpenDataChannel: %v", id, err)
		refuse(conn, "invalid token")
		return
	}
	if reason := s.checkClientVersion(open.ClientVersion); reason != "" {
		s.logf("ssmtest: session %s: OpenDataChannel refused: %s", id, reason)
		refuse(conn, reason)
		return
	}
	if reason := ss.checkToken(open.TokenValue); reason != "" {
		s.logf("ssmtest: session %s: open refused: %s", id, reason)
		refuse(conn, "invalid token")
		return
	}
	if s.closeOnOpen() {
		c := s.opts.CloseOnOpen
		s.logf("ssmtest: session %s: websocket closed on open with %d %q (CloseOnOpen)", id, c.Code, c.Text)
		closeNow(conn, c.Code, c.Text)
		return
	}
	ws := ss.attach(conn, open.TokenValue)
	if ws == nil {
		refuse(conn, "invalid token")
		return
	}
	ws.readLoop()
}

// refuse closes a websocket whose OpenDataChannel was not accepted (§9.1
// step 1) with reason. The real gateway's close code is not known; 1008
// (policy violation) says what happened.
func refuse(conn *websocket.Conn, reason string) {
	reason = truncateUTF8(reason, maxCloseText)
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, reason), time.Now().Add(time.Second))
	conn.Close()
}

// checkClientVersion counts v and returns why the gateway refuses it, or
// "" (§2, §15.2). AWS does not say how the service compares versions; the
// emulator compares dotted decimal components numerically, a missing
// component counting as 0, and refuses anything else as not a version.
func (s *Server) checkClientVersion(v string) string {
	s.add(func(st *Stats) {
		k := v
		if len(k) > 64 {
			k = k[:64]
		}
		st.ClientVersions[k]++
	})
	if s.opts.AnyClientVersion {
		return ""
	}
	min := s.opts.MinClientVersion
	var reason string
	switch {
	case v == "":
		reason = "no client version given; the minimum supported client version is " + min
	case !validVersion(v):
		reason = fmt.Sprintf("client version %+.40q is not supported; minimum %s", v, min)
	case compareVersions(v, min) < 0:
		reason = fmt.Sprintf("client version %s is no longer supported; minimum %s", v, min)
	default:
		return ""
	}
	s.add(func(st *Stats) { st.ClientVersionRefusals++ })
	return reason
}

// parseVersion splits a dotted decimal version such as 1.2.764.0.
func parseVersion(v string) ([]uint64, bool) {
	parts := strings.Split(v, ".")
	out := make([]uint64, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// validVersion reports whether v is a dotted decimal version.
func validVersion(v string) bool {
	_, ok := parseVersion(v)
	return ok
}

// compareVersions orders two valid versions numerically, component by
// component, missing components counting as 0.
func compareVersions(a, b string) int {
	x, _ := parseVersion(a)
	y, _ := parseVersion(b)
	for i := range max(len(x), len(y)) {
		var p, q uint64
		if i < len(x) {
			p = x[i]
		}
		if i < len(y) {
			q = y[i]
		}
		if c := cmp.Compare(p, q); c != 0 {
			return c
		}
	}
	return 0
}

// closeOnOpen counts an accepted OpenDataChannel and reports whether
// CloseOnOpen closes it.
func (s *Server) closeOnOpen() bool {
	c := s.opts.CloseOnOpen
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens++
	if c.Code == 0 || (c.Opens > 0 && s.opens > c.Opens) {
		return false
	}
	s.stats.ClosedOnOpen++
	s.changedLocked()
	return true
}

// closeNow closes a websocket that was just opened: a close frame with code
// and text (none for 1006, a frame without a status for 1005), a bounded
// wait for the client's close frame, then the TCP connection.
func closeNow(conn *websocket.Conn, code int, text string) {
	defer tcpConn(conn.UnderlyingConn()).Close()
	if code == websocket.CloseAbnormalClosure {
		return
	}
	deadline := time.Now().Add(closeWait)
	if err := conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), deadline); err != nil {
		return
	}
	conn.SetReadDeadline(deadline)
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			return
		}
	}
}

// truncateUTF8 cuts s to at most n bytes without splitting a character
// (close reasons must be UTF-8).
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// tcpConn returns the TCP connection under c: closing a *tls.Conn would
// write a close_notify alert first, which a fault must not do and which
// blocks behind a stuck write.
func tcpConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// checkToken returns why an OpenDataChannel with token does not open the
// session, or "".
func (ss *session) checkToken(token string) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.checkTokenLocked(token)
}

func (ss *session) checkTokenLocked(token string) string {
	switch {
	case ss.ended:
		return "session ended"
	case token != ss.token:
		return "not the current token"
	}
	return ""
}

// attach makes conn the session's data channel if token is the current
// one, replacing (closing) any websocket attached before. It starts the
// writer and returns nil if the open is refused.
func (ss *session) attach(conn *websocket.Conn, token string) *wsConn {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if reason := ss.checkTokenLocked(token); reason != "" {
		ss.srv.logf("ssmtest: session %s: open refused: %s", ss.id, reason)
		return nil
	}
	if old := ss.ws; old != nil {
		ss.srv.logf("ssmtest: session %s: websocket %d replaced", ss.id, old.n)
		old.abortLocked()
	}
	ss.opens++
	if ss.opens > 1 {
		ss.srv.add(func(st *Stats) { st.Reconnects++ })
	}
	w := &wsConn{
		ss:         ss,
		conn:       conn,
		n:          ss.opens,
		wake:       make(chan struct{}, 1),
		closed:     make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	conn.SetPingHandler(w.ping)
	ss.conns[w] = struct{}{}
	ss.ws = w
	ss.srv.wg.Add(1)
	go w.writeLoop()
	if d := ss.srv.opts.ByeEvery; d > 0 {
		w.byeTimer = time.AfterFunc(d, w.bye)
	}
	ss.srv.logf("ssmtest: session %s: websocket %d attached", ss.id, w.n)
	notify(ss.wake)
	notify(ss.writable)
	return w
}

// detachLocked forgets w as the session's data channel. Until the client
// opens a new one the agent is paused, as the gateway pauses it when the
// client goes inactive (§8.4): its sends only go into its buffer, it does
// not retransmit and does not read its target.
func (ss *session) detachLocked(w *wsConn) {
	if ss.ws == w {
		ss.ws = nil
		ss.srv.logf("ssmtest: session %s: websocket %d detached", ss.id, w.n)
	}
}

// notify does a non-blocking send on a cap-1 channel.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// wsConn is one data-channel websocket. Its reader runs on the HTTP
// handler's goroutine, its writer on its own; gorilla allows one of each.
// Close and WriteControl (pongs, close frames) may be called from anywhere.
// The fields below conn are guarded by ss.mu.
type wsConn struct {
	ss         *session
	conn       *websocket.Conn
	n          int           // 1 for the session's first websocket
	wake       chan struct{} // cap 1: the write queue changed
	closed     chan struct{} // closed once the TCP connection is closed
	readerDone chan struct{}

	q []outFrame // frames for the writer, in due order

	dead       bool // TCP connection closed
	closing    bool // a close frame is queued; nothing more is written
	blackholed bool // neither read nor written any more, left open
	faulted    bool // a Bye, drop or black hole has hit it (at most one)

	streamBytes int64 // Output payload bytes both ways (drop, black hole)
	byeTimer    *time.Timer

	outHeld      *outFrame // Reorder: held back until the next frame
	outHeldTimer *time.Timer
	inHeld       *protocol.Message
	inHeldTimer  *time.Timer
}

// outFrame is one websocket message on its way to the client.
type outFrame struct {
	data      []byte
	due       time.Time // not before (Latency)
	streamLen int       // Output payload bytes, counted for drop/black hole
	closeCode int       // non-zero: this is the close frame
	closeText string
}

// live reports whether frames queued on w can still reach the client.
func (w *wsConn) live() bool { return !w.dead && !w.closing && !w.blackholed }

// enqueueLocked appends f to the write queue after the frames already
// there, delayed by Latency.
func (w *wsConn) enqueueLocked(f outFrame) {
	if w.dead || w.closing {
		return
	}
	f.due = time.Now().Add(w.ss.srv.opts.Latency)
	if w.ss.srv.opts.Latency > 0 {
		w.ss.srv.add(func(st *Stats) { st.FramesDelayed++ })
	}
	if n := len(w.q); n > 0 && f.due.Before(w.q[n-1].due) {
		f.due = w.q[n-1].due
	}
	w.q = append(w.q, f)
	notify(w.wake)
}

// stuckLocked reports whether so many frames are due but unwritten that
// the agent must wait: the writer is blocked or w is black-holed. Frames
// still within their Latency are on the wire and do not count.
func (w *wsConn) stuckLocked() bool {
	if len(w.q) < stuckFrames {
		return false
	}
	now := time.Now()
	return !w.q[stuckFrames-1].due.After(now)
}

// closeLocked queues last (if any) and a close frame; the writer sends them
// after the frames already queued, waits for the client's close frame and
// closes the TCP connection.
func (w *wsConn) closeLocked(code int, text string, last []byte) {
	if w.dead || w.closing {
		return
	}
	w.releaseOutHeldLocked()
	if last != nil {
		w.enqueueLocked(outFrame{data: last})
	}
	w.enqueueLocked(outFrame{closeCode: code, closeText: text})
	w.closing = true
	w.stopTimersLocked()
	w.ss.detachLocked(w)
}

// abortLocked closes the TCP connection at once, without a close frame.
func (w *wsConn) abortLocked() {
	if w.dead {
		return
	}
	w.dead = true
	w.stopTimersLocked()
	w.ss.detachLocked(w)
	delete(w.ss.conns, w)
	w.q = nil
	close(w.closed)
	tcpConn(w.conn.UnderlyingConn()).Close()
	notify(w.ss.writable)
}

func (w *wsConn) stopTimersLocked() {
	for _, t := range []*time.Timer{w.byeTimer, w.outHeldTimer, w.inHeldTimer} {
		if t != nil {
			t.Stop()
		}
	}
}

// writeLoop is the websocket's only writer of data and close frames.
func (w *wsConn) writeLoop() {
	ss := w.ss
	defer ss.srv.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		ss.mu.Lock()
		var f outFrame
		for {
			if w.dead {
				ss.mu.Unlock()
				return
			}
			var wait <-chan time.Time
			if !w.blackholed && len(w.q) > 0 {
				d := time.Until(w.q[0].due)
				if d <= 0 {
					f = w.q[0]
					w.q[0] = outFrame{}
					w.q = w.q[1:]
					break
				}
				timer.Reset(d)
				wait = timer.C
			}
			ss.mu.Unlock()
			select {
			case <-w.wake:
			case <-w.closed:
			case <-wait:
			}
			ss.mu.Lock()
		}
		notify(ss.writable)
		ss.mu.Unlock()

		if f.closeCode != 0 {
			w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(f.closeCode, f.closeText), time.Now().Add(time.Second))
			select {
			case <-w.readerDone:
			case <-w.closed:
			case <-time.After(closeWait):
			}
			ss.mu.Lock()
			w.abortLocked()
			ss.mu.Unlock()
			return
		}
		w.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := w.conn.WriteMessage(websocket.BinaryMessage, f.data); err != nil {
			ss.mu.Lock()
			if !w.dead {
				ss.srv.logf("ssmtest: session %s: websocket %d: write: %v", ss.id, w.n, err)
			}
			w.abortLocked()
			ss.mu.Unlock()
			return
		}
		if f.streamLen > 0 {
			ss.mu.Lock()
			w.countStreamBytesLocked(f.streamLen)
			ss.mu.Unlock()
		}
	}
}

// readLoop reads client frames until the websocket fails or closes, hands
// them through the incoming faults to the agent's inbox, and stops reading
// altogether once the websocket is black-holed (countStreamBytesLocked
// makes a read in progress fail).
func (w *wsConn) readLoop() {
	ss := w.ss
	defer close(w.readerDone)
	for {
		ss.mu.Lock()
		bh := w.blackholed
		ss.mu.Unlock()
		if bh {
			<-w.closed
			return
		}
		_, p, err := w.conn.ReadMessage()
		ss.mu.Lock()
		if err != nil && w.blackholed {
			ss.mu.Unlock()
			<-w.closed
			return
		}
		if err != nil {
			if !w.dead && !w.closing {
				ss.srv.logf("ssmtest: session %s: websocket %d: read: %v", ss.id, w.n, err)
			}
			w.abortLocked()
			ss.mu.Unlock()
			return
		}
		// Frames that arrive after our close frame (RFC 6455 §5.5.1 lets
		// the client finish what it was sending) still count.
		if !w.dead && !w.blackholed {
			w.receiveLocked(p)
		}
		ss.mu.Unlock()
	}
}

// receiveLocked handles one client frame: parse, count, apply the incoming
// faults and pass it on to the agent.
func (w *wsConn) receiveLocked(p []byte) {
	ss := w.ss
	var m protocol.Message
	if err := m.UnmarshalBinary(p); err != nil {
		ss.srv.logf("ssmtest: session %s: dropped malformed client frame: %v", ss.id, err)
		return
	}
	opts := &ss.srv.opts
	switch m.Type {
	case protocol.InputStreamData:
		ss.lastClientData = time.Now()
		if m.PayloadType == protocol.PayloadOutput && w.countStreamBytesLocked(len(m.Payload)) {
			return // dropped or black-holed by this very frame
		}
		if ss.paused {
			ss.srv.add(func(st *Stats) { st.PausedDrops++ })
			return // §8.4: the agent is inactive; the client must resend
		}
		if roll(ss.rngIn, opts.Duplicate) {
			ss.srv.add(func(st *Stats) { st.FramesDuplicated++ })
			w.deliverLocked(m)
		}
		if w.inHeld == nil && roll(ss.rngIn, opts.Reorder) {
			ss.srv.add(func(st *Stats) { st.FramesReordered++ })
			w.holdInLocked(m)
			return
		}
	case protocol.Acknowledge:
		if roll(ss.rngIn, opts.AckLoss) {
			ss.srv.add(func(st *Stats) { st.AcksLost++ })
			return
		}
	default:
		// channel_closed, publication or agent_session_state from a
		// client mean nothing to the gateway.
		ss.srv.logf("ssmtest: session %s: ignored %s from client", ss.id, m.Type)
		return
	}
	w.deliverLocked(m)
	if held := w.inHeld; held != nil {
		w.inHeld = nil
		w.inHeldTimer.Stop()
		w.deliverLocked(*held)
	}
}

// deliverLocked passes a client frame to the agent after Latency.
func (w *wsConn) deliverLocked(m protocol.Message) {
	ss := w.ss
	due := time.Now().Add(ss.srv.opts.Latency)
	if ss.srv.opts.Latency > 0 {
		ss.srv.add(func(st *Stats) { st.FramesDelayed++ })
	}
	if n := len(ss.inbox); n > 0 && due.Before(ss.inbox[n-1].due) {
		due = ss.inbox[n-1].due
	}
	ss.inbox = append(ss.inbox, inFrame{m: m, due: due})
	notify(ss.wake)
}

// ping answers a client ping, unless the websocket is black-holed, after
// Latency.
func (w *wsConn) ping(data string) error {
	ss := w.ss
	ss.mu.Lock()
	bh := w.blackholed
	ss.mu.Unlock()
	if bh {
		return nil
	}
	pong := func() {
		ss.mu.Lock()
		bh := w.blackholed
		ss.mu.Unlock()
		if !bh { // a black hole that began meanwhile answers nothing
			w.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		}
	}
	if d := ss.srv.opts.Latency; d > 0 {
		time.AfterFunc(d, pong)
	} else {
		pong()
	}
	return nil
}
