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
	b = append(b, `,"AcknowledgedMessageSequenceNumber":`...)
	b = strconv.AppendInt(b, a.AcknowledgedMessageSequenceNumber, 10)
	b = append(b, `,"IsSequentialMessage":`...)
	b = strconv.AppendBool(b, a.IsSequentialMessage)
	return append(b, '}')
}

// ParseAck decodes an acknowledge payload.
func ParseAck(p []byte) (Ack, error) {
	if a, ok := parseAckFast(p); ok {
		return a, nil
	}
	var a Ack
	if err := json.Unmarshal(p, &a); err != nil {
		return Ack{}, fmt.Errorf("acknowledge payload: %w", err)
	}
	return a, nil
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

// parseAckFast decodes the exact shape AppendJSON and both official peers
// write (keys in that order, no whitespace, plain strings) without
// reflection; anything else is left to encoding/json.
func parseAckFast(p []byte) (Ack, bool) {
	var a Ack
	str := func(key string) (string, bool) {
		if !bytes.HasPrefix(p, []byte(key)) {
			return "", false
		}
		p = p[len(key):]
		i := bytes.IndexByte(p, '"')
		if i < 0 || bytes.IndexByte(p[:i], '\\') >= 0 {
			return "", false
		}
		v := string(p[:i])
		p = p[i+1:]
		return v, true
	}
	t, ok := str(`{"AcknowledgedMessageType":"`)
	if !ok {
		return Ack{}, false
	}
	a.AcknowledgedMessageType = MessageType(t)
	if a.AcknowledgedMessageID, ok = str(`,"AcknowledgedMessageId":"`); !ok {
		return Ack{}, false
	}
	const seqKey = `,"AcknowledgedMessageSequenceNumber":`
	if !bytes.HasPrefix(p, []byte(seqKey)) {
		return Ack{}, false
	}
	p = p[len(seqKey):]
	i := 0
	for i < len(p) && (p[i] == '-' || p[i] >= '0' && p[i] <= '9') {
		i++
	}
	n, err := strconv.ParseInt(string(p[:i]), 10, 64)
	if err != nil {
		return Ack{}, false
	}
	a.AcknowledgedMessageSequenceNumber = n
	switch string(p[i:]) {
	case `,"IsSequentialMessage":true}`:
		a.IsSequentialMessage = true
	case `,"IsSequentialMessage":false}`:
	default:
		return Ack{}, false
	}
	return a, true
}
