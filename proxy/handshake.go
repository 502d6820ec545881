package proxy

import (
	"encoding/json"
	"fmt"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// handshake answers a HandshakeRequest (§6.2): one ProcessedClientAction per
// requested action. Only a plain Port session (stdio, §7.2) is supported; an
// action we cannot honour is reported to the agent, which then ends the
// session, and to the user.
func (lp *loop) handshake(payload []byte) error {
	req, err := protocol.ParseHandshakeRequest(payload)
	if err != nil {
		return &ProtocolError{Err: err}
	}
	lp.s.log.Debug("handshake request", "agent_version", req.AgentVersion)
	resp := protocol.HandshakeResponse{ClientVersion: lp.s.opts.ClientVersion}
	var failure error
	for _, a := range req.RequestedClientActions {
		pa := protocol.ProcessedClientAction{ActionType: a.ActionType, ActionStatus: protocol.ActionSuccess}
		switch a.ActionType {
		case protocol.ActionSessionType:
			p, err := a.SessionTypeParams()
			switch {
			case err != nil:
				pa.ActionStatus, pa.Error = protocol.ActionFailed, err.Error()
			case p.SessionType != protocol.SessionTypePort:
				pa.ActionStatus, pa.Error = protocol.ActionFailed, "unsupported session type "+p.SessionType
			case p.Properties["type"] != "":
				pa.ActionStatus, pa.Error = protocol.ActionFailed, "unsupported port session type "+p.Properties["type"]
			}
		default:
			pa.ActionStatus, pa.Error = protocol.ActionUnsupported, "ssm-proxy does not support "+string(a.ActionType)
		}
		if pa.ActionStatus != protocol.ActionSuccess && failure == nil {
			failure = &HandshakeError{Reason: fmt.Sprintf("the session's document asks for %s (%s); ssm-proxy carries plain port sessions such as AWS-StartSSHSession", a.ActionType, pa.Error)}
		}
		resp.ProcessedClientActions = append(resp.ProcessedClientActions, pa)
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	lp.sendStream(protocol.PayloadHandshakeResponse, b)
	return failure
}
