package testenv

// Tests of ServeTCP (tcp.go) and ClosedPort (closedport_*.go): the handler
// runs, cleanup closes open connections and waits for the handler, the
// listener does not outlive its test, and a closed port refuses and cannot
// be taken by a listener while the test runs. The levels above use them for the
// targets that echo or greet.

import (
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
)

func TestServeTCP(t *testing.T) {
	ended := make(chan struct{})
	var addr string
	t.Run("serve", func(t *testing.T) {
		addr = ServeTCP(t, func(c net.Conn) {
			defer close(ended)
			io.Copy(c, c)
		})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("ping"))
		got := make([]byte, 4)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
			t.Fatalf("echo %q, %v", got, err)
		}
		// The connection stays open: cleanup must close it and wait for
		// the handler.
	})
	select {
	case <-ended:
	default:
		t.Fatal("cleanup returned before the handler ended")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the listener outlived its test")
	}
	if c, err := net.Dial("tcp", ClosedPort(t)); err == nil {
		c.Close()
		t.Fatal("ClosedPort accepted a connection")
	}
}

// TestClosedPortHeld: nobody else gets a closed port while the test runs.
// In CI a forwarder listening on port 0 was once given the port a test had
// just been handed as closed, and the agent's dials looped back into it.
func TestClosedPortHeld(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("ClosedPort holds its port on Unix only")
	}
	addr := ClosedPort(t)
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("a listener took the closed port %s", addr)
	}
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("%s accepted a connection", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v; want connection refused", addr, err)
		}
	}
}
