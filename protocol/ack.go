package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Ack is the JSON payload of an acknowledge message (§5.1). Receivers match
// only AcknowledgedMessageSequenceNumber against their outgoing buffer.
type Ack struct {
	AcknowledgedMessageType           MessageType `json:"AcknowledgedMessageType"`
	AcknowledgedMessageID             string      `json:"AcknowledgedMessageId"`
	AcknowledgedMessageSequenceNumber int64       `json:"AcknowledgedMessageSequenceNumber"`
	IsSequentialMessage               bool        `json:"IsSequentialMessage"`
}

// AckFor returns the Ack that acknowledges m.
func AckFor(m *Message) Ack {
	return Ack{
		AcknowledgedMessageType:           m.Type,
		AcknowledgedMessageID:             m.MessageID.String(),
		AcknowledgedMessageSequenceNumber: m.SequenceNumber,
		IsSequentialMessage:               true,
	}
}

// AppendJSON appends the JSON encoding of a, in the key order the official
// peers use, without reflection (acks are half of all frames, §5.6).
func (a Ack) AppendJSON(b []byte) []byte {
	b = append(b, `{"AcknowledgedMessageType":`...)
	b = strconv.AppendQuote(b, string(a.AcknowledgedMessageType))
	b = append(b, `,"AcknowledgedMessageId":`...)
	b = strconv.AppendQuote(b, a.AcknowledgedMessageID)
	return a.appendTail(b)
}

// AppendAckJSON appends what AckFor(m).AppendJSON would, without making the
// message ID a string first: an ack for every message received.
func AppendAckJSON(b []byte, m *Message) []byte {
	a := Ack{AcknowledgedMessageType: m.Type, AcknowledgedMessageSequenceNumber: m.SequenceNumber, IsSequentialMessage: true}
	b = append(b, `{"AcknowledgedMessageType":`...)
	b = strconv.AppendQuote(b, string(a.AcknowledgedMessageType))
	b = append(b, `,"AcknowledgedMessageId":"`...)
	b = m.MessageID.appendText(b)
	b = append(b, '"')
	return a.appendTail(b)
}

func (a Ack) appendTail(b []byte) []byte {
	b = append(b, `,"AcknowledgedMessageSequenceNumber":`...)
	b = strconv.AppendInt(b, a.AcknowledgedMessageSequenceNumber, 10)
	b = append(b, `,"IsSequentialMessage":`...)
	b = strconv.AppendBool(b, a.IsSequentialMessage)
	return append(b, '}')
}

// ParseAck decodes an acknowledge payload.
func ParseAck(p []byte) (Ack, error) {
	if f, ok := scanAck(p); ok {
		return Ack{
			AcknowledgedMessageType:           MessageType(f.typ),
			AcknowledgedMessageID:             string(f.id),
			AcknowledgedMessageSequenceNumber: f.seq,
			IsSequentialMessage:               f.sequential,
		}, nil
	}
	var a Ack
	if err := json.Unmarshal(p, &a); err != nil {
		return Ack{}, fmt.Errorf("acknowledge payload: %w", err)
	}
	return a, nil
}

// ParseAckSeq returns only the acknowledged sequence number of an
// acknowledge payload, all a sender matches (§5.4), without copying the
// strings ParseAck returns.
func ParseAckSeq(p []byte) (int64, error) {
	if f, ok := scanAck(p); ok {
		return f.seq, nil
	}
	a, err := ParseAck(p)
	return a.AcknowledgedMessageSequenceNumber, err
}

// NewAckMessage builds the acknowledge message for m with the header values
// of §4.5: sequence 0, flags 3, payload type 0.
func NewAckMessage(m *Message, id UUID, createdMillis uint64) Message {
	return Message{
		Type:          Acknowledge,
		SchemaVersion: SchemaVersion,
		CreatedDate:   createdMillis,
		Flags:         HeaderFlagsAck,
		MessageID:     id,
		Payload:       AckFor(m).AppendJSON(nil),
	}
}

// ackFields are the fields of an acknowledge payload, the strings still in
// the payload's bytes.
type ackFields struct {
	typ, id    []byte
	seq        int64
	sequential bool
}

// scanAck decodes the exact shape AppendJSON and both official peers write
// (keys in that order, no whitespace, plain strings) without reflection;
// anything else is left to encoding/json.
func scanAck(p []byte) (f ackFields, ok bool) {
	str := func(key string) ([]byte, bool) {
		if !bytes.HasPrefix(p, []byte(key)) {
			return nil, false
		}
		p = p[len(key):]
		i := bytes.IndexByte(p, '"')
		if i < 0 || bytes.IndexFunc(p[:i], func(r rune) bool { return r == '\\' || r < 0x20 }) >= 0 {
			return nil, false // escapes and control bytes: encoding/json decides
		}
		v := p[:i]
		p = p[i+1:]
		return v, true
	}
	if f.typ, ok = str(`{"AcknowledgedMessageType":"`); !ok {
		return ackFields{}, false
	}
	if f.id, ok = str(`,"AcknowledgedMessageId":"`); !ok {
		return ackFields{}, false
	}
	const seqKey = `,"AcknowledgedMessageSequenceNumber":`
	if !bytes.HasPrefix(p, []byte(seqKey)) {
		return ackFields{}, false
	}
	p = p[len(seqKey):]
	i := 0
	for i < len(p) && (p[i] == '-' || p[i] >= '0' && p[i] <= '9') {
		i++
	}
	digits := bytes.TrimPrefix(p[:i], []byte("-"))
	if len(digits) > 1 && digits[0] == '0' {
		return ackFields{}, false // a leading zero, which JSON does not allow
	}
	n, err := strconv.ParseInt(string(p[:i]), 10, 64)
	if err != nil {
		return ackFields{}, false
	}
	f.seq = n
	switch string(p[i:]) {
	case `,"IsSequentialMessage":true}`:
		f.sequential = true
	case `,"IsSequentialMessage":false}`:
	default:
		return ackFields{}, false
	}
	return f, true
}
