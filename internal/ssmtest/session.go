package ssmtest

// Sessions: what StartSession creates, ResumeSession re-tokens and
// TerminateSession or the agent ends. The data channel (datachannel.go) and
// the agent's port plugin (agent.go) hang off a session; this file holds the
// contract with the API side (api.go).

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// EndUnsupported is the Stats.Endings key of sessions the emulator cannot
// serve: a document other than the port documents (shells are not
// emulated) or an agent older than the Port plugin (§9.3).
const EndUnsupported = "unsupported"

// callerName is the first part of every SessionId unless
// Options.SessionIDPrefix says otherwise: where the real service puts the
// caller's IAM user or role-session name (§1.2).
const callerName = "test"

// Documents the agent knows how to turn into port-plugin properties (§1.7).
const (
	docSSH                = "AWS-StartSSHSession"
	docPortForwarding     = "AWS-StartPortForwardingSession"
	docPortForwardingHost = "AWS-StartPortForwardingSessionToRemoteHost"
	typeLocalPortForward  = "LocalPortForwarding"
)

// session is one Session Manager session: created by StartSession, attached
// to by data-channel websockets, ended by the agent side or TerminateSession.
//
// The fields above mu are set by newSession and never change. Everything
// below mu, including the queues of the session's websockets, is guarded by
// mu. Lock order: ss.mu before Server.mu.
type session struct {
	srv        *Server
	id         string
	instance   Instance
	document   string
	params     map[string][]string
	streamURL  string // the StreamUrl StartSession returned
	firstToken string

	portDoc      bool              // a port document; others are not emulated
	portType     string            // "" (SSH: stdio/basic) or LocalPortForwarding
	properties   map[string]string // the handshake's SessionType Properties
	dialAddr     string
	agentVersion string

	ctx      context.Context // cancelled by end
	cancel   context.CancelFunc
	done     <-chan struct{} // ctx.Done()
	wake     chan struct{}   // cap 1: the agent loop has something to do
	writable chan struct{}   // cap 1: a websocket attached or its queue drained
	dialed   chan dialResult // cap 1: the port plugin's dial finished

	mu    sync.Mutex
	token string // the only token an OpenDataChannel may carry now
	// cell is the session's cell-number now and url its StreamUrl; they
	// change on resume under MoveCellOnResume (§15.1).
	cell, url string
	ended     bool
	opens     int
	ws        *wsConn              // attached websocket; nil while the client is away
	conns     map[*wsConn]struct{} // every websocket not yet torn down
	inbox     []inFrame            // client frames on their way to the agent (Latency)
	// paused: pause_publication is in force (PauseEvery).
	paused bool
	// dialFunc dials the target: a net.Dialer's, unless a test replaced it
	// before the handshake completed.
	dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

	// Randomness, each seeded from the server's generator so that a Seed
	// reproduces a run as far as goroutine scheduling allows.
	rngID, rngIn, rngOut *rand.Rand

	lastClientData time.Time // last input_stream_data from the client (IdleTimeout)
	hugeSent       bool      // HugeFrameBytes: the frame has been sent

	agent agentState
}

// newSession registers a session for inst (already checked: known, online,
// not denied, document valid) and returns it with id, streamURL and
// firstToken filled in. It counts SessionsStarted and Active.
func (s *Server) newSession(inst Instance, document string, params map[string][]string) (*session, error) {
	portDoc, portType, props := documentProperties(document, params)
	dial := inst.Addr
	if dial == "" {
		dial = s.opts.TargetAddr
	}
	if dial == "" {
		host := props["host"]
		if host == "" {
			host = "localhost"
		}
		dial = net.JoinHostPort(host, props["portNumber"])
	}
	agentVersion := s.opts.AgentVersion
	if agentVersion == "" {
		agentVersion = inst.AgentVersion
	}
	if agentVersion == "" {
		agentVersion = DefaultAgentVersion
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("ssmtest: server closed")
	}
	var id string
	for id == "" || s.sessions[id] != nil {
		id = cmp.Or(s.opts.SessionIDPrefix, callerName) + "-" + randomHex(s.rng, 17)
	}
	cell := newCellLocked(s.rng)
	now := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{
		srv:          s,
		id:           id,
		instance:     inst,
		document:     document,
		params:       params,
		streamURL:    s.streamURL(id, cell),
		firstToken:   newToken(s.rng),
		portDoc:      portDoc,
		portType:     portType,
		properties:   props,
		dialAddr:     dial,
		agentVersion: agentVersion,
		ctx:          ctx,
		cancel:       cancel,
		done:         ctx.Done(),
		wake:         make(chan struct{}, 1),
		writable:     make(chan struct{}, 1),
		dialed:       make(chan dialResult, 1),
		conns:        make(map[*wsConn]struct{}),
		dialFunc:     (&net.Dialer{Timeout: dialTimeout}).DialContext,
		rngID:        rand.New(rand.NewSource(s.rng.Int63())),
		rngIn:        rand.New(rand.NewSource(s.rng.Int63())),
		rngOut:       rand.New(rand.NewSource(s.rng.Int63())),

		lastClientData: now,
	}
	ss.token = ss.firstToken
	s.rememberSecretLocked(ss.firstToken)
	ss.cell, ss.url = cell, ss.streamURL
	ss.agent.init()
	s.sessions[id] = ss
	s.stats.SessionsStarted++
	s.stats.Active++
	s.wg.Add(1)
	go ss.runAgent()
	if s.opts.PauseEvery > 0 {
		s.wg.Add(1)
		go ss.runPauses()
	}
	s.logf("ssmtest: session %s started: target %s document %s dial %s agent %s", id, inst.ID, document, dial, agentVersion)
	return ss, nil
}

// documentProperties returns whether document is a port document, the
// port plugin's type and the handshake Properties after parameter
// substitution (§1.7).
func documentProperties(document string, params map[string][]string) (portDoc bool, portType string, props map[string]string) {
	param := func(name, def string) string {
		if v := params[name]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
		return def
	}
	switch document {
	case docPortForwarding:
		return true, typeLocalPortForward, map[string]string{
			"portNumber":      param("portNumber", "80"),
			"type":            typeLocalPortForward,
			"localPortNumber": param("localPortNumber", "0"),
		}
	case docPortForwardingHost:
		return true, typeLocalPortForward, map[string]string{
			"host":            param("host", ""),
			"portNumber":      param("portNumber", "80"),
			"type":            typeLocalPortForward,
			"localPortNumber": param("localPortNumber", "0"),
		}
	}
	// AWS-StartSSHSession: no type, so stdio on the client and basic mode
	// on the agent (§7.2). Shell documents get the same properties but no
	// session (see startHandshakeLocked).
	return document == docSSH, "", map[string]string{"portNumber": param("portNumber", "22")}
}

// streamURL builds the StreamUrl of a session in cell as the real service
// shapes it (§1.2): ws:// or wss://, the messages host (StreamURLHost, or
// the advertised address), /v1/data-channel/<id>, role and cell-number.
// Clients must treat it as opaque. The cell number is padded standard
// base64, query-escaped, so that a client re-encoding the query (or
// signing it wrongly) shows up.
func (s *Server) streamURL(id, cell string) string {
	scheme := "ws"
	if s.scheme == "https" {
		scheme = "wss"
	}
	host := s.opts.StreamURLHost
	if host == "" {
		host = s.advertise
	}
	return scheme + "://" + host + "/v1/data-channel/" + escapeSessionID(id) +
		"?role=publish_subscribe&cell-number=" + url.QueryEscape(cell)
}

// escapeSessionID percent-encodes every byte of id but the unreserved
// ones: url.PathEscape would leave the "@" of an SSO caller's id as it is,
// and the service's StreamUrls carry it encoded.
func escapeSessionID(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// newCellLocked returns a fresh cell-number: 16 random bytes, standard
// base64. Only the emulator reads it; clients pass it back verbatim.
func newCellLocked(r *rand.Rand) string {
	b := make([]byte, 16)
	r.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// newToken returns a data-channel token: opaque, long and base64 like the
// real ones (§1.2).
func newToken(r *rand.Rand) string {
	b := make([]byte, 96)
	r.Read(b)
	return "AAEAA" + base64.StdEncoding.EncodeToString(b)
}

func randomHex(r *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[r.Intn(16)]
	}
	return string(b)
}

// lookupSession returns the session with id, live or ended, or nil.
func (s *Server) lookupSession(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

// resume is resumeSession's token.
func (ss *session) resume() string {
	token, _ := ss.resumeSession()
	return token
}

// resumeSession is ResumeSession for this session (§1.3, §15.1). A live
// session gets a fresh data-channel token (the previous one stops being
// accepted) and, under MoveCellOnResume, a new cell: the URL returned is
// the only one the data channel accepts from then on. An ended session
// gets an empty token, which the client must treat as "session over", and
// its latest URL.
func (ss *session) resumeSession() (token, streamURL string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return "", ss.url
	}
	srv := ss.srv
	srv.mu.Lock()
	ss.token = newToken(srv.rng)
	srv.rememberSecretLocked(ss.token)
	srv.stats.Resumes++
	moved := srv.opts.MoveCellOnResume
	if moved {
		ss.cell = newCellLocked(srv.rng)
		ss.url = srv.streamURL(ss.id, ss.cell)
		srv.stats.CellMoves++
	}
	srv.changedLocked()
	srv.mu.Unlock()
	if moved {
		srv.logf("ssmtest: session %s: resumed, new token issued, moved to a new cell", ss.id)
	} else {
		srv.logf("ssmtest: session %s: resumed, new token issued", ss.id)
	}
	return ss.token, ss.url
}

// currentURL is the StreamUrl the data channel accepts now.
func (ss *session) currentURL() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.url
}

// inCellLocked reports whether a data-channel request for cell (the
// decoded cell-number query value) reaches the session. Without
// MoveCellOnResume the cell is not checked, as before sessions moved.
func (ss *session) inCellLocked(cell string) bool {
	return !ss.srv.opts.MoveCellOnResume || cell == ss.cell
}

// terminate ends the session as EndTerminated (TerminateSession API) and
// reports whether it was still live.
func (ss *session) terminate() bool {
	return ss.endSession(EndTerminated, "")
}

// end ends the session for reason, sending channel_closed with output to a
// connected client. Idempotent.
func (ss *session) end(reason, output string) {
	ss.endSession(reason, output)
}

// endSession is end, reporting whether this call ended the session.
//
// The counters change before channel_closed is queued, so a client that has
// seen channel_closed also sees the session counted as ended.
func (ss *session) endSession(reason, output string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return false
	}
	ss.ended = true
	ss.cancel()
	ss.srv.add(func(st *Stats) {
		st.Active--
		switch reason {
		case EndTerminated:
			st.TerminatedByAPI++
		case EndServerClosed:
		default:
			st.EndedByAgent++
		}
		st.Endings[reason]++
	})
	if t := ss.agent.target; t != nil {
		t.Close()
	}
	select {
	case r := <-ss.dialed: // a dial the agent goroutine will not take
		if r.conn != nil {
			r.conn.Close()
		}
	default:
	}
	var frame []byte
	if ws := ss.ws; ws != nil && ws.live() {
		frame = ss.channelClosedFrameLocked(output)
	}
	for w := range ss.conns {
		if w == ss.ws && frame != nil {
			w.closeLocked(websocket.CloseNormalClosure, "", frame)
			continue
		}
		if !w.closing {
			w.abortLocked()
		}
	}
	ss.ws = nil
	if output == "" {
		ss.srv.logf("ssmtest: session %s ended: %s", ss.id, reason)
	} else {
		ss.srv.logf("ssmtest: session %s ended: %s: %q", ss.id, reason, output)
	}
	return true
}

// channelClosedFrameLocked encodes the gateway's channel_closed message
// (§4.4). Under MalformedChannelClosed the payload is the same JSON cut
// off inside Output, which no JSON decoder accepts.
func (ss *session) channelClosedFrameLocked(output string) []byte {
	now := time.Now().UTC()
	p := protocol.ChannelClosedPayload{
		MessageID:     ss.newIDLocked().String(),
		CreatedDate:   now.Format("2006-01-02T15:04:05.000Z"),
		DestinationID: ss.id,
		SessionID:     ss.id,
		MessageType:   string(protocol.ChannelClosed),
		SchemaVersion: 1,
		Output:        output,
	}
	payload := mustJSON(p)
	if ss.srv.opts.MalformedChannelClosed {
		payload = malformedChannelClosed(payload)
		ss.srv.add(func(st *Stats) { st.MalformedChannelCloses++ })
		ss.srv.logf("ssmtest: session %s: channel_closed payload is not JSON (MalformedChannelClosed)", ss.id)
	}
	return ss.controlFrameLocked(protocol.ChannelClosed, payload)
}

// malformedChannelClosed cuts a channel_closed payload off just after the
// opening quote of Output's value: the other fields are all there, the
// object is never closed.
func malformedChannelClosed(payload []byte) []byte {
	const key = `"Output":"`
	if i := bytes.Index(payload, []byte(key)); i >= 0 {
		return payload[:i+len(key)]
	}
	return payload[:len(payload)-1]
}

// controlFrameLocked encodes an unsequenced gateway message: channel_closed,
// start_publication or pause_publication.
func (ss *session) controlFrameLocked(typ protocol.MessageType, payload []byte) []byte {
	m := protocol.Message{
		Type:          typ,
		SchemaVersion: protocol.SchemaVersion,
		CreatedDate:   nowMillis(),
		MessageID:     ss.newIDLocked(),
		Payload:       payload,
	}
	return mustMarshal(&m)
}

// newIDLocked returns a random version 4 UUID for a message.
func (ss *session) newIDLocked() protocol.UUID {
	u, _ := protocol.NewUUID(ss.rngID) // a *rand.Rand never fails
	return u
}

func nowMillis() uint64 { return uint64(time.Now().UnixMilli()) }

func mustMarshal(m *protocol.Message) []byte {
	b, err := m.MarshalBinary()
	if err != nil {
		panic(fmt.Sprintf("ssmtest: encode %s: %v", m.Type, err))
	}
	return b
}
