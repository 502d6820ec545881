package proxy

import (
	"context"
	"net"
	"sync"
)

// batchMax bounds what batchConn holds before writing on its own.
const batchMax = 64 << 10

// batchConn is the TCP connection under a websocket (and under TLS, for
// wss). It holds writes until Flush, so that the event loop's burst of
// frames — an ack per received message, many 1 KiB data messages per stdin
// read — costs one system call instead of one each. Writes from any
// goroutine (gorilla's pongs, close frames) are held too; the loop flushes
// whenever it has nothing more to do at once and at least every tick.
type batchConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool // false until the TLS and websocket handshakes are done
	buf  []byte
}

// Hold starts holding writes until Flush.
func (c *batchConn) Hold() {
	c.mu.Lock()
	c.hold = true
	c.mu.Unlock()
}

var _ net.Conn = (*batchConn)(nil)

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.hold {
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= batchMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what is held.
func (c *batchConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *batchConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// batchingDial wraps inner so that its connections are batchConns, each
// handed to got.
func batchingDial(inner func(ctx context.Context, network, addr string) (net.Conn, error), got func(*batchConn)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if inner == nil {
		var nd net.Dialer
		inner = nd.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := inner(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		bc := &batchConn{Conn: c, buf: make([]byte, 0, batchMax)}
		got(bc)
		return bc, nil
	}
}
