package proxy

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// handshake answers a HandshakeRequest (§6.2): one ProcessedClientAction per
// requested action. The session type must be Port, in the form the
// session's Mode expects: a plain port session (no type: stdio, §7.2) or,
// for ModeMux, LocalPortForwarding on an agent that multiplexes (§7.1,
// §7.4). An action we cannot honour is reported to the agent, which then
// ends the session, and to the user.
func (lp *loop) handshake(payload []byte) error {
	req, err := protocol.ParseHandshakeRequest(payload)
	if err != nil {
		return &ProtocolError{Err: err}
	}
	lp.agentVersion = req.AgentVersion
	lp.s.log.Debug("handshake request", "agent_version", req.AgentVersion)
	resp := protocol.HandshakeResponse{ClientVersion: lp.s.opts.ClientVersion}
	var failure error
	for _, a := range req.RequestedClientActions {
		pa := protocol.ProcessedClientAction{ActionType: a.ActionType, ActionStatus: protocol.ActionSuccess}
		var why string
		switch a.ActionType {
		case protocol.ActionSessionType:
			why = lp.checkSessionType(a, req.AgentVersion, &pa)
		default:
			pa.ActionStatus, pa.Error = protocol.ActionUnsupported, "ssm-proxy does not support "+string(a.ActionType)
			why = fmt.Sprintf("the session's document asks for %s, which ssm-proxy does not support", a.ActionType)
		}
		if pa.ActionStatus != protocol.ActionSuccess && failure == nil {
			failure = &HandshakeError{Reason: why}
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

// checkSessionType fills pa for a SessionType action and returns, on
// failure, the reason for the user.
func (lp *loop) checkSessionType(a protocol.RequestedClientAction, agentVersion string, pa *protocol.ProcessedClientAction) (why string) {
	fail := func(status protocol.ActionStatus, agentText, userText string) string {
		pa.ActionStatus, pa.Error = status, agentText
		return userText
	}
	p, err := a.SessionTypeParams()
	if err != nil {
		return fail(protocol.ActionFailed, err.Error(), "the agent's session type is unreadable: "+err.Error())
	}
	if p.SessionType != protocol.SessionTypePort {
		return fail(protocol.ActionFailed, "unsupported session type "+p.SessionType,
			fmt.Sprintf("the session's document starts a %s session; ssm-proxy carries port sessions only", p.SessionType))
	}
	typ := p.Properties["type"]
	switch lp.s.opts.Mode {
	case ModeMux:
		if typ != protocol.PortTypeLocalPortForwarding {
			return fail(protocol.ActionFailed, "port forwarding needs a LocalPortForwarding session, got type "+strconv.Quote(typ),
				"the session's document is not a port-forwarding document (AWS-StartPortForwardingSession or …ToRemoteHost)")
		}
		if !protocol.PluginVersionGreater(agentVersion, protocol.AgentVersionMux) {
			return fail(protocol.ActionFailed, "agent "+agentVersion+" does not multiplex port forwarding",
				fmt.Sprintf("the instance's SSM agent %s predates multiplexed port forwarding: update it to %s or later", agentVersion, protocol.AgentVersionMuxMin))
		}
	default:
		if typ != "" {
			return fail(protocol.ActionFailed, "unsupported port session type "+typ,
				fmt.Sprintf("the session's document asks for a %s port session; the ProxyCommand carries plain port sessions such as AWS-StartSSHSession (use `ssm-proxy forward` for port forwarding)", typ))
		}
	}
	return ""
}
