package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

const (
	// tick drives retransmission, pings, the dead-peer check and drain.
	tick = 20 * time.Millisecond
	// maxReorder bounds the out-of-order buffer (the plugin's is 10 000).
	maxReorder = 10000
	// recentAcks is how many of our latest acks are repeated after a
	// resume: acks lost with the old websocket would otherwise leave the
	// agent retransmitting its oldest message once per 100 ms tick (§5.4).
	recentAcks = 256
)

// loop owns all protocol state of a running session. Only its goroutine
// touches its fields.
type loop struct {
	s        *Session
	ctx      context.Context // the run's context, for resumes started anywhere
	out      *stdoutWriter
	stopping bool // Run is ending: a lost link is not resumed

	link    *link
	gen     int
	events  chan frameEvent
	resumed chan resumeResult
	stdin   chan stdinEvent

	resuming     bool
	lostAt       time.Time
	awaitingData bool // report the first data after a resume

	// sending (§5.4)
	nextSeq  int64
	win      window
	rtt      rttEstimator
	pending  []byte // stdin bytes not yet sent (window full)
	lastPing time.Time

	// receiving (§5.3)
	expected int64
	reorder  map[int64]protocol.Message
	acks     [recentAcks][]byte
	ackNext  int
	ackJSON  []byte   // the JSON of the ack being built, reused
	idBuf    [16]byte // random bytes of the next message ID, reused
	// unsentAcks are acks made while no websocket was attached (frames
	// drained from a lost one are acked then); attach sends them all. The
	// ring above only covers acks that may have died in flight.
	unsentAcks [][]byte

	started      time.Time
	established  bool // HandshakeComplete received
	paused       bool // pause_publication in force (§8.4)
	stdinEOF     bool
	drainBy      time.Time
	remoteClosed bool
	stallEnd     time.Time // last time a stdout push blocked noticeably
}

type resumeResult struct {
	link *link
	err  error
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
		lp.s.opts.OnEvent(Event{Kind: kind, Time: time.Now(), Err: err})
	}
}

func (lp *loop) run(ctx context.Context) error {
	lp.ctx = ctx
	lp.started = time.Now()
	lp.startResume(ctx, true)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if err := lp.flushPending(); err != nil {
			return err
		}
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
			return nil // ssh went away: end quietly
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
				if lp.link != nil && ev.gen == lp.link.gen {
					lp.lost(ctx, ev.err, false)
				}
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
			lp.attach(ctx, r.link)
		case now := <-t.C:
			if err := lp.onTick(ctx, now); err != nil {
				return err
			}
			if lp.stdinEOF && lp.win.len() == 0 && len(lp.pending) == 0 {
				if lp.drainBy.IsZero() {
					lp.drainBy = now.Add(lp.s.opts.DrainTimeout)
				} else if now.After(lp.drainBy) {
					lp.s.log.Debug("input done and acknowledged; ending session")
					return nil
				}
			}
		}
	}
}

// canRead reports whether the loop may take more stdin.
func (lp *loop) canRead() bool {
	return lp.established && !lp.stdinEOF && len(lp.pending) == 0 && lp.win.len() < lp.s.opts.Window
}

// flushPending sends buffered stdin bytes as stream messages while the
// window has room.
func (lp *loop) flushPending() error {
	for len(lp.pending) > 0 && lp.win.len() < lp.s.opts.Window && !lp.paused {
		n := min(len(lp.pending), protocol.MaxStreamPayload)
		lp.sendStream(protocol.PayloadOutput, lp.pending[:n])
		lp.s.stats.BytesUp += int64(n)
		lp.pending = lp.pending[n:]
	}
	return nil
}

func (lp *loop) newID() protocol.UUID {
	io.ReadFull(lp.s.rand, lp.idBuf[:]) // ChaCha8 never fails
	return protocol.UUIDv4(lp.idBuf)
}

// sendStream sends one sequenced input_stream_data message and keeps it for
// retransmission. With no websocket it is only queued; attach sends it.
func (lp *loop) sendStream(pt protocol.PayloadType, payload []byte) {
	now := time.Now()
	m := protocol.Message{
		Type:           protocol.InputStreamData,
		SchemaVersion:  protocol.SchemaVersion,
		CreatedDate:    uint64(now.UnixMilli()),
		SequenceNumber: lp.nextSeq,
		MessageID:      lp.newID(),
		PayloadType:    pt,
		Payload:        payload,
	}
	frame, err := m.MarshalBinary()
	if err != nil {
		panic(err) // our own message of a known type: a bug
	}
	lp.nextSeq++
	lp.win.push(&outMsg{seq: m.SequenceNumber, frame: frame, sent: now})
	if lp.link != nil && !lp.paused {
		lp.write(frame)
	}
}

func (lp *loop) sendFlag(f protocol.Flag) {
	p, _ := f.AppendBinary(nil)
	lp.sendStream(protocol.PayloadFlag, p)
}

// flushLink sends the frames the current link holds (see batchConn).
func (lp *loop) flushLink() {
	if lp.link == nil {
		return
	}
	if err := lp.link.flush(); err != nil {
		lp.lost(lp.ctx, fmt.Errorf("write: %w", err), true)
	}
}

// write sends a frame on the current link; a failure starts a resume.
func (lp *loop) write(frame []byte) {
	if lp.link == nil {
		return
	}
	if err := lp.link.write(websocket.BinaryMessage, frame); err != nil {
		// Keep reading the old websocket until its reader fails: what the
		// kernel already received survives a reset and is not lost.
		lp.lost(lp.ctx, fmt.Errorf("write: %w", err), true)
	}
}

// ack acknowledges m and remembers the ack for repetition after a resume.
func (lp *loop) ack(m *protocol.Message) {
	// Built in reused buffers: the JSON in ackJSON, the frame in its own
	// ring slot (written frames are copied by the websocket).
	lp.ackJSON = protocol.AppendAckJSON(lp.ackJSON[:0], m)
	am := protocol.Message{
		Type:          protocol.Acknowledge,
		SchemaVersion: protocol.SchemaVersion,
		CreatedDate:   uint64(time.Now().UnixMilli()),
		Flags:         protocol.HeaderFlagsAck,
		MessageID:     lp.newID(),
		Payload:       lp.ackJSON,
	}
	slot := &lp.acks[lp.ackNext%recentAcks]
	frame, _ := am.AppendBinary((*slot)[:0])
	*slot = frame
	lp.ackNext++
	if lp.link == nil {
		lp.unsentAcks = append(lp.unsentAcks, bytes.Clone(frame))
		return
	}
	lp.write(frame)
}

// handle processes one frame. done reports the end of the session.
func (lp *loop) handle(ctx context.Context, m *protocol.Message) (done bool, err error) {
	switch m.Type {
	case protocol.OutputStreamData:
		return lp.receiveStream(ctx, m)
	case protocol.Acknowledge:
		lp.receiveAck(m)
	case protocol.ChannelClosed:
		return true, lp.channelClosed(m)
	case protocol.PausePublication:
		lp.s.log.Debug("pause_publication")
		lp.paused = true
	case protocol.StartPublication:
		lp.s.log.Debug("start_publication")
		lp.paused = false
	default:
		lp.s.log.Debug("ignoring message", "type", m.Type)
	}
	return false, nil
}

// receiveStream applies §5.3: in order → process then ack; future → ack and
// buffer; duplicate → re-ack (unlike the official client; see §5.3).
func (lp *loop) receiveStream(ctx context.Context, m *protocol.Message) (bool, error) {
	switch {
	case m.SequenceNumber < lp.expected:
		lp.ack(m)
		return false, nil
	case m.SequenceNumber > lp.expected:
		if _, dup := lp.reorder[m.SequenceNumber]; !dup && len(lp.reorder) >= maxReorder {
			return false, nil // no room: not acked, the agent resends
		}
		lp.reorder[m.SequenceNumber] = *m
		lp.ack(m)
		return false, nil
	}
	if err := lp.process(ctx, m); err != nil {
		return true, err
	}
	lp.ack(m)
	lp.expected++
	for {
		next, ok := lp.reorder[lp.expected]
		if !ok {
			return false, nil
		}
		delete(lp.reorder, lp.expected)
		if err := lp.process(ctx, &next); err != nil {
			return true, err
		}
		lp.expected++
	}
}

// process acts on one in-order stream message.
func (lp *loop) process(ctx context.Context, m *protocol.Message) error {
	switch m.PayloadType {
	case protocol.PayloadOutput:
		if len(m.Payload) == 0 {
			return nil
		}
		if lp.awaitingData {
			lp.awaitingData = false
			lp.emit(EventFirstDataAfterResume, nil)
		}
		lp.s.stats.BytesDown += int64(len(m.Payload))
		return lp.deliver(ctx, m.Payload)
	case protocol.PayloadHandshakeRequest:
		return lp.handshake(m.Payload)
	case protocol.PayloadHandshakeComplete:
		c, err := protocol.ParseHandshakeComplete(m.Payload)
		if err != nil {
			return err
		}
		lp.established = true
		lp.s.log.Debug("handshake complete", "took", c.HandshakeTimeToComplete)
		lp.emit(EventHandshakeComplete, nil)
	case protocol.PayloadFlag:
		f, err := protocol.ParseFlag(m.Payload)
		if err == nil && f == protocol.FlagConnectToPortError {
			lp.s.log.Warn("the agent could not connect to the destination port")
		}
	default:
		lp.s.log.Debug("ignoring payload", "type", m.PayloadType)
	}
	return nil
}

// deliver hands payload to the stdout writer, waiting while it is full.
func (lp *loop) deliver(ctx context.Context, p []byte) error {
	select {
	case lp.out.ch <- p:
		return nil
	default:
	}
	t0 := time.Now()
	defer func() {
		if time.Since(t0) > 100*time.Millisecond {
			lp.stallEnd = time.Now()
		}
	}()
	select {
	case lp.out.ch <- p:
		return nil
	case <-lp.out.failed:
		return nil // reported by the run loop
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handshake answers a HandshakeRequest (§6.2): one ProcessedClientAction per
// requested action. Only a plain Port session (stdio, §7.2) is supported; an
// action we cannot honour is reported to the agent, which then ends the
// session, and to the user.
func (lp *loop) handshake(payload []byte) error {
	req, err := protocol.ParseHandshakeRequest(payload)
	if err != nil {
		return err
	}
	lp.s.log.Debug("handshake request", "agent_version", req.AgentVersion)
	resp := protocol.HandshakeResponse{ClientVersion: lp.s.opts.ClientVersion}
	var failure error
	for _, a := range req.RequestedClientActions {
		pa := protocol.ProcessedClientAction{ActionType: a.ActionType, ActionStatus: protocol.ActionSuccess}
		switch a.ActionType {
		case protocol.ActionSessionType:
			p, err := a.SessionTypeParams()
			switch {
			case err != nil:
				pa.ActionStatus, pa.Error = protocol.ActionFailed, err.Error()
			case p.SessionType != protocol.SessionTypePort:
				pa.ActionStatus, pa.Error = protocol.ActionFailed, "unsupported session type "+p.SessionType
			case p.Properties["type"] != "":
				pa.ActionStatus, pa.Error = protocol.ActionFailed, "unsupported port session type "+p.Properties["type"]
			}
		default:
			pa.ActionStatus, pa.Error = protocol.ActionUnsupported, "ssm-proxy does not support "+string(a.ActionType)
		}
		if pa.ActionStatus != protocol.ActionSuccess && failure == nil {
			failure = &HandshakeError{Reason: fmt.Sprintf("the session's document asks for %s (%s); ssm-proxy carries plain port sessions such as AWS-StartSSHSession", a.ActionType, pa.Error)}
		}
		resp.ProcessedClientActions = append(resp.ProcessedClientActions, pa)
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	lp.sendStream(protocol.PayloadHandshakeResponse, b)
	return failure
}

// receiveAck removes the acknowledged message from the window and feeds the
// RTT estimator (§5.4, §5.5). Acks of unknown sequence numbers are ignored.
func (lp *loop) receiveAck(m *protocol.Message) {
	seq, err := protocol.ParseAckSeq(m.Payload)
	if err != nil {
		lp.s.log.Debug("bad acknowledge", "err", err)
		return
	}
	om := lp.win.remove(seq)
	if om != nil && om.retries == 0 {
		lp.rtt.sample(time.Since(om.sent))
	}
	// Fast retransmit: the agent acks in order of arrival and processes in
	// sequence, so an ack for seq while older messages are unacknowledged
	// means those were dropped — typically the first data of a session,
	// refused while the agent was still dialling its target (§5.3 "not
	// ready"). Resend them now, once, instead of after the RTO.
	if om == nil || lp.link == nil || lp.paused {
		return
	}
	now := time.Now()
	for _, m := range lp.win.msgs {
		if m.seq >= seq || lp.link == nil {
			break
		}
		if !m.fast {
			m.fast = true
			m.sent = now
			m.retries++
			lp.write(m.frame)
		}
	}
}

// channelClosed ends the session as the gateway says (§4.4, §8.3, §10).
func (lp *loop) channelClosed(m *protocol.Message) error {
	lp.remoteClosed = true
	c, err := protocol.ParseChannelClosed(m.Payload)
	if err != nil {
		return fmt.Errorf("channel closed: %w", err)
	}
	out := c.Output
	lp.s.log.Debug("channel closed", "output", textutil.OneLine(out))
	switch {
	case textutil.OneLine(out) == "":
		return nil
	case textutil.OneLine(out) == protocol.IdleTimeoutOutput:
		return ErrIdleTimeout
	}
	return newRemoteError(out)
}

// onTick retransmits overdue messages, pings, and checks for a dead peer.
func (lp *loop) onTick(ctx context.Context, now time.Time) error {
	if !lp.established && now.Sub(lp.started) > lp.s.opts.HandshakeTimeout && !lp.resuming {
		return &HandshakeError{Reason: fmt.Sprintf("the agent did not complete the handshake within %s", lp.s.opts.HandshakeTimeout)}
	}
	if lp.link == nil {
		return nil
	}
	heard := time.Unix(0, lp.link.lastHeard.Load())
	if now.Sub(heard) > lp.s.opts.DeadPeerTimeout && now.Sub(lp.stallEnd) > lp.s.opts.DeadPeerTimeout {
		lp.lost(ctx, fmt.Errorf("nothing received for %s", now.Sub(heard).Round(time.Second)), false)
		return nil
	}
	if now.Sub(lp.lastPing) >= lp.s.opts.PingInterval {
		lp.lastPing = now
		if err := lp.link.ping(); err != nil {
			lp.lost(ctx, fmt.Errorf("ping: %w", err), true)
			return nil
		}
	}
	if lp.paused {
		return nil
	}
	rto := lp.rtt.rto()
	for _, m := range lp.win.msgs {
		if lp.link == nil {
			break
		}
		if now.Sub(m.sent) > min(rto<<min(m.retries, 4), maxRTO) {
			m.sent = now
			m.retries++
			lp.write(m.frame)
		}
	}
	return nil
}

// lost gives up the current websocket and starts a resume (§8.2). With
// drain, the websocket is left to its reader, which closes it after reading
// whatever is still buffered; otherwise it is closed now.
func (lp *loop) lost(ctx context.Context, cause error, drain bool) {
	if lp.link == nil {
		return
	}
	lp.s.log.Debug("websocket lost; resuming", "err", cause, "close", isCloseNormal(cause))
	if !drain {
		lp.link.ws.Close()
	}
	lp.link = nil
	if lp.stopping {
		return
	}
	lp.lostAt = time.Now()
	lp.emit(EventLinkLost, cause)
	lp.startResume(ctx, false)
}

// attach makes l the current websocket and brings the agent up to date at
// once instead of waiting for timers: it repeats our recent acks (lost acks
// otherwise cost the agent a 100 ms tick each, §5.4; any ack also clears the
// agent's pause, §5.3) and retransmits the whole unacknowledged window.
func (lp *loop) attach(ctx context.Context, l *link) {
	lp.link = l
	lp.paused = false
	go l.read(ctx, lp.events, lp.s.log)
	if !lp.lostAt.IsZero() {
		lp.s.log.Debug("resumed", "after", time.Since(lp.lostAt).Round(time.Millisecond))
		lp.s.stats.Resumes++
		lp.emit(EventResumed, nil)
		lp.awaitingData = true
	} else {
		lp.emit(EventConnected, nil)
	}
	for i := 0; i < recentAcks && lp.link != nil; i++ {
		if f := lp.acks[(lp.ackNext+i)%recentAcks]; f != nil {
			lp.write(f)
		}
	}
	for _, f := range lp.unsentAcks {
		lp.write(f)
	}
	lp.unsentAcks = nil
	now := time.Now()
	for _, m := range lp.win.msgs {
		if lp.link == nil {
			return
		}
		m.sent = now
		m.retries++
		lp.write(m.frame)
	}
}

// startResume re-establishes the websocket in the background: the first
// connection uses StartSession's token; later ones ask ResumeSession for a
// new one and dial the original StreamUrl (§8.2). Retries back off
// exponentially with jitter within Options.ResumeBudget.
func (lp *loop) startResume(ctx context.Context, first bool) {
	if lp.resuming {
		return
	}
	lp.resuming = true
	lp.gen++
	go func(gen int) {
		l, err := lp.s.reconnect(ctx, first, gen)
		lp.resumed <- resumeResult{link: l, err: err}
	}(lp.gen)
}

// reconnect is the resume procedure; it touches no loop state.
func (s *Session) reconnect(ctx context.Context, first bool, gen int) (*link, error) {
	deadline := time.Now().Add(s.opts.ResumeBudget)
	backoff := 100 * time.Millisecond
	var lastErr error
	for attempt := 1; ; attempt++ {
		token := s.token
		if !first || attempt > 1 {
			var err error
			token, err = s.resumeToken(ctx)
			if err != nil {
				return nil, err
			}
		}
		if token != "" {
			l, err := s.dialLink(ctx, token, gen)
			if err == nil {
				return l, nil
			}
			lastErr = err
			s.log.Debug("reconnect attempt failed", "attempt", attempt, "err", err)
		}
		sleep := backoff/2 + rand.N(backoff)
		backoff = min(2*backoff, 5*time.Second)
		if time.Now().Add(sleep).After(deadline) {
			return nil, &ResumeError{Attempts: attempt, Err: lastErr}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(sleep):
		}
	}
}

// resumeToken calls ResumeSession with freshly resolved credentials. An
// empty token, or a session the service no longer knows, means the session
// is over (§1.3). Transient failures return "" and nil to retry.
func (s *Session) resumeToken(ctx context.Context) (string, error) {
	if s.opts.RefreshCredentials != nil {
		s.opts.RefreshCredentials()
	}
	if s.creds != nil {
		// Resolve credentials first, so that an expired SSO token or a failed
		// credential_process is reported as such instead of retried.
		if _, err := s.creds.Retrieve(ctx); err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", &CredentialsError{Err: err}
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := s.api.ResumeSession(rctx, &ssm.ResumeSessionInput{SessionId: aws.String(s.id)})
	if err != nil {
		var dne *types.DoesNotExistException
		if errors.As(err, &dne) {
			return "", ErrSessionEnded
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if isPermanentAPIError(err) {
			return "", fmt.Errorf("resume session: %w", err)
		}
		s.log.Debug("resume session failed; will retry", "err", err)
		return "", nil
	}
	s.log.Debug("resume session ok")
	if aws.ToString(out.TokenValue) == "" {
		return "", ErrSessionEnded
	}
	return aws.ToString(out.TokenValue), nil
}
