// Package wan is a wide-area link in a process: a TCP proxy on 127.0.0.1
// that charges what a distant network charges, for the benchmarks, because
// the kernel here has no netem.
//
// A Link accepts connections and relays each to its upstream address with
// a one-way delay of RTT/2 in each direction. The TCP handshake is charged
// too: the upstream connection is opened 1.5 RTT after the client's
// connect (SYN, SYN-ACK, ACK), and nothing the client sends reaches the
// upstream before it, so a client's first byte arrives 1.5 RTT after its
// connect, as on a real path, and a server that speaks first (sshd) is
// heard 2 RTT after the connect. On top of that a TLS handshake costs its
// own round trips and every request/response one RTT, because every byte
// pays the delay. Bandwidth is not limited; at most MaxInFlight bytes are
// queued per direction, so that a fast sender is held back rather than
// buffered without bound.
//
// Every connection is logged (Log): when it was accepted, and its flights,
// the runs of bytes in one direction between two changes of direction, so
// that a benchmark can say how many round trips each client makes and
// where they go.
package wan

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// MaxInFlight bounds the bytes queued in one direction of a connection.
const MaxInFlight = 4 << 20

// chunkSize is the largest read relayed as one piece.
const chunkSize = 32 << 10

// Direction is which way bytes travel.
type Direction int

// The two directions.
const (
	Up   Direction = iota // client → upstream
	Down                  // upstream → client
)

func (d Direction) String() string {
	if d == Up {
		return "up"
	}
	return "down"
}

// Flight is a run of bytes in one direction: it begins with a read in
// Dir after bytes last went the other way (or with the first read).
type Flight struct {
	Dir Direction
	// Sent is when its first byte was read from the sender, Delivered
	// when that byte was written to the receiver (Sent + the delay, later
	// in the first flight up while the handshake is charged).
	Sent, Delivered time.Time
	Bytes           int64
}

// Conn is the log of one connection.
type Conn struct {
	Accepted time.Time // the client's connect
	Dialled  time.Time // the upstream connection opened (Accepted + 1.5 RTT)
	Closed   time.Time // both directions done (zero while open)
	Flights  []Flight
	Err      string // why the upstream could not be reached, if it could not
}

// Turns is the number of flights up: how many times the client sent
// something, each after having heard from the upstream (but the first). For
// a request/response protocol it is the number of round trips the client
// waited for, besides the TCP handshake.
func (c Conn) Turns() int {
	n := 0
	for _, f := range c.Flights {
		if f.Dir == Up {
			n++
		}
	}
	return n
}

// TurnsBefore is Turns counting only flights sent before t.
func (c Conn) TurnsBefore(t time.Time) int {
	n := 0
	for _, f := range c.Flights {
		if f.Dir == Up && f.Sent.Before(t) {
			n++
		}
	}
	return n
}

// LastDeliveredBefore is when the last flight down delivered before t
// began to arrive (zero if none).
func (c Conn) LastDeliveredBefore(t time.Time) time.Time {
	var last time.Time
	for _, f := range c.Flights {
		if f.Dir == Down && f.Delivered.Before(t) && f.Delivered.After(last) {
			last = f.Delivered
		}
	}
	return last
}

// Link is a listening latency link. Its methods are safe for concurrent
// use.
type Link struct {
	Name     string
	upstream string
	ln       net.Listener
	dial     func(network, addr string) (net.Conn, error)

	mu    sync.Mutex
	rtt   time.Duration
	conns []*connLog
	open  map[*relay]bool
	wg    sync.WaitGroup
}

type connLog struct {
	mu sync.Mutex
	c  Conn
}

// Listen starts a link named name on 127.0.0.1 at a free port that relays
// to upstream with round-trip time rtt (0: no delay at all, the handshake
// included).
func Listen(name, upstream string, rtt time.Duration) (*Link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &Link{Name: name, upstream: upstream, ln: ln, rtt: rtt, open: map[*relay]bool{}, dial: net.Dial}
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// Addr is the address clients connect to.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// SetUpstream changes where connections accepted from now on are relayed
// to: a link can be listening before the server behind it (whose address
// it is to advertise) has started.
func (l *Link) SetUpstream(addr string) {
	l.mu.Lock()
	l.upstream = addr
	l.mu.Unlock()
}

// RTT is the round-trip time charged to new connections.
func (l *Link) RTT() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rtt
}

// SetRTT changes the round-trip time for connections accepted from now on.
func (l *Link) SetRTT(rtt time.Duration) {
	l.mu.Lock()
	l.rtt = rtt
	l.mu.Unlock()
}

// Log returns a copy of the log of every connection accepted so far, in
// the order accepted.
func (l *Link) Log() []Conn {
	l.mu.Lock()
	logs := append([]*connLog(nil), l.conns...)
	l.mu.Unlock()
	out := make([]Conn, len(logs))
	for i, cl := range logs {
		cl.mu.Lock()
		out[i] = cl.c
		out[i].Flights = append([]Flight(nil), cl.c.Flights...)
		cl.mu.Unlock()
	}
	return out
}

// Since returns the log of the connections accepted at or after t.
func (l *Link) Since(t time.Time) []Conn {
	var out []Conn
	for _, c := range l.Log() {
		if !c.Accepted.Before(t) {
			out = append(out, c)
		}
	}
	return out
}

// Reset forgets the log (open connections are still relayed).
func (l *Link) Reset() {
	l.mu.Lock()
	l.conns = nil
	l.mu.Unlock()
}

// Close stops listening, closes every open connection and waits for the
// relays to end.
func (l *Link) Close() error {
	err := l.ln.Close()
	l.mu.Lock()
	for r := range l.open {
		r.close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

func (l *Link) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		l.mu.Lock()
		cl := &connLog{c: Conn{Accepted: time.Now()}}
		l.conns = append(l.conns, cl)
		r := &relay{link: l, client: c, log: cl, upstream: l.upstream, oneWay: l.rtt / 2, done: make(chan struct{})}
		r.ready = cl.c.Accepted.Add(3 * r.oneWay)
		l.open[r] = true
		l.wg.Add(1)
		l.mu.Unlock()
		go r.run()
	}
}

// relay is one connection through the link.
type relay struct {
	link     *Link
	client   net.Conn
	log      *connLog
	upstream string // where to relay
	oneWay   time.Duration
	ready    time.Time // when the upstream connection is opened
	done     chan struct{}
	mu       sync.Mutex
	up       net.Conn // the upstream connection, once opened
	closed   bool
}

func (r *relay) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	close(r.done)
	r.client.Close()
	if r.up != nil {
		r.up.Close()
	}
}

func (r *relay) run() {
	defer r.link.wg.Done()
	// The client's bytes are read (and queued) from the start: they wait
	// in the queue for the upstream connection, as a real client's wait in
	// its socket for the handshake.
	up := make(chan chunk, MaxInFlight/chunkSize)
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		r.read(r.client, Up, up)
	}()
	defer func() {
		r.close()
		readers.Wait()
		r.log.mu.Lock()
		r.log.c.Closed = time.Now()
		r.log.mu.Unlock()
		r.link.mu.Lock()
		delete(r.link.open, r)
		r.link.mu.Unlock()
	}()
	if !r.wait(r.ready) {
		return
	}
	u, err := r.link.dial("tcp", r.upstream)
	r.log.mu.Lock()
	r.log.c.Dialled = time.Now()
	if err != nil {
		r.log.c.Err = err.Error()
	}
	r.log.mu.Unlock()
	if err != nil {
		return
	}
	if tc, ok := u.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		u.Close()
		return
	}
	r.up = u
	r.mu.Unlock()

	down := make(chan chunk, MaxInFlight/chunkSize)
	readers.Add(1)
	go func() {
		defer readers.Done()
		r.read(u, Down, down)
	}()
	var writers sync.WaitGroup
	writers.Add(2)
	go func() {
		defer writers.Done()
		r.write(u, up)
	}()
	go func() {
		defer writers.Done()
		r.write(r.client, down)
	}()
	writers.Wait()
}

// chunk is a piece of one direction's bytes, due at its receiver at due;
// a nil data with eof set is the sender's EOF, err its read error.
type chunk struct {
	data []byte
	due  time.Time
	eof  bool
	err  error
}

// read reads from src and queues each piece with the time it is due,
// recording flights, until EOF or an error.
func (r *relay) read(src net.Conn, dir Direction, q chan<- chunk) {
	defer close(q)
	for {
		buf := make([]byte, chunkSize)
		n, err := src.Read(buf)
		now := time.Now()
		due := now.Add(r.oneWay)
		if dir == Up && due.Before(r.ready) {
			due = r.ready
		}
		if n > 0 {
			r.record(dir, now, due, int64(n))
			select {
			case q <- chunk{data: buf[:n], due: due}:
			case <-r.done:
				return
			}
		}
		if err != nil {
			c := chunk{due: due, eof: true}
			if !errors.Is(err, io.EOF) {
				c.err = err
			}
			select {
			case q <- c:
			case <-r.done:
			}
			return
		}
	}
}

// record adds n bytes read at sent in dir to the log.
func (r *relay) record(dir Direction, sent, due time.Time, n int64) {
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	fl := r.log.c.Flights
	if len(fl) == 0 || fl[len(fl)-1].Dir != dir {
		r.log.c.Flights = append(fl, Flight{Dir: dir, Sent: sent, Delivered: due, Bytes: n})
		return
	}
	fl[len(fl)-1].Bytes += n
}

// write delivers q's pieces to dst at their due times; the sender's EOF
// becomes a half-close, an error closes the whole connection.
func (r *relay) write(dst net.Conn, q <-chan chunk) {
	for c := range q {
		if !r.wait(c.due) {
			return
		}
		if c.eof {
			if c.err != nil {
				r.close()
				return
			}
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			r.close()
			return
		}
	}
}

// wait sleeps until t, or returns false once the relay is closed.
func (r *relay) wait(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-r.done:
			return false
		default:
			return true
		}
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-r.done:
		return false
	}
}
