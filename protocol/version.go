package protocol

import (
	"cmp"
	"strconv"
	"strings"
)

// Version thresholds that change behaviour on either side (§7.1, §9.3).
const (
	// ClientVersionMux is the lowest ClientVersion for which the agent uses
	// smux for LocalPortForwarding (agent rule: ≥).
	ClientVersionMux = "1.1.70"
	// ClientVersionNoKeepAlive: above it the agent disables smux keep-alive.
	ClientVersionNoKeepAlive = "1.2.331.0"
	// AgentVersionMux: the official client uses smux iff the agent is above it.
	AgentVersionMux = "3.0.196.0"
	// AgentVersionMuxMin is the first agent release with smux port
	// forwarding (§9.3), the one to name in advice.
	AgentVersionMuxMin = "3.0.222.0"
	// AgentVersionNoKeepAlive: the official client disables smux keep-alive
	// iff the agent is above it.
	AgentVersionNoKeepAlive = "3.1.1511.0"
	// AgentVersionKeepAliveOff and AgentVersionKeepAliveBack bound the
	// agents that disabled smux keep-alive whatever the client (3.1.1446.0,
	// reverted in 3.1.1476.0); from AgentVersionKeepAliveByClient the agent
	// disables it iff ClientVersion is above ClientVersionNoKeepAlive (§9.3).
	AgentVersionKeepAliveOff      = "3.1.1446.0"
	AgentVersionKeepAliveBack     = "3.1.1476.0"
	AgentVersionKeepAliveByClient = "3.1.1575.0"
	// AgentVersionTerminateFlag: the official client sends
	// FlagTerminateSession to agents above it; agents honour the flag from
	// AgentVersionTerminateHonoured on (§9.3), earlier ones ignore it.
	AgentVersionTerminateFlag     = "2.3.722.0"
	AgentVersionTerminateHonoured = "2.3.756.0"
	// AgentVersionPort is the first agent with the Port plugin (SSH needs it).
	AgentVersionPort = "2.3.672.0"
	// AgentVersionReAck is the first agent that acknowledges a duplicate
	// stream message again; earlier agents ignore it (§5.3, §9.3).
	AgentVersionReAck = "3.2.1041.0"
)

// CompareAgentVersions orders versions the way the agent's
// versionutil.Compare(a, b, strict) does (§9.4): dot-separated components
// left to right, numerically when both are integers, else lexically; when
// all shared components are equal, more components is greater. An empty
// version is lower than any non-empty one. It returns -1, 0 or +1.
// (The agent tries SemVer first; for the plain numeric versions in use the
// two orders agree.)
func CompareAgentVersions(a, b string) int {
	if a == b {
		return 0
	}
	if a == "" {
		return -1
	}
	if b == "" {
		return 1
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, errx := strconv.ParseUint(as[i], 10, 64)
		y, erry := strconv.ParseUint(bs[i], 10, 64)
		var c int
		if errx == nil && erry == nil {
			c = cmp.Compare(x, y)
		} else {
			c = strings.Compare(as[i], bs[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(as), len(bs))
}

// PluginVersionGreater reports whether a > b under the official client's
// rule (§7.1): both must have the same number of numeric components,
// otherwise a is not greater.
func PluginVersionGreater(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		x, err1 := strconv.ParseUint(as[i], 10, 64)
		y, err2 := strconv.ParseUint(bs[i], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if x != y {
			return x > y
		}
	}
	return false
}

// AgentKeepAlive reports whether an agent of agentVersion keeps smux
// keep-alive on with a client of clientVersion (§7.1, §9.3). Both sides
// must agree: the side with keep-alive on closes an idle smux session
// when the other sends nothing for 30 s.
func AgentKeepAlive(agentVersion, clientVersion string) bool {
	switch {
	case CompareAgentVersions(agentVersion, AgentVersionKeepAliveOff) >= 0 && CompareAgentVersions(agentVersion, AgentVersionKeepAliveBack) < 0:
		return false
	case CompareAgentVersions(agentVersion, AgentVersionKeepAliveByClient) >= 0:
		return CompareAgentVersions(clientVersion, ClientVersionNoKeepAlive) <= 0
	}
	return true
}
