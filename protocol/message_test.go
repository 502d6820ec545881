package protocol

// Tests of the frame codec (message.go): the 127-byte golden vector the
// official serializer produced, every wire constant, each malformed field
// the decoder rejects, seeded random round trips, and a fuzz target. The
// payload codecs are payload_test.go's; the cross-check against the official
// serializer itself is interop/crosscheck_test.go's; what a session does with
// a bad frame is proxy/'s (recv_fuzz_test.go, gateway_test.go).

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestReferenceVector decodes the 127-byte frame of §3, produced by the
// official client's own serializer, field by field and re-encodes it.
func TestReferenceVector(t *testing.T) {
	raw, err := os.ReadFile("testdata/reference_input_stream_data.bin")
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 127 {
		t.Fatalf("vector is %d bytes, want 127", len(raw))
	}
	var m Message
	if err := m.UnmarshalBinary(raw); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	wantID, _ := ParseUUID("dd01e56b-ff48-483e-a508-b5f073f31b16")
	checks := []struct {
		name      string
		got, want any
	}{
		{"Type", m.Type, InputStreamData},
		{"SchemaVersion", m.SchemaVersion, uint32(1)},
		{"CreatedDate", m.CreatedDate, uint64(1503434274948)},
		{"SequenceNumber", m.SequenceNumber, int64(5)},
		{"Flags", m.Flags, uint64(0)},
		{"MessageID", m.MessageID, wantID},
		{"PayloadType", m.PayloadType, PayloadOutput},
		{"Payload", string(m.Payload), "payload"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	out, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, raw) {
		t.Fatalf("re-encoded frame differs:\n got %x\nwant %x", out, raw)
	}
}

// TestConst pins every wire value (§3, §4).
func TestConst(t *testing.T) {
	pins := []struct {
		name      string
		got, want any
	}{
		{"HeaderLength", HeaderLength, 116},
		{"FrameHeaderLen", FrameHeaderLen, 120},
		{"messageTypeOff", messageTypeOff, 4},
		{"schemaVersionOff", schemaVersionOff, 36},
		{"createdDateOff", createdDateOff, 40},
		{"sequenceNumberOff", sequenceNumberOff, 48},
		{"flagsOff", flagsOff, 56},
		{"messageIDOff", messageIDOff, 64},
		{"payloadDigestOff", payloadDigestOff, 80},
		{"payloadTypeOff", payloadTypeOff, 112},
		{"payloadLengthOff", payloadLengthOff, 116},
		{"InputStreamData", InputStreamData, MessageType("input_stream_data")},
		{"OutputStreamData", OutputStreamData, MessageType("output_stream_data")},
		{"Acknowledge", Acknowledge, MessageType("acknowledge")},
		{"ChannelClosed", ChannelClosed, MessageType("channel_closed")},
		{"StartPublication", StartPublication, MessageType("start_publication")},
		{"PausePublication", PausePublication, MessageType("pause_publication")},
		{"AgentSessionState", AgentSessionState, MessageType("agent_session_state")},
		{"PayloadNone", PayloadNone, PayloadType(0)},
		{"PayloadOutput", PayloadOutput, PayloadType(1)},
		{"PayloadError", PayloadError, PayloadType(2)},
		{"PayloadSize", PayloadSize, PayloadType(3)},
		{"PayloadParameter", PayloadParameter, PayloadType(4)},
		{"PayloadHandshakeRequest", PayloadHandshakeRequest, PayloadType(5)},
		{"PayloadHandshakeResponse", PayloadHandshakeResponse, PayloadType(6)},
		{"PayloadHandshakeComplete", PayloadHandshakeComplete, PayloadType(7)},
		{"PayloadEncChallengeRequest", PayloadEncChallengeRequest, PayloadType(8)},
		{"PayloadEncChallengeResponse", PayloadEncChallengeResponse, PayloadType(9)},
		{"PayloadFlag", PayloadFlag, PayloadType(10)},
		{"PayloadStdErr", PayloadStdErr, PayloadType(11)},
		{"PayloadExitCode", PayloadExitCode, PayloadType(12)},
		{"FlagDisconnectToPort", FlagDisconnectToPort, Flag(1)},
		{"FlagTerminateSession", FlagTerminateSession, Flag(2)},
		{"FlagConnectToPortError", FlagConnectToPortError, Flag(3)},
		{"HeaderFlagsAck", HeaderFlagsAck, uint64(3)},
		{"SchemaVersion", SchemaVersion, uint32(1)},
		{"MaxStreamPayload", MaxStreamPayload, 1024},
		{"ActionSuccess", ActionSuccess, ActionStatus(1)},
		{"ActionFailed", ActionFailed, ActionStatus(2)},
		{"ActionUnsupported", ActionUnsupported, ActionStatus(3)},
		{"ActionSessionType", ActionSessionType, ActionType("SessionType")},
		{"ActionKMSEncryption", ActionKMSEncryption, ActionType("KMSEncryption")},
		{"OpenDataChannelSchemaVersion", OpenDataChannelSchemaVersion, "1.0"},
	}
	for _, p := range pins {
		if p.got != p.want {
			t.Errorf("%s = %v, want %v", p.name, p.got, p.want)
		}
	}
}

func validFrame(t testing.TB) []byte {
	t.Helper()
	m := Message{Type: OutputStreamData, SchemaVersion: 1, CreatedDate: 1, SequenceNumber: 7,
		Flags: HeaderFlagSYN, MessageID: UUID{1, 2, 3}, PayloadType: PayloadOutput, Payload: []byte("hello")}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnmarshalRejects(t *testing.T) {
	mutate := func(f func(b []byte) []byte) []byte { return f(validFrame(t)) }
	cases := []struct {
		name  string
		frame []byte
		field string
	}{
		{"empty", nil, "frame"},
		{"116 bytes", mutate(func(b []byte) []byte { return b[:116] }), "frame"},
		{"119 bytes", mutate(func(b []byte) []byte { return b[:119] }), "frame"},
		{"header length zero", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b, 0); return b }), "HeaderLength"},
		{"header length huge", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b, 0xffffffff); return b }), "HeaderLength"},
		{"empty type", mutate(func(b []byte) []byte { copy(b[4:36], bytes.Repeat([]byte{' '}, 32)); return b }), "MessageType"},
		{"nul padded type", mutate(func(b []byte) []byte { b[35] = 0; return b }), "MessageType"},
		{"control byte in type", mutate(func(b []byte) []byte { b[5] = 0x01; return b }), "MessageType"},
		{"zero created date", mutate(func(b []byte) []byte { binary.BigEndian.PutUint64(b[40:], 0); return b }), "CreatedDate"},
		{"payload length too long", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[116:], 6); return b }), "PayloadLength"},
		{"payload length too short", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[116:], 4); return b }), "PayloadLength"},
		{"truncated payload", mutate(func(b []byte) []byte { return b[:len(b)-1] }), "PayloadLength"},
		{"digest", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), "PayloadDigest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := Message{Type: "sentinel"}
			err := m.UnmarshalBinary(c.frame)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if pe.Field != c.field {
				t.Errorf("field = %q, want %q (%v)", pe.Field, c.field, err)
			}
			if m.Type != "sentinel" {
				t.Errorf("message modified on error: %+v", m)
			}
		})
	}
	t.Run("digest is ErrDigest", func(t *testing.T) {
		b := validFrame(t)
		b[len(b)-1] ^= 1
		var m Message
		if err := m.UnmarshalBinary(b); !errors.Is(err, ErrDigest) {
			t.Fatalf("err = %v, want ErrDigest", err)
		}
	})
}

// TestPublicationUnvalidated: start/pause_publication are accepted with
// zero fields (§3 validation rules).
func TestPublicationUnvalidated(t *testing.T) {
	for _, typ := range []MessageType{StartPublication, PausePublication} {
		b := make([]byte, FrameHeaderLen)
		copy(b[4:36], bytes.Repeat([]byte{' '}, 32))
		copy(b[4:], typ)
		var m Message
		if err := m.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if m.Type != typ {
			t.Fatalf("type = %q", m.Type)
		}
	}
}

func TestEmptyPayloadRoundTrip(t *testing.T) {
	m := Message{Type: Acknowledge, SchemaVersion: 1, CreatedDate: 5}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nil)
	if !bytes.Equal(b[80:112], sum[:]) {
		t.Errorf("digest of empty payload = %x", b[80:112])
	}
	var got Message
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if len(got.Payload) != 0 {
		t.Errorf("payload = %q", got.Payload)
	}
}

func TestMarshalRejects(t *testing.T) {
	for _, m := range []Message{
		{Type: ""},
		{Type: MessageType(bytes.Repeat([]byte{'a'}, 33))},
		{Type: InputStreamData, Payload: make([]byte, MaxPayload+1)},
	} {
		if _, err := m.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary(%.40q) succeeded", m.Type)
		}
	}
}

// TestRandomRoundTrip: seeded random messages survive encode → decode.
func TestRandomRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	types := []MessageType{InputStreamData, OutputStreamData, Acknowledge, ChannelClosed, "x", "abcdefghijklmnopqrstuvwxyz012345"}
	for i := 0; i < 2000; i++ {
		m := Message{
			Type:           types[r.Intn(len(types))],
			SchemaVersion:  r.Uint32(),
			CreatedDate:    r.Uint64() | 1,
			SequenceNumber: r.Int63() - r.Int63(),
			Flags:          r.Uint64(),
			PayloadType:    PayloadType(r.Uint32()),
			Payload:        make([]byte, r.Intn(3000)),
		}
		r.Read(m.MessageID[:])
		r.Read(m.Payload)
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Message
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if got.Type != m.Type || got.SchemaVersion != m.SchemaVersion || got.CreatedDate != m.CreatedDate ||
			got.SequenceNumber != m.SequenceNumber || got.Flags != m.Flags || got.MessageID != m.MessageID ||
			got.PayloadType != m.PayloadType || !bytes.Equal(got.Payload, m.Payload) {
			t.Fatalf("case %d: round trip differs:\n got %+v\nwant %+v", i, got, m)
		}
	}
}

func TestUnmarshalCopiesPayload(t *testing.T) {
	b := validFrame(t)
	var m Message
	if err := m.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = 'X'
	if string(m.Payload) != "hello" {
		t.Fatalf("payload aliases the input buffer: %q", m.Payload)
	}
}

// FuzzUnmarshalBinary: decoding never panics; a failure leaves the value
// untouched; a success re-encodes to the identical bytes (publication
// messages excepted in the fields they are not validated on, §3).
func FuzzUnmarshalBinary(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.bin")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(validFrame(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.UnmarshalBinary(b); err != nil {
			if m.Type != "" || m.Payload != nil || m.CreatedDate != 0 || m.SequenceNumber != 0 {
				t.Fatalf("failed decode left a half-filled message: %+v", m)
			}
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if m.Type.IsPublication() {
			// HeaderLength and digest are not validated for these; compare the rest.
			copy(out[0:4], b[0:4])
			copy(out[80:112], b[80:112])
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded bytes differ:\n in %x\nout %x", b, out)
		}
	})
}
