// Package proxy runs one Session Manager port session and pipes it to a
// byte stream: it calls StartSession, opens the data channel websocket
// (SigV4-signed, §2) after checking that its host is a messages endpoint
// (§15.3), answers the handshake (§6), and then carries stdin to the agent
// and the agent's output to stdout with acknowledgements, retransmission
// and transparent resumption after a lost websocket, into the StreamUrl the
// service names (§5, §8, §15.1).
//
// # Concurrency
//
// A Session is driven by one event loop goroutine (loop.go) that owns all
// protocol state (sequence numbers, the unacknowledged window, the reorder
// buffer, the resume plan) and decides everything. It never waits on the
// network. Around it:
//
//   - per websocket, one reader goroutine (always reading, so acks, pongs
//     and close frames are seen even while stdin is idle) and one writer
//     goroutine under the websocket (batch.go) that sends what the loop
//     queued, so that a black-holed link stalls only that writer;
//   - one stdin reader that the loop never waits for on shutdown (os.Stdin
//     reads cannot be cancelled) and one stdout writer;
//   - at most one resume attempt at a time (resume.go), which touches no
//     loop state and reports back on a channel.
//
// The files follow the loop's concerns: send.go (window, retransmission),
// recv.go (ordering, acks, delivery, channel_closed), handshake.go,
// resume.go, dial.go (signing, OpenDataChannel), host.go (the StreamUrl
// check), link.go and batch.go (one websocket). Section numbers (§) refer
// to docs/protocol.md.
package proxy
