package forward

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/xtaci/smux"

	"github.com/ssm-proxy/ssm-proxy/protocol"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// Tunnel is one running port-forwarding session: a proxy.Session in
// ModeMux whose byte stream carries an smux client session (§7.4). Streams
// opened on it reach the destination through the agent, which dials once
// per stream. It survives lost websockets as the session does: the smux
// byte stream is carried intact across resumes.
//
// A Tunnel is safe for concurrent use.
type Tunnel struct {
	sess   *proxy.Session
	mux    *smux.Session
	conn   *pipeConn
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // Run's result, set before done is closed
}

// StartTunnel runs sess (started with SessionOptions, whose channel is
// handshake) and waits for its handshake to complete — the
// session's own Options.HandshakeTimeout bounds it — then starts the smux
// client with the keep-alive the agent expects. handshake receives the
// agent version of EventHandshakeComplete.
func StartTunnel(ctx context.Context, sess *proxy.Session, handshake <-chan string) (*Tunnel, error) {
	ctx, cancel := context.WithCancel(ctx)
	toAgentR, toAgentW := io.Pipe()
	fromAgentR, fromAgentW := io.Pipe()
	t := &Tunnel{
		sess: sess,
		conn: &pipeConn{r: fromAgentR, w: toAgentW, closeFn: func() {
			toAgentW.Close()
			fromAgentR.Close()
		}},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() {
		err := sess.Run(ctx, toAgentR, fromAgentW)
		if errors.Is(err, proxy.ErrStdoutClosed) && ctx.Err() != nil {
			err = ctx.Err() // Close closed the pipe: the tunnel's end, not lost output
		}
		t.err = err
		fromAgentW.CloseWithError(errSessionOver)
		toAgentR.Close()
		close(t.done)
	}()
	var agentVersion string
	select {
	case agentVersion = <-handshake:
	case <-t.done:
		if t.err == nil {
			t.err = errors.New("the session ended before its handshake completed")
		}
		cancel()
		return nil, t.err
	}
	mux, err := smux.Client(t.conn, MuxConfig(agentVersion))
	if err != nil {
		cancel()
		<-t.done
		return nil, err
	}
	t.mux = mux
	go func() {
		<-t.done
		mux.Close() // smux's send and shaper loops end only with Close
	}()
	return t, nil
}

// SessionOptions are the proxy.Options a tunnel's session is started
// with: ModeMux, and an OnEvent that hands the agent's version to
// StartTunnel through the returned channel and calls onDialFailure (if not
// nil) for each connection the agent could not make. It runs on the
// session's event loop and must not block.
func SessionOptions(onDialFailure func()) (proxy.Options, <-chan string) {
	handshake := make(chan string, 1)
	return proxy.Options{
		Mode: proxy.ModeMux,
		OnEvent: func(ev proxy.Event) {
			switch ev.Kind {
			case proxy.EventHandshakeComplete:
				select {
				case handshake <- ev.AgentVersion:
				default:
				}
			case proxy.EventConnectToPortError:
				if onDialFailure != nil {
					onDialFailure()
				}
			}
		},
	}, handshake
}

// errSessionOver is what smux reads once the session has ended.
var errSessionOver = errors.New("port-forwarding session ended")

// MuxConfig is the smux client configuration for an agent (§7.1, §7.4):
// protocol version 1, keep-alive exactly as the agent has its own — off
// for agents from 3.1.1575.0 with our ClientVersion, and for 3.1.1446.0 to
// 3.1.1475.x, which turned it off whatever the client; else on with smux's
// 10 s / 30 s. A mismatch is fatal: the side with keep-alive on closes an
// idle session after 30 s. (The official client follows its own threshold,
// agent above 3.1.1511.0, and so mismatches agents 3.1.1446.0–3.1.1475.x.)
func MuxConfig(agentVersion string) *smux.Config {
	c := smux.DefaultConfig()
	c.Version = 1
	c.KeepAliveDisabled = !protocol.AgentKeepAlive(agentVersion, proxy.DefaultClientVersion)
	return c
}

// Open opens a stream to the destination. The agent reports a failed dial
// with Flag ConnectToPortError and closes the stream, so a stream that
// opens may still read EOF at once.
func (t *Tunnel) Open() (*smux.Stream, error) { return t.mux.OpenStream() }

// Done is closed when the session has ended; Err then says why.
func (t *Tunnel) Done() <-chan struct{} { return t.done }

// Err is the session's result once Done is closed: nil for a normal end,
// context.Canceled after Close.
func (t *Tunnel) Err() error {
	select {
	case <-t.done:
		return t.err
	default:
		return nil
	}
}

// ID is the session id.
func (t *Tunnel) ID() string { return t.sess.ID() }

// Close ends the tunnel: its streams, the smux session, and the Session
// Manager session (terminated on the AWS side, bounded). It waits for the
// session to end.
func (t *Tunnel) Close() {
	t.cancel() // first: the pipes closing below must not read as lost output
	t.mux.Close()
	t.conn.Close()
	<-t.done
}

// pipeConn is the smux client's connection: reads come from the session's
// stdout, writes go to its stdin.
type pipeConn struct {
	r       io.Reader
	w       io.Writer
	once    sync.Once
	closeFn func()
}

func (c *pipeConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *pipeConn) Close() error {
	c.once.Do(c.closeFn)
	return nil
}

var _ io.ReadWriteCloser = (*pipeConn)(nil)
