package testenv

// Tests of ServeTCP and ClosedPort (tcp.go): the handler runs, cleanup closes
// open connections and waits for the handler, the listener does not outlive
// its test, and a closed port refuses. The levels above use them for the
// targets that echo or greet.

import (
	"io"
	"net"
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
