package main

import (
	"strings"

	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// remoteHints explains the agent's channel_closed texts (protocol.md §10).
func remoteHints(re *proxy.RemoteError) []string {
	switch out := re.Output; {
	case strings.Contains(out, "Unable to connect to specified port"):
		return []string{"nothing is listening on that port on the instance: check that sshd is running, and the port in ~/.ssh/config"}
	case strings.Contains(out, "Plugin with name Port is not supported"):
		return []string{"the instance's SSM agent is too old for SSH sessions; " + hintAgentUpdate}
	case strings.Contains(out, "Handshake timed out"):
		return []string{"the agent gave up waiting for the handshake; check network latency to ssmmessages and retry"}
	case strings.Contains(out, "Forwarding to IP address"):
		return []string{"the agent refuses to forward to that address (instance metadata, VPC DNS and reserved addresses are forbidden)"}
	case strings.Contains(out, "timed out due to inactivity"):
		return []string{hintServerAlive}
	}
	return nil
}
