// Package nullclient is the least a Session Manager data-channel client can
// do, built on protocol/ and gorilla/websocket alone, with no ssm-proxy
// code: start a session, answer the handshake (§6), acknowledge every
// stream message at once (§5.3) and hand the payload on. It neither
// reorders, resumes nor keeps a window, so it is only for the fault-free
// emulator.
//
// The benchmarks use it two ways: in-process, with a TCP source or sink as
// the target, for what the emulator itself can carry (no ssh), and as ssh's
// ProxyCommand (bench/cmd/nullproxy), for what the paced agent delivers
// through the whole ssh chain when the client adds nothing: the pacing
// ceiling.
package nullclient

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// clientVersion is what the null client tells the agent (§6.2); any version
// with the features a port session needs.
const clientVersion = proxy.DefaultClientVersion

// Session is one session of the null client. Send may be called from one
// goroutine while Receive or Proxy runs in another.
type Session struct {
	API *ssm.Client
	ID  string

	ws       *websocket.Conn
	expected int64 // the next agent sequence number; the reader's alone

	wmu     sync.Mutex // one writer at a time (gorilla); guards what follows
	nextSeq int64
	unacked map[int64]sent // by sequence number, kept for Proxy's resends only
}

type sent struct {
	frame []byte
	at    time.Time
}

// Start starts a session on target through api and opens its data channel
// (§4).
func Start(ctx context.Context, api *ssm.Client, target string, params map[string][]string) (*Session, error) {
	out, err := api.StartSession(ctx, &ssm.StartSessionInput{
		Target:       aws.String(target),
		DocumentName: aws.String("AWS-StartSSHSession"),
		Parameters:   params,
	})
	if err != nil {
		return nil, err
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	ws, _, err := d.DialContext(ctx, aws.ToString(out.StreamUrl), nil)
	if err != nil {
		return nil, err
	}
	open, _ := json.Marshal(protocol.OpenDataChannel{
		MessageSchemaVersion: protocol.OpenDataChannelSchemaVersion,
		RequestID:            newID().String(),
		TokenValue:           aws.ToString(out.TokenValue),
		ClientID:             newID().String(),
		ClientVersion:        clientVersion,
	})
	if err := ws.WriteMessage(websocket.TextMessage, open); err != nil {
		ws.Close()
		return nil, err
	}
	return &Session{API: api, ID: aws.ToString(out.SessionId), ws: ws}, nil
}

// Close closes the websocket (the session stays open on the service).
func (s *Session) Close() error { return s.ws.Close() }

// Terminate ends the session on the service and closes the websocket.
func (s *Session) Terminate(ctx context.Context) error {
	_, err := s.API.TerminateSession(ctx, &ssm.TerminateSessionInput{SessionId: aws.String(s.ID)})
	s.ws.Close()
	return err
}

func newID() protocol.UUID {
	u, err := protocol.NewUUID(crand.Reader)
	if err != nil {
		panic(err)
	}
	return u
}

// Send sends one input_stream_data message (§5.1); under Proxy it is kept
// until it is acknowledged.
func (s *Session) Send(pt protocol.PayloadType, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	m := protocol.Message{
		Type: protocol.InputStreamData, SchemaVersion: protocol.SchemaVersion,
		CreatedDate: uint64(time.Now().UnixMilli()), SequenceNumber: s.nextSeq,
		MessageID: newID(), PayloadType: pt, Payload: payload,
	}
	frame, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	if s.unacked != nil {
		s.unacked[s.nextSeq] = sent{frame: frame, at: time.Now()}
	}
	s.nextSeq++
	return s.ws.WriteMessage(websocket.BinaryMessage, frame)
}

// resend sends again every message unacknowledged for longer than after:
// the agent drops data that arrives before it has dialled the target
// (§5.3), and ssh speaks first.
func (s *Session) resend(after time.Duration) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for seq, m := range s.unacked { // any order: the agent buffers what is early
		if time.Since(m.at) < after {
			continue
		}
		m.at = time.Now()
		s.unacked[seq] = m
		if err := s.ws.WriteMessage(websocket.BinaryMessage, m.frame); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) ack(m *protocol.Message) error {
	a := protocol.NewAckMessage(m, newID(), uint64(time.Now().UnixMilli()))
	frame, _ := a.MarshalBinary()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.ws.WriteMessage(websocket.BinaryMessage, frame)
}

func (s *Session) acked(payload []byte) {
	a, err := protocol.ParseAck(payload)
	if err != nil {
		return
	}
	s.wmu.Lock()
	delete(s.unacked, a.AcknowledgedMessageSequenceNumber)
	s.wmu.Unlock()
}

// Receive reads frames until want Output bytes have arrived (want < 0:
// until the handshake is complete), acknowledging each stream message,
// answering the handshake and dropping the payload. It returns the time of
// the first and the last Output byte.
func (s *Session) Receive(want int64) (first, last time.Time, err error) {
	var got int64
	err = s.receive(func(m *protocol.Message) (bool, error) {
		switch m.PayloadType {
		case protocol.PayloadHandshakeComplete:
			return want < 0, nil
		case protocol.PayloadOutput:
			if first.IsZero() {
				first = time.Now()
			}
			got += int64(len(m.Payload))
			last = time.Now()
			return got >= want, nil
		}
		return false, nil
	})
	return first, last, err
}

// receive reads frames and passes each new in-order stream message to
// handle until handle says done or reading fails. It acknowledges every
// stream message first (resends whose ack was late included, §5.3),
// answers the handshake request and records acks of what was sent. With
// no faults frames arrive in order; a gap is an error. A channel_closed
// message ends it with io.EOF.
func (s *Session) receive(handle func(*protocol.Message) (done bool, err error)) error {
	for {
		_, data, err := s.ws.ReadMessage()
		if err != nil {
			return err
		}
		var m protocol.Message
		if err := m.UnmarshalBinary(data); err != nil {
			return err
		}
		switch m.Type {
		case protocol.Acknowledge:
			s.acked(m.Payload)
			continue
		case protocol.ChannelClosed:
			return io.EOF
		case protocol.OutputStreamData:
		default:
			continue
		}
		if err := s.ack(&m); err != nil {
			return err
		}
		if m.SequenceNumber < s.expected {
			continue
		}
		if m.SequenceNumber > s.expected {
			return fmt.Errorf("null client: got seq %d, want %d", m.SequenceNumber, s.expected)
		}
		s.expected++
		if m.PayloadType == protocol.PayloadHandshakeRequest {
			resp, _ := json.Marshal(protocol.HandshakeResponse{
				ClientVersion: clientVersion,
				ProcessedClientActions: []protocol.ProcessedClientAction{
					{ActionType: protocol.ActionSessionType, ActionStatus: protocol.ActionSuccess},
				},
			})
			if err := s.Send(protocol.PayloadHandshakeResponse, resp); err != nil {
				return err
			}
		}
		if done, err := handle(&m); done || err != nil {
			return err
		}
	}
}

// Proxy carries stdin to the agent and the agent's output to stdout, as
// ssh's ProxyCommand, until the agent closes the channel (nil) or the
// websocket or stdout fails. Output is written to stdout synchronously, one
// write per message, as the official client does; stdin is sent in 1 KiB
// messages once the handshake is complete, with unacknowledged messages
// resent every 100 ms. Stdin's end is not waited for: the caller ends the
// session when ssh goes away.
func (s *Session) Proxy(stdin io.Reader, stdout io.Writer) error {
	s.wmu.Lock()
	s.unacked = map[int64]sent{}
	s.wmu.Unlock()
	ready := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ready:
		case <-stop:
			return
		}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		in := make(chan []byte)
		go func() {
			for {
				buf := make([]byte, protocol.MaxStreamPayload)
				n, err := stdin.Read(buf)
				if n > 0 {
					select {
					case in <- buf[:n]:
					case <-stop:
						return
					}
				}
				if err != nil {
					close(in)
					return
				}
			}
		}()
		for {
			select {
			case p, ok := <-in:
				if !ok {
					in = nil
					continue
				}
				if s.Send(protocol.PayloadOutput, p) != nil {
					return
				}
			case <-t.C:
				if s.resend(100*time.Millisecond) != nil {
					return
				}
			case <-stop:
				return
			}
		}
	}()
	err := s.receive(func(m *protocol.Message) (bool, error) {
		switch m.PayloadType {
		case protocol.PayloadHandshakeComplete:
			close(ready)
		case protocol.PayloadOutput:
			if _, err := stdout.Write(m.Payload); err != nil {
				return true, err
			}
		}
		return false, nil
	})
	if err == io.EOF {
		return nil
	}
	return err
}
