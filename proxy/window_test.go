package proxy

// Unit tests of pieces of the send side: the window's removal by sequence
// number (window.go), the RTO estimator against §5.5 with its floor and cap,
// and Options defaults over a caller's dialer (session.go). How they behave
// in a session (a full window, fast retransmit, timeouts) is
// gateway_test.go's.

import (
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestWindowRemove(t *testing.T) {
	var w window
	for i := int64(0); i < 5; i++ {
		w.push(&outMsg{seq: i})
	}
	for _, c := range []struct {
		seq  int64
		want bool
	}{{2, true}, {2, false}, {0, true}, {9, false}, {4, true}, {1, true}, {3, true}, {3, false}} {
		if got := w.remove(c.seq) != nil; got != c.want {
			t.Fatalf("remove(%d) = %v, want %v", c.seq, got, c.want)
		}
	}
	if w.len() != 0 {
		t.Fatalf("len = %d", w.len())
	}
}

// TestRTO follows §5.5 from its initial values; our floor (minRTO) and the
// 1 s cap bound it.
func TestRTO(t *testing.T) {
	e := newRTTEstimator()
	if got := e.rto(); got != 110*time.Millisecond {
		t.Fatalf("initial rto = %s, want SRTT 100ms + 10ms granularity", got)
	}
	e.sample(300 * time.Millisecond)
	// RTTVAR = 3/4·0 + 1/4·200ms = 50ms; SRTT = 7/8·100 + 1/8·300 = 125ms.
	if e.rttvar != 50*time.Millisecond || e.srtt != 125*time.Millisecond {
		t.Fatalf("srtt %s rttvar %s", e.srtt, e.rttvar)
	}
	if got := e.rto(); got != 325*time.Millisecond {
		t.Fatalf("rto = %s, want 325ms", got)
	}
	for i := 0; i < 50; i++ {
		e.sample(time.Millisecond)
	}
	if got := e.rto(); got != minRTO {
		t.Fatalf("rto after fast samples = %s, want floor %s", got, minRTO)
	}
	for i := 0; i < 50; i++ {
		e.sample(5 * time.Second)
	}
	if got := e.rto(); got != maxRTO {
		t.Fatalf("rto after slow samples = %s, want cap %s", got, maxRTO)
	}
}

// TestOptionDefaults: a caller's dialer keeps its network settings and gets
// the session's timing and buffers where it leaves them zero.
func TestOptionDefaults(t *testing.T) {
	var o Options
	o.setDefaults()
	if o.Dialer == nil || o.Dialer.Proxy == nil {
		t.Fatal("default dialer does not honour the proxy environment")
	}
	mine := &websocket.Dialer{HandshakeTimeout: time.Second, NetDialContext: (&net.Dialer{}).DialContext}
	o = Options{Dialer: mine}
	o.setDefaults()
	d := o.Dialer
	if d == mine {
		t.Fatal("setDefaults changed the caller's dialer in place")
	}
	if d.HandshakeTimeout != time.Second || d.NetDialContext == nil {
		t.Errorf("caller's settings lost: %+v", d)
	}
	if d.ReadBufferSize != 64<<10 || d.WriteBufferSize != 64<<10 || mine.ReadBufferSize != 0 {
		t.Errorf("buffers: got %d/%d (caller's %d), want 64 KiB each", d.ReadBufferSize, d.WriteBufferSize, mine.ReadBufferSize)
	}
	o = Options{Dialer: &websocket.Dialer{}}
	o.setDefaults()
	if o.Dialer.HandshakeTimeout != 45*time.Second {
		t.Errorf("handshake timeout %v, want 45s", o.Dialer.HandshakeTimeout)
	}
}
