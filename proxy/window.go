package proxy

import (
	"cmp"
	"slices"
	"time"
)

// outMsg is a sent stream message kept until acknowledged (§5.4).
type outMsg struct {
	seq     int64
	frame   []byte
	sent    time.Time // last (re)transmission
	retries int
	fast    bool // fast-retransmitted once already
	// link is the websocket (loop.links) it first went out on; 0: not
	// sent yet. A message first sent on an earlier websocket than the
	// current one may have had its ack die with that websocket.
	link int
}

// window holds unacknowledged outgoing messages in sequence order.
// Acknowledgements usually remove the front; any entry can be removed.
type window struct {
	msgs []*outMsg
}

func (w *window) len() int { return len(w.msgs) }

func (w *window) push(m *outMsg) { w.msgs = append(w.msgs, m) }

// remove deletes the message with seq and returns it, or nil.
func (w *window) remove(seq int64) *outMsg {
	i, found := slices.BinarySearchFunc(w.msgs, seq, func(m *outMsg, seq int64) int { return cmp.Compare(m.seq, seq) })
	if !found {
		return nil
	}
	m := w.msgs[i]
	if i == 0 {
		w.msgs[0] = nil
		w.msgs = w.msgs[1:]
		if len(w.msgs) == 0 {
			w.msgs = w.msgs[:0:0] // let the backing array go
		}
		return m
	}
	copy(w.msgs[i:], w.msgs[i+1:])
	w.msgs[len(w.msgs)-1] = nil
	w.msgs = w.msgs[:len(w.msgs)-1]
	return m
}

// rttEstimator computes the retransmission timeout of §5.5: SRTT starts at
// 100 ms, RTTVAR at 0, RTO = SRTT + max(10 ms, 4·RTTVAR), at most 1 s.
// Unlike the official peers it applies Karn's rule (no samples from
// retransmitted messages) and never goes below minRTO, so that queueing on a
// busy link does not trigger spurious retransmission storms.
type rttEstimator struct {
	srtt, rttvar time.Duration
}

const (
	initialSRTT      = 100 * time.Millisecond
	clockGranularity = 10 * time.Millisecond
	maxRTO           = time.Second
	minRTO           = 100 * time.Millisecond // the agent's own resend tick
)

func newRTTEstimator() rttEstimator { return rttEstimator{srtt: initialSRTT} }

func (e *rttEstimator) sample(r time.Duration) {
	d := e.srtt - r
	if d < 0 {
		d = -d
	}
	e.rttvar = (3*e.rttvar + d) / 4
	e.srtt = (7*e.srtt + r) / 8
}

func (e *rttEstimator) rto() time.Duration {
	rto := e.srtt + max(clockGranularity, 4*e.rttvar)
	return min(max(rto, minRTO), maxRTO)
}
