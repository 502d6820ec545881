package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Field sizes and offsets of the ClientMessage header (§3).
const (
	headerLengthLen   = 4
	messageTypeLen    = 32
	schemaVersionLen  = 4
	createdDateLen    = 8
	sequenceNumberLen = 8
	flagsLen          = 8
	messageIDLen      = 16
	payloadDigestLen  = 32
	payloadTypeLen    = 4
	payloadLengthLen  = 4

	headerLengthOff   = 0
	messageTypeOff    = headerLengthOff + headerLengthLen
	schemaVersionOff  = messageTypeOff + messageTypeLen
	createdDateOff    = schemaVersionOff + schemaVersionLen
	sequenceNumberOff = createdDateOff + createdDateLen
	flagsOff          = sequenceNumberOff + sequenceNumberLen
	messageIDOff      = flagsOff + flagsLen
	payloadDigestOff  = messageIDOff + messageIDLen
	payloadTypeOff    = payloadDigestOff + payloadDigestLen
	payloadLengthOff  = payloadTypeOff + payloadTypeLen

	// HeaderLength is the value writers put in the HeaderLength field: the
	// offset of PayloadLength, which the header length excludes (§3).
	HeaderLength = payloadLengthOff
	// FrameHeaderLen is the number of bytes before the payload.
	FrameHeaderLen = payloadLengthOff + payloadLengthLen
)

// MaxPayload bounds the payload a decoder accepts. Real payloads are at most
// a few KiB (§5.6); the bound only stops hostile lengths.
const MaxPayload = 1 << 20

// Message is one ClientMessage (§3). The zero value is not valid to send;
// fill Type, CreatedDate and MessageID at least.
type Message struct {
	Type           MessageType
	SchemaVersion  uint32
	CreatedDate    uint64 // Unix epoch milliseconds, UTC
	SequenceNumber int64
	Flags          uint64
	MessageID      UUID
	PayloadType    PayloadType
	Payload        []byte
}

// ErrDigest reports a payload whose SHA-256 does not match PayloadDigest.
// Receivers drop such messages without acknowledging them (§3).
var ErrDigest = errors.New("payload digest mismatch")

// ParseError reports a frame that is not a well-formed ClientMessage.
type ParseError struct {
	Field string // the header field at fault
	Err   error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("malformed client message: %s: %v", e.Field, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// MarshalBinary encodes m as a ClientMessage frame.
func (m *Message) MarshalBinary() ([]byte, error) {
	return m.AppendBinary(make([]byte, 0, FrameHeaderLen+len(m.Payload)))
}

// AppendBinary appends the encoding of m to b (encoding.BinaryAppender).
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	if len(m.Type) == 0 || len(m.Type) > messageTypeLen {
		return b, fmt.Errorf("message type %q: length must be 1 to %d", m.Type, messageTypeLen)
	}
	if len(m.Payload) > MaxPayload {
		return b, fmt.Errorf("payload of %d bytes exceeds %d", len(m.Payload), MaxPayload)
	}
	b = binary.BigEndian.AppendUint32(b, HeaderLength)
	b = append(b, m.Type...)
	for i := len(m.Type); i < messageTypeLen; i++ {
		b = append(b, ' ')
	}
	b = binary.BigEndian.AppendUint32(b, m.SchemaVersion)
	b = binary.BigEndian.AppendUint64(b, m.CreatedDate)
	b = binary.BigEndian.AppendUint64(b, uint64(m.SequenceNumber))
	b = binary.BigEndian.AppendUint64(b, m.Flags)
	b = append(b, m.MessageID[8:16]...)
	b = append(b, m.MessageID[0:8]...)
	sum := sha256.Sum256(m.Payload)
	b = append(b, sum[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(m.PayloadType))
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Payload)))
	b = append(b, m.Payload...)
	return b, nil
}

// UnmarshalBinary decodes one ClientMessage frame into m, copying the
// payload. It applies the receiver validation of §3: HeaderLength must be
// 116, MessageType non-empty printable ASCII padded with spaces,
// CreatedDate non-zero, PayloadLength equal to the bytes that follow, and
// the digest must match (ErrDigest otherwise). start_publication and
// pause_publication "may arrive with zero fields" and are accepted without
// the HeaderLength, CreatedDate and digest checks, as both official peers
// do; their payload still starts at offset 120. On error m is left
// unchanged.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) < FrameHeaderLen {
		return &ParseError{"frame", fmt.Errorf("%d bytes, need at least %d", len(b), FrameHeaderLen)}
	}
	typ, err := parseType(b[messageTypeOff : messageTypeOff+messageTypeLen])
	if err != nil {
		return &ParseError{"MessageType", err}
	}
	if hl := binary.BigEndian.Uint32(b[headerLengthOff:]); hl != HeaderLength && !typ.IsPublication() {
		return &ParseError{"HeaderLength", fmt.Errorf("%d, want %d", hl, HeaderLength)}
	}
	n := binary.BigEndian.Uint32(b[payloadLengthOff:])
	if int64(n) != int64(len(b)-FrameHeaderLen) {
		return &ParseError{"PayloadLength", fmt.Errorf("%d, but %d bytes follow the header", n, len(b)-FrameHeaderLen)}
	}
	if n > MaxPayload {
		return &ParseError{"PayloadLength", fmt.Errorf("%d exceeds %d", n, MaxPayload)}
	}
	created := binary.BigEndian.Uint64(b[createdDateOff:])
	payload := b[FrameHeaderLen:]
	if !typ.IsPublication() {
		if created == 0 {
			return &ParseError{"CreatedDate", errors.New("zero")}
		}
		sum := sha256.Sum256(payload)
		if !bytes.Equal(sum[:], b[payloadDigestOff:payloadDigestOff+payloadDigestLen]) {
			return &ParseError{"PayloadDigest", ErrDigest}
		}
	}
	*m = Message{
		Type:           typ,
		SchemaVersion:  binary.BigEndian.Uint32(b[schemaVersionOff:]),
		CreatedDate:    created,
		SequenceNumber: int64(binary.BigEndian.Uint64(b[sequenceNumberOff:])),
		Flags:          binary.BigEndian.Uint64(b[flagsOff:]),
		PayloadType:    PayloadType(binary.BigEndian.Uint32(b[payloadTypeOff:])),
		Payload:        append([]byte(nil), payload...),
	}
	copy(m.MessageID[8:16], b[messageIDOff:messageIDOff+8])
	copy(m.MessageID[0:8], b[messageIDOff+8:messageIDOff+16])
	return nil
}

// parseType accepts the canonical encoding only: 1 to 32 printable,
// non-space ASCII bytes followed by space padding. That is what both
// official serializers write, and it keeps decoding and encoding inverse.
func parseType(f []byte) (MessageType, error) {
	end := bytes.IndexByte(f, ' ')
	if end < 0 {
		end = len(f)
	}
	if end == 0 {
		return "", errors.New("empty")
	}
	for i, c := range f {
		if i < end && (c <= ' ' || c > '~') {
			return "", fmt.Errorf("byte 0x%02x at %d is not printable ASCII", c, i)
		}
		if i >= end && c != ' ' {
			return "", fmt.Errorf("padding byte 0x%02x at %d is not a space", c, i)
		}
	}
	// The known types as their constants: no string made per message.
	switch string(f[:end]) {
	case string(InputStreamData):
		return InputStreamData, nil
	case string(OutputStreamData):
		return OutputStreamData, nil
	case string(Acknowledge):
		return Acknowledge, nil
	case string(ChannelClosed):
		return ChannelClosed, nil
	case string(StartPublication):
		return StartPublication, nil
	case string(PausePublication):
		return PausePublication, nil
	case string(AgentSessionState):
		return AgentSessionState, nil
	}
	return MessageType(f[:end]), nil
}
