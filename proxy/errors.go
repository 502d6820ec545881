package proxy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// ErrIdleTimeout reports that the service ended the session for inactivity
// (§8.3).
var ErrIdleTimeout = errors.New("the session timed out due to inactivity and was terminated by Session Manager")

// ErrSessionEnded reports that ResumeSession returned no token: the service
// has ended the session (§1.3).
var ErrSessionEnded = errors.New("the service ended the session while reconnecting (ResumeSession returned no token)")

// ErrStdoutClosed reports that writing the session's output failed: the
// reader (ssh) went away while output was still arriving, so some of it
// was never delivered. The session is terminated all the same.
var ErrStdoutClosed = errors.New("stdout was closed while the session's output was still arriving; it was not all delivered")

// UnconfirmedError reports a session ended with messages the agent never
// acknowledged after the input ended: an agent before 3.2.1041.0 ignores
// a message it already has, so one whose acknowledgement died with a lost
// websocket is never acknowledged. They were sent, more than once; whether
// the agent has them cannot be told.
type UnconfirmedError struct {
	Messages     int
	AgentVersion string
	For          time.Duration
}

func (e *UnconfirmedError) Error() string {
	return fmt.Sprintf("the agent (SSM Agent %s) has not acknowledged the last %d messages for %s after the input ended; "+
		"agents before %s never acknowledge a message sent again after a lost connection, so whether it has them is unknown: update the SSM Agent on the instance",
		e.AgentVersion, e.Messages, e.For, protocol.AgentVersionReAck)
}

// RemoteError is a session ended by the agent or service with an error text
// in channel_closed (§4.4, §10).
type RemoteError struct {
	Output string // the channel_closed Output, error title removed
}

func (e *RemoteError) Error() string {
	return "session closed by the remote side: " + textutil.OneLine(e.Output)
}

// newRemoteError strips the agent's error title (§8.5) from output.
func newRemoteError(output string) *RemoteError {
	return &RemoteError{Output: strings.TrimSpace(strings.TrimPrefix(output, protocol.ErrorTitle))}
}

// ResumeError reports that the websocket was lost and could not be
// re-established within the resume budget (§8.2).
type ResumeError struct {
	Attempts int
	Err      error // the last attempt's error
}

func (e *ResumeError) Error() string {
	if e.Err == nil {
		return "connection to Session Manager lost and not restored within the resume budget"
	}
	return "connection to Session Manager lost and not restored: " + e.Err.Error()
}

func (e *ResumeError) Unwrap() error { return e.Err }

// HandshakeError reports a handshake the client cannot complete, such as an
// action it does not support (§6.2).
type HandshakeError struct {
	Reason  string
	Timeout bool // the agent did not complete the handshake in time
}

func (e *HandshakeError) Error() string { return "handshake: " + e.Reason }

// CredentialsError reports credentials that could not be resolved again for
// a resume. The established session did not need them; the resume does.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string {
	return "could not refresh AWS credentials to restore the connection: " + e.Err.Error()
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// ProtocolError reports a peer that broke the protocol in a way a resume
// cannot mend: a frame over the size limit, an undecodable handshake or
// channel_closed. The session is ended and terminated.
type ProtocolError struct{ Err error }

func (e *ProtocolError) Error() string { return "protocol error: " + e.Err.Error() }

func (e *ProtocolError) Unwrap() error { return e.Err }

// isProtocolViolation reports a link failure that is the peer's protocol
// error rather than the network's: gorilla refuses a frame over the read
// limit (maxFrame) with ErrReadLimit.
func isProtocolViolation(err error) bool {
	return errors.Is(err, websocket.ErrReadLimit)
}

// RefusedError reports a data channel the gateway closed with a policy
// violation (close code 1008) before it relayed anything: it refused our
// OpenDataChannel — an unsupported ClientVersion (§15.2), a token it does
// not accept. Opening again would meet the same answer.
type RefusedError struct {
	Reason string // the close frame's text
}

func (e *RefusedError) Error() string {
	if e.Reason == "" {
		return "the message gateway refused the data channel (websocket close 1008)"
	}
	return "the message gateway refused the data channel: " + e.Reason
}

// refusal returns the RefusedError for err, a link failure, if it is one.
func refusal(l *link, err error) (*RefusedError, bool) {
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || l.relayed.Load() > 0 {
		return nil, false
	}
	return &RefusedError{Reason: ce.Text}, true
}
