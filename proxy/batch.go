package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

const (
	// batchMax is how much batchConn holds before it hands the bytes to its
	// writer without waiting for Flush.
	batchMax = 64 << 10
	// netWriteTimeout bounds one write(2) of the writer goroutine: a
	// connection that takes no bytes for this long is dead. Only the
	// writer waits for it; the event loop never does.
	netWriteTimeout = 15 * time.Second
)

// errConnClosed is the writer's error once the connection is closed.
var errConnClosed = errors.New("connection closed")

// batchConn is the TCP connection under a websocket (and under TLS, for
// wss). Until Hold it is a plain connection: the TLS and websocket
// handshakes write through it directly, bounded by the dialer's deadlines.
// After Hold no Write blocks: bytes are appended to a buffer, and one
// writer goroutine sends them to the network, so that a black-holed link
// can stall only that goroutine, never the event loop that owns the
// session. The loop's burst of frames (an ack per received message, many
// 1 KiB messages per stdin read) still costs one system call, because the
// writer takes everything held at once.
//
// Writes may come from any goroutine (the loop's frames, gorilla's pongs and
// close frames). The first network error is sticky: every later Write
// returns it, and onError is called with it once.
type batchConn struct {
	net.Conn
	onError func(error) // set before Hold; called from the writer goroutine

	mu      sync.Mutex
	hold    bool
	buf     []byte // held, not yet taken by the writer
	spare   []byte // the writer's last buffer, for reuse
	writing int    // bytes the writer is sending now
	err     error
	kick    chan struct{} // cap 1: buf has bytes for the writer
	idle    chan struct{} // cap 1: the writer finished a write
	closed  chan struct{}
	once    sync.Once
}

var _ net.Conn = (*batchConn)(nil)

func newBatchConn(c net.Conn) *batchConn {
	return &batchConn{
		Conn:   c,
		kick:   make(chan struct{}, 1),
		idle:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
}

// Hold starts holding writes and starts the writer goroutine.
func (c *batchConn) Hold() {
	c.mu.Lock()
	c.hold = true
	c.mu.Unlock()
	go c.writeLoop()
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.hold {
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= batchMax {
		signal(c.kick)
	}
	return len(p), nil
}

// Flush hands what is held to the writer. It never blocks.
func (c *batchConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) > 0 {
		signal(c.kick)
	}
	return c.err
}

// Backlog is the number of bytes written but not yet taken by the network.
func (c *batchConn) Backlog() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf) + c.writing
}

// Drain waits until everything held has been written, the connection
// failed, or ctx ends.
func (c *batchConn) Drain(ctx context.Context) error {
	for {
		c.mu.Lock()
		n, err := len(c.buf)+c.writing, c.err
		if n > 0 {
			signal(c.kick)
		}
		c.mu.Unlock()
		if n == 0 || err != nil {
			return err
		}
		select {
		case <-c.idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// SetDeadline and SetWriteDeadline pass through until Hold. After it the
// writer owns the write deadline: gorilla sets one for each control frame,
// and applied to the socket it would cut short a write in progress.
func (c *batchConn) SetDeadline(t time.Time) error {
	if c.held() {
		return c.Conn.SetReadDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

func (c *batchConn) SetWriteDeadline(t time.Time) error {
	if c.held() {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *batchConn) held() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hold
}

// Close closes the connection; a write in progress fails at once.
func (c *batchConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *batchConn) writeLoop() {
	for {
		select {
		case <-c.kick:
		case <-c.closed:
			c.fail(errConnClosed)
			return
		}
		c.mu.Lock()
		b := c.buf
		c.buf, c.spare = c.spare[:0], nil
		c.writing = len(b)
		c.mu.Unlock()
		if len(b) == 0 {
			continue
		}
		c.Conn.SetWriteDeadline(time.Now().Add(netWriteTimeout))
		_, err := c.Conn.Write(b)
		c.mu.Lock()
		c.writing = 0
		c.spare = b[:0]
		c.mu.Unlock()
		signal(c.idle)
		if err != nil {
			c.fail(err)
			return
		}
	}
}

// fail records the first error and reports it.
func (c *batchConn) fail(err error) {
	c.mu.Lock()
	first := c.err == nil
	if first {
		c.err = err
	}
	c.buf = nil
	c.mu.Unlock()
	signal(c.idle)
	if first && c.onError != nil {
		c.onError(err)
	}
}

// signal does a non-blocking send on a cap-1 channel.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
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
		bc := newBatchConn(c)
		got(bc)
		return bc, nil
	}
}
