package proxy_test

// A scripted gateway: the test plays the message gateway and the agent
// frame by frame over a real websocket on loopback, so that the session's
// send side and its failure handling are checked deterministically — what
// it sends in reply to exactly what it was given — rather than
// statistically under the emulator's random faults. The emulator tests
// (session_test.go) cover the same paths against a faithful agent; e2e/
// covers them through real ssh.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
	"github.com/ssm-proxy/ssm-proxy/protocol"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// gwWait bounds every wait of a scripted test.
const gwWait = 10 * time.Second

// gateway is a websocket server that hands each accepted data channel to
// the test, plus an SSM API whose answers the test chooses.
type gateway struct {
	t     *testing.T
	srv   *httptest.Server
	conns chan *gwConn
	// refuse, if set, answers an upgrade with this HTTP status instead.
	refuse func(r *http.Request) int

	mu        sync.Mutex
	paths     []string // request URIs of every upgrade, in order
	resumes   int
	terminate int
	tcpConns  atomic.Int32  // TCP connections accepted
	end       chan struct{} // closed when the test ends
	// onStart, if set, runs inside StartSession; an error fails it.
	onStart func() error
	// resume answers ResumeSession; nil means a fresh token and no new URL.
	resume func(n int) (*ssm.ResumeSessionOutput, error)
}

func newGateway(t *testing.T) *gateway {
	g := &gateway{t: t, conns: make(chan *gwConn, 16), end: make(chan struct{})}
	t.Cleanup(func() { close(g.end) })
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.paths = append(g.paths, r.URL.RequestURI())
		refuse := g.refuse
		g.mu.Unlock()
		if refuse != nil {
			if code := refuse(r); code != 0 {
				http.Error(w, http.StatusText(code), code)
				return
			}
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &gwConn{t: t, ws: ws, in: make(chan protocol.Message, 4096), dead: make(chan struct{}), hole: make(chan struct{}), end: g.end}
		typ, p, err := ws.ReadMessage()
		if err != nil || typ != websocket.TextMessage {
			ws.Close()
			return
		}
		if c.open, err = protocol.ParseOpenDataChannel(p); err != nil {
			ws.Close()
			return
		}
		go c.readLoop()
		g.conns <- c
	}))
	g.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			g.tcpConns.Add(1)
		}
	}
	g.srv.Start()
	t.Cleanup(g.srv.Close)
	return g
}

// url is the StreamUrl of cell n.
func (g *gateway) url(cell int) string {
	return "ws" + strings.TrimPrefix(g.srv.URL, "http") + fmt.Sprintf("/v1/data-channel/s-1?cell-number=%d", cell)
}

func (g *gateway) StartSession(context.Context, *ssm.StartSessionInput, ...func(*ssm.Options)) (*ssm.StartSessionOutput, error) {
	if g.onStart != nil {
		if err := g.onStart(); err != nil {
			return nil, err
		}
	}
	return &ssm.StartSessionOutput{SessionId: aws.String("s-1"), StreamUrl: aws.String(g.url(0)), TokenValue: aws.String("token-0")}, nil
}

func (g *gateway) ResumeSession(context.Context, *ssm.ResumeSessionInput, ...func(*ssm.Options)) (*ssm.ResumeSessionOutput, error) {
	g.mu.Lock()
	g.resumes++
	n, f := g.resumes, g.resume
	g.mu.Unlock()
	if f != nil {
		return f(n)
	}
	return &ssm.ResumeSessionOutput{SessionId: aws.String("s-1"), TokenValue: aws.String(fmt.Sprintf("token-%d", n))}, nil
}

func (g *gateway) TerminateSession(context.Context, *ssm.TerminateSessionInput, ...func(*ssm.Options)) (*ssm.TerminateSessionOutput, error) {
	g.mu.Lock()
	g.terminate++
	g.mu.Unlock()
	return &ssm.TerminateSessionOutput{SessionId: aws.String("s-1")}, nil
}

func (g *gateway) counts() (resumes, terminates int, paths []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.resumes, g.terminate, append([]string(nil), g.paths...)
}

// start starts a session through g with stdin from the returned writer.
func (g *gateway) start(po proxy.Options) (sess *proxy.Session, stdin *io.PipeWriter, out *stBuffer, done <-chan error) {
	g.t.Helper()
	return g.startCtx(context.Background(), po)
}

func (g *gateway) startCtx(ctx context.Context, po proxy.Options) (sess *proxy.Session, stdin *io.PipeWriter, out *stBuffer, done <-chan error) {
	g.t.Helper()
	if po.PingInterval == 0 {
		po.PingInterval, po.DeadPeerTimeout = time.Hour, time.Hour // the script decides
	}
	po.StreamHosts = []string{"127.0.0.1"}
	sess, err := proxy.Start(context.Background(), g, ssmtest.Credentials(), ssmtest.DefaultRegion, proxy.StartInput{Target: "i-0123456789abcdef0"}, po)
	if err != nil {
		g.t.Fatal(err)
	}
	pr, pw := io.Pipe()
	g.t.Cleanup(func() { pw.Close() })
	done, out = stRun(ctx, sess, pr)
	return sess, pw, out, done
}

// resumed waits for the data channel that replaces prev; the agent's
// sequence numbers go on where they were.
func (g *gateway) resumed(prev *gwConn) *gwConn {
	g.t.Helper()
	c := g.accept()
	c.seq = prev.seq
	return c
}

// accept waits for the next data channel.
func (g *gateway) accept() *gwConn {
	g.t.Helper()
	select {
	case c := <-g.conns:
		return c
	case <-time.After(gwWait):
		g.t.Fatal("no websocket within the wait")
		return nil
	}
}

// gwConn is one data channel, seen from the gateway. Frames from the
// client arrive on in; the test writes with send and the helpers.
type gwConn struct {
	t    *testing.T
	ws   *websocket.Conn
	open protocol.OpenDataChannel
	in   chan protocol.Message
	dead chan struct{}
	seq  int64 // the agent's next sequence number
	wmu  sync.Mutex
	// hole, once closed, stops the reader: nothing more is read, so the
	// client's writes back up (a black-holed link), until end closes.
	hole     chan struct{}
	end      chan struct{}
	holeOnce sync.Once
}

// blackhole stops reading from the client.
func (c *gwConn) blackhole() { c.holeOnce.Do(func() { close(c.hole) }) }

func (c *gwConn) readLoop() {
	defer close(c.dead)
	for {
		select {
		case <-c.hole:
			<-c.end // until the test ends
			return
		default:
		}
		_, p, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var m protocol.Message
		if m.UnmarshalBinary(p) == nil {
			c.in <- m
		}
	}
}

// recv returns the next client message that match accepts.
func (c *gwConn) recv(match func(*protocol.Message) bool) protocol.Message {
	c.t.Helper()
	timeout := time.After(gwWait)
	for {
		select {
		case m := <-c.in:
			if match == nil || match(&m) {
				return m
			}
		case <-c.dead:
			c.t.Fatal("the client closed the websocket")
		case <-timeout:
			c.t.Fatal("no matching frame from the client within the wait")
		}
	}
}

func isStream(pt protocol.PayloadType) func(*protocol.Message) bool {
	return func(m *protocol.Message) bool { return m.Type == protocol.InputStreamData && m.PayloadType == pt }
}

func isAckOf(seq int64) func(*protocol.Message) bool {
	return func(m *protocol.Message) bool {
		if m.Type != protocol.Acknowledge {
			return false
		}
		s, err := protocol.ParseAckSeq(m.Payload)
		return err == nil && s == seq
	}
}

func (c *gwConn) write(m *protocol.Message) {
	c.t.Helper()
	if m.CreatedDate == 0 {
		m.CreatedDate = uint64(time.Now().UnixMilli())
	}
	m.SchemaVersion = protocol.SchemaVersion
	b, err := m.MarshalBinary()
	if err != nil {
		c.t.Fatal(err)
	}
	c.writeRaw(b)
}

func (c *gwConn) writeRaw(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.WriteMessage(websocket.BinaryMessage, b) // a dead client shows in recv
}

// stream sends the agent's next output_stream_data message.
func (c *gwConn) stream(pt protocol.PayloadType, payload []byte) int64 {
	seq := c.seq
	c.seq++
	c.write(&protocol.Message{Type: protocol.OutputStreamData, SequenceNumber: seq, PayloadType: pt, Payload: payload})
	return seq
}

// ack acknowledges a client message.
func (c *gwConn) ack(m protocol.Message) {
	id, _ := protocol.NewUUID(strings.NewReader(strings.Repeat("x", 16)))
	am := protocol.NewAckMessage(&m, id, uint64(time.Now().UnixMilli()))
	c.write(&am)
}

func (c *gwConn) control(typ protocol.MessageType, payload []byte) {
	c.write(&protocol.Message{Type: typ, Payload: payload})
}

// handshake plays the agent's handshake (§6.2) for a plain port session.
func (c *gwConn) handshake() {
	c.t.Helper()
	c.handshakeAs(ssmtest.DefaultAgentVersion)
}

// handshakeAs is handshake by an agent of version v.
func (c *gwConn) handshakeAs(v string) {
	c.t.Helper()
	req, _ := json.Marshal(protocol.HandshakeRequest{
		AgentVersion: v,
		RequestedClientActions: []protocol.RequestedClientAction{{
			ActionType:       protocol.ActionSessionType,
			ActionParameters: json.RawMessage(`{"SessionType":"Port","Properties":{"portNumber":"22"}}`),
		}},
	})
	c.stream(protocol.PayloadHandshakeRequest, req)
	c.recv(isAckOf(0))
	resp := c.recv(isStream(protocol.PayloadHandshakeResponse))
	c.ack(resp)
	c.stream(protocol.PayloadHandshakeComplete, []byte(`{"HandshakeTimeToComplete":1000,"CustomerMessage":""}`))
	c.recv(isAckOf(1))
}

// closeFrame closes the websocket with a close frame.
func (c *gwConn) closeFrame(code int, text string) {
	c.wmu.Lock()
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
	c.wmu.Unlock()
	c.ws.Close()
}

func waitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	return stWait(t, done, gwWait)
}

// TestGatewayFastRetransmit: an ack for a later message while earlier ones
// are unacknowledged makes the client resend those at once (§5.3 "not
// ready"), before it handles the next frame — not after its timeout.
func TestGatewayFastRetransmit(t *testing.T) {
	g := newGateway(t)
	sess, stdin, _, done := g.start(proxy.Options{Window: 2})
	c := g.accept()
	c.handshake()
	stdin.Write([]byte("a"))
	m1 := c.recv(isStream(protocol.PayloadOutput)) // seq 1: dropped by the "agent"
	stdin.Write([]byte("b"))
	m2 := c.recv(isStream(protocol.PayloadOutput))
	if m1.SequenceNumber != 1 || m2.SequenceNumber != 2 {
		t.Fatalf("seqs %d, %d", m1.SequenceNumber, m2.SequenceNumber)
	}
	c.ack(m2)
	marker := c.stream(protocol.PayloadOutput, []byte("x"))
	// The resend of seq 1 comes before the ack of the marker.
	got := c.recv(func(m *protocol.Message) bool {
		return isStream(protocol.PayloadOutput)(m) || isAckOf(marker)(m)
	})
	if got.Type != protocol.InputStreamData || got.SequenceNumber != 1 || string(got.Payload) != "a" {
		t.Fatalf("after the ack of seq 2 the client sent %s seq %d, want the resend of seq 1 first", got.Type, got.SequenceNumber)
	}
	c.ack(got)
	stdin.Close()
	c.recv(isStream(protocol.PayloadFlag)) // TerminateSession on the way out... or after the drain
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	if st := sess.Stats(); st.Retransmits < 1 {
		t.Errorf("stats %+v: no retransmission counted", st)
	}
}

// TestGatewayWindow: with the window full the client sends no more until
// an ack makes room (back-pressure, never eviction), and then exactly one
// message per ack.
func TestGatewayWindow(t *testing.T) {
	g := newGateway(t)
	_, stdin, _, _ := g.start(proxy.Options{Window: 2})
	c := g.accept()
	c.handshake()
	go func() {
		for i := range 4 {
			if _, err := stdin.Write([]byte{byte('a' + i)}); err != nil {
				return
			}
		}
	}()
	first := c.recv(isStream(protocol.PayloadOutput))
	second := c.recv(isStream(protocol.PayloadOutput))
	// Acknowledge the first, and mark the moment with agent data: the
	// client acks the marker after whatever the ack let it send.
	c.ack(first)
	marker := c.stream(protocol.PayloadOutput, []byte("m"))
	var sent []protocol.Message
	for {
		m := c.recv(func(m *protocol.Message) bool {
			return (isStream(protocol.PayloadOutput)(m) && m.SequenceNumber > second.SequenceNumber) || isAckOf(marker)(m)
		})
		if m.Type == protocol.Acknowledge {
			break
		}
		sent = append(sent, m)
	}
	if len(sent) == 0 { // "c" may follow the marker's ack
		sent = append(sent, c.recv(func(m *protocol.Message) bool {
			return isStream(protocol.PayloadOutput)(m) && m.SequenceNumber > second.SequenceNumber
		}))
	}
	third := sent[0]
	for _, m := range sent {
		if m.SequenceNumber != third.SequenceNumber || string(m.Payload) != "c" {
			t.Fatalf("one ack let the client send seq %d %q as well as seq %d: a window of 2 allows one", m.SequenceNumber, m.Payload, third.SequenceNumber)
		}
	}
	c.ack(third)
	c.ack(second)
	fourth := c.recv(func(m *protocol.Message) bool {
		return isStream(protocol.PayloadOutput)(m) && m.SequenceNumber > third.SequenceNumber
	})
	if string(fourth.Payload) != "d" {
		t.Fatalf("after the acks the client sent %q, want \"d\"", fourth.Payload)
	}
}

// TestGatewayPause: pause_publication holds new data — nothing is dropped —
// and sending resumes on start_publication, on the agent's next stream
// data or ack, and after MaxPause when nothing comes (§8.4, §15.4).
func TestGatewayPause(t *testing.T) {
	for _, how := range []string{"start_publication", "agent_data", "agent_ack", "max_pause"} {
		t.Run(how, func(t *testing.T) {
			g := newGateway(t)
			events := make(chan proxy.EventKind, 64)
			po := proxy.Options{OnEvent: func(e proxy.Event) { events <- e.Kind }}
			if how == "max_pause" {
				po.MaxPause = 300 * time.Millisecond
			}
			sess, stdin, _, done := g.start(po)
			c := g.accept()
			c.handshake()
			stdin.Write([]byte("before"))
			before := c.recv(isStream(protocol.PayloadOutput))
			c.ack(before)
			c.control(protocol.PausePublication, nil)
			waitEvent(t, events, proxy.EventPaused)
			stdin.Write([]byte("held"))
			select {
			case m := <-c.in:
				if m.Type == protocol.InputStreamData {
					t.Fatalf("client sent %q seq %d while paused", m.Payload, m.SequenceNumber)
				}
			case <-time.After(100 * time.Millisecond):
				// Nothing sent while paused (a bounded look for an
				// absence; the checks below carry the test).
			}
			switch how {
			case "start_publication":
				c.control(protocol.StartPublication, nil)
			case "agent_data":
				c.stream(protocol.PayloadOutput, []byte("d"))
			case "agent_ack":
				c.ack(before) // again: any ack shows the agent is there
			}
			waitEvent(t, events, proxy.EventUnpaused)
			held := c.recv(isStream(protocol.PayloadOutput))
			if string(held.Payload) != "held" {
				t.Fatalf("after the pause the client sent %q, want the held \"held\"", held.Payload)
			}
			c.ack(held)
			stdin.Close()
			waitDone(t, done)
			if st := sess.Stats(); st.Pauses != 1 || st.BytesUp != int64(len("before")+len("held")) {
				t.Errorf("stats %+v: want 1 pause and every byte sent", st)
			}
		})
	}
}

// waitEvent waits for an event of kind.
func waitEvent(t *testing.T, events <-chan proxy.EventKind, kind proxy.EventKind) {
	t.Helper()
	timeout := time.After(gwWait)
	for {
		select {
		case k := <-events:
			if k == kind {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event within the wait", kind)
		}
	}
}

// waitFor polls cond until it holds or the wait ends.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(gwWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within the wait")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGatewayResumeReplays: on a new websocket the client repeats its
// recent acks and retransmits its whole unacknowledged window at once, with
// the token ResumeSession gave it (§8.2).
func TestGatewayResumeReplays(t *testing.T) {
	g := newGateway(t)
	sess, stdin, _, _ := g.start(proxy.Options{})
	c := g.accept()
	c.handshake()
	for _, s := range []string{"one", "two", "three"} {
		stdin.Write([]byte(s))
		c.recv(isStream(protocol.PayloadOutput))
	}
	d := c.stream(protocol.PayloadOutput, []byte("down"))
	c.recv(isAckOf(d))
	c.closeFrame(websocket.CloseNormalClosure, "Bye")
	c2 := g.resumed(c)
	if c2.open.TokenValue != "token-1" {
		t.Errorf("second open carried token %q, want ResumeSession's", c2.open.TokenValue)
	}
	if c2.open.ClientID != c.open.ClientID || c2.open.RequestID == c.open.RequestID {
		t.Errorf("ClientId must stay, RequestId change: %+v then %+v", c.open, c2.open)
	}
	c2.recv(isAckOf(d)) // the recent ack, repeated
	got := map[string]bool{}
	for len(got) < 3 {
		got[string(c2.recv(isStream(protocol.PayloadOutput)).Payload)] = true
	}
	if !got["one"] || !got["two"] || !got["three"] {
		t.Fatalf("window resent: %v", got)
	}
	if st := sess.Stats(); st.Resumes != 1 || st.Retransmits < 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestGatewayCellMove: every resume dials the StreamUrl that ResumeSession
// returned, and a later resume without a URL keeps the latest one (§15.1).
func TestGatewayCellMove(t *testing.T) {
	g := newGateway(t)
	g.resume = func(n int) (*ssm.ResumeSessionOutput, error) {
		out := &ssm.ResumeSessionOutput{SessionId: aws.String("s-1"), TokenValue: aws.String(fmt.Sprintf("token-%d", n))}
		if n <= 2 {
			out.StreamUrl = aws.String(g.url(n))
		}
		return out, nil
	}
	// The gateway refuses any cell but the newest, as the service does once
	// it has moved the session.
	var cell atomic.Int32
	g.refuse = func(r *http.Request) int {
		if r.URL.Query().Get("cell-number") != fmt.Sprint(cell.Load()) {
			return http.StatusForbidden
		}
		return 0
	}
	sess, stdin, out, _ := g.start(proxy.Options{})
	c := g.accept()
	c.handshake()
	for i := 1; i <= 3; i++ {
		if i <= 2 {
			cell.Store(int32(i))
		}
		c.closeFrame(websocket.CloseNormalClosure, "Bye")
		c = g.resumed(c)
		if want := fmt.Sprintf("token-%d", i); c.open.TokenValue != want {
			t.Fatalf("resume %d opened with %q, want %q", i, c.open.TokenValue, want)
		}
		// Traffic both ways proves the link healthy before the next move.
		stdin.Write([]byte{'0' + byte(i)})
		m := c.recv(isStream(protocol.PayloadOutput))
		c.ack(m)
		c.stream(protocol.PayloadOutput, []byte{'0' + byte(i)})
	}
	waitFor(t, func() bool { return string(out.Bytes()) == "123" })
	_, _, paths := g.counts()
	want := []string{"cell-number=0", "cell-number=1", "cell-number=2", "cell-number=2"}
	if len(paths) != len(want) {
		t.Fatalf("upgrades %q, want %d", paths, len(want))
	}
	for i, p := range paths {
		if !strings.HasSuffix(p, want[i]) {
			t.Errorf("upgrade %d went to %s, want %s", i, p, want[i])
		}
	}
	if st := sess.Stats(); st.Resumes != 3 {
		t.Errorf("resumes %d", st.Resumes)
	}
}

// TestGatewayStreamHost: a StreamUrl whose host is not a messages endpoint
// is refused before anything is signed or any token sent, and the session
// is terminated (§15.3) — at start and on resume.
func TestGatewayStreamHost(t *testing.T) {
	t.Run("start", func(t *testing.T) {
		api := &evilStart{gateway: newGateway(t)}
		_, err := proxy.Start(context.Background(), api, ssmtest.Credentials(), ssmtest.DefaultRegion, proxy.StartInput{Target: "i-0123456789abcdef0"}, proxy.Options{StreamHosts: []string{"127.0.0.1"}})
		var he *proxy.StreamHostError
		if !errors.As(err, &he) || !strings.Contains(err.Error(), "evil.example.net") {
			t.Fatalf("err %v, want a StreamHostError naming the host", err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("the error shows the URL's query: %v", err)
		}
		if _, terms, paths := api.counts(); terms != 1 || len(paths) != 0 {
			t.Errorf("terminates %d, upgrades %v", terms, paths)
		}
	})
	t.Run("resume", func(t *testing.T) {
		g := newGateway(t)
		g.resume = func(n int) (*ssm.ResumeSessionOutput, error) {
			return &ssm.ResumeSessionOutput{SessionId: aws.String("s-1"), TokenValue: aws.String("t"), StreamUrl: aws.String("wss://ssmmessages.us-east-1.evil.example.net/v1/data-channel/s-1")}, nil
		}
		_, _, _, done := g.start(proxy.Options{})
		c := g.accept()
		c.handshake()
		c.closeFrame(websocket.CloseNormalClosure, "Bye")
		err := waitDone(t, done)
		var he *proxy.StreamHostError
		if !errors.As(err, &he) {
			t.Fatalf("err %v, want a StreamHostError", err)
		}
		if resumes, terms, paths := g.counts(); resumes != 1 || terms != 1 || len(paths) != 1 {
			t.Errorf("resumes %d, terminates %d, upgrades %v: want 1, 1, the first only", resumes, terms, paths)
		}
	})
}

type evilStart struct{ *gateway }

func (evilStart) StartSession(context.Context, *ssm.StartSessionInput, ...func(*ssm.Options)) (*ssm.StartSessionOutput, error) {
	return &ssm.StartSessionOutput{SessionId: aws.String("s-1"), StreamUrl: aws.String("wss://evil.example.net/v1/data-channel/s-1?secret=1"), TokenValue: aws.String("t")}, nil
}

// TestGatewayReconnectStorm: a gateway that accepts and closes every
// websocket at once gets backoff and the budget, not a reconnect storm
// (issue: ~200 ResumeSession calls a second).
func TestGatewayReconnectStorm(t *testing.T) {
	for _, code := range []int{websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseInternalServerErr} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			g := newGateway(t)
			budget := 3 * time.Second
			_, _, _, done := g.start(proxy.Options{ResumeBudget: budget})
			go func() {
				for {
					select {
					case c := <-g.conns:
						c.closeFrame(code, "closed at once")
					case <-time.After(2 * budget):
						return
					}
				}
			}()
			err := stWait(t, done, 3*budget)
			var re *proxy.ResumeError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), "closed at once") {
				t.Fatalf("err %v, want a ResumeError naming the last failure", err)
			}
			// Jittered doubling from 100 ms within 3 s allows at most
			// about 6 attempts; a storm makes thousands.
			if resumes, terms, _ := g.counts(); resumes > 10 || terms != 1 {
				t.Errorf("%d ResumeSession calls within a %s budget, %d terminates", resumes, budget, terms)
			}
		})
	}
}

// TestGatewayRelayThenCloseStorm: a gateway that relays one frame on each
// new websocket and closes it at once gets backoff and the budget too — a
// frame is not a working link (review: 345 ResumeSession calls in 8 s with
// a 2 s budget, and no end).
func TestGatewayRelayThenCloseStorm(t *testing.T) {
	g := newGateway(t)
	budget := 3 * time.Second
	_, _, out, done := g.start(proxy.Options{ResumeBudget: budget})
	c := g.accept()
	c.handshake()
	relayed := 0
	timeout := time.After(3 * budget)
	for {
		seq := c.stream(protocol.PayloadOutput, []byte("x"))
		c.recv(isAckOf(seq)) // the client has it
		relayed++
		c.closeFrame(websocket.CloseNormalClosure, "Bye")
		prev := c
		select {
		case err := <-done:
			var re *proxy.ResumeError
			if !errors.As(err, &re) {
				t.Fatalf("err %v, want a ResumeError", err)
			}
			if resumes, terms, _ := g.counts(); resumes > 12 || terms != 1 {
				t.Errorf("%d ResumeSession calls within a %s budget, %d terminates", resumes, budget, terms)
			}
			if relayed < 2 || out.Len() < relayed {
				t.Errorf("%d frames relayed, %d bytes out: the fault did not fire", relayed, out.Len())
			}
			return
		case c = <-g.conns:
			c.seq = prev.seq
		case <-timeout:
			resumes, _, _ := g.counts()
			t.Fatalf("still running after %s with a %s budget: %d ResumeSession calls", 3*budget, budget, resumes)
		}
	}
}

// TestGatewayResumeFailsTransiently: ResumeSession failing with a transient
// error until the budget ends gives a ResumeError that names the last
// failure — not a panic (issue: nil Err dereferenced).
func TestGatewayResumeFailsTransiently(t *testing.T) {
	g := newGateway(t)
	g.resume = func(int) (*ssm.ResumeSessionOutput, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: network is unreachable")}
	}
	_, _, _, done := g.start(proxy.Options{ResumeBudget: 2 * time.Second})
	c := g.accept()
	c.handshake()
	c.ws.Close() // abrupt
	err := waitDone(t, done)
	var re *proxy.ResumeError
	if !errors.As(err, &re) || !strings.Contains(re.Error(), "network is unreachable") {
		t.Fatalf("err %v, want a ResumeError naming the unreachable network", err)
	}
	if resumes, terms, _ := g.counts(); resumes < 2 || terms != 1 {
		t.Errorf("ResumeSession %d times, TerminateSession %d", resumes, terms)
	}
}

// TestGatewayResumeEmptyToken: ResumeSession answering without a token
// means the service has ended the session (§1.3): ErrSessionEnded at once,
// not a retry.
func TestGatewayResumeEmptyToken(t *testing.T) {
	g := newGateway(t)
	g.resume = func(int) (*ssm.ResumeSessionOutput, error) {
		return &ssm.ResumeSessionOutput{SessionId: aws.String("s-1")}, nil
	}
	_, _, _, done := g.start(proxy.Options{ResumeBudget: time.Minute})
	c := g.accept()
	c.handshake()
	c.closeFrame(websocket.CloseNormalClosure, "Bye")
	if err := waitDone(t, done); !errors.Is(err, proxy.ErrSessionEnded) {
		t.Fatalf("err %v, want ErrSessionEnded", err)
	}
	if resumes, _, _ := g.counts(); resumes != 1 {
		t.Errorf("%d ResumeSession calls, want 1", resumes)
	}
}

// TestGatewayResumeDialBounded: a resume whose stream host accepts TCP and
// never answers the upgrade ends with the resume budget (2 s), not with the
// dialer's handshake timeout (10 minutes here).
func TestGatewayResumeDialBounded(t *testing.T) {
	var dialled atomic.Int32
	silent := testenv.ServeTCP(t, func(c net.Conn) {
		dialled.Add(1)
		io.Copy(io.Discard, c)
	})
	g := newGateway(t)
	g.resume = func(int) (*ssm.ResumeSessionOutput, error) {
		return &ssm.ResumeSessionOutput{SessionId: aws.String("s-1"), TokenValue: aws.String("t"),
			StreamUrl: aws.String("ws://" + silent + "/v1/data-channel/s-1")}, nil
	}
	_, _, _, done := g.start(proxy.Options{ResumeBudget: 2 * time.Second, Dialer: &websocket.Dialer{HandshakeTimeout: 10 * time.Minute}})
	c := g.accept()
	c.handshake()
	c.closeFrame(websocket.CloseNormalClosure, "Bye")
	err := waitDone(t, done)
	var re *proxy.ResumeError
	if !errors.As(err, &re) {
		t.Fatalf("err %v, want a ResumeError", err)
	}
	if dialled.Load() == 0 {
		t.Error("the silent stream host was never dialled: the fault did not fire")
	}
}

// TestGatewayPermanentFailures: failures that cannot heal end the session
// at once instead of being retried for the whole budget.
func TestGatewayPermanentFailures(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(g *gateway)
		connect bool // the first websocket opens, and is then lost
		errWant any
	}{
		{"403 on the first upgrade", func(g *gateway) {
			g.refuse = func(*http.Request) int { return http.StatusForbidden }
		}, false, new(*proxy.UpgradeError)},
		{"access denied on resume", func(g *gateway) {
			g.resume = func(int) (*ssm.ResumeSessionOutput, error) {
				return nil, &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "denied"}
			}
		}, true, new(*smithy.GenericAPIError)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGateway(t)
			c.setup(g)
			start := time.Now()
			_, _, _, done := g.start(proxy.Options{ResumeBudget: time.Minute})
			if c.connect {
				conn := g.accept()
				conn.handshake()
				conn.ws.Close()
			}
			err := waitDone(t, done)
			if !errors.As(err, c.errWant) {
				t.Fatalf("err %T %v", err, err)
			}
			if time.Since(start) > 30*time.Second {
				t.Errorf("took %s of a 1 min budget", time.Since(start))
			}
			if resumes, terms, _ := g.counts(); resumes > 1 || terms != 1 {
				t.Errorf("ResumeSession %d times (want at most 1), TerminateSession %d", resumes, terms)
			}
		})
	}
}

// TestGatewayHostileFrames: a frame over the size limit and a
// channel_closed that does not decode are protocol errors: the session
// ends with an error — never exit 0 with data missing — and is terminated.
func TestGatewayHostileFrames(t *testing.T) {
	cases := map[string]func(c *gwConn){
		"oversized frame": func(c *gwConn) {
			big := make([]byte, protocol.FrameHeaderLen+2<<20)
			copy(big, []byte{0, 0, 0, 116})
			c.writeRaw(big)
		},
		"malformed channel_closed": func(c *gwConn) {
			c.control(protocol.ChannelClosed, []byte("{not json"))
		},
	}
	for name, hostile := range cases {
		t.Run(name, func(t *testing.T) {
			g := newGateway(t)
			_, _, _, done := g.start(proxy.Options{})
			c := g.accept()
			c.handshake()
			hostile(c)
			err := waitDone(t, done)
			var pe *proxy.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("err %v, want a ProtocolError", err)
			}
			if resumes, terms, _ := g.counts(); resumes != 0 || terms != 1 {
				t.Errorf("ResumeSession %d, TerminateSession %d: want 0, 1", resumes, terms)
			}
		})
	}
}

// TestGatewayReorderBound: far-future frames are buffered only up to a
// byte bound; beyond it they are not acknowledged (the agent resends), so a
// hostile peer cannot take the memory (issue: 2,000 one-MiB frames, 1.4 GB).
func TestGatewayReorderBound(t *testing.T) {
	g := newGateway(t)
	sess, _, _, _ := g.start(proxy.Options{})
	c := g.accept()
	c.handshake()
	payload := make([]byte, protocol.MaxPayload)
	const n = 40 // 40 MiB offered
	for i := range n {
		c.write(&protocol.Message{Type: protocol.OutputStreamData, SequenceNumber: int64(100 + i), PayloadType: protocol.PayloadOutput, Payload: payload})
	}
	marker := c.stream(protocol.PayloadOutput, []byte("x")) // seq 2, in order
	acked := 0
	for {
		m := c.recv(func(m *protocol.Message) bool { return m.Type == protocol.Acknowledge })
		s, _ := protocol.ParseAckSeq(m.Payload)
		if s == marker {
			break
		}
		acked++
	}
	if acked == 0 || acked >= n {
		t.Fatalf("%d of %d far-future MiB frames acknowledged: want some, bounded", acked, n)
	}
	if st := sess.Stats(); st.OutOfOrder != int64(acked) {
		t.Errorf("out-of-order buffered %d, acked %d", st.OutOfOrder, acked)
	}
}

// TestGatewayDrainAfterEOF: after stdin ends, output that keeps coming is
// delivered until it stops for DrainTimeout (a reply after the request's
// end is not cut off).
func TestGatewayDrainAfterEOF(t *testing.T) {
	g := newGateway(t)
	drain := 3 * time.Second
	_, stdin, out, done := g.start(proxy.Options{DrainTimeout: drain})
	c := g.accept()
	c.handshake()
	stdin.Write([]byte("request"))
	c.ack(c.recv(isStream(protocol.PayloadOutput)))
	stdin.Close()
	// The reply comes in parts over more than DrainTimeout, each part
	// well within it of the one before: the remote application being slow
	// (the pauses are the application's, not synchronisation; a tenth of
	// the drain leaves room for a loaded machine).
	var want string
	for i := range 12 {
		part := fmt.Sprintf("part%d;", i)
		want += part
		c.recv(isAckOf(c.stream(protocol.PayloadOutput, []byte(part))))
		time.Sleep(drain / 10)
	}
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
	if got := string(out.Bytes()); got != want {
		t.Fatalf("stdout %q, want %q", got, want)
	}
}

// TestClientVersion pins the reported version at or above AWS's minimum
// supported client (§15.2) and above both agent thresholds of §7.1, and
// checks that it is what OpenDataChannel and HandshakeResponse carry.
func TestClientVersion(t *testing.T) {
	v := proxy.DefaultClientVersion
	if !protocol.PluginVersionGreater(v, proxy.MinClientVersion) && v != proxy.MinClientVersion {
		t.Errorf("ClientVersion %s is below the minimum %s", v, proxy.MinClientVersion)
	}
	if proxy.MinClientVersion != "1.2.764.0" {
		t.Errorf("MinClientVersion %s, want AWS's documented 1.2.764.0", proxy.MinClientVersion)
	}
	for _, th := range []string{protocol.ClientVersionMux, protocol.ClientVersionNoKeepAlive} {
		if protocol.CompareAgentVersions(v, th) <= 0 {
			t.Errorf("ClientVersion %s is not above the agent threshold %s", v, th)
		}
	}
	g := newGateway(t)
	_, _, _, _ = g.start(proxy.Options{})
	c := g.accept()
	if c.open.ClientVersion != v {
		t.Errorf("OpenDataChannel ClientVersion %q, want %q", c.open.ClientVersion, v)
	}
	req, _ := json.Marshal(protocol.HandshakeRequest{AgentVersion: "3.3.1142.0", RequestedClientActions: []protocol.RequestedClientAction{{
		ActionType: protocol.ActionSessionType, ActionParameters: json.RawMessage(`{"SessionType":"Port","Properties":{"portNumber":"22"}}`),
	}}})
	c.stream(protocol.PayloadHandshakeRequest, req)
	resp, err := protocol.ParseHandshakeResponse(c.recv(isStream(protocol.PayloadHandshakeResponse)).Payload)
	if err != nil || resp.ClientVersion != v {
		t.Errorf("HandshakeResponse ClientVersion %q (%v), want %q", resp.ClientVersion, err, v)
	}
}

// smallBuffers dials with a small kernel send buffer, so that a peer that
// stops reading blocks the writer after a few KiB instead of megabytes.
func smallBuffers() *websocket.Dialer {
	return &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetWriteBuffer(8 << 10)
		}
		return c, err
	}}
}

// TestGatewayBlackhole: a link that stops taking bytes (the peer reads
// nothing) stalls only its writer goroutine. The loop goes on delivering
// the agent's output, the dead-peer check replaces the link and the window
// is resent on the new one, and cancellation ends the session at once
// (issue: the loop blocked in a write for 15 s; cancelling took 10.8 s).
func TestGatewayBlackhole(t *testing.T) {
	g := newGateway(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, stdin, out, done := g.startCtx(ctx, proxy.Options{Dialer: smallBuffers(), PingInterval: 100 * time.Millisecond, DeadPeerTimeout: 2 * time.Second})
	c := g.accept()
	c.handshake()
	c.blackhole()
	// 4 MiB of upload: far more than the socket buffers hold, so the
	// client's network writer blocks once the window is sent.
	go func() {
		chunk := make([]byte, 32<<10)
		for range 128 {
			if _, err := stdin.Write(chunk); err != nil {
				return
			}
		}
	}()
	// The agent keeps talking on the half that still works; the loop must
	// deliver it although its writer is stuck.
	for i := range 20 {
		c.stream(protocol.PayloadOutput, []byte{byte('a' + i)})
	}
	waitFor(t, func() bool { return len(out.Bytes()) == 20 })
	// Now the link goes silent as well: the dead-peer check gives it up and
	// the session resumes on a new websocket, where the window is resent.
	c2 := g.resumed(c)
	first := c2.recv(isStream(protocol.PayloadOutput))
	if first.SequenceNumber < 1 {
		t.Fatalf("first data on the new link has seq %d", first.SequenceNumber)
	}
	c2.blackhole()
	start := time.Now()
	cancel()
	if err := stWait(t, done, 8*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	// TerminateSession is bounded by 2 s, closing the link by 1 s.
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("cancelling took %s", d)
	}
	if _, terms, _ := g.counts(); terms != 1 {
		t.Errorf("TerminateSession %d times", terms)
	}
}

// TestGatewayRefused: a gateway that closes the data channel with a policy
// violation (1008) before relaying anything — as the service does to a
// client below its minimum version — ends the session at once with the
// reason, instead of retrying for the whole budget.
func TestGatewayRefused(t *testing.T) {
	g := newGateway(t)
	_, _, _, done := g.start(proxy.Options{ResumeBudget: time.Minute})
	c := g.accept()
	c.closeFrame(websocket.ClosePolicyViolation, "client version 1.2.677.0 is no longer supported; minimum 1.2.764.0")
	err := waitDone(t, done)
	var re *proxy.RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "minimum 1.2.764.0") {
		t.Fatalf("err %v, want a RefusedError with the gateway's reason", err)
	}
	if resumes, terms, _ := g.counts(); resumes != 0 || terms != 1 {
		t.Errorf("ResumeSession %d, TerminateSession %d: want 0, 1", resumes, terms)
	}
}

// TestMinClientVersionEmulator: against the emulator's default (the
// documented minimum enforced), an out-of-date ClientVersion fails at once
// with the reason, and the current one works.
func TestMinClientVersionEmulator(t *testing.T) {
	emu, sess := stSession(t, ssmtest.Options{TargetAddr: stEchoServer(t)}, proxy.Options{ClientVersion: "1.2.677.0"})
	done, _ := stRun(context.Background(), sess, strings.NewReader(""))
	err := stWait(t, done, 30*time.Second)
	var re *proxy.RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "1.2.764.0") {
		t.Fatalf("err %v, want a RefusedError naming the minimum", err)
	}
	if st := stIdle(t, emu); st.ClientVersionRefusals != 1 {
		t.Errorf("emulator refusals %d, want 1", st.ClientVersionRefusals)
	}
}

// TestGatewayPredial: with PredialURL naming the stream host, the
// websocket uses the connection opened while StartSession was in flight —
// one TCP connection in all — and a predial to another host is closed
// unused, nothing sent on it.
func TestGatewayPredial(t *testing.T) {
	t.Run("same host", func(t *testing.T) {
		g := newGateway(t)
		// StartSession answers only once the predial has connected: the
		// websocket's TCP handshake ran while it was in flight.
		g.onStart = func() error {
			deadline := time.Now().Add(gwWait)
			for g.tcpConns.Load() == 0 {
				if time.Now().After(deadline) {
					return errors.New("no connection to the messages endpoint while StartSession was in flight")
				}
				time.Sleep(time.Millisecond)
			}
			return nil
		}
		_, _, _, _ = g.start(proxy.Options{PredialURL: g.url(0)})
		c := g.accept()
		c.handshake()
		if n := g.tcpConns.Load(); n != 1 {
			t.Errorf("%d TCP connections to the gateway, want 1 (the predialed one)", n)
		}
	})
	t.Run("other host", func(t *testing.T) {
		got := make(chan int, 1)
		other := testServe(t, func(c net.Conn) {
			n, _ := io.Copy(io.Discard, c)
			got <- int(n)
		})
		g := newGateway(t)
		_, _, _, _ = g.start(proxy.Options{PredialURL: "ws://" + other + "/"})
		g.accept().handshake()
		select {
		case n := <-got:
			if n != 0 {
				t.Errorf("%d bytes sent on the predial to the wrong host", n)
			}
		case <-time.After(gwWait):
			t.Fatal("the unused predial was not closed")
		}
	})
}

// testServe accepts connections on loopback and hands each to serve.
func testServe(t *testing.T, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return ln.Addr().String()
}

// TestGatewayUnconfirmed: an agent before 3.2.1041.0 never acknowledges a
// message it already has (§5.3), so a message whose ack died with a
// websocket stays unacknowledged however often it is resent. Once the
// input has ended, the session ends after UnconfirmedTimeout with an
// UnconfirmedError and is terminated, instead of staying open for ever;
// not while paused, and not with an agent that acknowledges duplicates.
func TestGatewayUnconfirmed(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, c := range []struct {
		name, agent string
		pause       bool
	}{
		{"old agent", "3.1.1000.0", false},
		{"old agent, paused", "3.1.1000.0", true},
		{"re-acking agent", protocol.AgentVersionReAck, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGateway(t)
			events := make(chan proxy.EventKind, 64)
			_, stdin, _, done := g.start(proxy.Options{UnconfirmedTimeout: timeout, OnEvent: func(e proxy.Event) { events <- e.Kind }})
			c1 := g.accept()
			c1.handshakeAs(c.agent)
			stdin.Write([]byte("x"))
			sent := c1.recv(isStream(protocol.PayloadOutput))
			// The agent has "x"; its ack dies with the websocket.
			c1.closeFrame(websocket.CloseNormalClosure, "Bye")
			c2 := g.resumed(c1)
			again := c2.recv(isStream(protocol.PayloadOutput))
			if again.SequenceNumber != sent.SequenceNumber || string(again.Payload) != "x" {
				t.Fatalf("resent seq %d %q, want seq %d \"x\"", again.SequenceNumber, again.Payload, sent.SequenceNumber)
			}
			if c.agent == protocol.AgentVersionReAck {
				c2.ack(again) // a duplicate, acknowledged again
			}
			if c.pause {
				c2.control(protocol.PausePublication, nil)
				waitEvent(t, events, proxy.EventPaused)
			}
			stdin.Close()
			if c.pause {
				select {
				case err := <-done:
					t.Fatalf("Run = %v while paused", err)
				case <-time.After(3 * timeout):
					// A bounded look for an absence: paused, the
					// clock does not run.
				}
				c2.control(protocol.StartPublication, nil)
			}
			err := waitDone(t, done)
			_, terms, _ := g.counts()
			if c.agent == protocol.AgentVersionReAck {
				if err != nil {
					t.Fatalf("Run = %v, want a clean end", err)
				}
				return
			}
			var ue *proxy.UnconfirmedError
			if !errors.As(err, &ue) || ue.Messages != 1 || ue.AgentVersion != c.agent {
				t.Fatalf("Run = %v, want an UnconfirmedError for 1 message", err)
			}
			if terms != 1 {
				t.Errorf("%d TerminateSession calls, want 1", terms)
			}
		})
	}
}
