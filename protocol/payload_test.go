package protocol

// Tests of the payload codecs: the MessageId half swap and v4 ids, acknowledge
// JSON (the allocation-free forms agreeing with encoding/json), flags,
// handshake, channel_closed and OpenDataChannel JSON, version comparison, and
// the allocation counts of the steady-state data path. The frame is
// message_test.go's; the same JSON read and written by the official client is
// interop/crosscheck_test.go's.

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestUUIDHalfSwap(t *testing.T) {
	// §3: wire[64..71] = U[8..15], wire[72..79] = U[0..7].
	id, err := ParseUUID("DD01E56B-FF48-483E-A508-B5F073F31B16")
	if err != nil {
		t.Fatal(err)
	}
	m := Message{Type: InputStreamData, CreatedDate: 1, MessageID: id}
	b, _ := m.MarshalBinary()
	if got := b[64:80]; string(got[:8]) != string(id[8:]) || string(got[8:]) != string(id[:8]) {
		t.Fatalf("wire id %x, uuid %x", got, id)
	}
	if id.String() != "dd01e56b-ff48-483e-a508-b5f073f31b16" {
		t.Fatalf("String = %s", id)
	}
	for _, bad := range []string{"", "dd01e56b-ff48-483e-a508-b5f073f31b1", "dd01e56bxff48-483e-a508-b5f073f31b16", "zz01e56b-ff48-483e-a508-b5f073f31b16"} {
		if _, err := ParseUUID(bad); err == nil {
			t.Errorf("ParseUUID(%q) succeeded", bad)
		}
	}
}

func TestNewUUIDVersion4(t *testing.T) {
	u, err := NewUUID(strings.NewReader(strings.Repeat("\xff", 16)))
	if err != nil {
		t.Fatal(err)
	}
	if s := u.String(); s[14] != '4' || !strings.ContainsRune("89ab", rune(s[19])) {
		t.Fatalf("not a v4 uuid: %s", s)
	}
}

func TestAckJSON(t *testing.T) {
	id, _ := ParseUUID("dd01e56b-ff48-483e-a508-b5f073f31b16")
	m := Message{Type: OutputStreamData, SequenceNumber: 3, MessageID: id}
	ackID := UUID{9}
	am := NewAckMessage(&m, ackID, 42)
	want := `{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16","AcknowledgedMessageSequenceNumber":3,"IsSequentialMessage":true}`
	if string(am.Payload) != want {
		t.Fatalf("ack payload\n got %s\nwant %s", am.Payload, want)
	}
	if am.Type != Acknowledge || am.SequenceNumber != 0 || am.Flags != 3 || am.PayloadType != PayloadNone || am.CreatedDate != 42 || am.MessageID != ackID {
		t.Fatalf("ack header values wrong (§4.5): %+v", am)
	}
	a, err := ParseAck(am.Payload)
	if err != nil || a != AckFor(&m) {
		t.Fatalf("ParseAck = %+v, %v", a, err)
	}
	// encoding/json must agree with the hand-written encoder.
	std, _ := json.Marshal(AckFor(&m))
	if string(std) != want {
		t.Fatalf("encoding/json gives %s", std)
	}
	if _, err := ParseAck([]byte("{")); err == nil {
		t.Fatal("ParseAck accepted bad JSON")
	}
}

// TestAppendAckJSON: the allocation-free forms agree with AckFor, ParseAck
// and encoding/json, for every known message type, an unknown one that
// needs quoting, and sequence numbers of every sign and size.
func TestAppendAckJSON(t *testing.T) {
	types := []MessageType{InputStreamData, OutputStreamData, Acknowledge, ChannelClosed, StartPublication, PausePublication, AgentSessionState, `odd"type\`}
	for i, typ := range types {
		for _, seq := range []int64{0, 1, 1023, -1, 1<<63 - 1} {
			m := Message{Type: typ, SequenceNumber: seq, MessageID: UUIDv4([16]byte{byte(i), 0xab, 0xcd, byte(seq)})}
			want := AckFor(&m).AppendJSON(nil)
			got := AppendAckJSON([]byte("prefix"), &m)
			if string(got) != "prefix"+string(want) {
				t.Fatalf("AppendAckJSON(%s, %d)\n got %s\nwant prefix%s", typ, seq, got, want)
			}
			std, _ := json.Marshal(AckFor(&m))
			if n, err := ParseAckSeq(std); err != nil || n != seq {
				t.Fatalf("ParseAckSeq(%s) = %d, %v; want %d", std, n, err, seq)
			}
			if n, err := ParseAckSeq(want); err != nil || n != seq {
				t.Fatalf("ParseAckSeq(%s) = %d, %v; want %d", want, n, err, seq)
			}
		}
	}
	// Shapes the fast path leaves to encoding/json still parse.
	for _, p := range []string{
		`{ "AcknowledgedMessageSequenceNumber": 7, "AcknowledgedMessageType": "output_stream_data" }`,
		`{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"x\u0041","AcknowledgedMessageSequenceNumber":7,"IsSequentialMessage":true}`,
	} {
		if n, err := ParseAckSeq([]byte(p)); err != nil || n != 7 {
			t.Errorf("ParseAckSeq(%s) = %d, %v; want 7", p, n, err)
		}
	}
	// What encoding/json rejects, the fast path must not accept.
	for _, p := range []string{
		`{"AcknowledgedMessageSequenceNumber":"7"}`,
		`{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"x","AcknowledgedMessageSequenceNumber":007,"IsSequentialMessage":true}`,
		`{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"x","AcknowledgedMessageSequenceNumber":-07,"IsSequentialMessage":true}`,
		"{\"AcknowledgedMessageType\":\"output_stream_data\",\"AcknowledgedMessageId\":\"x\ty\",\"AcknowledgedMessageSequenceNumber\":7,\"IsSequentialMessage\":true}",
	} {
		if n, err := ParseAckSeq([]byte(p)); err == nil {
			t.Errorf("ParseAckSeq(%s) = %d, want an error", p, n)
		}
		if a, err := ParseAck([]byte(p)); err == nil {
			t.Errorf("ParseAck(%s) = %+v, want an error", p, a)
		}
	}
}

// TestSteadyStateAllocs pins the per-message allocations of the codec's
// data path (counts, not timings): parsing a known message type, building
// an ack's JSON into a reused buffer and reading an ack's sequence number
// allocate nothing; unmarshalling allocates only the payload copy.
func TestSteadyStateAllocs(t *testing.T) {
	m := Message{Type: OutputStreamData, SchemaVersion: SchemaVersion, CreatedDate: 1, SequenceNumber: 5,
		MessageID: UUIDv4([16]byte{1}), PayloadType: PayloadOutput, Payload: make([]byte, 1024)}
	frame, _ := m.MarshalBinary()
	ack := AckFor(&m).AppendJSON(nil)
	buf := make([]byte, 0, 256)
	var out Message
	for _, c := range []struct {
		name string
		want float64
		f    func()
	}{
		{"AppendAckJSON", 0, func() { buf = AppendAckJSON(buf[:0], &m) }},
		{"ParseAckSeq", 0, func() { ParseAckSeq(ack) }},
		{"UUIDv4", 0, func() { m.MessageID = UUIDv4([16]byte{2}) }},
		{"AppendBinary", 0, func() { buf, _ = m.AppendBinary(buf[:0]) }},
		{"UnmarshalBinary", 1, func() { out.UnmarshalBinary(frame) }},
	} {
		if got := testing.AllocsPerRun(100, c.f); got != c.want {
			t.Errorf("%s: %v allocations, want %v", c.name, got, c.want)
		}
	}
	if out.Type != OutputStreamData {
		t.Fatalf("unmarshalled type %q", out.Type)
	}
}

func TestFlagPayload(t *testing.T) {
	b, _ := FlagTerminateSession.AppendBinary(nil)
	if string(b) != "\x00\x00\x00\x02" {
		t.Fatalf("flag payload %x", b)
	}
	f, err := ParseFlag([]byte{0, 0, 0, 3})
	if err != nil || f != FlagConnectToPortError {
		t.Fatalf("ParseFlag = %v, %v", f, err)
	}
	for _, bad := range [][]byte{nil, {0, 0, 2}, {0, 0, 0, 0, 2}} {
		if _, err := ParseFlag(bad); err == nil {
			t.Errorf("ParseFlag(%x) succeeded", bad)
		}
	}
}

func TestHandshakeJSON(t *testing.T) {
	req, err := ParseHandshakeRequest([]byte(`{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"22"}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if req.AgentVersion != "3.3.987.0" || len(req.RequestedClientActions) != 1 {
		t.Fatalf("request %+v", req)
	}
	p, err := req.RequestedClientActions[0].SessionTypeParams()
	if err != nil || p.SessionType != SessionTypePort || p.Properties["portNumber"] != "22" {
		t.Fatalf("params %+v, %v", p, err)
	}
	if _, err := (RequestedClientAction{ActionType: ActionKMSEncryption}).SessionTypeParams(); err == nil {
		t.Fatal("SessionTypeParams accepted a KMS action")
	}
	resp := HandshakeResponse{ClientVersion: "1.2.677.0", ProcessedClientActions: []ProcessedClientAction{{ActionType: ActionSessionType, ActionStatus: ActionSuccess}}}
	b, _ := json.Marshal(resp)
	want := `{"ClientVersion":"1.2.677.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}`
	if string(b) != want {
		t.Fatalf("response\n got %s\nwant %s", b, want)
	}
	back, err := ParseHandshakeResponse(b)
	if err != nil || back.ClientVersion != "1.2.677.0" || back.ProcessedClientActions[0].ActionStatus != ActionSuccess {
		t.Fatalf("ParseHandshakeResponse = %+v, %v", back, err)
	}
	c, err := ParseHandshakeComplete([]byte(`{"HandshakeTimeToComplete":1500000,"CustomerMessage":""}`))
	if err != nil || c.HandshakeTimeToComplete.Milliseconds() != 1 {
		t.Fatalf("complete %+v, %v", c, err)
	}
	for _, f := range []func([]byte) error{
		func(b []byte) error { _, err := ParseHandshakeRequest(b); return err },
		func(b []byte) error { _, err := ParseHandshakeResponse(b); return err },
		func(b []byte) error { _, err := ParseHandshakeComplete(b); return err },
		func(b []byte) error { _, err := ParseChannelClosed(b); return err },
		func(b []byte) error { _, err := ParseOpenDataChannel(b); return err },
	} {
		if f([]byte(`[`)) == nil {
			t.Error("parser accepted bad JSON")
		}
	}
}

func TestChannelClosedAndOpen(t *testing.T) {
	c, err := ParseChannelClosed([]byte(`{"MessageId":"x","CreatedDate":"2021-10-01T09:24:34.917Z","DestinationId":"d","SessionId":"s","MessageType":"channel_closed","SchemaVersion":1,"Output":"bye"}`))
	if err != nil || c.Output != "bye" || c.SessionID != "s" || c.SchemaVersion != 1 {
		t.Fatalf("%+v %v", c, err)
	}
	o := OpenDataChannel{MessageSchemaVersion: "1.0", RequestID: "r", TokenValue: "t", ClientID: "c", ClientVersion: "1.2.677.0"}
	b, _ := json.Marshal(o)
	want := `{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t","ClientId":"c","ClientVersion":"1.2.677.0"}`
	if string(b) != want {
		t.Fatalf("open data channel\n got %s\nwant %s", b, want)
	}
	back, err := ParseOpenDataChannel(b)
	if err != nil || back != o {
		t.Fatalf("%+v %v", back, err)
	}
}

func TestVersionRules(t *testing.T) {
	agent := []struct {
		a, b string
		want int
	}{
		{"1.2.677.0", "1.1.70", 1},
		{"1.1.70", "1.1.70", 0},
		{"", "1.1.70", -1},
		{"1.2.0.0", "1.2.331.0", -1},
		{"3.0.222.0", "3.0.196.0", 1},
		{"1.2", "1.2.0", -1},
		{"1.10", "1.9", 1},
	}
	for _, c := range agent {
		if got := CompareAgentVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareAgentVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	plugin := []struct {
		a, b string
		want bool
	}{
		{"3.3.987.0", AgentVersionMux, true},
		{"3.0.196.0", AgentVersionMux, false},
		{"3.1", AgentVersionMux, false}, // component counts differ
		{"3.1.1446.0", AgentVersionNoKeepAlive, false},
		{"x.1.1.1", "1.1.1.1", false},
	}
	for _, c := range plugin {
		if got := PluginVersionGreater(c.a, c.b); got != c.want {
			t.Errorf("PluginVersionGreater(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestStrings(t *testing.T) {
	if PayloadHandshakeComplete.String() != "handshake_complete" || PayloadType(99).String() != "payload_type(99)" {
		t.Error("PayloadType.String")
	}
	if FlagTerminateSession.String() != "terminate_session" || Flag(9).String() != "flag(9)" {
		t.Error("Flag.String")
	}
}

// TestAgentKeepAlive: the agent's smux keep-alive by its version and the
// client's (§9.3).
func TestAgentKeepAlive(t *testing.T) {
	for _, c := range []struct {
		agent, client string
		want          bool
	}{
		{"3.1.1300.0", "1.2.889.0", true},  // before any change: on
		{"3.1.1446.0", "1.2.889.0", false}, // off whatever the client
		{"3.1.1446.0", "1.2.0.0", false},
		{"3.1.1476.0", "1.2.889.0", true}, // reverted
		{"3.1.1575.0", "1.2.889.0", false},
		{"3.1.1575.0", "1.2.331.0", true}, // off only above 1.2.331.0
		{"3.3.1142.0", "1.2.0.0", true},
		{"3.3.1142.0", "1.2.889.0", false},
	} {
		if got := AgentKeepAlive(c.agent, c.client); got != c.want {
			t.Errorf("AgentKeepAlive(%s, %s) = %v, want %v", c.agent, c.client, got, c.want)
		}
	}
}
