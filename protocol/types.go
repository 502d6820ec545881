package protocol

import "strconv"

// MessageType is the ClientMessage MessageType string (§4.1).
type MessageType string

// Message types seen on a data channel (§4.1).
const (
	// InputStreamData carries sequenced stream data from client to agent.
	InputStreamData MessageType = "input_stream_data"
	// OutputStreamData carries sequenced stream data from agent to client.
	OutputStreamData MessageType = "output_stream_data"
	// Acknowledge acknowledges one stream-data message; payload is an Ack (§5.1).
	Acknowledge MessageType = "acknowledge"
	// ChannelClosed ends the session; payload is a ChannelClosedPayload (§4.4).
	ChannelClosed MessageType = "channel_closed"
	// StartPublication tells a party that its peer is active again (§8.4).
	StartPublication MessageType = "start_publication"
	// PausePublication tells a party that its peer is inactive (§8.4).
	PausePublication MessageType = "pause_publication"
	// AgentSessionState is sent by the agent to the gateway, never to clients.
	AgentSessionState MessageType = "agent_session_state"
)

// IsPublication reports whether t is start_publication or pause_publication,
// the two types that receivers accept without validation (§3).
func (t MessageType) IsPublication() bool {
	return t == StartPublication || t == PausePublication
}

// PayloadType is the uint32 at offset 112 (§4.2).
type PayloadType uint32

// Payload types (§4.2).
const (
	PayloadNone                 PayloadType = 0  // acks and control messages
	PayloadOutput               PayloadType = 1  // stream bytes, both directions
	PayloadError                PayloadType = 2  // defined, unused
	PayloadSize                 PayloadType = 3  // shell only: {"cols":u32,"rows":u32}
	PayloadParameter            PayloadType = 4  // defined, unused
	PayloadHandshakeRequest     PayloadType = 5  // agent → client JSON HandshakeRequest
	PayloadHandshakeResponse    PayloadType = 6  // client → agent JSON HandshakeResponse
	PayloadHandshakeComplete    PayloadType = 7  // agent → client JSON HandshakeComplete
	PayloadEncChallengeRequest  PayloadType = 8  // agent → client JSON (KMS, shells only)
	PayloadEncChallengeResponse PayloadType = 9  // client → agent JSON (KMS, shells only)
	PayloadFlag                 PayloadType = 10 // 4-byte big-endian Flag (§4.3)
	PayloadStdErr               PayloadType = 11 // shell stderr, agent → client
	PayloadExitCode             PayloadType = 12 // shell exit code, agent → client
)

var payloadTypeNames = [...]string{
	"none", "output", "error", "size", "parameter", "handshake_request",
	"handshake_response", "handshake_complete", "enc_challenge_request",
	"enc_challenge_response", "flag", "stderr", "exit_code",
}

func (p PayloadType) String() string {
	if int(p) < len(payloadTypeNames) {
		return payloadTypeNames[p]
	}
	return "payload_type(" + strconv.FormatUint(uint64(p), 10) + ")"
}

// Flag is the payload of a PayloadFlag message (§4.3).
type Flag uint32

// Flag values (§4.3).
const (
	// FlagDisconnectToPort (client → agent): the local TCP connection closed.
	// Only meaningful in basic local-listener mode; it ends an SSH session.
	FlagDisconnectToPort Flag = 1
	// FlagTerminateSession (client → agent): the agent cancels the session.
	FlagTerminateSession Flag = 2
	// FlagConnectToPortError (agent → client): mux mode dial failure.
	FlagConnectToPortError Flag = 3
)

func (f Flag) String() string {
	switch f {
	case FlagDisconnectToPort:
		return "disconnect_to_port"
	case FlagTerminateSession:
		return "terminate_session"
	case FlagConnectToPortError:
		return "connect_to_port_error"
	}
	return "flag(" + strconv.FormatUint(uint64(f), 10) + ")"
}

// Header flag bits at offset 56 (§3, §4.5). Receivers ignore them.
const (
	HeaderFlagSYN uint64 = 1 << 0
	HeaderFlagFIN uint64 = 1 << 1
	// HeaderFlagsAck is what both official implementations put in the
	// Flags field of acknowledge messages (§4.5).
	HeaderFlagsAck = HeaderFlagSYN | HeaderFlagFIN
)

// SchemaVersion is the only ClientMessage schema version in use (§3).
const SchemaVersion uint32 = 1

// MaxStreamPayload is the payload size both official peers read and send per
// stream message (§5.6, StreamDataPayloadSize).
const MaxStreamPayload = 1024
