package protocol

// Texts the service and the agent put in channel_closed Output (§4.4, §10).
// Clients match them to explain an ending; the emulator sends them. Each
// has one home here so that both sides agree.
const (
	// ErrorTitle prefixes agent failures reported through MarkAsFailed
	// (§8.5, §10); dial failures arrive without it.
	ErrorTitle = "\n----------ERROR-------\n"

	// IdleTimeoutOutput is the whole Output of the service's idle timeout
	// (§8.3).
	IdleTimeoutOutput = "Your session timed out due to inactivity and has been terminated."

	// HandshakeFailedPrefix starts every handshake failure the agent
	// reports (§6.2, §10).
	HandshakeFailedPrefix = "Encountered error while initiating handshake. "

	// HandshakeTimedOut is what every handshake timeout text carries.
	HandshakeTimedOut = "Handshake timed out."

	// HandshakeTimeoutOutput is the agent's failure text when the client
	// does not answer the HandshakeRequest in time (§6.2).
	HandshakeTimeoutOutput = HandshakeFailedPrefix + HandshakeTimedOut + " Please ensure that you have the latest version of the session manager plugin."

	// DialFailedPrefix starts the port plugin's failure to connect to the
	// destination; the dial error follows (§7.2, §10).
	DialFailedPrefix = "Unable to connect to specified port: "

	// PortPluginUnsupportedOutput ends a port session on an agent older
	// than the Port plugin (§9.3, §10).
	PortPluginUnsupportedOutput = "Plugin with name Port is not supported by this version of ssm agent, please update to latest version. Step name: Port"

	// ForbiddenAddressPrefix starts the agent's refusal to forward to a
	// denied remote address (§7.5, §15.4); the address and a full stop
	// follow.
	ForbiddenAddressPrefix = "Forwarding to IP address "
)
