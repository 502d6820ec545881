// Package forward carries TCP connections through Session Manager
// port-forwarding sessions: smux v1 streams (the library the agent and the
// official client use) over a proxy.Session's byte stream, one stream per
// connection (docs/protocol.md §7.4), and the ssh -L style specs that say
// what to forward.
package forward

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Spec is one forwarding: listen on Bind:LocalPort, connect each accepted
// connection to Host:Port as seen from the target. An empty Host means the
// target itself (AWS-StartPortForwardingSession); otherwise the agent dials
// Host (AWS-StartPortForwardingSessionToRemoteHost).
type Spec struct {
	Bind      string
	LocalPort int // 0: any free port
	Host      string
	Port      int
}

// DefaultBind is where a Spec without a bind address listens.
const DefaultBind = "127.0.0.1"

// ParseSpec parses ssh -L syntax: [BIND:]LOCALPORT:[HOST:]PORT. IPv6
// addresses are written in brackets ([::1]:8080:[fd00::5]:5432). A
// three-part spec is LOCALPORT:HOST:PORT when its first part is a port
// number, else BIND:LOCALPORT:PORT.
func ParseSpec(s string) (Spec, error) {
	parts, err := splitHostList(s)
	if err != nil {
		return Spec{}, fmt.Errorf("forward %q: %w", s, err)
	}
	var sp Spec
	var local, remote string
	hostGiven := false
	switch len(parts) {
	case 2: // LOCALPORT:PORT
		local, remote = parts[0], parts[1]
	case 3:
		if _, err := strconv.ParseUint(parts[0], 10, 16); err == nil && !strings.HasPrefix(s, "[") {
			local, sp.Host, remote = parts[0], parts[1], parts[2] // LOCALPORT:HOST:PORT
			hostGiven = true
		} else {
			sp.Bind, local, remote = parts[0], parts[1], parts[2] // BIND:LOCALPORT:PORT
		}
	case 4: // BIND:LOCALPORT:HOST:PORT
		sp.Bind, local, sp.Host, remote = parts[0], parts[1], parts[2], parts[3]
		hostGiven = true
	default:
		return Spec{}, fmt.Errorf("forward %q: want [BIND:]LOCALPORT:[HOST:]PORT", s)
	}
	lp, err := strconv.ParseUint(local, 10, 16)
	if err != nil {
		return Spec{}, fmt.Errorf("forward %q: local port %q: want a number from 0 to 65535", s, local)
	}
	rp, err := strconv.ParseUint(remote, 10, 16)
	if err != nil || rp == 0 {
		return Spec{}, fmt.Errorf("forward %q: port %q: want a number from 1 to 65535", s, remote)
	}
	sp.LocalPort, sp.Port = int(lp), int(rp)
	if sp.Bind == "" || sp.Bind == "localhost" {
		sp.Bind = DefaultBind
	}
	if sp.Bind == "*" {
		sp.Bind = "0.0.0.0"
	}
	if net.ParseIP(sp.Bind) == nil {
		return Spec{}, fmt.Errorf("forward %q: bind address %q: want an IP address (or localhost, or * for all)", s, sp.Bind)
	}
	// An empty HOST (an unset variable in 5432:$DB_HOST:5432) must not
	// quietly become the target's own port.
	if hostGiven && sp.Host == "" {
		return Spec{}, fmt.Errorf("forward %q: empty HOST: want LOCALPORT:HOST:PORT, or LOCALPORT:PORT for a port on the target itself", s)
	}
	return sp, nil
}

// splitHostList splits s on colons outside brackets and drops the brackets.
// Every colon separates two parts, so a trailing one leaves an empty part.
func splitHostList(s string) ([]string, error) {
	var parts []string
	for {
		var part string
		if strings.HasPrefix(s, "[") {
			end := strings.Index(s, "]")
			if end < 0 {
				return nil, fmt.Errorf("unclosed [")
			}
			part, s = s[1:end], s[end+1:]
			if s != "" && !strings.HasPrefix(s, ":") {
				return nil, fmt.Errorf("want : after ]")
			}
		} else {
			i := strings.Index(s, ":")
			if i < 0 {
				i = len(s)
			}
			part, s = s[:i], s[i:]
		}
		parts = append(parts, part)
		if s == "" {
			return parts, nil
		}
		s = s[1:] // the colon
	}
}

// Listen is where the spec listens, as host:port.
func (sp Spec) Listen() string { return net.JoinHostPort(sp.Bind, strconv.Itoa(sp.LocalPort)) }

// Destination is where the agent connects, for messages: HOST:PORT, or the
// target's own port.
func (sp Spec) Destination(target string) string {
	if sp.Host == "" {
		return net.JoinHostPort(target, strconv.Itoa(sp.Port))
	}
	return net.JoinHostPort(sp.Host, strconv.Itoa(sp.Port))
}

// Network is the network to listen on: "tcp4" for an IPv4 bind address,
// so that 0.0.0.0 listens on IPv4 only, as ssh -L does, "tcp6" for an IPv6
// one, "tcp" for a name.
func (sp Spec) Network() string {
	switch ip := net.ParseIP(sp.Bind); {
	case ip == nil:
		return "tcp"
	case ip.To4() != nil:
		return "tcp4"
	}
	return "tcp6"
}

// Loopback reports whether the spec listens on a loopback address only.
func (sp Spec) Loopback() bool {
	ip := net.ParseIP(sp.Bind)
	return ip != nil && ip.IsLoopback()
}

// Document and Parameters are the StartSession document and parameters
// for the spec (docs/protocol.md §1.7). localPort is the port actually
// listened on, recorded with the session.
func (sp Spec) Document() string {
	if sp.Host == "" {
		return DocumentPortForwarding
	}
	return DocumentPortForwardingToRemoteHost
}

// Parameters are the document's parameters for the spec.
func (sp Spec) Parameters(localPort int) map[string][]string {
	p := map[string][]string{
		"portNumber":      {strconv.Itoa(sp.Port)},
		"localPortNumber": {strconv.Itoa(localPort)},
	}
	if sp.Host != "" {
		p["host"] = []string{sp.Host}
	}
	return p
}

// The AWS-managed port-forwarding documents (docs/protocol.md §1.7).
const (
	DocumentPortForwarding             = "AWS-StartPortForwardingSession"
	DocumentPortForwardingToRemoteHost = "AWS-StartPortForwardingSessionToRemoteHost"
)
