package ssmtest

// The agent's multiplexed port plugin (§7.4): for LocalPortForwarding
// documents with a current client, an smux server over the session's
// Output byte stream, one destination connection per smux stream.

// ForwardingOptions select how the agent's port-forwarding plugin behaves
// (AWS-StartPortForwardingSession and …ToRemoteHost).
type ForwardingOptions struct{}
