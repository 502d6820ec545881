package ssmtest

// The faults of Options, all off by default. Those that act on single
// frames (AckLoss, Duplicate, Reorder, Latency) apply in both directions
// between a websocket and the agent; those that break a websocket (Bye,
// drop, black hole) hit each websocket at most once, so that every broken
// websocket costs the client exactly one ResumeSession and one reconnect.
// Nothing is injected once the agent is finishing or the session has ended.

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// maxHold bounds how long Reorder holds a frame back waiting for the next
// one, so that the last frame of a burst is late but not stuck.
const maxHold = 50 * time.Millisecond

// roll reports true with probability p.
func roll(r *rand.Rand, p float64) bool {
	return p > 0 && r.Float64() < p
}

// faultable reports whether w may still be broken by a fault.
func (w *wsConn) faultable() bool {
	return !w.faulted && w.live() && !w.ss.ended && !w.ss.agent.finishing
}

// transmitLocked queues one agent frame for the client through the
// outgoing faults: an ack may be lost; a stream frame may be sent twice or
// held back until the frame after it. The first HandshakeComplete goes out
// as it is, followed by the HugeFrameBytes frame if that is on.
func (w *wsConn) transmitLocked(frame []byte, stream bool, streamLen int) {
	if w.dead || w.closing {
		return
	}
	ss := w.ss
	opts := &ss.srv.opts
	f := outFrame{data: frame, streamLen: streamLen}
	if stream && opts.HugeFrameBytes > 0 && !ss.hugeSent && framePayloadType(frame) == protocol.PayloadHandshakeComplete {
		w.releaseOutHeldLocked()
		w.enqueueLocked(f)
		w.sendHugeFrameLocked()
		return
	}
	if !stream {
		if roll(ss.rngOut, opts.AckLoss) {
			ss.srv.add(func(st *Stats) { st.AcksLost++ })
			return
		}
	} else {
		if roll(ss.rngOut, opts.Duplicate) {
			ss.srv.add(func(st *Stats) { st.FramesDuplicated++ })
			w.enqueueLocked(f)
		}
		if w.outHeld == nil && roll(ss.rngOut, opts.Reorder) {
			ss.srv.add(func(st *Stats) { st.FramesReordered++ })
			w.outHeld = &f
			w.outHeldTimer = time.AfterFunc(maxHold, w.flushOutHeld)
			return
		}
	}
	w.enqueueLocked(f)
	w.releaseOutHeldLocked()
}

// releaseOutHeldLocked queues the frame Reorder held back.
func (w *wsConn) releaseOutHeldLocked() {
	if f := w.outHeld; f != nil {
		w.outHeld = nil
		w.outHeldTimer.Stop()
		w.enqueueLocked(*f)
	}
}

func (w *wsConn) flushOutHeld() {
	w.ss.mu.Lock()
	w.releaseOutHeldLocked()
	w.ss.mu.Unlock()
}

// holdInLocked holds a client frame back until the next one arrives, or
// maxHold.
func (w *wsConn) holdInLocked(m protocol.Message) {
	w.inHeld = &m
	w.inHeldTimer = time.AfterFunc(maxHold, func() {
		w.ss.mu.Lock()
		defer w.ss.mu.Unlock()
		if held := w.inHeld; held != nil && !w.dead {
			w.inHeld = nil
			w.deliverLocked(*held)
		}
	})
}

// framePayloadType reads the PayloadType of an encoded frame (the four
// bytes before PayloadLength, §3).
func framePayloadType(frame []byte) protocol.PayloadType {
	if len(frame) < protocol.FrameHeaderLen {
		return 0
	}
	return protocol.PayloadType(binary.BigEndian.Uint32(frame[protocol.FrameHeaderLen-8:]))
}

// sendHugeFrameLocked queues the HugeFrameBytes frame: output_stream_data,
// PayloadType Output, the agent's next sequence number (which it consumes,
// so the agent's own data follows it), a correct digest. It is encoded
// here by hand, after §3, because protocol.Message refuses payloads above
// protocol.MaxPayload; and it is neither kept for retransmission nor
// counted as stream bytes, so no other fault fires because of it.
func (w *wsConn) sendHugeFrameLocked() {
	ss := w.ss
	ss.hugeSent = true
	seq := ss.agent.nextSeq
	ss.agent.nextSeq++
	header := protocol.Message{
		Type:           protocol.OutputStreamData,
		SchemaVersion:  protocol.SchemaVersion,
		CreatedDate:    nowMillis(),
		SequenceNumber: seq,
		MessageID:      ss.newIDLocked(),
		PayloadType:    protocol.PayloadOutput,
		Payload:        []byte{0}, // replaced below
	}
	n := ss.srv.opts.HugeFrameBytes
	frame := make([]byte, protocol.FrameHeaderLen+n) // a payload of zeros
	copy(frame, mustMarshal(&header)[:protocol.FrameHeaderLen])
	sum := sha256.Sum256(frame[protocol.FrameHeaderLen:])
	copy(frame[protocol.FrameHeaderLen-8-sha256.Size:], sum[:])
	binary.BigEndian.PutUint32(frame[protocol.FrameHeaderLen-4:], uint32(n))
	w.enqueueLocked(outFrame{data: frame})
	ss.srv.add(func(st *Stats) { st.HugeFrames++ })
	ss.srv.logf("ssmtest: session %s: sent a %d-byte output_stream_data as seq %d (HugeFrameBytes)", ss.id, n, seq)
}

// countStreamBytesLocked adds Output payload bytes (the port's byte
// stream) that crossed w, either way, and breaks w when DropEveryBytes or BlackholeEvery is reached. It
// reports whether w was broken now.
func (w *wsConn) countStreamBytesLocked(n int) bool {
	w.streamBytes += int64(n)
	if !w.faultable() {
		return false
	}
	ss := w.ss
	opts := &ss.srv.opts
	switch {
	case opts.DropEveryBytes > 0 && w.streamBytes >= opts.DropEveryBytes:
		w.faulted = true
		ss.srv.add(func(st *Stats) { st.Drops++ })
		ss.srv.logf("ssmtest: session %s: websocket %d dropped after %d stream bytes", ss.id, w.n, w.streamBytes)
		w.abortLocked()
		return true
	case opts.BlackholeEvery > 0 && w.streamBytes >= opts.BlackholeEvery:
		// The websocket stays attached: the gateway does not know. The
		// agent's frames pile up in its queue until the client replaces it.
		// Reading stops now, even in the middle of a read, so that pings
		// go unanswered and the client's writes fill the small receive
		// buffer (recvBuffer) and then block.
		w.faulted = true
		w.blackholed = true
		w.conn.SetReadDeadline(time.Unix(1, 0))
		w.stopTimersLocked()
		w.outHeld, w.inHeld = nil, nil
		ss.srv.add(func(st *Stats) { st.Blackholes++ })
		ss.srv.logf("ssmtest: session %s: websocket %d black-holed after %d stream bytes", ss.id, w.n, w.streamBytes)
		notify(w.wake)
		return true
	}
	return false
}

// bye closes w with 1000 "Bye" as the gateway does periodically (§2).
func (w *wsConn) bye() {
	ss := w.ss
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !w.faultable() {
		return
	}
	w.faulted = true
	ss.srv.add(func(st *Stats) { st.Byes++ })
	ss.srv.logf("ssmtest: session %s: websocket %d: Bye", ss.id, w.n)
	w.closeLocked(websocket.CloseNormalClosure, "Bye", nil)
}

// runPauses sends pause_publication every PauseEvery and start_publication
// PauseFor later (§8.4). While paused, the gateway drops the client's
// stream data without acknowledging it.
func (ss *session) runPauses() {
	defer ss.srv.wg.Done()
	opts := &ss.srv.opts
	t := time.NewTimer(opts.PauseEvery)
	defer t.Stop()
	for {
		select {
		case <-ss.done:
			return
		case <-t.C:
		}
		ss.mu.Lock()
		w := ss.ws
		if w == nil || !w.faultable() {
			ss.mu.Unlock()
			t.Reset(opts.PauseEvery)
			continue
		}
		ss.paused = true
		ss.srv.add(func(st *Stats) { st.Pauses++ })
		w.enqueueLocked(outFrame{data: ss.controlFrameLocked(protocol.PausePublication, nil)})
		ss.mu.Unlock()

		t.Reset(opts.PauseFor)
		select {
		case <-ss.done:
			return
		case <-t.C:
		}
		ss.mu.Lock()
		ss.paused = false
		if w := ss.ws; w != nil {
			w.enqueueLocked(outFrame{data: ss.controlFrameLocked(protocol.StartPublication, nil)})
		}
		ss.mu.Unlock()
		t.Reset(opts.PauseEvery)
	}
}
