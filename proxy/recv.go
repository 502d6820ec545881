package proxy

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// The receiving half of the loop (§5.1, §5.3): agent stream data is
// acknowledged, put in order, and delivered to stdout; acks, publication
// control and channel_closed are acted on.

// handle processes one frame. done reports the end of the session.
func (lp *loop) handle(ctx context.Context, m *protocol.Message) (done bool, err error) {
	switch m.Type {
	case protocol.OutputStreamData:
		lp.unpause("stream data") // the agent is there (§8.4)
		return lp.receiveStream(ctx, m)
	case protocol.Acknowledge:
		lp.unpause("acknowledge")
		lp.receiveAck(m)
	case protocol.ChannelClosed:
		return true, lp.channelClosed(m)
	case protocol.PausePublication:
		lp.s.log.Debug("pause_publication")
		if !lp.paused() {
			lp.pausedAt = time.Now()
			lp.s.stats.Pauses++
			lp.emit(EventPaused, nil)
		}
	case protocol.StartPublication:
		lp.s.log.Debug("start_publication")
		lp.unpause("start_publication")
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
		lp.s.stats.Duplicates++
		lp.ack(m)
		return false, nil
	case m.SequenceNumber > lp.expected:
		if _, dup := lp.reorder[m.SequenceNumber]; !dup {
			if len(lp.reorder) >= maxReorder || lp.reorderBytes+len(m.Payload) > maxReorderBytes {
				return false, nil // no room: not acked, the agent resends
			}
			lp.reorder[m.SequenceNumber] = *m
			lp.reorderBytes += len(m.Payload)
			lp.s.stats.OutOfOrder++
		} else {
			lp.s.stats.Duplicates++
		}
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
		lp.reorderBytes -= len(next.Payload)
		if err := lp.process(ctx, &next); err != nil {
			return true, err
		}
		lp.expected++
	}
}

// ack acknowledges m and remembers the ack for repetition after a resume.
func (lp *loop) ack(m *protocol.Message) {
	// Built in reused buffers: the JSON in ackJSON, the frame in its own
	// ring slot (the websocket copies what it is given).
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
		lp.lastOutput = time.Now()
		return lp.deliver(ctx, m.Payload)
	case protocol.PayloadHandshakeRequest:
		return lp.handshake(m.Payload)
	case protocol.PayloadHandshakeComplete:
		c, err := protocol.ParseHandshakeComplete(m.Payload)
		if err != nil {
			return &ProtocolError{Err: err}
		}
		lp.established = true
		lp.s.log.Debug("handshake complete", "took", c.HandshakeTimeToComplete)
		lp.emit(EventHandshakeComplete, nil)
	case protocol.PayloadFlag:
		f, err := protocol.ParseFlag(m.Payload)
		if err == nil && f == protocol.FlagConnectToPortError {
			lp.s.log.Debug("the agent could not connect to the destination for a connection")
			lp.emit(EventConnectToPortError, nil)
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

// channelClosed ends the session as the gateway says (§4.4, §8.3, §10). A
// payload that does not decode says nothing trustworthy: the session is
// treated as failed and is terminated like any other.
func (lp *loop) channelClosed(m *protocol.Message) error {
	c, err := protocol.ParseChannelClosed(m.Payload)
	if err != nil {
		return &ProtocolError{Err: fmt.Errorf("unreadable channel_closed: %w", err)}
	}
	lp.remoteClosed = true
	out := textutil.OneLine(c.Output)
	lp.s.log.Debug("channel closed", "output", out)
	switch out {
	case "":
		return nil
	case protocol.IdleTimeoutOutput:
		return ErrIdleTimeout
	}
	return newRemoteError(c.Output)
}
