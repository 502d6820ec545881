package protocol

// Benchmarks of the codec's per-message work: figures, not pass/fail. The
// allocation counts are pinned as a test in payload_test.go
// (TestSteadyStateAllocs); whole sessions are measured in proxy/bench_test.go
// and, through real ssh, in bench/.

import (
	"testing"
)

// The benchmarks below cover the per-message work of the steady state
// (§5.6): every 1 KiB of stream data is one frame to encode or decode, and
// one acknowledge to build and one to parse. Run them with -benchmem; the
// allocation counts are what matters on a 2-core machine.

// benchPayload is one full stream message's payload (MaxStreamPayload).
var benchPayload = func() []byte {
	p := make([]byte, MaxStreamPayload)
	for i := range p {
		p[i] = byte(i * 7)
	}
	return p
}()

func benchMessage() Message {
	id, _ := ParseUUID("dd01e56b-ff48-483e-a508-b5f073f31b16")
	return Message{
		Type:           OutputStreamData,
		SchemaVersion:  SchemaVersion,
		CreatedDate:    1503434274948,
		SequenceNumber: 12345,
		MessageID:      id,
		PayloadType:    PayloadOutput,
		Payload:        benchPayload,
	}
}

// BenchmarkMarshal encodes a 1 KiB stream message: into a fresh buffer
// (MarshalBinary, what the session does today) and appended to a reused
// one (AppendBinary).
func BenchmarkMarshal(b *testing.B) {
	m := benchMessage()
	b.Run("MarshalBinary", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(m.Payload)))
		for b.Loop() {
			if _, err := m.MarshalBinary(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendBinary", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(m.Payload)))
		buf := make([]byte, 0, FrameHeaderLen+len(m.Payload))
		for b.Loop() {
			var err error
			if buf, err = m.AppendBinary(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUnmarshal decodes a 1 KiB stream message, validating the
// header and the payload digest and copying the payload.
func BenchmarkUnmarshal(b *testing.B) {
	m := benchMessage()
	frame, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Payload)))
	for b.Loop() {
		var got Message
		if err := got.UnmarshalBinary(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAck covers both halves of an acknowledgement: building and
// encoding the ack of a received message (Build), and decoding a received
// ack frame and its JSON payload (Parse).
func BenchmarkAck(b *testing.B) {
	m := benchMessage()
	id, _ := ParseUUID("0f8fad5b-d9cb-469f-a165-70867728950e")
	b.Run("Build", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			am := NewAckMessage(&m, id, 1503434274949)
			if _, err := am.MarshalBinary(); err != nil {
				b.Fatal(err)
			}
		}
	})
	am := NewAckMessage(&m, id, 1503434274949)
	frame, err := am.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Message
			if err := got.UnmarshalBinary(frame); err != nil {
				b.Fatal(err)
			}
			a, err := ParseAck(got.Payload)
			if err != nil || a.AcknowledgedMessageSequenceNumber != m.SequenceNumber {
				b.Fatalf("ParseAck = %+v, %v", a, err)
			}
		}
	})
}
