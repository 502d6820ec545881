package ssmtest

// A minimal data-channel client for the emulator's own tests, written on
// protocol and gorilla only (the emulator must not be tested with the
// client it exists to test). rawConn is one websocket with helpers to send
// and expect single frames; minClient adds the handshake, acks, in-order
// delivery, retransmission and reconnection. It has no tests of its own:
// this package's tests exercise it, and interop/ checks the emulator
// independently against the official plugin.

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// clientVersion is what the test client reports in OpenDataChannel and
// HandshakeResponse: above the agent's thresholds (§6.2, §7.1), at or above
// DefaultMinClientVersion (§15.2), and the first official release that
// follows the StreamUrl ResumeSession returns (§15.1), as minClient does.
const clientVersion = "1.2.835.0"

// startServer starts an emulator for t; it is closed at cleanup.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Logf == nil && testing.Verbose() {
		opts.Logf = t.Logf
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// startSession creates an AWS-StartSSHSession session on the first
// instance, as StartSession would.
func startSession(t testing.TB, s *Server) *session {
	t.Helper()
	return startDocSession(t, s, docSSH, map[string][]string{"portNumber": {"22"}})
}

func startDocSession(t testing.TB, s *Server, doc string, params map[string][]string) *session {
	t.Helper()
	ss, err := s.newSession(s.opts.Instances[0], doc, params)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// echoServer echoes every connection.
func echoServer(t testing.TB) string {
	return testenv.ServeTCP(t, func(c net.Conn) { io.Copy(c, c) })
}

func newID() protocol.UUID {
	u, err := protocol.NewUUID(crand.Reader)
	if err != nil {
		panic(err)
	}
	return u
}

// rawEvent is one frame (or the end) read from a rawConn.
type rawEvent struct {
	m   protocol.Message
	raw []byte // the frame as received (rawDial.Raw only; m is then zero)
	err error
	at  time.Time
}

// rawConn is one data-channel websocket driven frame by frame.
type rawConn struct {
	t      testing.TB
	ss     *session // nil unless from dialRaw
	ws     *websocket.Conn
	raw    bool          // deliver frames undecoded
	events chan rawEvent // closed after the error event

	wmu sync.Mutex
}

// rawDial says how tryDialRawWith opens a data channel.
type rawDial struct {
	URL, Token string
	Header     map[string][]string
	// Dialer, if set, replaces a plain websocket.Dialer (TLS tests).
	Dialer *websocket.Dialer
	// ClientVersion replaces clientVersion in OpenDataChannel;
	// NoClientVersion leaves the member out.
	ClientVersion   string
	NoClientVersion bool
	// Raw delivers frames as received, without decoding them.
	Raw bool
}

// dialRaw opens ss's StreamUrl and sends OpenDataChannel with token.
func dialRaw(t testing.TB, ss *session, token string) *rawConn {
	t.Helper()
	c, err := tryDialRaw(t, ss.streamURL, token, nil)
	if err != nil {
		t.Fatalf("dial data channel: %v", err)
	}
	c.ss = ss
	return c
}

// waitReady waits until the agent of ss has connected to its target: until
// then it acknowledges no data (§5.3), and a rawConn does not resend.
func waitReady(t testing.TB, ss *session) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ss.mu.Lock()
		ready := ss.agent.target != nil
		ss.mu.Unlock()
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent did not connect to its target")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func tryDialRaw(t testing.TB, url, token string, hdr map[string][]string) (*rawConn, error) {
	return tryDialRawWith(t, rawDial{URL: url, Token: token, Header: hdr})
}

// tryDialRawWith opens a data channel as o says and sends OpenDataChannel.
func tryDialRawWith(t testing.TB, o rawDial) (*rawConn, error) {
	d := o.Dialer
	if d == nil {
		d = &websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	}
	ws, resp, err := d.Dial(o.URL, o.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	c := &rawConn{t: t, ws: ws, raw: o.Raw, events: make(chan rawEvent, 1<<14)}
	version := clientVersion
	switch {
	case o.NoClientVersion:
		version = ""
	case o.ClientVersion != "":
		version = o.ClientVersion
	}
	open := protocol.OpenDataChannel{
		MessageSchemaVersion: protocol.OpenDataChannelSchemaVersion,
		RequestID:            newID().String(),
		TokenValue:           o.Token,
		ClientID:             newID().String(),
		ClientVersion:        version,
	}
	if err := ws.WriteJSON(open); err != nil {
		ws.Close()
		return nil, err
	}
	go c.read()
	t.Cleanup(func() { ws.Close() })
	return c, nil
}

func (c *rawConn) read() {
	for {
		_, p, err := c.ws.ReadMessage()
		if err != nil {
			c.events <- rawEvent{err: err, at: time.Now()}
			close(c.events)
			return
		}
		if c.raw {
			c.events <- rawEvent{raw: p, at: time.Now()}
			continue
		}
		var m protocol.Message
		if err := m.UnmarshalBinary(p); err != nil {
			c.t.Errorf("emulator sent a malformed frame: %v", err)
			continue
		}
		if m.Type == protocol.AgentSessionState {
			c.t.Errorf("agent_session_state reached the client")
		}
		c.events <- rawEvent{m: m, at: time.Now()}
	}
}

// next returns the next frame within d.
func (c *rawConn) next(d time.Duration) (protocol.Message, error) {
	select {
	case ev, ok := <-c.events:
		if !ok {
			return protocol.Message{}, errors.New("websocket closed")
		}
		return ev.m, ev.err
	case <-time.After(d):
		return protocol.Message{}, errors.New("timeout")
	}
}

// expect returns the first frame within d that match accepts, skipping
// others.
func (c *rawConn) expect(d time.Duration, what string, match func(protocol.Message) bool) protocol.Message {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := c.next(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(m) {
			return m
		}
	}
}

// expectClosedFrame waits for channel_closed and returns its payload.
func (c *rawConn) expectClosedFrame(d time.Duration) protocol.ChannelClosedPayload {
	c.t.Helper()
	m := c.expect(d, "channel_closed", isType(protocol.ChannelClosed))
	p, err := protocol.ParseChannelClosed(m.Payload)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// expectEnd waits for the websocket to be closed and returns the error.
func (c *rawConn) expectEnd(d time.Duration) error {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := c.next(time.Until(deadline))
		if err != nil {
			if err.Error() == "timeout" {
				c.t.Fatal("websocket not closed")
			}
			return err
		}
	}
}

func isType(typ protocol.MessageType) func(protocol.Message) bool {
	return func(m protocol.Message) bool { return m.Type == typ }
}

func isStream(pt protocol.PayloadType) func(protocol.Message) bool {
	return func(m protocol.Message) bool {
		return m.Type == protocol.OutputStreamData && m.PayloadType == pt
	}
}

// isAckOf matches the acknowledgement of seq.
func isAckOf(seq int64) func(protocol.Message) bool {
	return func(m protocol.Message) bool {
		if m.Type != protocol.Acknowledge {
			return false
		}
		a, err := protocol.ParseAck(m.Payload)
		return err == nil && a.AcknowledgedMessageSequenceNumber == seq
	}
}

func (c *rawConn) sendFrame(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

func (c *rawConn) send(m *protocol.Message) {
	c.t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.sendFrame(b); err != nil {
		c.t.Fatalf("send %s: %v", m.Type, err)
	}
}

// clientStream builds an input_stream_data message as the plugin does
// (flags 0, §4.5).
func clientStream(seq int64, pt protocol.PayloadType, payload []byte) protocol.Message {
	return protocol.Message{
		Type:           protocol.InputStreamData,
		SchemaVersion:  protocol.SchemaVersion,
		CreatedDate:    uint64(time.Now().UnixMilli()),
		SequenceNumber: seq,
		MessageID:      newID(),
		PayloadType:    pt,
		Payload:        payload,
	}
}

func (c *rawConn) sendStream(seq int64, pt protocol.PayloadType, payload []byte) protocol.Message {
	c.t.Helper()
	m := clientStream(seq, pt, payload)
	c.send(&m)
	return m
}

func (c *rawConn) ack(m protocol.Message) {
	c.t.Helper()
	a := protocol.NewAckMessage(&m, newID(), uint64(time.Now().UnixMilli()))
	c.send(&a)
}

func flagPayload(f protocol.Flag) []byte {
	b, _ := f.AppendBinary(nil)
	return b
}

// handshakeResponse answers req with one action result per requested
// action, each with status.
func handshakeResponse(req protocol.HandshakeRequest, status protocol.ActionStatus, errText string) []byte {
	resp := protocol.HandshakeResponse{ClientVersion: clientVersion}
	for _, a := range req.RequestedClientActions {
		resp.ProcessedClientActions = append(resp.ProcessedClientActions, protocol.ProcessedClientAction{
			ActionType: a.ActionType, ActionStatus: status, Error: errText,
		})
	}
	return mustJSON(resp)
}

// handshake does the client half of §0 on a fresh rawConn and returns the
// request. The client's next sequence number is 1 afterwards.
func (c *rawConn) handshake() protocol.HandshakeRequest {
	c.t.Helper()
	m := c.expect(5*time.Second, "HandshakeRequest", isStream(protocol.PayloadHandshakeRequest))
	c.ack(m)
	req, err := protocol.ParseHandshakeRequest(m.Payload)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendStream(0, protocol.PayloadHandshakeResponse, handshakeResponse(req, protocol.ActionSuccess, ""))
	hc := c.expect(5*time.Second, "HandshakeComplete", isStream(protocol.PayloadHandshakeComplete))
	c.ack(hc)
	return req
}

// handshakeReady is handshake plus waitReady.
func (c *rawConn) handshakeReady() protocol.HandshakeRequest {
	c.t.Helper()
	req := c.handshake()
	waitReady(c.t, c.ss)
	return req
}

// minClient is a reliable data-channel client good enough for tests:
// handshake, ack everything (re-ack duplicates), deliver in order,
// retransmit every overdue message, and optionally resume after a lost
// websocket (detecting a black hole by unanswered pings).
type minClient struct {
	t             testing.TB
	ss            *session
	autoReconnect bool
	deadAfter     time.Duration // no frame or pong for this long: reconnect

	mu          sync.Mutex
	conn        *rawConn
	gen         int
	nextSeq     int64
	expected    int64
	unacked     map[int64]*pendingMsg
	future      map[int64]protocol.Message
	out         []byte
	outSeqs     []int64 // sequence numbers of the Output messages, in order
	lastRecv    time.Time
	ended       bool
	endErr      error
	closeErrs   []error
	dupFrames   int
	outOfOrder  int
	pauses      []time.Time
	starts      []time.Time
	reconnects  int
	established chan struct{}
	closed      chan protocol.ChannelClosedPayload
	changed     chan struct{}
	stop        chan struct{}
	wg          sync.WaitGroup
}

type pendingMsg struct {
	frame []byte
	sent  time.Time
}

// newClient connects to ss with its first token and starts the client; it
// does not wait for the handshake.
func newClient(t testing.TB, ss *session, autoReconnect bool) *minClient {
	t.Helper()
	c := &minClient{
		t:             t,
		ss:            ss,
		autoReconnect: autoReconnect,
		deadAfter:     time.Second,
		unacked:       make(map[int64]*pendingMsg),
		future:        make(map[int64]protocol.Message),
		lastRecv:      time.Now(),
		established:   make(chan struct{}),
		closed:        make(chan protocol.ChannelClosedPayload, 1),
		changed:       make(chan struct{}, 1),
		stop:          make(chan struct{}),
	}
	c.conn = dialRaw(t, ss, ss.firstToken)
	c.conn.ws.SetPongHandler(c.pong)
	c.wg.Add(3)
	go c.run()
	go c.retransmit()
	go c.pinger()
	t.Cleanup(c.close)
	return c
}

// connect is newClient plus a wait for HandshakeComplete.
func connect(t testing.TB, ss *session, autoReconnect bool) *minClient {
	t.Helper()
	c := newClient(t, ss, autoReconnect)
	select {
	case <-c.established:
	case <-time.After(5 * time.Second):
		t.Fatal("no HandshakeComplete")
	}
	return c
}

func (c *minClient) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.mu.Lock()
	c.conn.ws.Close()
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *minClient) pong(string) error {
	c.mu.Lock()
	c.lastRecv = time.Now()
	c.mu.Unlock()
	return nil
}

func (c *minClient) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *minClient) run() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		conn := c.conn
		c.mu.Unlock()
		select {
		case <-c.stop:
			return
		case ev, ok := <-conn.events:
			if ok && ev.err == nil {
				c.handle(ev.m)
				continue
			}
			c.mu.Lock()
			if ok && !c.ended {
				// How a live websocket ended; the close that follows the
				// session's channel_closed is the normal end, not a fault.
				c.closeErrs = append(c.closeErrs, ev.err)
			}
			ended := c.ended
			c.mu.Unlock()
			if ended || !c.autoReconnect || !c.reconnect() {
				c.mu.Lock()
				c.ended = true
				if ok && c.endErr == nil {
					c.endErr = ev.err
				}
				c.mu.Unlock()
				c.signal()
				<-c.stop
				return
			}
		}
	}
}

// reconnect is §8.2 as §15.1 has it: ResumeSession, dial the StreamUrl it
// returned, open with the new token, resend everything unacknowledged.
func (c *minClient) reconnect() bool {
	for attempt := 0; attempt < 20; attempt++ {
		select {
		case <-c.stop:
			return false
		default:
		}
		token, url := c.ss.resumeSession()
		if token == "" {
			return false
		}
		conn, err := tryDialRaw(c.t, url, token, nil)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		conn.ws.SetPongHandler(c.pong)
		c.mu.Lock()
		old := c.conn
		c.conn = conn
		c.gen++
		c.reconnects++
		c.lastRecv = time.Now()
		seqs := make([]int64, 0, len(c.unacked))
		for s := range c.unacked {
			seqs = append(seqs, s)
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		for _, s := range seqs {
			p := c.unacked[s]
			p.sent = time.Now()
			conn.sendFrame(p.frame)
		}
		c.mu.Unlock()
		old.ws.Close()
		return true
	}
	return false
}

// retransmit resends every message unacknowledged for 300 ms (a client may
// resend more than the front, §12 item 7).
func (c *minClient) retransmit() {
	defer c.wg.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		for _, p := range c.unacked {
			if time.Since(p.sent) > 300*time.Millisecond {
				p.sent = time.Now()
				c.conn.sendFrame(p.frame)
			}
		}
		c.mu.Unlock()
	}
}

// pinger pings every 100 ms and drops a websocket that stays silent for
// deadAfter, so that a black hole leads to a reconnect.
func (c *minClient) pinger() {
	defer c.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		conn, silent, ended := c.conn, time.Since(c.lastRecv), c.ended
		c.mu.Unlock()
		if ended {
			continue
		}
		conn.ws.WriteControl(websocket.PingMessage, []byte("keepalive"), time.Now().Add(time.Second))
		if c.autoReconnect && silent > c.deadAfter {
			conn.ws.Close()
		}
	}
}

func (c *minClient) handle(m protocol.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.signal()
	c.lastRecv = time.Now()
	switch m.Type {
	case protocol.OutputStreamData:
		switch s := m.SequenceNumber; {
		case s == c.expected:
			c.ackLocked(m)
			c.deliverLocked(m)
			c.expected++
			for {
				f, ok := c.future[c.expected]
				if !ok {
					break
				}
				delete(c.future, c.expected)
				c.deliverLocked(f)
				c.expected++
			}
		case s > c.expected:
			c.outOfOrder++
			if _, ok := c.future[s]; !ok {
				c.future[s] = m
			}
			c.ackLocked(m)
		default:
			c.dupFrames++
			c.ackLocked(m)
		}
	case protocol.Acknowledge:
		a, err := protocol.ParseAck(m.Payload)
		if err != nil {
			c.t.Errorf("bad ack: %v", err)
			return
		}
		delete(c.unacked, a.AcknowledgedMessageSequenceNumber)
	case protocol.ChannelClosed:
		p, err := protocol.ParseChannelClosed(m.Payload)
		if err != nil {
			c.t.Errorf("bad channel_closed: %v", err)
			return
		}
		c.ended = true
		select {
		case c.closed <- p:
		default:
		}
	case protocol.PausePublication:
		c.pauses = append(c.pauses, time.Now())
	case protocol.StartPublication:
		c.starts = append(c.starts, time.Now())
	}
}

func (c *minClient) ackLocked(m protocol.Message) {
	a := protocol.NewAckMessage(&m, newID(), uint64(time.Now().UnixMilli()))
	b, _ := a.MarshalBinary()
	c.conn.sendFrame(b)
}

func (c *minClient) deliverLocked(m protocol.Message) {
	switch m.PayloadType {
	case protocol.PayloadHandshakeRequest:
		req, err := protocol.ParseHandshakeRequest(m.Payload)
		if err != nil {
			c.t.Errorf("bad HandshakeRequest: %v", err)
			return
		}
		c.sendLocked(protocol.PayloadHandshakeResponse, handshakeResponse(req, protocol.ActionSuccess, ""))
	case protocol.PayloadHandshakeComplete:
		close(c.established)
	case protocol.PayloadOutput:
		c.out = append(c.out, m.Payload...)
		c.outSeqs = append(c.outSeqs, m.SequenceNumber)
	}
}

func (c *minClient) sendLocked(pt protocol.PayloadType, payload []byte) int64 {
	seq := c.nextSeq
	c.nextSeq++
	m := clientStream(seq, pt, payload)
	b, _ := m.MarshalBinary()
	c.unacked[seq] = &pendingMsg{frame: b, sent: time.Now()}
	c.conn.sendFrame(b)
	return seq
}

// write sends p as Output messages of at most 1024 bytes.
func (c *minClient) write(p []byte) {
	for len(p) > 0 {
		n := min(len(p), protocol.MaxStreamPayload)
		c.mu.Lock()
		c.sendLocked(protocol.PayloadOutput, append([]byte(nil), p[:n]...))
		c.mu.Unlock()
		p = p[n:]
	}
}

// sendFlag sends a Flag message.
func (c *minClient) sendFlag(f protocol.Flag) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sendLocked(protocol.PayloadFlag, flagPayload(f))
}

// waitFor waits up to d for cond, evaluated under the client's lock.
func (c *minClient) waitFor(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		ok := cond()
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			c.t.Fatalf("timed out waiting for %s (received %d bytes, %d unacked, ended %v %v)",
				what, len(c.out), len(c.unacked), c.ended, c.endErr)
		}
	}
}

// read waits for n bytes of Output and returns them.
func (c *minClient) read(n int, d time.Duration) []byte {
	c.t.Helper()
	c.waitFor(d, fmt.Sprintf("%d bytes of output", n), func() bool { return len(c.out) >= n })
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.out[:n:n]
	c.out = c.out[n:]
	return b
}

// waitAcked waits until everything sent has been acknowledged.
func (c *minClient) waitAcked(d time.Duration) {
	c.t.Helper()
	c.waitFor(d, "all acks", func() bool { return len(c.unacked) == 0 })
}

// waitClosed waits for channel_closed.
func (c *minClient) waitClosed(d time.Duration) protocol.ChannelClosedPayload {
	c.t.Helper()
	select {
	case p := <-c.closed:
		return p
	case <-time.After(d):
		c.t.Fatal("no channel_closed")
	}
	panic("unreachable")
}
