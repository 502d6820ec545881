package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// The event loop: one goroutine owns every piece of protocol state and is
// the only one to decide anything. It never waits on the network: frames
// come in on events from each link's reader, writes are queued on the link
// (batch.go), resumes run on their own goroutine and come back on resumed.
// This file holds the loop and its timer; send.go, recv.go, handshake.go and
// resume.go the rest of its methods.

const (
	// tick drives retransmission, pings, the dead-peer check and drain.
	tick = 20 * time.Millisecond
	// maxReorder and maxReorderBytes bound the out-of-order buffer, by
	// count (the plugin's is 10 000 messages) and by payload bytes, so that
	// a hostile peer sending far-future frames cannot take the memory.
	maxReorder      = 10000
	maxReorderBytes = 8 << 20
	// recentAcks is how many of our latest acks are repeated after a
	// resume: acks lost with the old websocket would otherwise leave the
	// agent retransmitting its oldest message once per 100 ms tick (§5.4).
	recentAcks = 256
	// maxBacklog: while this many written bytes wait for the network, the
	// link is congested or black-holed, and retransmitting only adds to the
	// queue.
	maxBacklog = 256 << 10
)

// loop owns all protocol state of a running session. Only its goroutine
// touches its fields.
type loop struct {
	s        *Session
	out      *stdoutWriter
	stopping bool // Run is ending: a lost link is not resumed

	link    *link
	gen     int
	events  chan frameEvent
	resumed chan resumeResult
	stdin   chan stdinEvent

	// resume state (resume.go)
	resuming     bool
	plan         resumePlan // the current streak of failed links
	lostAt       time.Time
	awaitingData bool // report the first data after a resume

	// sending (send.go, §5.4)
	nextSeq  int64
	win      window
	rtt      rttEstimator
	pending  []byte // stdin bytes not yet sent (window full)
	lastPing time.Time

	// receiving (recv.go, §5.3)
	expected     int64
	reorder      map[int64]protocol.Message
	reorderBytes int
	acks         [recentAcks][]byte
	ackNext      int
	ackJSON      []byte   // the JSON of the ack being built, reused
	idBuf        [16]byte // random bytes of the next message ID, reused
	// unsentAcks are acks made while no websocket was attached (frames
	// drained from a lost one are acked then); attach sends them all. The
	// ring above only covers acks that may have died in flight.
	unsentAcks [][]byte

	started      time.Time
	handshaking  handshakeClock // how long the agent has had to handshake
	agentVersion string         // from HandshakeRequest
	established  bool           // HandshakeComplete received
	pausedAt     time.Time      // pause_publication in force since (§8.4); zero: not paused
	stdinEOF     bool
	lastOutput   time.Time // last agent data delivered
	drainFrom    time.Time // input ended and everything sent was acknowledged
	links        int       // websockets attached so far; the current one's number
	stuck        stuckWindow
	remoteClosed bool
	stallEnd     time.Time // last time a stdout push blocked noticeably
}

func newLoop(s *Session, stdout io.Writer) *loop {
	return &loop{
		s:       s,
		out:     newStdoutWriter(stdout),
		events:  make(chan frameEvent, 64),
		resumed: make(chan resumeResult, 1),
		stdin:   make(chan stdinEvent),
		rtt:     newRTTEstimator(),
		reorder: make(map[int64]protocol.Message),
	}
}

func (lp *loop) emit(kind EventKind, err error) {
	if lp.s.opts.OnEvent != nil {
		ev := Event{Kind: kind, Time: time.Now(), Err: err}
		if kind == EventHandshakeComplete {
			ev.AgentVersion = lp.agentVersion
		}
		lp.s.opts.OnEvent(ev)
	}
}

func (lp *loop) run(ctx context.Context) error {
	lp.started = time.Now()
	lp.plan = resumePlan{first: true, streamURL: lp.s.streamURL, deadline: lp.started.Add(lp.s.opts.ResumeBudget)}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if lp.link == nil && !lp.resuming {
			lp.startResume(ctx)
		}
		lp.flushPending()
		if len(lp.events) == 0 {
			lp.flushLink()
		}
		var stdin <-chan stdinEvent
		if lp.canRead() {
			stdin = lp.stdin
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-lp.out.failed:
			lp.s.log.Debug("stdout closed", "err", lp.out.err)
			return ErrStdoutClosed // ssh went away with output undelivered
		case ev := <-stdin:
			if ev.err != nil {
				if !errors.Is(ev.err, io.EOF) {
					return fmt.Errorf("read stdin: %w", ev.err)
				}
				lp.s.log.Debug("stdin closed")
				lp.stdinEOF = true
				continue
			}
			lp.pending = ev.data
		case ev := <-lp.events:
			if ev.err != nil {
				// An oversized frame is fatal on any link: gorilla answers
				// it with a close frame, so a write may notice that first
				// and give the link up before its reader reports why.
				if isProtocolViolation(ev.err) {
					return &ProtocolError{Err: ev.err}
				}
				if lp.link == nil || ev.gen != lp.link.gen {
					continue // a link given up on already
				}
				if re, ok := refusal(lp.link, ev.err); ok {
					return re
				}
				lp.lost(ev.err, false)
				continue
			}
			// Frames still draining from a websocket already given up on
			// are as good as any: sequencing sorts out duplicates.
			done, err := lp.handle(ctx, &ev.msg)
			if done || err != nil {
				return err
			}
		case r := <-lp.resumed:
			lp.resuming = false
			if r.err != nil {
				return r.err
			}
			lp.attach(ctx, r)
		case now := <-t.C:
			if done, err := lp.onTick(now); done || err != nil {
				return err
			}
		}
	}
}

// canRead reports whether the loop may take more stdin.
func (lp *loop) canRead() bool {
	return lp.established && !lp.stdinEOF && len(lp.pending) == 0 && lp.win.len() < lp.s.opts.Window
}

// paused reports whether pause_publication holds our sending (§8.4).
func (lp *loop) paused() bool { return !lp.pausedAt.IsZero() }

// unpause ends a pause: start_publication, or anything else from the agent
// that shows it is there again, or maxPause.
func (lp *loop) unpause(why string) {
	if lp.paused() {
		lp.s.log.Debug("sending resumed", "after", time.Since(lp.pausedAt).Round(time.Millisecond), "why", why)
		lp.pausedAt = time.Time{}
		lp.emit(EventUnpaused, nil)
	}
}

// onTick checks the handshake deadline, the end of a drain, and a dead
// peer; pings; retransmits overdue messages. done reports a normal end.
func (lp *loop) onTick(now time.Time) (done bool, err error) {
	if !lp.established && lp.handshaking.spent(now) > lp.s.opts.HandshakeTimeout {
		return true, &HandshakeError{Reason: fmt.Sprintf("the agent did not complete the handshake within %s", lp.s.opts.HandshakeTimeout), Timeout: true}
	}
	if lp.drained(now) {
		lp.s.log.Debug("input done, acknowledged, and output quiet; ending session")
		return true, nil
	}
	if err := lp.unconfirmed(now); err != nil {
		return true, err
	}
	if lp.paused() && now.Sub(lp.pausedAt) > lp.s.opts.MaxPause {
		lp.unpause("no start_publication within " + lp.s.opts.MaxPause.String())
	}
	l := lp.link
	if l == nil {
		return false, nil
	}
	heard := time.Unix(0, l.lastHeard.Load())
	if now.Sub(heard) > lp.s.opts.DeadPeerTimeout && now.Sub(lp.stallEnd) > lp.s.opts.DeadPeerTimeout {
		lp.lost(fmt.Errorf("nothing received for %s", now.Sub(heard).Round(time.Second)), false)
		return false, nil
	}
	if now.Sub(lp.lastPing) >= lp.s.opts.PingInterval {
		lp.lastPing = now
		if err := l.ping(); err != nil {
			lp.lost(fmt.Errorf("ping: %w", err), true)
			return false, nil
		}
	}
	lp.retransmit(now)
	return false, nil
}

// drained reports the end of a session whose input has ended: everything
// sent was acknowledged and no agent output has arrived for DrainTimeout
// since. Output still flowing keeps the session open, so that a reply that
// comes after the request's end is not cut off; the remote side's close
// ends it sooner.
func (lp *loop) drained(now time.Time) bool {
	if !lp.stdinEOF || lp.win.len() > 0 || len(lp.pending) > 0 {
		lp.drainFrom = time.Time{}
		return false
	}
	if lp.drainFrom.IsZero() {
		lp.drainFrom = now
	}
	quiet := lp.drainFrom
	if lp.lastOutput.After(quiet) {
		quiet = lp.lastOutput
	}
	return now.Sub(quiet) > lp.s.opts.DrainTimeout
}

// stuckWindow is what the window held when unconfirmed last saw it change.
type stuckWindow struct {
	since time.Time // zero: not stuck
	front int64
	n     int
}

// unconfirmed ends a session whose input has ended but whose last messages
// an agent before 3.2.1041.0 will never acknowledge (§5.3, §5.7): their
// first acknowledgement died with an earlier websocket, and such an agent
// ignores a message it already has. Resent once a second, they would keep
// the session open for ever. Nothing proves they were delivered (the agent
// also acknowledges messages it holds ahead of a gap), so after
// UnconfirmedTimeout on an attached, unpaused websocket without an
// acknowledgement the session ends with an UnconfirmedError rather than
// as a success.
func (lp *loop) unconfirmed(now time.Time) error {
	n := lp.win.len()
	if n == 0 || !lp.stdinEOF || len(lp.pending) > 0 || lp.link == nil || lp.paused() ||
		lp.agentVersion == "" || protocol.CompareAgentVersions(lp.agentVersion, protocol.AgentVersionReAck) >= 0 ||
		lp.win.msgs[n-1].link == 0 || lp.win.msgs[n-1].link >= lp.links {
		lp.stuck = stuckWindow{}
		return nil
	}
	front := lp.win.msgs[0].seq
	if lp.stuck.since.IsZero() || lp.stuck.front != front || lp.stuck.n != n {
		lp.stuck = stuckWindow{since: now, front: front, n: n}
		return nil
	}
	if now.Sub(lp.stuck.since) < lp.s.opts.UnconfirmedTimeout {
		return nil
	}
	return &UnconfirmedError{Messages: n, AgentVersion: lp.agentVersion, For: lp.s.opts.UnconfirmedTimeout}
}

// handshakeClock adds up the time a websocket was attached before the
// handshake completed: the agent can only answer over a link, so neither
// the first dial (slow under throttling, say) nor a resume counts against
// HandshakeTimeout, and a link that keeps failing cannot extend it forever.
type handshakeClock struct {
	spentBefore time.Duration // on links lost since
	since       time.Time     // the current link's attach; zero: none
}

func (c *handshakeClock) start(now time.Time) { c.since = now }

func (c *handshakeClock) stop(now time.Time) {
	if !c.since.IsZero() {
		c.spentBefore += now.Sub(c.since)
		c.since = time.Time{}
	}
}

func (c *handshakeClock) spent(now time.Time) time.Duration {
	if c.since.IsZero() {
		return c.spentBefore
	}
	return c.spentBefore + now.Sub(c.since)
}
