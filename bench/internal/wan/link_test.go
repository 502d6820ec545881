package wan

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer answers every message of a connection whole: it reads a
// 4-byte length and that many bytes, then writes them back, so that
// nothing it sends overlaps what the client is still sending. At EOF it
// half-closes.
func echoServer(t *testing.T) string {
	t.Helper()
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
			go func() {
				defer c.Close()
				for {
					var hdr [4]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						break
					}
					msg := make([]byte, binary.BigEndian.Uint32(hdr[:]))
					if _, err := io.ReadFull(c, msg); err != nil {
						break
					}
					if _, err := c.Write(msg); err != nil {
						return
					}
				}
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

func listen(t *testing.T, upstream string, rtt time.Duration) *Link {
	t.Helper()
	l, err := Listen("test", upstream, rtt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// exchange sends msg as one message, reads its echo and returns it.
func exchange(t *testing.T, c net.Conn, msg []byte) []byte {
	t.Helper()
	framed := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	if _, err := c.Write(append(framed, msg...)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestLinkRelaysAndLogs: bytes cross intact both ways, a half-close is
// passed on, and the log has one connection with the handshake and the
// one-way delay charged and one flight per direction change.
func TestLinkRelaysAndLogs(t *testing.T) {
	const rtt = 20 * time.Millisecond
	l := listen(t, echoServer(t), rtt)
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	small := []byte("hello")
	if got := exchange(t, c, small); !bytes.Equal(got, small) {
		t.Fatalf("echo %q, want %q", got, small)
	}
	big := make([]byte, 1<<20) // more than one chunk
	rand.Read(big)
	if got := exchange(t, c, big); !bytes.Equal(got, big) {
		t.Fatal("1 MiB echo differs")
	}
	c.(*net.TCPConn).CloseWrite()
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after half-close: read %d, %v; want EOF", n, err)
	}

	log := l.Log()
	if len(log) != 1 {
		t.Fatalf("log has %d connections, want 1", len(log))
	}
	lc := log[0]
	if lc.Err != "" {
		t.Fatalf("upstream error %q", lc.Err)
	}
	if d := lc.Dialled.Sub(lc.Accepted); d < 3*rtt/2 {
		t.Errorf("upstream opened %v after the connect, want ≥ 1.5 RTT (%v)", d, 3*rtt/2)
	}
	if lc.Turns() != 2 {
		t.Errorf("turns %d, want 2 (flights %+v)", lc.Turns(), lc.Flights)
	}
	var up, down int64
	for i, f := range lc.Flights {
		if i > 0 && f.Dir == lc.Flights[i-1].Dir {
			t.Errorf("flights %d and %d go the same way", i-1, i)
		}
		if f.Dir == Up {
			up += f.Bytes
			if f.Delivered.Before(lc.Accepted.Add(3 * rtt / 2)) {
				t.Errorf("flight %d due before the handshake's 1.5 RTT", i)
			}
		} else {
			down += f.Bytes
			if d := f.Delivered.Sub(f.Sent); d != rtt/2 {
				t.Errorf("flight %d due %v after it was sent, want %v", i, d, rtt/2)
			}
		}
	}
	if want := int64(len(small) + len(big)); up != want+8 || down != want {
		t.Errorf("logged %d bytes up, %d down; want %d and %d", up, down, want+8, want)
	}
	if n := len(l.Since(time.Now().Add(time.Hour))); n != 0 {
		t.Errorf("Since(future) has %d connections", n)
	}
}

// TestLinkUpstreamDown: a client of a link whose upstream refuses is
// closed, and the log says why.
func TestLinkUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l := listen(t, addr, 0)
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read succeeded through a link whose upstream is down")
	}
	log := l.Log()
	if len(log) != 1 || log[0].Err == "" {
		t.Fatalf("log %+v, want one connection with the dial error", log)
	}
}

// TestLinkCloseEndsConnections: Close ends open connections and returns.
func TestLinkCloseEndsConnections(t *testing.T) {
	l, err := Listen("test", echoServer(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	exchange(t, c, []byte("x"))
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}
	if log := l.Log(); len(log) != 1 || log[0].Closed.IsZero() {
		t.Fatalf("log %+v, want one closed connection", log)
	}
}
