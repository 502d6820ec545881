package proxy

import (
	"time"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// Agents before 3.2.1041.0 ignore a stream message they already have: no
// ack (§5.3, §9.3). A message whose ack died with a websocket is resent on
// the next one and never acknowledged; it would stay in the window for
// good, resent every second, and the session could not drain at the end of
// its input — or, once a few resumes had stuck enough of them, send at all.
//
// The agent handles a websocket's frames in order and acknowledges every
// message it does not already have (processed or buffered), but for one
// case: its port plugin not yet connected ("not ready", §5.3), which ends
// once it has sent data. So once such an agent has sent data, an ack for a
// message first sent on the current link shows that every message resent
// on that link before it, and still unacknowledged, was a duplicate. That
// one is taken as delivered after one more RTO, the margin for frames
// reordered on the way. (An ack for a message resent on the current link
// proves nothing: it may answer the copy sent on the link before.) When
// nothing new follows the resent messages, an empty data message does.

// ignoresDuplicates reports an agent that does not re-acknowledge.
func (lp *loop) ignoresDuplicates() bool {
	return lp.agentVersion != "" && protocol.CompareAgentVersions(lp.agentVersion, protocol.AgentVersionReAck) < 0
}

// passedOver marks the messages the agent must have had before it
// acknowledged acked.
func (lp *loop) passedOver(acked *outMsg) {
	if lp.link == nil || !lp.sawData || acked.firstGen != lp.link.gen || !lp.ignoresDuplicates() {
		return
	}
	now := time.Now()
	for _, m := range lp.win.msgs {
		if m.seq > acked.seq {
			break
		}
		if m.gen == acked.firstGen && m.firstGen < m.gen && m.linkTx < acked.firstTx && m.presumedAt.IsZero() {
			m.presumedAt = now
		}
	}
}

// settlePresumed drops the messages marked by passedOver that are still
// unacknowledged an RTO later on the same link.
func (lp *loop) settlePresumed(now time.Time, rto time.Duration) {
	for i := 0; i < len(lp.win.msgs); {
		m := lp.win.msgs[i]
		if m.presumedAt.IsZero() || m.gen != lp.link.gen || now.Sub(m.presumedAt) <= rto {
			i++
			continue
		}
		lp.win.remove(m.seq)
		lp.s.stats.Presumed++
		lp.s.log.Debug("the agent ignores duplicates: taking a resent message as delivered", "seq", m.seq, "agent_version", lp.agentVersion)
	}
}

// probeDuplicates sends an empty data message when messages have been
// resent on this link and nothing sent since is new on it: its ack settles
// the duplicates among them (see above). Input that goes on supplies new
// messages of its own; a probe is needed when it has ended, or when the
// window is full of duplicates.
func (lp *loop) probeDuplicates() {
	if lp.link == nil || lp.win.len() == 0 || lp.paused() || !lp.sawData || !lp.ignoresDuplicates() {
		return
	}
	resent := false
	for _, m := range lp.win.msgs {
		if m.firstGen == lp.link.gen || !m.presumedAt.IsZero() {
			return // a new message in flight here (a probe among them), or settling
		}
		resent = resent || m.gen == lp.link.gen
	}
	if resent {
		lp.s.log.Debug("resent messages unacknowledged by an agent that ignores duplicates; probing")
		lp.sendStream(protocol.PayloadOutput, nil)
	}
}
