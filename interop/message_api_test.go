package interop

// Pins the official serializer's API as this module calls it (NOTES.md): it
// reproduces the docs/protocol.md §3 reference vector, parses it back, and
// builds and reads an acknowledge. The cross-checks of our codec that rely
// on it are crosscheck_test.go's; our codec alone is protocol/'s.

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/aws/session-manager-plugin/src/message"
	"github.com/twinj/uuid"
)

// referenceFrame is the 127-byte vector of docs/protocol.md §3 (input_stream_data,
// CreatedDate 1503434274948, seq 5, MessageId
// dd01e56b-ff48-483e-a508-b5f073f31b16, PayloadType 1, payload "payload").
const referenceFrame = "00000074" +
	"696e7075745f73747265616d5f64617461202020202020202020202020202020" +
	"00000001" + "0000015e0baa7884" + "0000000000000005" + "0000000000000000" +
	"a508b5f073f31b16dd01e56bff48483e" +
	"239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5" +
	"00000001" + "00000007" + "7061796c6f6164"

// TestOfficialMessageAPI checks that the official serializer, as called in
// NOTES.md, reproduces the docs/protocol.md reference vector and parses it back.
// It pins the API a cross-check test relies on.
func TestOfficialMessageAPI(t *testing.T) {
	want, err := hex.DecodeString(referenceFrame)
	if err != nil {
		t.Fatal(err)
	}
	id, err := uuid.Parse("dd01e56b-ff48-483e-a508-b5f073f31b16")
	if err != nil {
		t.Fatal(err)
	}
	m := message.ClientMessage{
		MessageType:    message.InputStreamMessage,
		SchemaVersion:  1,
		CreatedDate:    1503434274948,
		SequenceNumber: 5,
		Flags:          0,
		MessageId:      id,
		PayloadType:    uint32(message.Output),
		Payload:        []byte("payload"),
	}
	got, err := m.SerializeClientMessage(DiscardLog())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SerializeClientMessage:\n got %x\nwant %x", got, want)
	}

	var back message.ClientMessage
	if err := back.DeserializeClientMessage(DiscardLog(), want); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
	if back.HeaderLength != 116 || back.MessageType != message.InputStreamMessage ||
		back.SequenceNumber != 5 || back.CreatedDate != 1503434274948 ||
		back.PayloadLength != 7 || string(back.Payload) != "payload" {
		t.Errorf("DeserializeClientMessage = %+v", back)
	}
	if s := strings.ToLower(back.MessageId.String()); s != "dd01e56b-ff48-483e-a508-b5f073f31b16" {
		t.Errorf("MessageId = %s", s)
	}

	// The wrong payload type must be an error; this relies on DiscardLog's
	// Errorf returning non-nil.
	if _, err := back.DeserializeHandshakeRequest(DiscardLog()); err == nil {
		t.Error("DeserializeHandshakeRequest accepted PayloadType 1")
	}

	ack, err := message.SerializeClientMessageWithAcknowledgeContent(DiscardLog(), message.AcknowledgeContent{
		MessageType:         message.OutputStreamMessage,
		MessageId:           "dd01e56b-ff48-483e-a508-b5f073f31b16",
		SequenceNumber:      3,
		IsSequentialMessage: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var am message.ClientMessage
	if err := am.DeserializeClientMessage(DiscardLog(), ack); err != nil {
		t.Fatal(err)
	}
	if am.Flags != 3 || am.SequenceNumber != 0 || am.PayloadType != 0 {
		t.Errorf("ack header = flags %d seq %d type %d", am.Flags, am.SequenceNumber, am.PayloadType)
	}
	content, err := am.DeserializeDataStreamAcknowledgeContent(DiscardLog())
	if err != nil {
		t.Fatal(err)
	}
	if content.SequenceNumber != 3 || !content.IsSequentialMessage {
		t.Errorf("ack content = %+v", content)
	}
	const wantJSON = `{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16","AcknowledgedMessageSequenceNumber":3,"IsSequentialMessage":true}`
	if string(am.Payload) != wantJSON {
		t.Errorf("ack payload = %s", am.Payload)
	}
}
