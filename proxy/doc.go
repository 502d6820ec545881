// Package proxy runs one Session Manager port session and pipes it to a
// byte stream: it calls StartSession, opens the data channel websocket
// (SigV4-signed, §2), answers the handshake (§6), and then carries stdin to
// the agent and the agent's output to stdout with acknowledgements,
// retransmission and transparent resumption after a lost websocket (§5, §8).
//
// # Concurrency
//
// A Session is driven by one event loop goroutine that owns all protocol
// state (sequence numbers, the unacknowledged window, the reorder buffer) and
// performs every websocket write. Around it: one reader goroutine per
// websocket (always reading, so acks, pongs and close frames are seen even
// while stdin is idle), one stdin reader that the loop never waits for on
// shutdown (os.Stdin reads cannot be cancelled), one stdout writer, and at
// most one resume attempt at a time. Section numbers (§) refer to
// shared/protocol.md.
package proxy
