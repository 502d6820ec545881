package proxy

import (
	"fmt"
	"io"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// The sending half of the loop (§5.2, §5.4, §5.5): stdin bytes become
// sequenced input_stream_data messages, each kept in the window until the
// agent acknowledges it and retransmitted after its timeout.

// flushPending sends buffered stdin bytes as stream messages while the
// window has room.
func (lp *loop) flushPending() {
	for len(lp.pending) > 0 && lp.win.len() < lp.s.opts.Window && !lp.paused() {
		n := min(len(lp.pending), protocol.MaxStreamPayload)
		lp.sendStream(protocol.PayloadOutput, lp.pending[:n])
		lp.s.stats.BytesUp += int64(n)
		lp.pending = lp.pending[n:]
	}
}

func (lp *loop) newID() protocol.UUID {
	io.ReadFull(lp.s.rand, lp.idBuf[:]) // ChaCha8 never fails
	return protocol.UUIDv4(lp.idBuf)
}

// sendStream sends one sequenced input_stream_data message and keeps it for
// retransmission. With no websocket, or while paused, it is only kept;
// attach or the retransmission timer sends it.
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
	om := &outMsg{seq: m.SequenceNumber, frame: frame, sent: now}
	lp.win.push(om)
	if !lp.paused() && lp.link != nil {
		om.link = lp.links
		lp.write(frame)
	}
}

func (lp *loop) sendFlag(f protocol.Flag) {
	p, _ := f.AppendBinary(nil)
	lp.sendStream(protocol.PayloadFlag, p)
}

// flushLink hands the frames the current link holds to its writer.
func (lp *loop) flushLink() {
	if lp.link == nil {
		return
	}
	if err := lp.link.flush(); err != nil {
		lp.lost(fmt.Errorf("write: %w", err), true)
	}
}

// write queues a frame on the current link; a failure starts a resume.
func (lp *loop) write(frame []byte) {
	if lp.link == nil {
		return
	}
	if err := lp.link.write(websocket.BinaryMessage, frame); err != nil {
		// Keep reading the old websocket until its reader fails: what the
		// kernel already received survives a reset and is not lost.
		lp.lost(fmt.Errorf("write: %w", err), true)
	}
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
	if om == nil || lp.link == nil || lp.paused() {
		return
	}
	now := time.Now()
	for _, m := range lp.win.msgs {
		if m.seq >= seq || lp.link == nil {
			break
		}
		if !m.fast {
			m.fast = true
			lp.resend(m, now)
		}
	}
}

// retransmit resends every message whose timeout has passed, with
// exponential backoff per message (§5.4, §5.5). Unlike the official peers
// it does not stop at the front message: after a burst of losses all of
// them go again at once. Nothing is resent while paused, or while the link
// has not yet taken what it was given (a congested or black-holed link,
// which the dead-peer check will replace).
func (lp *loop) retransmit(now time.Time) {
	if lp.link == nil || lp.paused() || lp.link.backlog() > maxBacklog {
		return
	}
	rto := lp.rtt.rto()
	for _, m := range lp.win.msgs {
		if lp.link == nil {
			return
		}
		if now.Sub(m.sent) > min(rto<<min(m.retries, 4), maxRTO) {
			lp.resend(m, now)
		}
	}
}

// resend sends m again.
func (lp *loop) resend(m *outMsg, now time.Time) {
	if m.link == 0 {
		m.link = lp.links
	}
	m.sent = now
	m.retries++
	lp.s.stats.Retransmits++
	lp.write(m.frame)
}
