package ssmtest

// The emulated agent's side of the data channel, driven by the raw test
// client (minclient_test.go): ids and tokens, the handshake and its timeouts,
// ordering, acks, duplicates and retransmission, the end flags,
// TerminateSession, idle timeout, signed upgrades, Close, old agents and
// other documents. Fault knobs are faults_test.go's, smux mux_test.go's;
// ssm-proxy against this agent is proxy/'s, the official plugin interop/'s.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// waitIdle waits for every session of s to end.
func waitIdle(t testing.TB, s *Server, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := s.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// checkEnded waits for the sessions to end and checks that exactly want
// ended, all for reason.
func checkEnded(t testing.TB, s *Server, reason string, want int64) Stats {
	t.Helper()
	waitIdle(t, s, 5*time.Second)
	st := s.Stats()
	if st.Endings[reason] != want || st.Active != 0 {
		t.Errorf("endings %v active %d; want %s=%d", st.Endings, st.Active, reason, want)
	}
	return st
}

func TestNewSession(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	ss := startSession(t, s)
	if !regexp.MustCompile(`^test-[0-9a-f]{17}$`).MatchString(ss.id) {
		t.Errorf("SessionId %q", ss.id)
	}
	u, err := url.Parse(ss.streamURL)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(s.Endpoint(), "http://")
	if u.Scheme != "ws" || u.Host != host || u.Path != "/v1/data-channel/"+ss.id {
		t.Errorf("StreamUrl %s", ss.streamURL)
	}
	if q := u.Query(); q.Get("role") != "publish_subscribe" || q.Get("cell-number") == "" {
		t.Errorf("StreamUrl query %s", u.RawQuery)
	}
	if ss.firstToken == "" || ss.token != ss.firstToken {
		t.Error("no token")
	}
	if s.lookupSession(ss.id) != ss || s.lookupSession("nope") != nil {
		t.Error("lookupSession")
	}
	if other := startSession(t, s); other.id == ss.id || other.firstToken == ss.firstToken {
		t.Error("sessions share an id or token")
	}
	if st := s.Stats(); st.SessionsStarted != 2 || st.Active != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestHandshake pins every field of the agent's handshake messages and ack
// (§4.5, §6.2, §9.1).
func TestHandshake(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t)})
	ss := startSession(t, s)
	c := dialRaw(t, ss, ss.firstToken)

	m, err := c.next(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != protocol.OutputStreamData || m.SequenceNumber != 0 || m.Flags != 1 ||
		m.PayloadType != protocol.PayloadHandshakeRequest || m.SchemaVersion != 1 || m.CreatedDate == 0 {
		t.Fatalf("first frame %+v", m)
	}
	req, err := protocol.ParseHandshakeRequest(m.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if req.AgentVersion != DefaultAgentVersion || len(req.RequestedClientActions) != 1 {
		t.Fatalf("request %s", m.Payload)
	}
	p, err := req.RequestedClientActions[0].SessionTypeParams()
	if err != nil || p.SessionType != "Port" || len(p.Properties) != 1 || p.Properties["portNumber"] != "22" {
		t.Fatalf("session type %+v %v", p, err)
	}
	c.ack(m)
	resp := c.sendStream(0, protocol.PayloadHandshakeResponse, handshakeResponse(req, protocol.ActionSuccess, ""))

	ackm, err := c.next(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ackm.Type != protocol.Acknowledge || ackm.SequenceNumber != 0 || ackm.Flags != 3 || ackm.PayloadType != 0 {
		t.Fatalf("ack header %+v", ackm)
	}
	a, err := protocol.ParseAck(ackm.Payload)
	if err != nil || a != protocol.AckFor(&resp) {
		t.Fatalf("ack %s, %v", ackm.Payload, err)
	}
	hc, err := c.next(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if hc.Type != protocol.OutputStreamData || hc.SequenceNumber != 1 || hc.Flags != 0 || hc.PayloadType != protocol.PayloadHandshakeComplete {
		t.Fatalf("HandshakeComplete header %+v", hc)
	}
	var raw map[string]any
	if err := json.Unmarshal(hc.Payload, &raw); err != nil || raw["CustomerMessage"] != "" || len(raw) != 2 {
		t.Fatalf("HandshakeComplete %s", hc.Payload)
	}
	if d, _ := raw["HandshakeTimeToComplete"].(float64); d <= 0 {
		t.Errorf("HandshakeTimeToComplete %v", raw["HandshakeTimeToComplete"])
	}
	c.ack(hc)
	waitReady(t, ss)

	// The session works: data goes to the target and comes back.
	c.sendStream(1, protocol.PayloadOutput, []byte("ping"))
	out := c.expect(5*time.Second, "echo", isStream(protocol.PayloadOutput))
	if string(out.Payload) != "ping" || out.SequenceNumber != 2 || out.Flags != 0 {
		t.Fatalf("echo %+v", out)
	}
}

// TestHandshakeProperties: the document decides Properties, the options
// and instance decide AgentVersion.
func TestHandshakeProperties(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		opts      Options
		instance  int
		doc       string
		params    map[string][]string
		wantAgent string
		wantProps map[string]string
	}{
		{"ssh port", Options{}, 0, docSSH, map[string][]string{"portNumber": {"2222"}}, DefaultAgentVersion,
			map[string]string{"portNumber": "2222"}},
		{"ssh default port", Options{}, 0, docSSH, nil, DefaultAgentVersion,
			map[string]string{"portNumber": "22"}},
		{"port forwarding", Options{AgentVersion: "3.0.100.0"}, 0, docPortForwarding, map[string][]string{"portNumber": {"5432"}}, "3.0.100.0",
			map[string]string{"portNumber": "5432", "type": "LocalPortForwarding", "localPortNumber": "0"}},
		{"remote host", Options{}, 0, docPortForwardingHost, map[string][]string{"host": {"db.internal"}, "localPortNumber": {"9999"}}, DefaultAgentVersion,
			map[string]string{"host": "db.internal", "portNumber": "80", "type": "LocalPortForwarding", "localPortNumber": "9999"}},
		{"instance agent version", Options{Instances: []Instance{{ID: "i-1", AgentVersion: "3.1.1446.0"}}}, 0, docSSH, nil, "3.1.1446.0",
			map[string]string{"portNumber": "22"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, tc.opts)
			ss, err := s.newSession(s.opts.Instances[tc.instance], tc.doc, tc.params)
			if err != nil {
				t.Fatal(err)
			}
			c := dialRaw(t, ss, ss.firstToken)
			m := c.expect(5*time.Second, "HandshakeRequest", isStream(protocol.PayloadHandshakeRequest))
			req, err := protocol.ParseHandshakeRequest(m.Payload)
			if err != nil {
				t.Fatal(err)
			}
			p, err := req.RequestedClientActions[0].SessionTypeParams()
			if err != nil {
				t.Fatal(err)
			}
			if req.AgentVersion != tc.wantAgent || p.SessionType != "Port" || !equalMaps(p.Properties, tc.wantProps) {
				t.Errorf("agent %q properties %v", req.AgentVersion, p.Properties)
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{HandshakeTimeout: 300 * time.Millisecond, TargetAddr: echoServer(t)})
	ss := startSession(t, s)
	c := dialRaw(t, ss, ss.firstToken)
	m := c.expect(5*time.Second, "HandshakeRequest", isStream(protocol.PayloadHandshakeRequest))
	c.ack(m) // but never answer
	start := time.Now()
	p := c.expectClosedFrame(5 * time.Second)
	if want := protocol.ErrorTitle + protocol.HandshakeTimeoutOutput; p.Output != want {
		t.Errorf("Output %q, want %q", p.Output, want)
	}
	if p.MessageType != "channel_closed" || p.SchemaVersion != 1 || p.SessionID != ss.id || p.MessageID == "" {
		t.Errorf("channel_closed %+v", p)
	}
	if _, err := time.Parse(time.RFC3339Nano, p.CreatedDate); err != nil || !strings.HasSuffix(p.CreatedDate, "Z") {
		t.Errorf("CreatedDate %q", p.CreatedDate)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("timeout took %s", time.Since(start))
	}
	st := checkEnded(t, s, EndHandshakeTimeout, 1)
	if st.EndedByAgent != 1 || st.TerminatedByAPI != 0 {
		t.Errorf("stats %+v", st)
	}
	if ss.resume() != "" {
		t.Error("an ended session resumed")
	}
}

// TestHandshakeTimeoutNoClient: a session nobody connects to ends too.
func TestHandshakeTimeoutNoClient(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{HandshakeTimeout: 200 * time.Millisecond})
	startSession(t, s)
	checkEnded(t, s, EndHandshakeTimeout, 1)
}

func TestHandshakeFailed(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t)})
	ss := startSession(t, s)
	c := dialRaw(t, ss, ss.firstToken)
	m := c.expect(5*time.Second, "HandshakeRequest", isStream(protocol.PayloadHandshakeRequest))
	c.ack(m)
	req, _ := protocol.ParseHandshakeRequest(m.Payload)
	resp := c.sendStream(0, protocol.PayloadHandshakeResponse, handshakeResponse(req, protocol.ActionUnsupported, "no ports here"))
	c.expect(5*time.Second, "ack of the response", isAckOf(resp.SequenceNumber))
	p := c.expectClosedFrame(5 * time.Second)
	want := protocol.ErrorTitle + "Encountered error while initiating handshake. SessionType failed on client with status 3 error: no ports here"
	if p.Output != want {
		t.Errorf("Output %q, want %q", p.Output, want)
	}
	checkEnded(t, s, EndHandshakeFailed, 1)
}

func TestDialFailure(t *testing.T) {
	t.Parallel()
	addr := testenv.ClosedPort(t)
	s := startServer(t, Options{TargetAddr: addr})
	ss := startSession(t, s)
	c := dialRaw(t, ss, ss.firstToken)
	c.handshake()
	p := c.expectClosedFrame(5 * time.Second)
	want := "Unable to connect to specified port: dial tcp " + addr + ": connect: connection refused"
	if p.Output != want {
		t.Errorf("Output %q, want %q", p.Output, want)
	}
	checkEnded(t, s, EndDialFailed, 1)
}

// TestInstanceAddr: an instance's Addr beats TargetAddr.
func TestInstanceAddr(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{
		TargetAddr: testenv.ClosedPort(t),
		Instances:  []Instance{{ID: "i-1", Addr: echoServer(t)}},
	})
	c := connect(t, startSession(t, s), false)
	c.write([]byte("hello"))
	if got := c.read(5, 5*time.Second); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
}

// TestSessionIDPrefix: an SSO caller's SessionId carries their e-mail
// address; the StreamUrl has its "@" percent-encoded, and the data channel
// finds the session by the decoded path.
func TestSessionIDPrefix(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t), SessionIDPrefix: "jane@example.com"})
	ss := startSession(t, s)
	if !strings.HasPrefix(ss.id, "jane@example.com-") {
		t.Fatalf("SessionId %q lacks the caller's name", ss.id)
	}
	if !strings.Contains(ss.streamURL, "/v1/data-channel/jane%40example.com-") {
		t.Fatalf("StreamUrl %q does not carry the id percent-encoded", ss.streamURL)
	}
	c := dialRaw(t, ss, ss.firstToken)
	c.expect(5*time.Second, "HandshakeRequest", isStream(protocol.PayloadHandshakeRequest))
}

// TestDataBeforeHandshakeComplete: stream data sent before the handshake
// is acknowledged and thrown away (§5.3, §9.1 step 5).
func TestDataBeforeHandshakeComplete(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t)})
	ss := startSession(t, s)
	c := dialRaw(t, ss, ss.firstToken)
	m := c.expect(5*time.Second, "HandshakeRequest", isStream(protocol.PayloadHandshakeRequest))
	c.ack(m)
	req, _ := protocol.ParseHandshakeRequest(m.Payload)
	junk := c.sendStream(0, protocol.PayloadOutput, []byte("junk"))
	c.expect(5*time.Second, "ack of early data", isAckOf(junk.SequenceNumber))
	c.sendStream(1, protocol.PayloadHandshakeResponse, handshakeResponse(req, protocol.ActionSuccess, ""))
	echoAfterComplete(t, c, ss, "real")
	if st := s.Stats(); st.BytesUp != 4 {
		t.Errorf("BytesUp %d", st.BytesUp)
	}
}

// echoAfterComplete takes the HandshakeComplete, waits for the agent's
// target, sends data as seq 2 and checks that the echo target's first
// output is exactly that: anything sent earlier was discarded.
func echoAfterComplete(t *testing.T, c *rawConn, ss *session, data string) {
	t.Helper()
	hc := c.expect(5*time.Second, "HandshakeComplete", isStream(protocol.PayloadHandshakeComplete))
	c.ack(hc)
	waitReady(t, ss)
	c.sendStream(2, protocol.PayloadOutput, []byte(data))
	c.expect(5*time.Second, "ack", isAckOf(2))
	if out := c.expect(5*time.Second, "echo", isStream(protocol.PayloadOutput)); string(out.Payload) != data {
		t.Fatalf("target saw %q, want only %q, sent after HandshakeComplete", out.Payload, data)
	}
}

// TestDataBeforeHandshakeCompleteSent: data sent after the
// HandshakeResponse but before HandshakeComplete has come — as a client that
// does not wait for it would — lands in the agent's window between taking
// the response and sending HandshakeComplete: it is acknowledged and
// discarded, and the target never sees it (§5.3, §9.1 step 5).
func TestDataBeforeHandshakeCompleteSent(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t), HandshakeCompleteDelay: 300 * time.Millisecond})
	ss := startSession(t, s)
	c := dialRaw(t, ss, ss.firstToken)
	m := c.expect(5*time.Second, "HandshakeRequest", isStream(protocol.PayloadHandshakeRequest))
	c.ack(m)
	req, _ := protocol.ParseHandshakeRequest(m.Payload)
	c.sendStream(0, protocol.PayloadHandshakeResponse, handshakeResponse(req, protocol.ActionSuccess, ""))
	c.expect(5*time.Second, "ack of the HandshakeResponse", isAckOf(0))
	early := c.sendStream(1, protocol.PayloadOutput, []byte("early"))
	c.expect(5*time.Second, "ack of the early data", isAckOf(early.SequenceNumber))
	echoAfterComplete(t, c, ss, "late")
	if st := s.Stats(); st.BytesUp != 4 || st.EarlyDataDiscarded != 1 || st.DelayedCompletes != 1 {
		t.Errorf("BytesUp %d, EarlyDataDiscarded %d, DelayedCompletes %d; want 4, 1, 1", st.BytesUp, st.EarlyDataDiscarded, st.DelayedCompletes)
	}
}

// TestNoAckUntilConnected: after HandshakeComplete, client data is neither
// acknowledged nor consumed until the agent has connected to the target;
// the client has to resend it (§5.3, §9.1 step 6).
func TestNoAckUntilConnected(t *testing.T) {
	t.Parallel()
	addr, received := recordServer(t)
	s := startServer(t, Options{TargetAddr: addr})
	ss := startSession(t, s)
	release := make(chan struct{})
	ss.mu.Lock()
	dial := ss.dialFunc
	ss.dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return dial(ctx, network, addr)
	}
	ss.mu.Unlock()
	c := dialRaw(t, ss, ss.firstToken)
	c.handshake()
	m := c.sendStream(1, protocol.PayloadOutput, []byte("early"))
	if m, err := c.next(300 * time.Millisecond); err == nil {
		t.Fatalf("got %s while the agent was dialing", m.Type)
	}
	close(release)
	waitReady(t, ss)
	c.send(&m)
	c.expect(5*time.Second, "ack", isAckOf(1))
	if got := received(5, 5*time.Second); string(got) != "early" {
		t.Fatalf("target got %q", got)
	}
}

// TestEcho carries 1 MiB through an echo target and back.
func TestEcho(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t)})
	ss := startSession(t, s)
	c := connect(t, ss, false)
	data := make([]byte, 1<<20)
	rand.New(rand.NewSource(1)).Read(data)
	go c.write(data)
	got := c.read(len(data), 20*time.Second)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("echo differs")
	}
	c.waitAcked(5 * time.Second)
	st := s.Stats()
	if st.BytesUp != 1<<20 || st.BytesDown != 1<<20 {
		t.Errorf("BytesUp %d BytesDown %d", st.BytesUp, st.BytesDown)
	}
	// Output messages are at most 1024 bytes and numbered after the
	// handshake without gaps.
	c.mu.Lock()
	seqs := c.outSeqs
	c.mu.Unlock()
	if len(seqs) < 1024 || seqs[0] != 2 || seqs[len(seqs)-1] != int64(len(seqs))+1 {
		t.Errorf("%d output messages, seqs %d..%d", len(seqs), seqs[0], seqs[len(seqs)-1])
	}
	if !ss.terminate() {
		t.Fatal("terminate: not live")
	}
	c.waitClosed(5 * time.Second)
	st = checkEnded(t, s, EndTerminated, 1)
	if st.TerminatedByAPI != 1 || st.EndedByAgent != 0 || st.SessionsStarted != 1 || st.Reconnects != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestDuplicateReack: a duplicate is delivered once and acknowledged
// again — by agents from 3.2.1041.0; older ones ignore it (§5.3, §9.3).
func TestDuplicateReack(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		version string
		reack   bool
	}{{DefaultAgentVersion, true}, {"3.1.1446.0", false}} {
		t.Run(c.version, func(t *testing.T) {
			t.Parallel()
			addr, received := recordServer(t)
			s := startServer(t, Options{TargetAddr: addr, AgentVersion: c.version})
			ss := startSession(t, s)
			rc := dialRaw(t, ss, ss.firstToken)
			rc.handshakeReady()
			m := clientStream(1, protocol.PayloadOutput, []byte("once"))
			rc.send(&m)
			rc.expect(5*time.Second, "ack", isAckOf(1))
			rc.send(&m)
			rc.sendStream(2, protocol.PayloadOutput, []byte("twice"))
			ack := rc.expect(5*time.Second, "an ack", func(m protocol.Message) bool { return isAckOf(1)(m) || isAckOf(2)(m) })
			if isAckOf(1)(ack) != c.reack {
				t.Fatalf("duplicate acknowledged again: %v, want %v", isAckOf(1)(ack), c.reack)
			}
			if got := received(len("oncetwice"), 5*time.Second); string(got) != "oncetwice" {
				t.Fatalf("target got %q", got)
			}
			ignored := int64(1)
			if c.reack {
				ignored = 0
			}
			if st := s.Stats(); st.DuplicatesReceived != 1 || st.DuplicatesIgnored != ignored || st.BytesUp != 9 {
				t.Errorf("duplicates %d, ignored %d, BytesUp %d", st.DuplicatesReceived, st.DuplicatesIgnored, st.BytesUp)
			}
		})
	}
}

// recordServer is a target that keeps what it reads. received waits for
// n bytes.
func recordServer(t *testing.T) (addr string, received func(n int, d time.Duration) []byte) {
	ch := make(chan []byte, 1000)
	addr = testenv.ServeTCP(t, func(c net.Conn) {
		for {
			buf := make([]byte, 4096)
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- buf[:n]
		}
	})
	var got []byte
	return addr, func(n int, d time.Duration) []byte {
		t.Helper()
		deadline := time.After(d)
		for len(got) < n {
			select {
			case b := <-ch:
				got = append(got, b...)
			case <-deadline:
				t.Fatalf("target got %q, want %d bytes", got, n)
			}
		}
		// Nothing more arrives.
		select {
		case b := <-ch:
			got = append(got, b...)
		case <-time.After(100 * time.Millisecond):
		}
		return got
	}
}

// TestOutOfOrder: a future message is acknowledged at once, kept, and
// delivered after the gap is filled (§5.3).
func TestOutOfOrder(t *testing.T) {
	t.Parallel()
	addr, received := recordServer(t)
	s := startServer(t, Options{TargetAddr: addr})
	ss := startSession(t, s)
	c := dialRaw(t, ss, ss.firstToken)
	c.handshakeReady()
	c.sendStream(3, protocol.PayloadOutput, []byte("C"))
	c.expect(5*time.Second, "ack of seq 3", isAckOf(3))
	c.sendStream(2, protocol.PayloadOutput, []byte("B"))
	c.expect(5*time.Second, "ack of seq 2", isAckOf(2))
	// The agent handles client frames in order on one goroutine and
	// counts what it delivers before it acknowledges it: once seq 2 is
	// acknowledged, anything delivered early would be counted.
	if st := s.Stats(); st.BytesUp != 0 {
		t.Fatalf("%d bytes delivered before the gap was filled", st.BytesUp)
	}
	c.sendStream(1, protocol.PayloadOutput, []byte("A"))
	c.expect(5*time.Second, "ack of seq 1", isAckOf(1))
	if got := received(3, 5*time.Second); string(got) != "ABC" {
		t.Fatalf("target got %q", got)
	}
}

// TestRetransmitFrontOnly: unacknowledged agent messages are resent after
// the RTO, the oldest only, with the same bytes (§5.4).
func TestRetransmitFrontOnly(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t)})
	ss := startSession(t, s)
	c := dialRaw(t, ss, ss.firstToken)
	c.handshakeReady()
	c.sendStream(1, protocol.PayloadOutput, []byte("first"))
	first := c.expect(5*time.Second, "first echo", isStream(protocol.PayloadOutput))
	c.sendStream(2, protocol.PayloadOutput, []byte("second"))
	second := c.expect(5*time.Second, "second echo", func(m protocol.Message) bool {
		return isStream(protocol.PayloadOutput)(m) && m.SequenceNumber != first.SequenceNumber
	})
	if first.SequenceNumber != 2 || second.SequenceNumber != 3 {
		t.Fatalf("echo seqs %d %d", first.SequenceNumber, second.SequenceNumber)
	}

	// Withhold both acks for a while: only seq 2 comes again.
	counts := map[int64]int{}
	deadline := time.Now().Add(800 * time.Millisecond)
	for time.Now().Before(deadline) {
		m, err := c.next(time.Until(deadline))
		if err != nil {
			break
		}
		if m.Type != protocol.OutputStreamData {
			continue
		}
		counts[m.SequenceNumber]++
		if m.SequenceNumber == 2 {
			if m.MessageID != first.MessageID || !bytes.Equal(m.Payload, first.Payload) || m.CreatedDate != first.CreatedDate {
				t.Errorf("retransmission differs from the original")
			}
		}
	}
	if counts[2] < 2 || counts[3] != 0 {
		t.Fatalf("retransmissions by seq %v; want ≥ 2 of seq 2 and none of seq 3", counts)
	}
	if counts[2] > 8 {
		t.Errorf("seq 2 resent %d times in 800 ms: more than once per 100 ms tick", counts[2])
	}
	// Now ack the front; the next one becomes the front and comes again.
	c.ack(first)
	m := c.expect(2*time.Second, "retransmission of seq 3", func(m protocol.Message) bool {
		return m.Type == protocol.OutputStreamData && m.SequenceNumber == 3
	})
	c.ack(m)
	if st := s.Stats(); st.Retransmissions < 3 || st.BytesDown != int64(len("firstsecond")) {
		t.Errorf("retransmissions %d BytesDown %d", st.Retransmissions, st.BytesDown)
	}
}

// TestRTO checks the §5.5 arithmetic.
func TestRTO(t *testing.T) {
	var a agentState
	a.init()
	if a.rto != 200*time.Millisecond || a.srtt != 100*time.Millisecond || a.rttvar != 0 {
		t.Fatalf("initial %+v", a)
	}
	a.updateRTO(20 * time.Millisecond)
	// rttvar = 0.75*0 + 0.25*80 = 20; srtt = 87.5 + 2.5 = 90; rto = 90 + 80.
	if a.rttvar != 20*time.Millisecond || a.srtt != 90*time.Millisecond || a.rto != 170*time.Millisecond {
		t.Fatalf("after one sample %+v", a)
	}
	for range 50 {
		a.updateRTO(0)
	}
	if a.rto < 10*time.Millisecond || a.rto > 12*time.Millisecond {
		t.Errorf("RTO %s after fast samples; want about the 10 ms granularity", a.rto)
	}
	a.updateRTO(10 * time.Second)
	if a.rto != time.Second {
		t.Errorf("RTO %s, want the 1 s cap", a.rto)
	}
}

func TestTerminateFlag(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{})
	addr := testenv.ServeTCP(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
		close(closed)
	})
	s := startServer(t, Options{TargetAddr: addr})
	c := connect(t, startSession(t, s), false)
	c.write([]byte("x"))
	c.waitAcked(5 * time.Second)
	c.sendFlag(protocol.FlagTerminateSession)
	if p := c.waitClosed(5 * time.Second); p.Output != "" {
		t.Errorf("Output %q", p.Output)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Error("target connection not closed")
	}
	checkEnded(t, s, EndTerminateFlag, 1)
}

// TestTerminateFlagOldAgent: agents before 2.3.756.0 ignore the
// TerminateSession flag (§9.3); the session goes on until the API ends it.
func TestTerminateFlagOldAgent(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t), AgentVersion: "2.3.740.0"})
	ss := startSession(t, s)
	c := connect(t, ss, false)
	c.sendFlag(protocol.FlagTerminateSession)
	c.write([]byte("still here"))
	if got := c.read(len("still here"), 5*time.Second); string(got) != "still here" {
		t.Fatalf("echo %q after the flag", got)
	}
	if st := s.Stats(); st.Active != 1 || st.Endings[EndTerminateFlag] != 0 {
		t.Fatalf("active %d, endings %v: the old agent obeyed the flag", st.Active, st.Endings)
	}
}

// TestDisconnectFlag: DisconnectToPort ends an SSH session (§7.2).
func TestDisconnectFlag(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t)})
	c := connect(t, startSession(t, s), false)
	c.sendFlag(protocol.FlagDisconnectToPort)
	if p := c.waitClosed(5 * time.Second); p.Output != "" {
		t.Errorf("Output %q", p.Output)
	}
	st := checkEnded(t, s, EndDisconnectFlag, 1)
	if st.EndedByAgent != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestTargetEOF: the destination closing ends the session normally after
// the agent's output was acknowledged (§7.2, §8.5).
func TestTargetEOF(t *testing.T) {
	t.Parallel()
	t.Run("drained", func(t *testing.T) {
		t.Parallel()
		addr := testenv.ServeTCP(t, func(c net.Conn) { c.Write(bytes.Repeat([]byte("z"), 5000)) })
		s := startServer(t, Options{TargetAddr: addr})
		c := connect(t, startSession(t, s), false)
		if got := c.read(5000, 5*time.Second); len(got) != 5000 {
			t.Fatal(len(got))
		}
		if p := c.waitClosed(5 * time.Second); p.Output != "" {
			t.Errorf("Output %q", p.Output)
		}
		checkEnded(t, s, EndTargetEOF, 1)
	})
	t.Run("unacked", func(t *testing.T) {
		t.Parallel()
		addr := testenv.ServeTCP(t, func(c net.Conn) { c.Write([]byte("last words")) })
		s := startServer(t, Options{TargetAddr: addr})
		ss := startSession(t, s)
		c := dialRaw(t, ss, ss.firstToken)
		c.handshake()
		out := c.expect(5*time.Second, "output", isStream(protocol.PayloadOutput))
		start := time.Now()
		p := c.expectClosedFrame(5 * time.Second) // never acked: after the 2 s drain
		if d := time.Since(start); d < 1500*time.Millisecond {
			t.Errorf("channel_closed after %s; the agent did not wait for the ack", d)
		}
		if p.Output != "" || string(out.Payload) != "last words" {
			t.Errorf("Output %q payload %q", p.Output, out.Payload)
		}
		checkEnded(t, s, EndTargetEOF, 1)
	})
}

// TestTerminateAPI: TerminateSession sends channel_closed and makes the
// session unresumable, but it stays known (§1.3, §1.4).
func TestTerminateAPI(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t)})
	ss := startSession(t, s)
	c := connect(t, ss, false)
	if !ss.terminate() {
		t.Fatal("terminate of a live session returned false")
	}
	if p := c.waitClosed(5 * time.Second); p.Output != "" || p.SessionID != ss.id {
		t.Errorf("channel_closed %+v", p)
	}
	if ss.terminate() {
		t.Error("second terminate returned true")
	}
	if s.lookupSession(ss.id) != ss || ss.resume() != "" {
		t.Error("ended session lookup/resume")
	}
	st := checkEnded(t, s, EndTerminated, 1)
	if st.TerminatedByAPI != 1 || st.EndedByAgent != 0 || st.Resumes != 0 {
		t.Errorf("stats %+v", st)
	}
	// The websocket is closed after channel_closed.
	c.waitFor(5*time.Second, "websocket closed", func() bool { return c.endErr != nil })
	var ce *websocket.CloseError
	if !errors.As(c.endErr, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Errorf("close %v", c.endErr)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, Options{TargetAddr: echoServer(t), IdleTimeout: 400 * time.Millisecond})
		c := connect(t, startSession(t, s), false)
		start := time.Now()
		if p := c.waitClosed(5 * time.Second); p.Output != protocol.IdleTimeoutOutput {
			t.Errorf("Output %q", p.Output)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("idle timeout after %s", d)
		}
		st := checkEnded(t, s, EndIdleTimeout, 1)
		if st.EndedByAgent != 1 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("busy", func(t *testing.T) {
		t.Parallel()
		// Each echo round trip takes at least 2×Latency, so ten of them,
		// one after the other, span 2.5 idle timeouts without a sleep.
		const idle, latency = 400 * time.Millisecond, 50 * time.Millisecond
		s := startServer(t, Options{TargetAddr: echoServer(t), IdleTimeout: idle, Latency: latency})
		c := connect(t, startSession(t, s), false)
		start := time.Now()
		for range 10 {
			c.write([]byte("k"))
			c.read(1, 5*time.Second)
		}
		if d := time.Since(start); d < 20*latency {
			t.Fatalf("ten round trips in %s: the premise (≥ %s) does not hold", d, 20*latency)
		}
		if st := s.Stats(); st.Active != 1 || len(st.Endings) != 0 {
			t.Fatalf("session ended although the client kept sending: %v", st.Endings)
		}
	})
}

// TestTokens: only the current token opens the data channel (§1.3, §9.1).
func TestTokens(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t)})
	ss := startSession(t, s)

	bad := dialRaw(t, ss, "AAEAAnot-the-token")
	var ce *websocket.CloseError
	if err := bad.expectEnd(5 * time.Second); !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Errorf("bad token: %v", err)
	}

	c := connect(t, ss, false)
	c.write([]byte("one"))
	c.read(3, 5*time.Second)
	token := ss.resume()
	if token == "" || token == ss.firstToken {
		t.Fatal("resume gave no new token")
	}
	old := dialRaw(t, ss, ss.firstToken)
	if err := old.expectEnd(5 * time.Second); !errors.As(err, &ce) {
		t.Errorf("old token: %v", err)
	}
	// The refused opens did not disturb the attached websocket.
	c.write([]byte("two"))
	if got := c.read(3, 5*time.Second); string(got) != "two" {
		t.Fatalf("got %q", got)
	}
	// The new token replaces the attached websocket and continues.
	c.mu.Lock()
	next := c.nextSeq
	c.mu.Unlock()
	r := dialRaw(t, ss, token)
	r.sendStream(next, protocol.PayloadOutput, []byte("three"))
	r.expect(5*time.Second, "echo on the new websocket", func(m protocol.Message) bool {
		return isStream(protocol.PayloadOutput)(m) && string(m.Payload) == "three"
	})
	c.waitFor(5*time.Second, "old websocket closed", func() bool { return c.ended })
	st := s.Stats()
	if st.Reconnects != 1 || st.Resumes != 1 || st.UnsignedUpgrades != 4 || st.SignedUpgrades != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestUnknownSession(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	u := strings.Replace(s.Endpoint(), "http://", "ws://", 1) + "/v1/data-channel/test-00000000000000000?role=publish_subscribe"
	_, err := tryDialRaw(t, u, "x", nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("err %v", err)
	}
}

// signedHeader signs a GET of u for ssmmessages as current clients do (§2).
func signedHeader(t *testing.T, u, secret string) http.Header {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, strings.Replace(u, "ws://", "http://", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: secret}
	const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, emptySHA256, "ssmmessages", DefaultRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	return req.Header
}

// TestUpgradeSignatures: signed upgrades are verified and counted;
// unsigned ones are accepted unless RequireSignedUpgrade (§2).
func TestUpgradeSignatures(t *testing.T) {
	t.Parallel()
	t.Run("optional", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, Options{TargetAddr: echoServer(t)})
		ss := startSession(t, s)
		if _, err := tryDialRaw(t, ss.streamURL, ss.firstToken, signedHeader(t, ss.streamURL, "wrong")); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
			t.Errorf("bad signature: %v", err)
		}
		dialRaw(t, ss, ss.firstToken).handshake()
		st := s.Stats()
		if st.UnsignedUpgrades != 1 || st.SignedUpgrades != 0 || st.RefusedUpgrades != 1 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("required", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, Options{TargetAddr: echoServer(t), RequireSignedUpgrade: true})
		ss := startSession(t, s)
		if _, err := tryDialRaw(t, ss.streamURL, ss.firstToken, nil); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
			t.Errorf("unsigned: %v", err)
		}
		c, err := tryDialRaw(t, ss.streamURL, ss.firstToken, signedHeader(t, ss.streamURL, SecretAccessKey))
		if err != nil {
			t.Fatalf("signed: %v", err)
		}
		c.handshake()
		st := s.Stats()
		if st.UnsignedUpgrades != 0 || st.SignedUpgrades != 1 || st.RefusedUpgrades != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestCloseEndsEverything: Close ends live sessions with channel_closed,
// counted as server_closed, and returns.
func TestCloseEndsEverything(t *testing.T) {
	t.Parallel()
	s, err := Start(Options{TargetAddr: echoServer(t)})
	if err != nil {
		t.Fatal(err)
	}
	var clients []*minClient
	for range 3 {
		clients = append(clients, connect(t, startSession(t, s), false))
	}
	startSession(t, s) // never connected
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs")
	}
	for _, c := range clients {
		if p := c.waitClosed(time.Second); p.Output != "" {
			t.Errorf("Output %q", p.Output)
		}
	}
	st := s.Stats()
	if st.Active != 0 || st.Endings[EndServerClosed] != 4 || st.EndedByAgent != 0 || st.TerminatedByAPI != 0 {
		t.Errorf("stats %+v", st)
	}
	if s.Close() != nil {
		t.Error("second Close")
	}
	if _, err := s.newSession(s.opts.Instances[0], docSSH, nil); err == nil {
		t.Error("newSession after Close")
	}
}

// TestOldAgent: an agent without the Port plugin cannot serve the session
// (§9.3, §10).
func TestOldAgent(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t), AgentVersion: "2.3.612.0"})
	ss := startSession(t, s)
	c := dialRaw(t, ss, ss.firstToken)
	if p := c.expectClosedFrame(5 * time.Second); p.Output != protocol.PortPluginUnsupportedOutput {
		t.Errorf("Output %q", p.Output)
	}
	checkEnded(t, s, EndUnsupported, 1)
}

// TestShellDocument: shell sessions are not emulated, and say so.
func TestShellDocument(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t)})
	ss := startDocSession(t, s, "SSM-SessionManagerRunShell", nil)
	c := dialRaw(t, ss, ss.firstToken)
	if p := c.expectClosedFrame(5 * time.Second); !strings.Contains(p.Output, "not emulated") {
		t.Errorf("Output %q", p.Output)
	}
	checkEnded(t, s, EndUnsupported, 1)
}

// TestCloseDuringOpen: Close does not wait for a websocket that never sent
// OpenDataChannel.
func TestCloseDuringOpen(t *testing.T) {
	t.Parallel()
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ss := startSession(t, s)
	ws, _, err := websocket.DefaultDialer.Dial(ss.streamURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s", d)
	}
}

// TestPortForwardingBasic: LocalPortForwarding with a client below 1.1.70
// is basic mode: the destination closing does not end the session, the
// next data dials again (§7.3).
func TestPortForwardingBasic(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: testenv.ServeTCP(t, func(c net.Conn) {
		buf := make([]byte, 100)
		n, _ := c.Read(buf)
		c.Write(bytes.ToUpper(buf[:n])) // one answer per connection
	})})
	ss := startDocSession(t, s, docPortForwarding, nil)
	c := dialRaw(t, ss, ss.firstToken)
	m := c.expect(5*time.Second, "HandshakeRequest", isStream(protocol.PayloadHandshakeRequest))
	c.ack(m)
	resp := protocol.HandshakeResponse{ClientVersion: "1.1.0", ProcessedClientActions: []protocol.ProcessedClientAction{
		{ActionType: protocol.ActionSessionType, ActionStatus: protocol.ActionSuccess}}}
	c.sendStream(0, protocol.PayloadHandshakeResponse, mustJSON(resp))
	c.ack(c.expect(5*time.Second, "HandshakeComplete", isStream(protocol.PayloadHandshakeComplete)))
	waitReady(t, ss)
	for i, word := range []string{"one", "two"} {
		c.sendStream(int64(i+1), protocol.PayloadOutput, []byte(word))
		out := c.expect(5*time.Second, "answer", isStream(protocol.PayloadOutput))
		c.ack(out)
		if string(out.Payload) != strings.ToUpper(word) {
			t.Fatalf("got %q", out.Payload)
		}
		// Let the agent see the target's EOF before the next word.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			ss.mu.Lock()
			redial := ss.agent.redial
			ss.mu.Unlock()
			if redial {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the agent did not notice the target closing")
			}
		}
	}
	if st := s.Stats(); st.Active != 1 {
		t.Fatalf("session ended: %v", st.Endings)
	}
}
