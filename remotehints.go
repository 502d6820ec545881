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
		return []string{"the instance's SSM agent is too old for SSH sessions; update it to 3.0.222.0 or later (at least 2.3.672.0)"}
	case strings.Contains(out, "Handshake timed out"):
		return []string{"the agent gave up waiting for the handshake; check network latency to ssmmessages and retry"}
	}
	return nil
}
