package protocol

import (
	"encoding/json"
	"fmt"
	"time"
)

// ActionType names a RequestedClientAction (§6.2).
type ActionType string

// Action types (§6.2).
const (
	ActionSessionType   ActionType = "SessionType"
	ActionKMSEncryption ActionType = "KMSEncryption"
)

// ActionStatus is a ProcessedClientAction outcome (§6.2). The agent treats
// anything but ActionSuccess as a handshake failure.
type ActionStatus int

// Action statuses (§6.2).
const (
	ActionSuccess     ActionStatus = 1
	ActionFailed      ActionStatus = 2
	ActionUnsupported ActionStatus = 3
)

// Session types carried in a SessionType action (§6.2).
const (
	SessionTypePort           = "Port"
	SessionTypeStandardStream = "Standard_Stream"
)

// PortTypeLocalPortForwarding is the "type" property of the port-forwarding
// documents (§1.7); plain port sessions (AWS-StartSSHSession) have none.
const PortTypeLocalPortForwarding = "LocalPortForwarding"

// HandshakeRequest is the agent's first message (PayloadType 5, §6.2).
type HandshakeRequest struct {
	AgentVersion           string                  `json:"AgentVersion"`
	RequestedClientActions []RequestedClientAction `json:"RequestedClientActions"`
}

// RequestedClientAction is one action the agent asks the client to perform.
// ActionParameters is kept raw; decode it with SessionTypeParams for
// ActionSessionType.
type RequestedClientAction struct {
	ActionType       ActionType      `json:"ActionType"`
	ActionParameters json.RawMessage `json:"ActionParameters"`
}

// SessionTypeParams are the ActionParameters of a SessionType action.
// Properties are the document properties after parameter substitution
// (§1.7), e.g. {"portNumber":"22"} for AWS-StartSSHSession.
type SessionTypeParams struct {
	SessionType string            `json:"SessionType"`
	Properties  map[string]string `json:"Properties"`
}

// HandshakeResponse is the client's answer (PayloadType 6, §6.2).
type HandshakeResponse struct {
	ClientVersion          string                  `json:"ClientVersion"`
	ProcessedClientActions []ProcessedClientAction `json:"ProcessedClientActions"`
	Errors                 []string                `json:"Errors"`
}

// ProcessedClientAction reports the outcome of one requested action.
type ProcessedClientAction struct {
	ActionType   ActionType      `json:"ActionType"`
	ActionStatus ActionStatus    `json:"ActionStatus"`
	ActionResult json.RawMessage `json:"ActionResult"`
	Error        string          `json:"Error"`
}

// HandshakeComplete ends the handshake (PayloadType 7, §6.2).
type HandshakeComplete struct {
	HandshakeTimeToComplete time.Duration `json:"HandshakeTimeToComplete"` // nanoseconds on the wire
	CustomerMessage         string        `json:"CustomerMessage"`
}

// ParseHandshakeRequest decodes a PayloadHandshakeRequest payload.
func ParseHandshakeRequest(p []byte) (HandshakeRequest, error) {
	var r HandshakeRequest
	if err := json.Unmarshal(p, &r); err != nil {
		return HandshakeRequest{}, fmt.Errorf("handshake request: %w", err)
	}
	return r, nil
}

// SessionTypeParams decodes the parameters of an ActionSessionType action.
func (a RequestedClientAction) SessionTypeParams() (SessionTypeParams, error) {
	var p SessionTypeParams
	if a.ActionType != ActionSessionType {
		return p, fmt.Errorf("action %q is not %q", a.ActionType, ActionSessionType)
	}
	if err := json.Unmarshal(a.ActionParameters, &p); err != nil {
		return SessionTypeParams{}, fmt.Errorf("session type parameters: %w", err)
	}
	return p, nil
}

// ParseHandshakeResponse decodes a PayloadHandshakeResponse payload.
func ParseHandshakeResponse(p []byte) (HandshakeResponse, error) {
	var r HandshakeResponse
	if err := json.Unmarshal(p, &r); err != nil {
		return HandshakeResponse{}, fmt.Errorf("handshake response: %w", err)
	}
	return r, nil
}

// ParseHandshakeComplete decodes a PayloadHandshakeComplete payload.
func ParseHandshakeComplete(p []byte) (HandshakeComplete, error) {
	var c HandshakeComplete
	if err := json.Unmarshal(p, &c); err != nil {
		return HandshakeComplete{}, fmt.Errorf("handshake complete: %w", err)
	}
	return c, nil
}
