package bench

// The null client: the least a data-channel client can do (protocol and
// gorilla only, no proxy code): answer the handshake, acknowledge every
// message at once and count the bytes. Run against the emulator with a TCP
// source or sink as the target, it gives what the emulator itself can
// carry on this machine, the ceiling no client can beat: the paced agent's
// real rate (1 KiB + time.Sleep(1 ms), which is slower than the nominal
// 1 KiB/ms), and the unpaced emulator's own limit.

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// nullSession is one session of the null client.
type nullSession struct {
	ws      *websocket.Conn
	nextSeq int64
}

// nullStart starts a session on an emulator whose target is addr and opens
// its data channel.
func nullStart(ctx context.Context, emu *ssmtest.Server) (*nullSession, error) {
	api := ssm.New(ssm.Options{
		Region:       ssmtest.DefaultRegion,
		BaseEndpoint: aws.String(emu.Endpoint()),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: ssmtest.AccessKeyID, SecretAccessKey: ssmtest.SecretAccessKey}, nil
		}),
		RetryMaxAttempts: 1,
	})
	out, err := api.StartSession(ctx, &ssm.StartSessionInput{
		Target:       aws.String("i-0123456789abcdef0"),
		DocumentName: aws.String("AWS-StartSSHSession"),
		Parameters:   map[string][]string{"portNumber": {"22"}},
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
		ClientVersion:        "1.2.677.0",
	})
	if err := ws.WriteMessage(websocket.TextMessage, open); err != nil {
		ws.Close()
		return nil, err
	}
	return &nullSession{ws: ws}, nil
}

func newID() protocol.UUID {
	u, err := protocol.NewUUID(crand.Reader)
	if err != nil {
		panic(err)
	}
	return u
}

func (s *nullSession) send(pt protocol.PayloadType, payload []byte) error {
	m := protocol.Message{
		Type: protocol.InputStreamData, SchemaVersion: protocol.SchemaVersion,
		CreatedDate: uint64(time.Now().UnixMilli()), SequenceNumber: s.nextSeq,
		MessageID: newID(), PayloadType: pt, Payload: payload,
	}
	s.nextSeq++
	frame, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	return s.ws.WriteMessage(websocket.BinaryMessage, frame)
}

// receive reads frames until want Output bytes have arrived (want < 0:
// until the handshake is complete), acknowledging each stream message and
// answering the handshake. It returns the time of the first and the last
// Output byte. With no faults configured frames arrive in order; resends
// of messages whose ack was late are acked again and dropped.
func (s *nullSession) receive(want int64) (first, last time.Time, err error) {
	var got, expected int64
	for {
		_, data, err := s.ws.ReadMessage()
		if err != nil {
			return first, last, err
		}
		var m protocol.Message
		if err := m.UnmarshalBinary(data); err != nil {
			return first, last, err
		}
		if m.Type != protocol.OutputStreamData {
			continue
		}
		ack := protocol.NewAckMessage(&m, newID(), uint64(time.Now().UnixMilli()))
		frame, _ := ack.MarshalBinary()
		if err := s.ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			return first, last, err
		}
		if m.SequenceNumber < expected {
			continue // a resend whose ack was late: acked again above
		}
		if m.SequenceNumber > expected {
			return first, last, fmt.Errorf("null client: got seq %d, want %d", m.SequenceNumber, expected)
		}
		expected++
		switch m.PayloadType {
		case protocol.PayloadHandshakeRequest:
			resp, _ := json.Marshal(protocol.HandshakeResponse{
				ClientVersion: "1.2.677.0",
				ProcessedClientActions: []protocol.ProcessedClientAction{
					{ActionType: protocol.ActionSessionType, ActionStatus: protocol.ActionSuccess},
				},
			})
			if err := s.send(protocol.PayloadHandshakeResponse, resp); err != nil {
				return first, last, err
			}
		case protocol.PayloadHandshakeComplete:
			if want < 0 {
				return first, last, nil
			}
		case protocol.PayloadOutput:
			if first.IsZero() {
				first = time.Now()
			}
			got += int64(len(m.Payload))
			last = time.Now()
			if got >= want {
				return first, last, nil
			}
		}
	}
}

// nullDownload measures the emulator's download rate (bytes/s) to the null
// client: a TCP source writes size bytes as fast as the agent reads.
func nullDownload(b *testing.B, opts ssmtest.Options, size int64) float64 {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for n := int64(0); n < size; {
			k, err := c.Write(buf[:min(int64(len(buf)), size-n)])
			n += int64(k)
			if err != nil {
				return
			}
		}
		io.Copy(io.Discard, c) // until the session ends
	}()
	opts.TargetAddr = ln.Addr().String()
	emu, err := ssmtest.Start(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := nullStart(ctx, emu)
	if err != nil {
		b.Fatal(err)
	}
	defer s.ws.Close()
	first, last, err := s.receive(size)
	if err != nil {
		b.Fatalf("null client download: %v", err)
	}
	return float64(size) / last.Sub(first).Seconds()
}

// nullUpload measures the emulator's upload rate (bytes/s) from the null
// client in 1 KiB messages: the client sends without waiting for acks (the
// websocket's own back-pressure is the only limit), a TCP sink counts.
func nullUpload(b *testing.B, size int64) float64 {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan time.Time, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for n := int64(0); n < size; {
			k, err := c.Read(buf)
			n += int64(k)
			if err != nil {
				return
			}
		}
		got <- time.Now()
	}()
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: ln.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := nullStart(ctx, emu)
	if err != nil {
		b.Fatal(err)
	}
	defer s.ws.Close()
	if _, _, err := s.receive(-1); err != nil {
		b.Fatalf("null client handshake: %v", err)
	}
	// The agent acks nothing until it has dialled the target (§5.3); a
	// client that never resends must wait for that.
	time.Sleep(100 * time.Millisecond)
	go func() { // read and drop the acks
		for {
			if _, _, err := s.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	payload := make([]byte, protocol.MaxStreamPayload)
	start := time.Now()
	for n := int64(0); n < size; n += int64(len(payload)) {
		if err := s.send(protocol.PayloadOutput, payload[:min(int64(len(payload)), size-n)]); err != nil {
			b.Fatalf("null client upload: %v", err)
		}
	}
	select {
	case end := <-got:
		return float64(size) / end.Sub(start).Seconds()
	case <-ctx.Done():
		b.Fatal("null client upload did not finish")
	}
	return 0
}
