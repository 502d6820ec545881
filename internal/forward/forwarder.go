package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/xtaci/smux"

	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// Forwarder serves one Spec: it accepts TCP connections on Listener and
// carries each as one smux stream of a Tunnel. The tunnel is started at once
// (so that a wrong target, document or permission shows before anyone
// connects) and started again, on the next connection, after it ended in a
// way a new session mends: Session Manager's idle timeout, a connection
// lost for longer than the resume budget, a session ended elsewhere.
// Failures a new session would meet again end Serve.
type Forwarder struct {
	Spec     Spec
	Listener net.Listener
	// Start starts a new tunnel for the spec.
	Start func(ctx context.Context) (*Tunnel, error)
	// Log receives the lines a user reads: ready, session ended,
	// connection failed. Debug lines with -v.
	Log *slog.Logger
	// OnTunnel, if set, is called with every tunnel started.
	OnTunnel func(*Tunnel)
	// Fatal reports a failure to start a tunnel that no later attempt
	// would mend (denied, a forbidden destination): Serve ends with it.
	// Other failures refuse the connection at hand, and further ones until
	// a backoff has passed. nil: every failure is of the other kind.
	Fatal func(error) bool
	// Idle, if positive, ends Serve (with nil) once no connection has been
	// carried for that long: a shared session (ssm-proxy --share) lasts as
	// long as it is used and Idle more.
	Idle time.Duration

	mu         sync.Mutex
	busy       int         // connections accepted and not yet done
	idle       *time.Timer // runs out after Idle with busy at 0
	idled      bool        // it has: accept no more
	tunnel     *Tunnel
	retryAt    time.Time     // no new tunnel is tried before (after a failure)
	retryDelay time.Duration // the current backoff
	conns      sync.WaitGroup
}

// Restartable reports whether a tunnel that ended with err is worth
// starting again when the next connection comes.
func Restartable(err error) bool {
	var re *proxy.ResumeError
	return err == nil || errors.Is(err, proxy.ErrIdleTimeout) || errors.Is(err, proxy.ErrSessionEnded) || errors.As(err, &re)
}

// Serve runs until ctx is done (nil) or a tunnel fails in a way a new
// session would not mend (that error). Either way it closes the listener,
// every connection and the tunnel — the session is terminated — before it
// returns.
func (f *Forwarder) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if _, err := f.startTunnel(ctx, cancel); err != nil {
		f.Listener.Close()
		return err
	}
	go func() {
		<-ctx.Done()
		f.Listener.Close()
	}()
	if f.Idle > 0 {
		f.mu.Lock()
		f.idle = time.AfterFunc(f.Idle, func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.busy == 0 {
				f.idled = true
				f.Log.Debug("no connection for "+f.Idle.String()+"; ending", "listen", f.Spec.Listen())
				cancel(nil)
			}
		})
		f.mu.Unlock()
	}
	for {
		c, err := accept(ctx, f.Listener, f.Log)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				cancel(fmt.Errorf("accepting connections on %s: %w", f.Spec.Listen(), err))
			}
			break
		}
		n, ok := f.enter()
		if !ok {
			c.Close() // the idle timer has just run out
			break
		}
		st, err := f.open(ctx, cancel)
		if err != nil {
			c.Close()
			f.leave()
			if f.Fatal != nil && f.Fatal(err) {
				cancel(err)
				break
			}
			if !errors.Is(err, errBackingOff) {
				f.Log.Warn("connection refused", "listen", f.Spec.Listen(), "err", err)
			}
			continue
		}
		f.conns.Add(1)
		go func() {
			defer f.leave()
			f.carry(ctx, st, c, n)
		}()
	}
	cancel(nil)
	f.Listener.Close() // now, not when the goroutine above gets to it
	f.mu.Lock()
	if f.idle != nil {
		f.idle.Stop()
	}
	t := f.tunnel
	f.tunnel = nil
	f.mu.Unlock()
	if t != nil {
		t.Close()
	}
	f.conns.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// accept returns ln's next connection. A failure the system may mend (out
// of file descriptors or buffers, a connection aborted before it was
// taken) is retried, 5 ms doubling to 1 s, as net/http's server does; any
// other one, or ctx done, ends it.
func accept(ctx context.Context, ln net.Listener, log *slog.Logger) (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err == nil || ctx.Err() != nil || !acceptRetryable(err) {
			return c, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		log.Warn("accept failed; retrying", "listen", ln.Addr().String(), "in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func acceptRetryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// enter counts a connection accepted and returns how many there are now;
// false if the idle timer ran out first.
func (f *Forwarder) enter() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idled {
		return 0, false
	}
	f.busy++
	if f.idle != nil {
		f.idle.Stop()
	}
	return f.busy, true
}

// leave counts a connection done, and starts the idle timer when it was the
// last.
func (f *Forwarder) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.busy--
	if f.busy == 0 && f.idle != nil && !f.idled {
		f.idle.Reset(f.Idle)
	}
}

// errBackingOff refuses a connection while a failed start backs off.
var errBackingOff = errors.New("backing off after a failed start")

// Backoff bounds between failed starts of a replacement tunnel.
const (
	minRetry = time.Second
	maxRetry = 30 * time.Second
)

// current returns the running tunnel, starting a new one if the last has
// ended — not sooner than the backoff of a failed start allows, so that a
// client that keeps connecting cannot make a StartSession storm.
func (f *Forwarder) current(ctx context.Context, cancel context.CancelCauseFunc) (*Tunnel, error) {
	f.mu.Lock()
	t, retryAt := f.tunnel, f.retryAt
	f.mu.Unlock()
	if t != nil {
		select {
		case <-t.Done():
		default:
			return t, nil
		}
	}
	if time.Now().Before(retryAt) {
		return nil, errBackingOff
	}
	t, err := f.startTunnel(ctx, cancel)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.retryDelay = min(max(2*f.retryDelay, minRetry), maxRetry)
		f.retryAt = time.Now().Add(f.retryDelay/2 + rand.N(f.retryDelay))
		return nil, err
	}
	f.retryDelay, f.retryAt = 0, time.Time{}
	return t, nil
}

// endGrace bounds the wait for a session that refused a stream to be known
// as ended.
const endGrace = 5 * time.Second

// open opens a stream for a new connection on the current tunnel. A session
// that has just ended refuses streams a moment before its end is known
// (Done not yet closed); then, once it is, the stream is opened on the
// session that replaces it, so a connection arriving in that moment is
// carried rather than refused.
func (f *Forwarder) open(ctx context.Context, cancel context.CancelCauseFunc) (*smux.Stream, error) {
	for retried := false; ; retried = true {
		t, err := f.current(ctx, cancel)
		if err != nil {
			return nil, fmt.Errorf("could not start a session: %w", err)
		}
		st, err := t.Open()
		if err == nil {
			return st, nil
		}
		err = fmt.Errorf("the session cannot open a stream: %w", err)
		if retried {
			return nil, err
		}
		timer := time.NewTimer(endGrace)
		select {
		case <-t.Done():
			timer.Stop()
		case <-ctx.Done():
			timer.Stop()
			return nil, err
		case <-timer.C:
			return nil, err
		}
	}
}

// startTunnel starts a tunnel and watches it: when it ends with an error
// no new session would mend, Serve ends with that error.
func (f *Forwarder) startTunnel(ctx context.Context, cancel context.CancelCauseFunc) (*Tunnel, error) {
	t, err := f.Start(ctx)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.tunnel = t
	f.mu.Unlock()
	if f.OnTunnel != nil {
		f.OnTunnel(t)
	}
	go func() {
		<-t.Done()
		err := t.Err()
		if ctx.Err() != nil {
			return // Serve is ending: its own doing
		}
		if !Restartable(err) {
			cancel(err)
			return
		}
		why := "it was ended"
		if err != nil {
			why = err.Error()
		}
		f.Log.Warn("session ended; the next connection starts a new one", "listen", f.Spec.Listen(), "session", t.ID(), "why", why)
	}()
	return t, nil
}

// carry copies between the local connection c and its stream st, both ways,
// until both directions are done. A local half-close is passed on (FIN);
// the agent closes its end of the destination then, so the stream ends.
// n is the number of connections with it.
func (f *Forwarder) carry(ctx context.Context, st *smux.Stream, c net.Conn, n int) {
	defer f.conns.Done()
	f.Log.Debug("connection", "from", c.RemoteAddr().String(), "stream", st.ID(), "active", n)
	stop := context.AfterFunc(ctx, func() {
		c.Close()
		st.Close()
	})
	defer stop()
	up := make(chan struct{})
	go func() {
		io.Copy(st, c)
		st.CloseWrite()
		close(up)
	}()
	io.Copy(c, st)
	c.Close()
	st.Close()
	<-up
	f.Log.Debug("connection closed", "stream", st.ID())
}

var _ io.ReadWriteCloser = (*smux.Stream)(nil)
