package proxy

// A fuzz target for the receive path (recv.go, §5.3): the loop's handle fed
// random and hostile frame sequences with no link, checking that stdout gets
// exactly the in-order payloads. The acks it sends and the send side are
// gateway_test.go's; bytes through a real websocket and the emulator's agent
// session_test.go's; decoding the frames themselves protocol/'s.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// syncBuffer is a bytes.Buffer safe for the stdout writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// payloadFor is the one payload the agent ever sends with sequence seq; a
// few sequence numbers carry flags instead of bytes.
func payloadFor(seq int64) (protocol.PayloadType, []byte) {
	if seq%7 == 3 {
		p, _ := protocol.FlagConnectToPortError.AppendBinary(nil)
		return protocol.PayloadFlag, p
	}
	return protocol.PayloadOutput, []byte(strconv.FormatInt(seq, 10) + ";")
}

func testLoop(t testing.TB, out *syncBuffer) *loop {
	s := &Session{opts: Options{}, id: "fuzz"}
	s.opts.setDefaults()
	s.log = slog.New(slog.DiscardHandler)
	s.rand = bytes.NewReader(make([]byte, 1<<20))
	lp := newLoop(s, out)
	lp.established = true
	lp.stopping = true // no link: writes are skipped, nothing resumes
	return lp
}

// FuzzReceive feeds random and hostile frame sequences into the session's
// receive path (§5.3): duplicates, gaps, reordering, stray acks, garbage
// payload types, publication control. It must not panic or block, and what
// reaches stdout must be exactly the in-order payloads with no gap, repeat
// or reordering.
func FuzzReceive(f *testing.F) {
	f.Add([]byte{0, 2, 0, 3, 0, 1, 1, 2, 4, 9, 5, 0, 0, 2})
	f.Add([]byte{0, 7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2})
	f.Add(bytes.Repeat([]byte{0, 2}, 200))
	f.Add([]byte{6, 1, 7, 2, 3, 3, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		out := &syncBuffer{}
		lp := testLoop(t, out)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i], ops[i+1]
			m := protocol.Message{Type: protocol.OutputStreamData, CreatedDate: 1}
			switch op % 8 {
			case 0, 1, 2, 3: // stream data around the expected sequence number
				m.SequenceNumber = lp.expected + int64(arg%16) - 4
				if m.SequenceNumber < 0 {
					m.SequenceNumber = 0
				}
				m.PayloadType, m.Payload = payloadFor(m.SequenceNumber)
			case 4: // an ack for something we never sent
				m.Type = protocol.Acknowledge
				m.Payload = []byte(fmt.Sprintf(`{"AcknowledgedMessageSequenceNumber":%d}`, int(arg)-128))
			case 5:
				m.Type = protocol.PausePublication
			case 6:
				m.Type = protocol.StartPublication
			case 7: // hostile: unknown payload type, bad flag, unknown message type
				m.Type = protocol.MessageType([]string{"output_stream_data", "agent_session_state", "weird"}[arg%3])
				m.SequenceNumber = lp.expected + int64(arg%5) + 1<<40 // far future: buffered, never delivered
				m.PayloadType = protocol.PayloadType(arg)
				m.Payload = []byte{arg}
			}
			done, err := lp.handle(ctx, &m)
			if ctx.Err() != nil {
				t.Fatal("receive path blocked")
			}
			if done || err != nil {
				t.Fatalf("session ended on op %d: done=%v err=%v", i/2, done, err)
			}
		}
		if err := lp.out.finish(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		for s := int64(0); s < lp.expected; s++ {
			if pt, p := payloadFor(s); pt == protocol.PayloadOutput {
				want.Write(p)
			}
		}
		if got := out.String(); got != want.String() {
			t.Fatalf("stdout\n got %q\nwant %q", got, want.String())
		}
		for seq := range lp.reorder {
			if seq <= lp.expected-1 {
				t.Fatalf("reorder buffer holds delivered seq %d (expected %d)", seq, lp.expected)
			}
		}
	})
}
