package protocol

import (
	"encoding/json"
	"fmt"
)

// OpenDataChannel is the JSON text frame a client sends first on a new
// websocket (§2). ClientId stays the same across reconnects of one process;
// RequestId is new for every open.
type OpenDataChannel struct {
	MessageSchemaVersion string `json:"MessageSchemaVersion"`
	RequestID            string `json:"RequestId"`
	TokenValue           string `json:"TokenValue"`
	ClientID             string `json:"ClientId,omitempty"`
	ClientVersion        string `json:"ClientVersion,omitempty"`
}

// OpenDataChannelSchemaVersion is the MessageSchemaVersion clients send (§2).
const OpenDataChannelSchemaVersion = "1.0"

// ParseOpenDataChannel decodes the first text frame of a data channel.
func ParseOpenDataChannel(p []byte) (OpenDataChannel, error) {
	var o OpenDataChannel
	if err := json.Unmarshal(p, &o); err != nil {
		return OpenDataChannel{}, fmt.Errorf("open data channel: %w", err)
	}
	return o, nil
}

// ChannelClosedPayload is the JSON payload of channel_closed (§4.4). Output
// carries the reason; an empty Output means a normal end.
type ChannelClosedPayload struct {
	MessageID     string `json:"MessageId"`
	CreatedDate   string `json:"CreatedDate"`
	DestinationID string `json:"DestinationId"`
	SessionID     string `json:"SessionId"`
	MessageType   string `json:"MessageType"`
	SchemaVersion int    `json:"SchemaVersion"`
	Output        string `json:"Output"`
}

// ParseChannelClosed decodes a channel_closed payload.
func ParseChannelClosed(p []byte) (ChannelClosedPayload, error) {
	var c ChannelClosedPayload
	if err := json.Unmarshal(p, &c); err != nil {
		return ChannelClosedPayload{}, fmt.Errorf("channel closed payload: %w", err)
	}
	return c, nil
}
