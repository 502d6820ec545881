package ssmtest

// Tests of the multiplexed port plugin (mux.go): an smux client (the
// library the official client uses) over the raw test client, and smux
// frames written by hand where the wire itself is the point. ssm-proxy's
// forward over this agent is e2e/forward_test.go's; the official plugin over
// it interop/portforward_e2e_test.go's.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtaci/smux"

	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// muxOldClientVersion multiplexes (≥ 1.1.70) but is at or below 1.2.331.0,
// so the agent keeps smux keep-alive on (§7.1).
const muxOldClientVersion = "1.2.0.0"

// muxConn is the byte stream of a minClient's Output payloads as the
// io.ReadWriteCloser an smux client runs over (the plugin's mux socket,
// §7.4). Reads take what the client has delivered in order; writes go out
// as Output messages of at most 1024 bytes.
type muxConn struct {
	c      *minClient
	closed chan struct{}
	once   sync.Once
}

var _ io.ReadWriteCloser = (*muxConn)(nil)

func (m *muxConn) Read(p []byte) (int, error) {
	for {
		m.c.mu.Lock()
		n := copy(p, m.c.out)
		m.c.out = m.c.out[n:]
		ended := m.c.ended
		m.c.mu.Unlock()
		if n > 0 {
			return n, nil
		}
		if ended {
			return 0, io.EOF
		}
		select {
		case <-m.closed:
			return 0, io.ErrClosedPipe
		case <-m.c.changed:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (m *muxConn) Write(p []byte) (int, error) {
	select {
	case <-m.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	m.c.write(p)
	return len(p), nil
}

func (m *muxConn) Close() error {
	m.once.Do(func() { close(m.closed) })
	return nil
}

// muxClient runs an smux client over c, with keep-alive off as the
// official client has it for current agents.
func muxClient(t testing.TB, c *minClient) *smux.Session {
	t.Helper()
	cfg := smux.DefaultConfig()
	cfg.KeepAliveDisabled = true
	sess, err := smux.Client(&muxConn{c: c, closed: make(chan struct{})}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

// startMux starts a port-forwarding session, connects a minClient and runs
// an smux client over it.
func startMux(t testing.TB, s *Server, doc string, params map[string][]string, reconnect bool) (*session, *minClient, *smux.Session) {
	t.Helper()
	ss := startDocSession(t, s, doc, params)
	c := connect(t, ss, reconnect)
	return ss, c, muxClient(t, c)
}

// portOf returns the portNumber parameter that reaches addr on localhost.
func portOf(t testing.TB, addr string) map[string][]string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]string{"portNumber": {port}}
}

// hashEchoServer echoes every connection and reports the sha256 of what
// each received when it ends.
func hashEchoServer(t testing.TB) (addr string, sums <-chan [32]byte) {
	ch := make(chan [32]byte, 256)
	addr = testenv.ServeTCP(t, func(c net.Conn) {
		h := sha256.New()
		io.Copy(c, io.TeeReader(c, h))
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		ch <- sum
	})
	return addr, ch
}

func muxRandom(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// echoThrough writes data on st while reading as much back, and checks the
// echo's sha256.
func echoThrough(st *smux.Stream, data []byte) error {
	st.SetDeadline(time.Now().Add(time.Minute))
	werr := make(chan error, 1)
	go func() {
		_, err := st.Write(data)
		werr <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(st, got); err != nil {
		return fmt.Errorf("stream %d: read: %w", st.ID(), err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("stream %d: write: %w", st.ID(), err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		return fmt.Errorf("stream %d: echo sha256 differs", st.ID())
	}
	return nil
}

// waitForwarding waits until cond holds for s's ForwardingStats.
func waitForwarding(t testing.TB, s *Server, what string, cond func(ForwardingStats) bool) ForwardingStats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := s.ForwardingStats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// echoStreams opens n streams on sess and echoes size random bytes through
// each at once, returning the sha256 of what each sent.
func echoStreams(t *testing.T, sess *smux.Session, n, size int) map[[32]byte]bool {
	t.Helper()
	sent := make(map[[32]byte]bool)
	errs := make(chan error, n)
	var streams []*smux.Stream
	for i := range n {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
		data := muxRandom(int64(i+1), size)
		sent[sha256.Sum256(data)] = true
		go func() { errs <- echoThrough(st, data) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, st := range streams {
		st.Close()
	}
	return sent
}

// checkReceived waits for n connections to end at a hashEchoServer and
// checks that each received exactly what one stream sent.
func checkReceived(t *testing.T, sums <-chan [32]byte, sent map[[32]byte]bool, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for i := range n {
		select {
		case sum := <-sums:
			if !sent[sum] {
				t.Errorf("the destination received bytes no stream sent (connection %d)", i)
			}
			delete(sent, sum)
		case <-deadline:
			t.Fatalf("%d of %d destination connections ended", i, n)
		}
	}
}

// TestMuxEcho: many concurrent streams through the agent's smux server to
// an echo server, sha256-checked both ways (§7.4).
func TestMuxEcho(t *testing.T) {
	t.Parallel()
	const streams, size = 32, 32 << 10
	addr, sums := hashEchoServer(t)
	s := startServer(t, Options{})
	_, c, sess := startMux(t, s, docPortForwarding, portOf(t, addr), false)
	sent := echoStreams(t, sess, streams, size)
	checkReceived(t, sums, sent, streams)
	// The destinations closed after our FINs; the agent closes each stream
	// in turn.
	st := waitForwarding(t, s, "a FIN for every stream", func(st ForwardingStats) bool { return st.FINsSent == streams })
	want := ForwardingStats{
		MuxSessions: 1, StreamsRequested: streams, StreamsAccepted: streams, StreamsConnected: streams,
		FINsReceived: streams, FINsSent: streams, BytesUp: streams * size, BytesDown: streams * size,
	}
	if st != want {
		t.Errorf("forwarding stats\n%+v, want\n%+v", st, want)
	}
	if es := s.Stats(); es.Active != 1 {
		t.Fatalf("session ended: %v", es.Endings)
	}
	c.sendFlag(protocol.FlagTerminateSession)
	c.waitClosed(5 * time.Second)
	checkEnded(t, s, EndTerminateFlag, 1)
}

// TestMuxStreamClose: a destination that closes its connection closes
// that stream with FIN, after its last bytes; the session and other streams
// go on (§7.4). DisconnectToPort means nothing in mux mode.
func TestMuxStreamClose(t *testing.T) {
	t.Parallel()
	addr := testenv.ServeTCP(t, func(c net.Conn) {
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		if string(buf[:n]) == "quit" {
			c.Write([]byte("bye"))
			return
		}
		c.Write(buf[:n])
		io.Copy(c, c)
	})
	s := startServer(t, Options{})
	_, c, sess := startMux(t, s, docPortForwarding, portOf(t, addr), false)
	keep, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := echoThrough(keep, []byte("first")); err != nil {
		t.Fatal(err)
	}
	quit, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	quit.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := quit.Write([]byte("quit")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(quit)
	if err != nil || string(got) != "bye" {
		t.Fatalf("closing destination: read %q, %v; want \"bye\" then EOF", got, err)
	}
	waitForwarding(t, s, "the FIN", func(st ForwardingStats) bool { return st.FINsSent == 1 })

	seq := c.sendFlag(protocol.FlagDisconnectToPort)
	c.waitFor(5*time.Second, "the flag's ack", func() bool { return c.unacked[seq] == nil })
	if err := echoThrough(keep, muxRandom(7, 10000)); err != nil {
		t.Fatalf("after the destination closed and DisconnectToPort: %v", err)
	}
	if st := s.ForwardingStats(); st.DisconnectFlagsIgnored != 1 || st.FINsSent != 1 {
		t.Errorf("ignored flags %d, FINs sent %d; want 1, 1", st.DisconnectFlagsIgnored, st.FINsSent)
	}
	if st := s.Stats(); st.Active != 1 {
		t.Fatalf("session ended: %v", st.Endings)
	}
}

// TestMuxDialFailure: a stream whose destination refuses gets
// ConnectToPortError and FIN; streams open before and after carry on, and
// the session stays up (§7.4).
func TestMuxDialFailure(t *testing.T) {
	t.Parallel()
	addr, sums := hashEchoServer(t)
	refused := testenv.ClosedPort(t)
	var refuse atomic.Bool
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	s := startServer(t, Options{Forwarding: ForwardingOptions{
		Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
			if refuse.Load() {
				a = refused
			}
			return dialer.DialContext(ctx, network, a)
		},
	}})
	_, _, sess := startMux(t, s, docPortForwarding, portOf(t, addr), false)

	const before, size = 4, 24 << 10
	var streams []*smux.Stream
	sent := make(map[[32]byte]bool)
	for i := range before {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		if err := echoThrough(st, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
		h := sha256.New()
		h.Write([]byte("hello"))
		h.Write(muxRandom(int64(i+1), size))
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		sent[sum] = true
	}

	refuse.Store(true)
	bad, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	bad.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := bad.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("refused stream: read %d, %v; want EOF", n, err)
	}
	st := waitForwarding(t, s, "the dial failure", func(st ForwardingStats) bool { return st.DialFailures == 1 })
	if st.StreamsConnected != before {
		t.Errorf("streams connected %d, want %d", st.StreamsConnected, before)
	}
	refuse.Store(false)

	errs := make(chan error, before)
	for i, st := range streams {
		go func() { errs <- echoThrough(st, muxRandom(int64(i+1), size)) }()
	}
	for range before {
		if err := <-errs; err != nil {
			t.Errorf("after the refused stream: %v", err)
		}
	}
	after, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := echoThrough(after, []byte("again")); err != nil {
		t.Fatalf("stream after the refused one: %v", err)
	}
	for _, st := range streams {
		st.Close()
	}
	checkReceived(t, sums, sent, before)
	if es := s.Stats(); es.Active != 1 {
		t.Fatalf("session ended: %v", es.Endings)
	}
	if st := s.ForwardingStats(); st.DialFailures != 1 || st.StreamsConnected != before+1 {
		t.Errorf("dial failures %d, connected %d; want 1, %d", st.DialFailures, st.StreamsConnected, before+1)
	}
}

// TestMuxSerialAccept: the agent dials one stream at a time inside its
// accept loop (§7.4), so a slow dial holds up the streams behind it.
func TestMuxSerialAccept(t *testing.T) {
	t.Parallel()
	addr := echoServer(t)
	var (
		mu                 sync.Mutex
		calls, in, maxIn   int
		entered            = make(chan struct{}, 8)
		release            = make(chan struct{})
		dialer             = &net.Dialer{Timeout: 5 * time.Second}
		errReleaseTimedOut = errors.New("never released")
	)
	s := startServer(t, Options{Forwarding: ForwardingOptions{
		Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
			mu.Lock()
			calls++
			first := calls == 1
			in++
			maxIn = max(maxIn, in)
			mu.Unlock()
			defer func() {
				mu.Lock()
				in--
				mu.Unlock()
			}()
			entered <- struct{}{}
			if first {
				select {
				case <-release:
				case <-ctx.Done():
					return nil, errReleaseTimedOut
				}
			}
			return dialer.DialContext(ctx, network, a)
		},
	}})
	_, _, sess := startMux(t, s, docPortForwarding, portOf(t, addr), false)

	var streams []*smux.Stream
	open := func() {
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	open()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first stream was not dialed")
	}
	open()
	open()
	waitForwarding(t, s, "three SYNs at the agent", func(st ForwardingStats) bool { return st.StreamsRequested == 3 })
	mu.Lock()
	n := calls
	mu.Unlock()
	if n != 1 {
		t.Fatalf("%d dials while the first was still dialing; the accept loop must be serial", n)
	}
	if st := s.ForwardingStats(); st.StreamsAccepted != 1 {
		t.Errorf("streams accepted %d while the first dial blocks, want 1", st.StreamsAccepted)
	}
	close(release)
	for i, st := range streams {
		if err := echoThrough(st, []byte("stream "+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 || maxIn != 1 {
		t.Errorf("%d dials, at most %d at once; want 3, 1", calls, maxIn)
	}
}

// TestMuxDialDelay: DialDelay holds the accept loop; a TerminateSession
// flag still ends the session at once.
func TestMuxDialDelay(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	s := startServer(t, Options{Forwarding: ForwardingOptions{
		DialDelay: time.Hour,
		Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
			dials.Add(1)
			return nil, errors.New("not reached")
		},
	}})
	_, c, sess := startMux(t, s, docPortForwarding, portOf(t, echoServer(t)), false)
	for range 2 {
		if _, err := sess.OpenStream(); err != nil {
			t.Fatal(err)
		}
	}
	waitForwarding(t, s, "the SYNs", func(st ForwardingStats) bool { return st.StreamsRequested == 2 && st.StreamsAccepted == 1 })
	if n := dials.Load(); n != 0 {
		t.Errorf("%d dials during the dial delay", n)
	}
	c.sendFlag(protocol.FlagTerminateSession)
	c.waitClosed(5 * time.Second)
	checkEnded(t, s, EndTerminateFlag, 1)
	if st := s.ForwardingStats(); st.StreamsAccepted != 1 {
		t.Errorf("streams accepted %d, want 1", st.StreamsAccepted)
	}
}

// TestMuxFaults: streams open across Byes and dropped websockets carry on
// intact once the client has resumed (§8.2), and across pauses and lossy,
// duplicating, reordering frames. The streams echo in rounds until the
// fault has hit at least twice.
func TestMuxFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		opts    Options
		fired   func(Stats) int64
		resumes bool
	}{
		{"bye", Options{ByeEvery: 100 * time.Millisecond}, func(st Stats) int64 { return st.Byes }, true},
		{"drop", Options{DropEveryBytes: 64 << 10}, func(st Stats) int64 { return st.Drops }, true},
		{"pause", Options{PauseEvery: 100 * time.Millisecond, PauseFor: 50 * time.Millisecond}, func(st Stats) int64 { return st.Pauses }, false},
		{"lossy", Options{AckLoss: 0.05, Duplicate: 0.05, Reorder: 0.05}, func(st Stats) int64 { return st.DuplicatesReceived }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const streams, chunk, maxRounds = 8, 8 << 10, 200
			addr, sums := hashEchoServer(t)
			s := startServer(t, tc.opts)
			_, c, sess := startMux(t, s, docPortForwarding, portOf(t, addr), true)
			var sts []*smux.Stream
			var hashes []hash.Hash
			for range streams {
				st, err := sess.OpenStream()
				if err != nil {
					t.Fatal(err)
				}
				sts = append(sts, st)
				hashes = append(hashes, sha256.New())
			}
			rounds := 0
			for ; tc.fired(s.Stats()) < 2 && rounds < maxRounds; rounds++ {
				errs := make(chan error, streams)
				for i, st := range sts {
					data := muxRandom(int64(rounds*streams+i), chunk)
					hashes[i].Write(data)
					go func() { errs <- echoThrough(st, data) }()
				}
				for range streams {
					if err := <-errs; err != nil {
						t.Fatalf("round %d: %v", rounds, err)
					}
				}
			}
			sent := make(map[[32]byte]bool)
			for i, st := range sts {
				st.Close()
				var sum [32]byte
				copy(sum[:], hashes[i].Sum(nil))
				sent[sum] = true
			}
			checkReceived(t, sums, sent, streams)
			st := s.Stats()
			c.mu.Lock()
			reconnects := c.reconnects
			c.mu.Unlock()
			if tc.fired(st) < 2 || tc.resumes && reconnects == 0 {
				t.Fatalf("faults did not fire in %d rounds (%+v, %d reconnects)", rounds, st, reconnects)
			}
			if st.Active != 1 {
				t.Fatalf("session ended: %v", st.Endings)
			}
			want := int64(rounds * streams * chunk)
			if fs := s.ForwardingStats(); fs.StreamsConnected != streams || fs.BytesUp != want || fs.BytesDown != want {
				t.Errorf("forwarding stats %+v; want %d streams, %d bytes each way", fs, streams, want)
			}
			t.Logf("%d rounds, %d faults, %d reconnects, %d retransmissions", rounds, tc.fired(st), reconnects, st.Retransmissions)
		})
	}
}

// TestMuxStuckDestination: a destination that stops reading does not keep
// Close waiting: the emulator closes destination connections when the smux
// session goes.
func TestMuxStuckDestination(t *testing.T) {
	t.Parallel()
	peers := make(chan net.Conn, 1)
	s := startServer(t, Options{Forwarding: ForwardingOptions{
		Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
			agentSide, peer := net.Pipe() // synchronous: a write waits for a read
			peers <- peer
			return agentSide, nil
		},
	}})
	_, _, sess := startMux(t, s, docPortForwarding, portOf(t, echoServer(t)), false)
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	go st.Write([]byte("nobody reads this"))
	var peer net.Conn
	select {
	case peer = <-peers:
	case <-time.After(10 * time.Second):
		t.Fatal("no dial")
	}
	// One byte read: the agent's write of the rest now blocks.
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a destination that does not read")
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	for {
		if _, err := peer.Read(buf); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("destination connection: %v, want EOF (closed by the agent)", err)
			}
			break
		}
	}
}

// TestMuxOldAgent: an agent before 3.0.222.0 has no smux; it forwards the
// bytes of one connection in basic mode whatever the client (§9.3).
func TestMuxOldAgent(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{AgentVersion: "3.0.100.0"})
	c := connect(t, startDocSession(t, s, docPortForwarding, portOf(t, echoServer(t))), false)
	c.write([]byte("not smux"))
	if got := c.read(8, 5*time.Second); string(got) != "not smux" {
		t.Fatalf("got %q", got)
	}
	if st := s.ForwardingStats(); st.BasicSessions != 1 || st.MuxSessions != 0 {
		t.Errorf("basic %d mux %d, want 1, 0", st.BasicSessions, st.MuxSessions)
	}
}

// muxFrame encodes one smux v1 frame (§7.4).
func muxFrame(cmd byte, sid uint32, data []byte) []byte {
	b := make([]byte, muxHeaderLen, muxHeaderLen+len(data))
	b[0], b[1] = muxVersion, cmd
	binary.LittleEndian.PutUint16(b[2:], uint16(len(data)))
	binary.LittleEndian.PutUint32(b[4:], sid)
	return append(b, data...)
}

// rawMux speaks smux by hand over a rawConn after its handshake: frames go
// out as Output messages, frames come back parsed from the agent's Output
// byte stream, each message acknowledged. There are no faults: every
// message must arrive once, in order.
type rawMux struct {
	t        testing.TB
	c        *rawConn
	seq      int64 // next client sequence number
	expected int64 // next agent sequence number
	in       []byte
}

func newRawMux(t testing.TB, c *rawConn) *rawMux {
	return &rawMux{t: t, c: c, seq: 1, expected: 2}
}

func (r *rawMux) send(cmd byte, sid uint32, data []byte) {
	r.t.Helper()
	r.c.sendStream(r.seq, protocol.PayloadOutput, muxFrame(cmd, sid, data))
	r.seq++
}

// muxEvent is one smux frame from the agent, or a flag (flag != 0).
type muxEvent struct {
	cmd  byte
	sid  uint32
	data []byte
	flag protocol.Flag
}

// next returns the agent's next frame or flag within d.
func (r *rawMux) next(d time.Duration) muxEvent {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if len(r.in) >= muxHeaderLen {
			n := int(binary.LittleEndian.Uint16(r.in[2:4]))
			if len(r.in) >= muxHeaderLen+n {
				ev := muxEvent{cmd: r.in[1], sid: binary.LittleEndian.Uint32(r.in[4:8]), data: r.in[muxHeaderLen : muxHeaderLen+n : muxHeaderLen+n]}
				if r.in[0] != muxVersion {
					r.t.Fatalf("smux frame version %d", r.in[0])
				}
				r.in = r.in[muxHeaderLen+n:]
				return ev
			}
		}
		m := r.c.expect(time.Until(deadline), "agent output", func(m protocol.Message) bool {
			return m.Type == protocol.OutputStreamData || m.Type == protocol.ChannelClosed
		})
		if m.Type == protocol.ChannelClosed {
			r.t.Fatalf("channel_closed: %s", m.Payload)
		}
		if m.SequenceNumber != r.expected {
			r.t.Fatalf("agent seq %d, want %d", m.SequenceNumber, r.expected)
		}
		r.expected++
		r.c.ack(m)
		switch m.PayloadType {
		case protocol.PayloadOutput:
			r.in = append(r.in, m.Payload...)
		case protocol.PayloadFlag:
			f, err := protocol.ParseFlag(m.Payload)
			if err != nil {
				r.t.Fatal(err)
			}
			return muxEvent{flag: f}
		default:
			r.t.Fatalf("unexpected payload type %s", m.PayloadType)
		}
	}
}

// muxHandshakeAs does the client half of the handshake reporting version.
func muxHandshakeAs(t testing.TB, c *rawConn, version string) {
	t.Helper()
	m := c.expect(5*time.Second, "HandshakeRequest", isStream(protocol.PayloadHandshakeRequest))
	c.ack(m)
	resp := protocol.HandshakeResponse{ClientVersion: version, ProcessedClientActions: []protocol.ProcessedClientAction{
		{ActionType: protocol.ActionSessionType, ActionStatus: protocol.ActionSuccess}}}
	c.sendStream(0, protocol.PayloadHandshakeResponse, mustJSON(resp))
	c.ack(c.expect(5*time.Second, "HandshakeComplete", isStream(protocol.PayloadHandshakeComplete)))
}

// TestMuxWire: the smux wire as the agent speaks it, frame by frame: a
// refused dial is Flag ConnectToPortError then FIN for that stream id; the
// next stream is dialed and echoes.
func TestMuxWire(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	refused := testenv.ClosedPort(t)
	var dials atomic.Int64
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	s := startServer(t, Options{Forwarding: ForwardingOptions{
		Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				a = refused
			}
			return dialer.DialContext(ctx, network, a)
		},
	}})
	ss := startDocSession(t, s, docPortForwarding, portOf(t, echo))
	c := dialRaw(t, ss, ss.firstToken)
	c.handshakeReady()
	r := newRawMux(t, c)

	r.send(muxCmdSYN, 3, nil)
	if ev := r.next(10 * time.Second); ev.flag != protocol.FlagConnectToPortError {
		t.Fatalf("got %+v, want Flag ConnectToPortError", ev)
	}
	if ev := r.next(10 * time.Second); ev.flag != 0 || ev.cmd != muxCmdFIN || ev.sid != 3 || len(ev.data) != 0 {
		t.Fatalf("got %+v, want FIN for stream 3", ev)
	}

	r.send(muxCmdSYN, 5, nil)
	r.send(muxCmdPSH, 5, []byte("ping"))
	if ev := r.next(10 * time.Second); ev.flag != 0 || ev.cmd != muxCmdPSH || ev.sid != 5 || string(ev.data) != "ping" {
		t.Fatalf("got %+v, want PSH \"ping\" on stream 5", ev)
	}
	r.send(muxCmdFIN, 5, nil)
	if ev := r.next(10 * time.Second); ev.flag != 0 || ev.cmd != muxCmdFIN || ev.sid != 5 {
		t.Fatalf("got %+v, want FIN for stream 5", ev)
	}
	if st := s.Stats(); st.Active != 1 {
		t.Fatalf("session ended: %v", st.Endings)
	}
	if st := s.ForwardingStats(); st.DialFailures != 1 || st.StreamsConnected != 1 || st.FINsSent != 2 || st.FINsReceived != 1 {
		t.Errorf("forwarding stats %+v", st)
	}
}

// TestMuxKeepAlive: an old client (≤ 1.2.331.0) gets the agent's smux
// keep-alive, and a client that then stays silent loses its session when
// the keep-alive times out; a current client gets none (§7.1). Both
// sessions run with the same short keep-alive; the current one starts
// first and is still up, with no NOP either way, after the old one died.
func TestMuxKeepAlive(t *testing.T) {
	t.Parallel()
	ka := ForwardingOptions{KeepAliveInterval: 50 * time.Millisecond, KeepAliveTimeout: time.Second}
	echo := echoServer(t)

	current := startServer(t, Options{Forwarding: ka})
	_, _, sess := startMux(t, current, docPortForwarding, portOf(t, echo), false)

	old := startServer(t, Options{Forwarding: ka})
	ss := startDocSession(t, old, docPortForwarding, portOf(t, echo))
	c := dialRaw(t, ss, ss.firstToken)
	muxHandshakeAs(t, c, muxOldClientVersion)
	waitReady(t, ss)
	// Two NOPs of the client's own, then silence but for acks.
	for seq := int64(1); seq <= 2; seq++ {
		c.sendStream(seq, protocol.PayloadOutput, muxFrame(muxCmdNOP, 0, nil))
	}
	var nops int
	seen := make(map[int64]bool)
	deadline := time.Now().Add(20 * time.Second)
	var closed protocol.ChannelClosedPayload
	for done := false; !done; {
		m, err := c.next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for the keep-alive to end the session: %v (%d NOPs seen)", err, nops)
		}
		switch {
		case m.Type == protocol.ChannelClosed:
			if closed, err = protocol.ParseChannelClosed(m.Payload); err != nil {
				t.Fatal(err)
			}
			done = true
		case m.Type == protocol.OutputStreamData:
			c.ack(m)
			if !seen[m.SequenceNumber] && m.PayloadType == protocol.PayloadOutput {
				seen[m.SequenceNumber] = true
				if string(m.Payload) != string(muxFrame(muxCmdNOP, 0, nil)) {
					t.Fatalf("agent output %x, want only NOPs", m.Payload)
				}
				nops++
			}
		}
	}
	checkEnded(t, old, EndMuxClosed, 1)
	st := old.ForwardingStats()
	if nops < 2 || st.KeepAlivesSent != int64(nops) || st.KeepAlivesReceived != 2 {
		t.Errorf("old client: %d NOPs seen, stats %+v; want ≥ 2 sent and seen alike, 2 received", nops, st)
	}
	t.Logf("old client: %d keep-alive NOPs before the timeout; channel_closed %q", nops, closed.Output)

	if st := current.ForwardingStats(); st.KeepAlivesSent != 0 || st.KeepAlivesReceived != 0 {
		t.Errorf("current client: %d NOPs sent, %d received; want none", st.KeepAlivesSent, st.KeepAlivesReceived)
	}
	if es := current.Stats(); es.Active != 1 {
		t.Fatalf("current client's session ended: %v", es.Endings)
	}
	st2, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := echoThrough(st2, []byte("still here")); err != nil {
		t.Fatal(err)
	}
}

// TestMuxRemoteHost: …ToRemoteHost resolves host first and refuses denied
// addresses (§7.5, §15.4); otherwise the agent dials what host resolved to.
func TestMuxRemoteHost(t *testing.T) {
	t.Parallel()
	const (
		oldAgent = DefaultAgentVersion // 3.3.1142.0
		newAgent = "3.3.4851.0"
	)
	echo := echoServer(t)
	_, port, _ := net.SplitHostPort(echo)
	cases := []struct {
		name, agent, host string
		fwd               ForwardingOptions
		redirect          bool   // TargetAddr to the echo server
		wantEnd           string // "" forwards
	}{
		{"private name", oldAgent, "db.internal", ForwardingOptions{Hosts: map[string][]string{"db.internal": {"127.0.0.1"}}}, false, ""},
		{"private name to loopback, new agent", newAgent, "db.internal", ForwardingOptions{Hosts: map[string][]string{"db.internal": {"127.0.0.1"}}}, false, EndForbidden},
		{"name case", oldAgent, "DB.Internal", ForwardingOptions{Hosts: map[string][]string{"db.internal": {"127.0.0.1"}}}, false, ""},
		{"first address refuses", oldAgent, "db.internal", ForwardingOptions{Hosts: map[string][]string{"db.internal": {"127.0.0.2", "127.0.0.1"}},
			Dial: refuseFirst(t, "127.0.0.2")}, false, ""},
		{"localhost", oldAgent, "localhost", ForwardingOptions{}, false, ""},
		{"localhost, new agent", newAgent, "localhost", ForwardingOptions{}, false, EndForbidden},
		{"mapped loopback", oldAgent, "::ffff:127.0.0.1", ForwardingOptions{}, false, ""},
		{"mapped loopback, new agent", newAgent, "::ffff:127.0.0.1", ForwardingOptions{}, false, EndForbidden},
		{"metadata", oldAgent, "169.254.169.254", ForwardingOptions{}, false, EndForbidden},
		{"metadata, new agent", newAgent, "169.254.169.254", ForwardingOptions{}, false, EndForbidden},
		{"one address denied", oldAgent, "svc.internal", ForwardingOptions{Hosts: map[string][]string{"svc.internal": {"127.0.0.1", "fd00:ec2::254"}}}, false, EndForbidden},
		{"ECS credentials, new agent", newAgent, "169.254.170.2", ForwardingOptions{}, false, EndForbidden},
		{"deny list emptied", oldAgent, "169.254.169.254", ForwardingOptions{DeniedAddresses: []string{}}, true, ""},
		{"deny list replaced", oldAgent, "db.internal", ForwardingOptions{DeniedAddresses: []string{"127.0.0.1"},
			Hosts: map[string][]string{"db.internal": {"127.0.0.1"}}}, false, EndForbidden},
		{"no such host", oldAgent, "nosuch.internal", ForwardingOptions{}, false, EndLookupFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{AgentVersion: tc.agent, Forwarding: tc.fwd}
			if tc.redirect {
				opts.TargetAddr = echo
			}
			s := startServer(t, opts)
			ss := startDocSession(t, s, docPortForwardingHost, map[string][]string{"host": {tc.host}, "portNumber": {port}})
			c := dialRaw(t, ss, ss.firstToken)
			c.handshake()
			if tc.wantEnd != "" {
				p := c.expectClosedFrame(5 * time.Second)
				want := protocol.ForbiddenAddressPrefix + tc.host + " is forbidden."
				if tc.wantEnd == EndLookupFailed {
					want = "lookup " + tc.host + ": no such host"
				}
				if p.Output != want {
					t.Errorf("Output %q, want %q", p.Output, want)
				}
				checkEnded(t, s, tc.wantEnd, 1)
				return
			}
			waitReady(t, ss)
			r := newRawMux(t, c)
			r.send(muxCmdSYN, 3, nil)
			r.send(muxCmdPSH, 3, []byte("ping"))
			if ev := r.next(10 * time.Second); ev.flag != 0 || ev.cmd != muxCmdPSH || string(ev.data) != "ping" {
				t.Fatalf("got %+v, want the echo", ev)
			}
		})
	}
}

// refuseFirst returns a Dial that refuses addresses on host and dials the
// others, counting the refusals into a check at cleanup.
func refuseFirst(t *testing.T, host string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var refused atomic.Int64
	t.Cleanup(func() {
		if refused.Load() == 0 {
			t.Errorf("no dial to %s: the agent did not try the addresses in order", host)
		}
	})
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h, _, _ := net.SplitHostPort(addr); h == host {
			refused.Add(1)
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
		}
		return dialer.DialContext(ctx, network, addr)
	}
}

// TestDeniedAddress pins the deny list by agent version (§7.5, §15.4).
func TestDeniedAddress(t *testing.T) {
	const (
		oldAgent = "3.3.1142.0"
		newAgent = "3.3.4851.0"
	)
	vpc := &ForwardingOptions{VPCCIDRs: []string{"10.0.0.0/16", "2600:1f18:0:100::/56"}}
	cases := []struct {
		addr, agent string
		opts        *ForwardingOptions
		want        bool
	}{
		{"169.254.169.254", oldAgent, nil, true},
		{"::ffff:169.254.169.254", oldAgent, nil, true},
		{"FD00:EC2::254", oldAgent, nil, true},
		{"fd00:ec2::240", oldAgent, nil, true},
		{"169.254.169.123", oldAgent, nil, true},
		{"169.254.169.252", oldAgent, nil, false},
		{"10.0.0.5", oldAgent, nil, false},
		{"127.0.0.1", oldAgent, nil, false},
		{"::1", oldAgent, nil, false},
		{"169.254.170.2", oldAgent, nil, false},
		{"fe80::1%lo", oldAgent, nil, false},

		{"127.0.0.1", newAgent, nil, true},
		{"127.1.2.3", newAgent, nil, true},
		{"::1", newAgent, nil, true},
		{"::ffff:127.0.0.1", newAgent, nil, true},
		{"::127.0.0.1", newAgent, nil, true},
		{"::ffff:169.254.169.254", newAgent, nil, true},
		{"169.254.170.2", newAgent, nil, true},
		{"169.254.170.23", newAgent, nil, true},
		{"fd00:ec2::23", newAgent, nil, true},
		{"fd00:ec2::254%eth0", newAgent, nil, true},
		{"10.0.0.5", newAgent, nil, false},
		{"::", newAgent, nil, false},
		{"not an address", newAgent, nil, false},

		{"169.254.169.254", oldAgent, &ForwardingOptions{DeniedAddresses: []string{}}, false},
		{"127.0.0.1", newAgent, &ForwardingOptions{DeniedAddresses: []string{}}, true},
		{"192.0.2.7", oldAgent, &ForwardingOptions{DeniedAddresses: []string{"192.0.2.7"}}, true},

		{"10.0.0.0", oldAgent, vpc, true},
		{"10.0.0.2", oldAgent, vpc, true},
		{"10.0.0.3", oldAgent, vpc, true},
		{"10.0.0.4", oldAgent, vpc, false},
		{"10.0.255.255", oldAgent, vpc, true},
		{"10.1.0.0", oldAgent, vpc, false},
		{"2600:1f18:0:100::2", oldAgent, vpc, true},
		{"2600:1f18:0:1ff:ffff:ffff:ffff:ffff", oldAgent, vpc, true},
		{"2600:1f18:0:100::4", oldAgent, vpc, false},
		{"10.0.0.2", "3.1.1300.0", vpc, false},
	}
	for _, tc := range cases {
		opts := tc.opts
		if opts == nil {
			opts = &ForwardingOptions{}
		}
		if got := deniedAddress(tc.addr, tc.agent, opts); got != tc.want {
			t.Errorf("deniedAddress(%q, %s, %+v) = %v, want %v", tc.addr, tc.agent, opts, got, tc.want)
		}
	}
}

func TestResolveHost(t *testing.T) {
	hosts := map[string][]string{"db.internal": {"10.0.1.5", "10.0.2.5"}}
	for _, tc := range []struct {
		host string
		want []string
	}{
		{"db.internal", []string{"10.0.1.5", "10.0.2.5"}},
		{"DB.INTERNAL", []string{"10.0.1.5", "10.0.2.5"}},
		{"192.0.2.1", []string{"192.0.2.1"}},
		{"fd00::1", []string{"fd00::1"}},
		{"localhost", []string{"127.0.0.1", "::1"}},
	} {
		got, err := resolveHost(hosts, tc.host)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("resolveHost(%q) = %v, %v; want %v", tc.host, got, err, tc.want)
		}
	}
	_, err := resolveHost(hosts, "other.internal")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound || err.Error() != "lookup other.internal: no such host" {
		t.Errorf("unknown name: %v", err)
	}
}

// TestFrameScanner: frames are counted alike however the stream is cut.
func TestFrameScanner(t *testing.T) {
	var stream []byte
	want := map[byte]int{}
	r := rand.New(rand.NewSource(1))
	for i := range 200 {
		cmd := byte(r.Intn(4))
		var data []byte
		if cmd == muxCmdPSH {
			data = muxRandom(int64(i), r.Intn(3000))
		}
		stream = append(stream, muxFrame(cmd, uint32(1+2*r.Intn(10)), data)...)
		want[cmd]++
	}
	for _, chunk := range []int{1, 7, 8, 9, 1024, len(stream)} {
		var f frameScanner
		got := map[byte]int{}
		for p := stream; len(p) > 0; {
			k := min(chunk, len(p))
			f.scan(p[:k], func(cmd byte) { got[cmd]++ })
			p = p[k:]
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("chunks of %d: counted %v, want %v", chunk, got, want)
		}
	}
}
