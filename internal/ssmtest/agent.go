package ssmtest

// The SSM agent's half of a port session (§5, §6, §7.2, §9): handshake,
// the reliability layer with the agent's own rules, and the port plugin in
// basic mode; multiplexed port forwarding is in mux.go. One goroutine
// (runAgent) handles the client's frames, the resend tick and the session
// timers; the target (or the smux server's output) is read on another.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// Agent constants (§9.2).
const (
	resendInterval = 100 * time.Millisecond
	initialSRTT    = 100 * time.Millisecond
	initialRTO     = 200 * time.Millisecond
	maxRTO         = time.Second
	clockGranule   = 10 * time.Millisecond
	maxOutgoing    = 100000
	maxIncoming    = 100000
	drainWait      = 2 * time.Second
	drainPoll      = 10 * time.Millisecond
	// dialTimeout bounds the port plugin's dial; the agent's own is the
	// system's.
	dialTimeout = 10 * time.Second
)

type handshakePhase int

const (
	phaseNew       handshakePhase = iota // no websocket yet, nothing sent
	phaseRequested                       // HandshakeRequest sent
	phaseResponded                       // HandshakeResponse taken, HandshakeComplete not yet sent
	phaseComplete                        // HandshakeComplete sent
	phaseFailed
)

// agentState is the agent's data-channel and port-plugin state. It lives
// in session and is guarded by session.mu; the incoming side (expected,
// incoming, phase) is only changed on the agent goroutine.
type agentState struct {
	// outgoing (§5.4, §5.5)
	nextSeq  int64
	outgoing []*outMsg // oldest first
	srtt     time.Duration
	rttvar   time.Duration
	rto      time.Duration

	// incoming (§5.3)
	expected int64
	incoming map[int64]protocol.Message

	// handshake (§6)
	phase         handshakePhase
	requestedAt   time.Time
	response      *protocol.HandshakeResponse // processed, acked, not yet acted on
	clientVersion string
	// completeAt is when HandshakeComplete goes out (phaseResponded):
	// the real agent's handshake goroutine sends it once the receive side
	// has handed the response over, and client data in between is
	// acknowledged and discarded. completeArmed: runAgent's timer is set.
	completeAt    time.Time
	completeArmed bool

	// port plugin (§7.2–§7.5)
	// target is the destination connection in basic mode, the agent's end
	// of the smux server's pipe in mux mode; nil until then ("not ready").
	target    net.Conn
	redial    bool       // basic LocalPortForwarding: dial again on the next data
	mux       *muxServer // mux mode (§7.4)
	addresses []string   // the resolved host of …ToRemoteHost (§7.5)
	finishing bool       // the plugin has ended; draining before channel_closed
	fwd       *forwardingCounters
}

// outMsg is one sent stream message kept for retransmission.
type outMsg struct {
	seq       int64
	frame     []byte
	streamLen int
	lastSent  time.Time
}

// inFrame is a client frame waiting for its Latency to pass.
type inFrame struct {
	m   protocol.Message
	due time.Time
}

type dialResult struct {
	conn net.Conn
	err  error
}

func (a *agentState) init() {
	a.srtt = initialSRTT
	a.rto = initialRTO
	a.incoming = make(map[int64]protocol.Message)
	a.fwd = new(forwardingCounters)
}

// runAgent is the agent goroutine of a session.
func (ss *session) runAgent() {
	defer ss.srv.wg.Done()
	opts := &ss.srv.opts
	tick := time.NewTicker(resendInterval)
	defer tick.Stop()
	handshake := time.NewTimer(opts.HandshakeTimeout)
	defer handshake.Stop()
	var idleC <-chan time.Time
	var idle *time.Timer
	if opts.IdleTimeout > 0 {
		idle = time.NewTimer(opts.IdleTimeout)
		defer idle.Stop()
		idleC = idle.C
	}
	inbox := time.NewTimer(time.Hour)
	inbox.Stop()
	defer inbox.Stop()
	complete := time.NewTimer(time.Hour)
	complete.Stop()
	defer complete.Stop()
	for {
		select {
		case <-ss.done:
			return
		case <-ss.wake:
		case <-inbox.C:
		case <-tick.C:
			ss.resendTick()
		case <-handshake.C:
			ss.handshakeTimeout()
		case <-idleC:
			if d := ss.idleLeft(); d > 0 {
				idle.Reset(d)
			} else {
				ss.end(EndIdleTimeout, protocol.IdleTimeoutOutput)
				return
			}
		case r := <-ss.dialed:
			ss.dialDone(r)
		case <-complete.C:
			ss.completeHandshake()
		}
		if d, ok := ss.step(); ok {
			inbox.Reset(d)
		}
		if d, ok := ss.completeDue(); ok {
			complete.Reset(d)
		}
	}
}

// step starts the handshake once a client is there and handles every
// client frame whose Latency has passed. It returns how long until the next
// one is due, if any is waiting.
func (ss *session) step() (time.Duration, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return 0, false
	}
	if ss.agent.phase == phaseNew && ss.ws != nil {
		ss.startHandshakeLocked()
	}
	for len(ss.inbox) > 0 && !ss.ended {
		if d := time.Until(ss.inbox[0].due); d > 0 {
			return d, true
		}
		m := ss.inbox[0].m
		ss.inbox[0] = inFrame{}
		ss.inbox = ss.inbox[1:]
		switch m.Type {
		case protocol.Acknowledge:
			ss.ackedLocked(m)
		case protocol.InputStreamData:
			ss.streamLocked(m)
		}
	}
	return 0, false
}

// startHandshakeLocked sends HandshakeRequest (§6.2, §9.1 step 3), or ends
// the session at once on an agent too old for the Port plugin.
func (ss *session) startHandshakeLocked() {
	a := &ss.agent
	if !ss.portDoc {
		a.phase = phaseFailed
		ss.finishLocked(EndUnsupported, protocol.ErrorTitle+"ssmtest: "+ss.document+
			" is not emulated; only port sessions (AWS-StartSSHSession, AWS-StartPortForwardingSession*) are")
		return
	}
	if protocol.CompareAgentVersions(ss.agentVersion, protocol.AgentVersionPort) < 0 {
		a.phase = phaseFailed
		ss.finishLocked(EndUnsupported, protocol.PortPluginUnsupportedOutput)
		return
	}
	params := mustJSON(protocol.SessionTypeParams{SessionType: protocol.SessionTypePort, Properties: ss.properties})
	req := protocol.HandshakeRequest{
		AgentVersion: ss.agentVersion,
		RequestedClientActions: []protocol.RequestedClientAction{
			{ActionType: protocol.ActionSessionType, ActionParameters: params},
		},
	}
	ss.sendStreamLocked(protocol.PayloadHandshakeRequest, mustJSON(req))
	a.phase = phaseRequested
	a.requestedAt = time.Now()
}

// handshakeTimeout fails a session whose client has not answered the
// HandshakeRequest in time (§6.2).
func (ss *session) handshakeTimeout() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	a := &ss.agent
	if a.phase != phaseNew && a.phase != phaseRequested {
		return
	}
	a.phase = phaseFailed
	ss.finishLocked(EndHandshakeTimeout, protocol.ErrorTitle+protocol.HandshakeTimeoutOutput)
}

// idleLeft returns how long until the idle timeout fires (≤ 0: now).
func (ss *session) idleLeft() time.Duration {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return time.Until(ss.lastClientData.Add(ss.srv.opts.IdleTimeout))
}

// streamLocked applies the agent's receive rules to one input_stream_data
// (§5.3): process then ack; ack and keep future messages; re-ack
// duplicates.
func (ss *session) streamLocked(m protocol.Message) {
	a := &ss.agent
	switch s := m.SequenceNumber; {
	case s == a.expected:
		if !ss.processLocked(m) || ss.ended {
			return // not ready or failed: no ack, the client resends
		}
		ss.sendAckLocked(&m)
		a.expected++
		ss.afterProcessLocked()
		ss.drainIncomingLocked()
	case s > a.expected:
		if _, dup := a.incoming[s]; dup {
			ss.srv.add(func(st *Stats) { st.DuplicatesReceived++ })
		} else if len(a.incoming) >= maxIncoming {
			return
		}
		a.incoming[s] = m
		ss.sendAckLocked(&m)
	default:
		ss.srv.add(func(st *Stats) { st.DuplicatesReceived++ })
		if protocol.CompareAgentVersions(ss.agentVersion, protocol.AgentVersionReAck) >= 0 {
			ss.sendAckLocked(&m)
		} else {
			ss.srv.add(func(st *Stats) { st.DuplicatesIgnored++ })
		}
	}
}

// drainIncomingLocked processes buffered messages that have become next
// in order. They were acknowledged on arrival; one the port plugin is not
// ready for stays buffered until it is.
func (ss *session) drainIncomingLocked() {
	a := &ss.agent
	for !ss.ended {
		m, ok := a.incoming[a.expected]
		if !ok || !ss.processLocked(m) || ss.ended {
			return
		}
		delete(a.incoming, a.expected)
		a.expected++
		ss.afterProcessLocked()
	}
}

// processLocked hands one in-order client message to the handshake or the
// port plugin. false means "not ready" or failed: not acknowledged, not
// consumed. It may unlock ss.mu while it writes to the target.
func (ss *session) processLocked(m protocol.Message) bool {
	a := &ss.agent
	if a.phase != phaseComplete {
		// Until HandshakeComplete has been sent, everything but the
		// HandshakeResponse is acknowledged and discarded (§5.3).
		if m.PayloadType == protocol.PayloadHandshakeResponse && a.phase == phaseRequested && a.response == nil {
			resp, err := protocol.ParseHandshakeResponse(m.Payload)
			if err != nil {
				ss.srv.logf("ssmtest: session %s: %v", ss.id, err)
				a.phase = phaseFailed
				ss.finishLocked(EndHandshakeFailed, protocol.ErrorTitle+protocol.HandshakeFailedPrefix+err.Error())
				return true
			}
			a.response = &resp
		} else {
			ss.srv.logf("ssmtest: session %s: discarded %s seq %d before handshake complete", ss.id, m.PayloadType, m.SequenceNumber)
			ss.srv.add(func(st *Stats) { st.EarlyDataDiscarded++ })
		}
		return true
	}
	if a.finishing || a.target == nil {
		return false // the port plugin is not (or no longer) ready
	}
	switch m.PayloadType {
	case protocol.PayloadOutput:
		if len(m.Payload) == 0 {
			return true
		}
		if a.redial && !ss.redialLocked() {
			return false
		}
		conn, mux := a.target, a.mux
		ss.mu.Unlock()
		_, err := conn.Write(m.Payload)
		ss.mu.Lock()
		if err != nil {
			if !ss.ended && !a.finishing {
				ss.srv.logf("ssmtest: session %s: write to target: %v", ss.id, err)
			}
			return false
		}
		if mux != nil {
			mux.countUp(m.Payload, a.fwd)
		}
		n := int64(len(m.Payload))
		ss.srv.add(func(st *Stats) { st.BytesUp += n })
	case protocol.PayloadFlag:
		f, err := protocol.ParseFlag(m.Payload)
		if err != nil {
			ss.srv.logf("ssmtest: session %s: %v", ss.id, err)
			return true
		}
		ss.srv.logf("ssmtest: session %s: flag %s", ss.id, f)
		switch f {
		case protocol.FlagTerminateSession:
			if protocol.CompareAgentVersions(ss.agentVersion, protocol.AgentVersionTerminateHonoured) < 0 {
				// Agents before 2.3.756.0 ignore it (§9.3): only
				// TerminateSession ends the session.
				break
			}
			ss.finishLocked(EndTerminateFlag, "")
		case protocol.FlagDisconnectToPort:
			if a.mux != nil {
				// Streams end with smux FIN in mux mode (§7.4).
				a.fwd.ignored.Add(1)
				break
			}
			if ss.portType == "" {
				// SSH: the closed destination is a read failure that ends
				// the session (§7.2); the agent sets no text.
				ss.finishLocked(EndDisconnectFlag, "")
			} else {
				a.target.Close()
				a.redial = true
			}
		}
	}
	return true
}

// afterProcessLocked acts on a HandshakeResponse once it has been
// acknowledged: fail the session, or hand it to the handshake's own turn,
// which sends HandshakeComplete (completeHandshake, §9.1 steps 4–6).
func (ss *session) afterProcessLocked() {
	a := &ss.agent
	resp := a.response
	if resp == nil {
		return
	}
	a.response = nil
	a.clientVersion = resp.ClientVersion
	for _, act := range resp.ProcessedClientActions {
		if act.ActionStatus != protocol.ActionSuccess {
			a.phase = phaseFailed
			ss.finishLocked(EndHandshakeFailed, protocol.ErrorTitle+protocol.HandshakeFailedPrefix+
				fmt.Sprintf("%s failed on client with status %d error: %s", act.ActionType, act.ActionStatus, act.Error))
			return
		}
	}
	a.phase = phaseResponded
	a.completeAt = time.Now().Add(ss.srv.opts.HandshakeCompleteDelay)
	if ss.srv.opts.HandshakeCompleteDelay > 0 {
		ss.srv.add(func(st *Stats) { st.DelayedCompletes++ })
	}
}

// completeDue reports, once per handshake, how long until HandshakeComplete
// is due.
func (ss *session) completeDue() (time.Duration, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	a := &ss.agent
	if a.phase != phaseResponded || a.completeArmed || ss.ended {
		return 0, false
	}
	a.completeArmed = true
	return time.Until(a.completeAt), true
}

// completeHandshake sends HandshakeComplete, marks the handshake complete
// only then (§9.1 step 5), and starts the port plugin (step 6).
func (ss *session) completeHandshake() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	a := &ss.agent
	if a.phase != phaseResponded || ss.ended {
		return
	}
	hc := protocol.HandshakeComplete{HandshakeTimeToComplete: time.Since(a.requestedAt)}
	ss.sendStreamLocked(protocol.PayloadHandshakeComplete, mustJSON(hc))
	a.phase = phaseComplete
	ss.srv.logf("ssmtest: session %s: handshake complete, client version %q", ss.id, a.clientVersion)

	if host := ss.properties["host"]; host != "" && !ss.remoteHostLocked(host) {
		return
	}
	if ss.portType == typeLocalPortForward &&
		protocol.CompareAgentVersions(a.clientVersion, protocol.ClientVersionMux) >= 0 &&
		protocol.CompareAgentVersions(ss.agentVersion, protocol.AgentVersionMuxMin) >= 0 {
		ss.startMuxLocked()
		return
	}
	if ss.portType == typeLocalPortForward {
		a.fwd.basicSessions.Add(1)
	}
	ss.srv.wg.Add(1)
	go ss.dial(ss.dialFuncLocked(), ss.destinationsLocked())
}

// dial is the basic port plugin's first dial (§9.1 step 6).
func (ss *session) dial(dialFunc func(ctx context.Context, network, addr string) (net.Conn, error), addrs []string) {
	defer ss.srv.wg.Done()
	conn, err := dialDestinations(ss.ctx, dialFunc, addrs)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		if conn != nil {
			conn.Close()
		}
		return
	}
	ss.dialed <- dialResult{conn, err} // cap 1, the only send
}

// dialDone takes the result of the first dial: start reading the target,
// or end the session with the agent's text.
func (ss *session) dialDone(r dialResult) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	a := &ss.agent
	if ss.ended || a.finishing {
		if r.conn != nil {
			r.conn.Close()
		}
		return
	}
	if r.err != nil {
		ss.finishLocked(EndDialFailed, protocol.DialFailedPrefix+r.err.Error())
		return
	}
	ss.srv.logf("ssmtest: session %s: connected to %s", ss.id, r.conn.RemoteAddr())
	a.target = r.conn
	ss.srv.wg.Add(1)
	go ss.readTarget(r.conn)
	ss.drainIncomingLocked()
}

// redialLocked is LocalPortForwarding's "reconnect on next data" (§7.3).
func (ss *session) redialLocked() bool {
	a := &ss.agent
	dialFunc, addrs := ss.dialFuncLocked(), ss.destinationsLocked()
	ss.mu.Unlock()
	conn, err := dialDestinations(ss.ctx, dialFunc, addrs)
	ss.mu.Lock()
	if ss.ended || a.finishing {
		if conn != nil {
			conn.Close()
		}
		return false
	}
	if err != nil {
		ss.finishLocked(EndDialFailed, protocol.DialFailedPrefix+err.Error())
		return false
	}
	a.target, a.redial = conn, false
	ss.srv.wg.Add(1)
	go ss.readTarget(conn)
	return true
}

// readTarget is the port plugin's WritePump (§5.6, §7.2, §7.4): 1024-byte
// reads from the target or the smux server, each sent as one Output
// message, with a 1 ms pause after each under Pacing. It does not read
// while no client is attached or while the websocket's queue is full.
func (ss *session) readTarget(conn net.Conn) {
	defer ss.srv.wg.Done()
	a := &ss.agent
	buf := make([]byte, protocol.MaxStreamPayload)
	for {
		if !ss.waitSendable(conn) {
			return
		}
		n, err := conn.Read(buf)
		ss.mu.Lock()
		if ss.ended || a.finishing || a.target != conn {
			ss.mu.Unlock()
			return
		}
		if n > 0 {
			ss.sendStreamLocked(protocol.PayloadOutput, append([]byte(nil), buf[:n]...))
			if a.mux != nil {
				a.mux.countDown(buf[:n], a.fwd)
			}
		}
		if err != nil {
			switch {
			case a.mux != nil:
				// The smux server has closed its end: its session is dead
				// and the port plugin exits (§7.4).
				ss.srv.logf("ssmtest: session %s: smux server output ended: %v", ss.id, err)
				ss.finishLocked(EndMuxClosed, "")
			case ss.portType == typeLocalPortForward:
				ss.srv.logf("ssmtest: session %s: target closed (%v); dialing again on the next data", ss.id, err)
				conn.Close()
				a.redial = true
			case errors.Is(err, io.EOF):
				ss.finishLocked(EndTargetEOF, "")
			default:
				// Any other read error fails the session; the agent
				// reports no text for it.
				ss.srv.logf("ssmtest: session %s: read target: %v", ss.id, err)
				ss.finishLocked(EndTargetEOF, "")
			}
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
		if ss.srv.opts.Pacing && n > 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// waitSendable waits until a client is attached and its websocket is not
// stuck. false: stop reading conn.
func (ss *session) waitSendable(conn net.Conn) bool {
	a := &ss.agent
	for {
		ss.mu.Lock()
		if ss.ended || a.finishing || a.target != conn {
			ss.mu.Unlock()
			return false
		}
		ok := ss.ws != nil && !ss.ws.stuckLocked()
		ss.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ss.done:
			return false
		case <-ss.writable:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// finishLocked is the end of the agent's side: the plugin has stopped, the
// target is closed, and the agent waits up to 2 s for its outgoing messages
// to be acknowledged before the session ends with output (§8.5).
func (ss *session) finishLocked(reason, output string) {
	a := &ss.agent
	if a.finishing || ss.ended {
		return
	}
	a.finishing = true
	if a.target != nil {
		a.target.Close()
	}
	if a.mux != nil {
		a.mux.sess.Close()
	}
	ss.srv.logf("ssmtest: session %s: agent finishing: %s", ss.id, reason)
	ss.srv.wg.Add(1)
	go ss.drain(reason, output)
}

func (ss *session) drain(reason, output string) {
	defer ss.srv.wg.Done()
	deadline := time.Now().Add(drainWait)
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		ss.mu.Lock()
		n := len(ss.agent.outgoing)
		ss.mu.Unlock()
		if n == 0 || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ss.done:
			return
		case <-t.C:
		}
	}
	ss.end(reason, output)
}

// sendStreamLocked sends a new output_stream_data message (§4.5: flags 1 on
// seq 0) and keeps it for retransmission (§5.4). While no client is
// attached it only goes into the buffer.
func (ss *session) sendStreamLocked(pt protocol.PayloadType, payload []byte) {
	a := &ss.agent
	seq := a.nextSeq
	a.nextSeq++
	var flags uint64
	if seq == 0 {
		flags = protocol.HeaderFlagSYN
	}
	m := protocol.Message{
		Type:           protocol.OutputStreamData,
		SchemaVersion:  protocol.SchemaVersion,
		CreatedDate:    nowMillis(),
		SequenceNumber: seq,
		Flags:          flags,
		MessageID:      ss.newIDLocked(),
		PayloadType:    pt,
		Payload:        payload,
	}
	frame := mustMarshal(&m)
	var n int
	if pt == protocol.PayloadOutput {
		n = len(payload)
		ss.srv.add(func(st *Stats) { st.BytesDown += int64(n) })
	}
	if len(a.outgoing) < maxOutgoing {
		// A full buffer makes the agent send the message once, unkept.
		a.outgoing = append(a.outgoing, &outMsg{seq: seq, frame: frame, streamLen: n, lastSent: time.Now()})
	}
	if w := ss.ws; w != nil {
		w.transmitLocked(frame, true, n)
	}
}

// sendAckLocked acknowledges m (§4.5, §5.1).
func (ss *session) sendAckLocked(m *protocol.Message) {
	if w := ss.ws; w != nil {
		am := protocol.NewAckMessage(m, ss.newIDLocked(), nowMillis())
		w.transmitLocked(mustMarshal(&am), false, 0)
	}
}

// ackedLocked removes the acknowledged message from the outgoing buffer
// and feeds the RTT estimator (§5.4, §5.5).
func (ss *session) ackedLocked(m protocol.Message) {
	ack, err := protocol.ParseAck(m.Payload)
	if err != nil {
		ss.srv.logf("ssmtest: session %s: %v", ss.id, err)
		return
	}
	a := &ss.agent
	for i, o := range a.outgoing {
		if o.seq != ack.AcknowledgedMessageSequenceNumber {
			continue
		}
		if i == 0 {
			a.outgoing[0] = nil
			a.outgoing = a.outgoing[1:]
		} else {
			a.outgoing = append(a.outgoing[:i], a.outgoing[i+1:]...)
		}
		a.updateRTO(time.Since(o.lastSent))
		return
	}
}

// updateRTO is §5.5 with the agent's constants.
func (a *agentState) updateRTO(r time.Duration) {
	diff := a.srtt - r
	if diff < 0 {
		diff = -diff
	}
	a.rttvar = a.rttvar*3/4 + diff/4
	a.srtt = a.srtt*7/8 + r/8
	a.rto = a.srtt + max(clockGranule, 4*a.rttvar)
	if a.rto > maxRTO {
		a.rto = maxRTO
	}
}

// resendTick is the agent's resend scheduler (§5.4): only the oldest
// unacknowledged message, only once its RTO has passed since it was last
// sent, and not while the agent is paused (no client attached).
func (ss *session) resendTick() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	a := &ss.agent
	w := ss.ws
	if ss.ended || w == nil || len(a.outgoing) == 0 {
		return
	}
	o := a.outgoing[0]
	if time.Since(o.lastSent) <= a.rto {
		return
	}
	w.transmitLocked(o.frame, true, o.streamLen)
	o.lastSent = time.Now()
	ss.srv.add(func(st *Stats) { st.Retransmissions++ })
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ssmtest: encode %T: %v", v, err))
	}
	return b
}
