// Package protocol converts the AWS Session Manager data-channel protocol
// between bytes and Go values. It does no I/O, knows nothing of websockets or
// the AWS SDK, and never logs. Section numbers (§) refer to the project's
// protocol reference, docs/protocol.md.
//
// # ClientMessage layout (§3)
//
// Every binary websocket frame carries exactly one ClientMessage. All integers
// are big-endian. The layout is defined by the official client's
// src/message/clientmessage.go and messageparser.go and by the agent's
// agent/session/contracts/agentmessage.go:
//
//	offset len field
//	0      4   HeaderLength   uint32, always 116 (offset of PayloadLength)
//	4      32  MessageType    ASCII, left-aligned, space-padded
//	36     4   SchemaVersion  uint32, 1
//	40     8   CreatedDate    uint64, Unix epoch milliseconds
//	48     8   SequenceNumber int64
//	56     8   Flags          uint64, bit0 SYN, bit1 FIN (ignored by receivers)
//	64     16  MessageId      UUID with its two 8-byte halves swapped
//	80     32  PayloadDigest  SHA-256 of the payload
//	112    4   PayloadType    uint32 (§4.2)
//	116    4   PayloadLength  uint32
//	120    n   Payload
//
// # Message flow (§0, §5, §6, §8)
//
// Handshake: after the client opens the websocket and sends the
// OpenDataChannel text frame, the agent sends HandshakeRequest
// (output_stream_data seq 0, PayloadType 5). The client acknowledges it, then
// answers with HandshakeResponse (input_stream_data seq 0, PayloadType 6). The
// agent acknowledges that and sends HandshakeComplete (seq 1, PayloadType 7).
//
// Steady state: both sides send sequenced stream data (PayloadType 1 for
// bytes, 10 for flags), each message acknowledged individually with an
// acknowledge message whose JSON names the sequence number. Unacknowledged
// messages are retransmitted after a computed timeout (§5.5).
//
// Close: the gateway sends channel_closed (JSON, §4.4) when the session ends
// for any reason; channel_closed is not acknowledged.
package protocol
