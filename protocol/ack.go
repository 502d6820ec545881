package protocol

import (
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
