package main

// Port forwarding without ssh: `ssm-proxy forward TARGET SPEC...` listens
// locally and carries each connection as one smux stream of a Session
// Manager port-forwarding session (docs/protocol.md §7.4), and
// `ssm-proxy --to HOST:PORT TARGET` is a ProxyCommand that carries stdin and
// stdout as one such stream.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/forward"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// forward runs `ssm-proxy forward [flags] TARGET SPEC...`.
func (c *cli) forward(ctx context.Context, args []string) int {
	var o options
	fs := c.newFlagSet("ssm-proxy forward")
	o.flags(fs)
	o.sessionFlags(fs)
	c.sessionLogFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return c.usageError(fmt.Errorf("forward: want TARGET and at least one [BIND:]LOCALPORT:[HOST:]PORT, got %d argument(s)", len(rest)))
	}
	name := stripTarget(rest[0], o)
	if err := checkTarget(name); err != nil {
		return c.usageError(fmt.Errorf("forward: %w", err))
	}
	var specs []forward.Spec
	for _, a := range rest[1:] {
		sp, err := forward.ParseSpec(a)
		if err != nil {
			return c.usageError(err)
		}
		specs = append(specs, sp)
	}
	log := newLogger(c.stderr, o.verbose)
	ctx, sig := withSignals(ctx)
	u := &used{target: name}
	err := c.runForwards(ctx, o, u, specs, log)
	if n := sig(); n != 0 {
		return exitSignalsBase + n
	}
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	reportError(c.stderr, err, o, u, code == exitError)
	return code
}

// runForwards listens on every spec, then serves them all until ctx ends or
// every one has failed for good; every session is terminated before it
// returns. A spec that fails for good (a forbidden destination, say) while
// others still serve is reported at once and stops listening, and the
// others go on; the last failure is returned.
func (c *cli) runForwards(ctx context.Context, o options, u *used, specs []forward.Spec, log *slog.Logger) error {
	sf, err := c.prepare(ctx, o, u, log)
	if err != nil {
		return err
	}
	defer sf.close()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, sp := range specs {
		ln, err := net.Listen(sp.Network(), sp.Listen())
		if err != nil {
			return &listenError{spec: sp, err: err}
		}
		lns = append(lns, ln)
	}
	// Download 96.2 and 94.2 MB/s on one P against 88.0 on two, upload
	// unchanged (BenchmarkForward, A/B).
	onOneP(log, "serving forwards")
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	serving := len(specs)
	var wg, logged sync.WaitGroup
	defer logged.Wait() // every session's line is in the session log before exit
	for i, sp := range specs {
		local := lns[i].Addr().(*net.TCPAddr)
		sp.LocalPort = local.Port
		fw := c.forwarder(sf, u, sp, lns[i], log, &logged, func(t *forward.Tunnel) {
			printNote(c.stderr, fmt.Sprintf("forwarding %s → %s through %s (session %s)", local, sp.Destination(u.id), u.id, t.ID()))
			if !sp.Loopback() {
				log.Warn(sp.Bind + " is not a loopback address: other machines can connect through this forwarding")
			}
		})
		ln := lns[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fw.Serve(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			ln.Close() // refuse this spec's connections from now on
			mu.Lock()
			serving--
			last := serving == 0
			mu.Unlock()
			if last {
				cancel(err)
				return
			}
			reportError(c.stderr, fmt.Errorf("forward %s → %s: %w", local, sp.Destination(u.id), err), o, u, false)
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// forwarder is the Forwarder of sp on ln, whose tunnels are sessions of
// sf (logged counts their session-log lines still to write); started is
// called with the first tunnel, and later ones are logged.
func (c *cli) forwarder(sf *sessionFactory, u *used, sp forward.Spec, ln net.Listener, log *slog.Logger, logged *sync.WaitGroup, started func(*forward.Tunnel)) *forward.Forwarder {
	fw := &forward.Forwarder{
		Spec:     sp,
		Listener: ln,
		Log:      log,
		Start: func(ctx context.Context) (*forward.Tunnel, error) {
			return c.startTunnel(ctx, sf, u, sp, log, logged)
		},
		Fatal: fatalStart,
	}
	first := true
	fw.OnTunnel = func(t *forward.Tunnel) {
		if first {
			first = false
			started(t)
			return
		}
		log.Info("new session for the forwarding", "listen", ln.Addr().String(), "session", t.ID())
	}
	return fw
}

// startTunnel starts one port-forwarding session for sp and its smux
// client; when the session ends its line goes to the session log (logged
// counts the lines still to write).
func (c *cli) startTunnel(ctx context.Context, sf *sessionFactory, u *used, sp forward.Spec, log *slog.Logger, logged *sync.WaitGroup) (*forward.Tunnel, error) {
	po, handshake := forward.SessionOptions(func() {
		log.Warn("the agent could not connect to " + sp.Destination(u.id) + "; that connection was closed (nothing listening there, or a forbidden address)")
	})
	sess, err := sf.start(ctx, u, proxy.StartInput{
		Document:   sp.Document(),
		Parameters: sp.Parameters(sp.LocalPort),
	}, po)
	if err != nil {
		return nil, err
	}
	ls := c.newLoggedSession(ctx, sess, sf.cfg, sp.Document())
	t, err := forward.StartTunnel(ctx, sess, handshake)
	logged.Add(1)
	go func() {
		defer logged.Done()
		var runErr error
		if t != nil {
			<-t.Done()
			runErr = t.Err()
		} else {
			runErr = err // Run has returned: the tunnel never came up
		}
		code := exitOK
		switch {
		case errors.Is(runErr, context.Canceled):
			runErr, code = nil, exitSignalsBase // ended by Ctrl-C/SIGTERM, or with the command
		case runErr != nil:
			code = exitCode(runErr)
		}
		c.logSession(context.WithoutCancel(ctx), u, ls, runErr, code, log)
	}()
	return t, err
}

// fatalStart reports a failure to start a forwarding session that a later
// start would meet again: the service or agent refused (a forbidden
// destination, an unsupported handshake, a refused client or stream host),
// credentials cannot be had, or the API said no for good.
func fatalStart(err error) bool {
	var (
		re *proxy.RemoteError
		he *proxy.HandshakeError
		rf *proxy.RefusedError
		ce *awscfg.CredentialsError
	)
	return errors.As(err, &re) || errors.As(err, &he) || errors.As(err, &rf) || errors.As(err, &ce) || proxy.Permanent(err)
}

// listenError reports a local address that cannot be listened on.
type listenError struct {
	spec forward.Spec
	err  error
}

func (e *listenError) Error() string {
	return fmt.Sprintf("forward: cannot listen on %s: %v", e.spec.Listen(), e.err)
}

func (e *listenError) Unwrap() error { return e.err }

// parseTo parses --to's HOST:PORT.
func parseTo(s string) (forward.Spec, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return forward.Spec{}, fmt.Errorf("--to %q: want HOST:PORT (in ssh_config: --to %%h:%%p)", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return forward.Spec{}, fmt.Errorf("--to %q: port %q: want a number from 1 to 65535", s, port)
	}
	return forward.Spec{Host: host, Port: int(p)}, nil
}

// connectTo is the ProxyCommand of --to: stdin and stdout carried as one
// smux stream to sp through the target (a bastion) with
// AWS-StartPortForwardingSessionToRemoteHost, no sshd on the bastion.
func (c *cli) connectTo(ctx context.Context, o options, u *used, sp forward.Spec, log *slog.Logger) error {
	sf, err := c.prepare(ctx, o, u, log)
	if err != nil {
		return err
	}
	defer sf.close()
	dialFailed := make(chan struct{}, 1)
	po, handshake := forward.SessionOptions(func() {
		select {
		case dialFailed <- struct{}{}:
		default:
		}
	})
	sess, err := sf.start(ctx, u, proxy.StartInput{
		Document:   sp.Document(),
		Parameters: sp.Parameters(0),
	}, po)
	if err != nil {
		return err
	}
	c.sessionStarted(ctx, sess, sf.cfg, sp.Document())
	t, err := forward.StartTunnel(ctx, sess, handshake)
	if err != nil {
		return err
	}
	defer t.Close()
	st, err := t.Open()
	if err != nil {
		return fmt.Errorf("open a stream to %s: %w", sp.Destination(u.id), err)
	}
	in, out, restore := sessionStdio(c.stdin, c.stdout, log)
	defer restore()
	down := carryStdio(in, out, st)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Done():
		if err := t.Err(); err != nil {
			return err
		}
		return nil
	case d := <-down:
		select {
		case <-dialFailed:
			return &dialError{dest: sp.Destination(u.id)}
		default:
		}
		return d.err
	}
}

// halfCloser is a connection whose sending half closes on its own.
type halfCloser interface {
	io.ReadWriter
	CloseWrite() error
}

// copied is how much of a connection reached stdout, and why it stopped.
type copied struct {
	n   int64
	err error
}

// carryStdio copies conn to out and in to conn, closing conn's sending half
// at in's end (ssh is done sending; the reply may still come); the channel
// receives the result of the copy to out when conn's end reached it.
func carryStdio(in io.Reader, out io.Writer, conn halfCloser) <-chan copied {
	down := make(chan copied, 1)
	go func() {
		n, err := io.Copy(out, conn)
		down <- copied{n, err}
	}()
	go func() {
		io.Copy(conn, in)
		conn.CloseWrite()
	}()
	return down
}

// dialError reports that the agent could not connect to --to's
// destination.
type dialError struct{ dest string }

func (e *dialError) Error() string {
	return "the agent could not connect to " + e.dest
}
