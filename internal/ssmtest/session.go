package ssmtest

// OWNED BY THE DATA-CHANNEL/AGENT WORK. This file is a stub that fixes the
// contract between the API side (api.go) and the agent side.

import (
	"errors"
	"net/http"
)

// session is one Session Manager session: created by StartSession, attached
// to by data-channel websockets, ended by the agent side or TerminateSession.
type session struct {
	srv        *Server
	id         string
	instance   Instance
	document   string
	params     map[string][]string
	streamURL  string
	firstToken string
}

// newSession registers a session for inst (already checked: known, online,
// not denied, document valid) and returns it with id, streamURL and
// firstToken filled in. It counts SessionsStarted and Active.
func (s *Server) newSession(inst Instance, document string, params map[string][]string) (*session, error) {
	return nil, errors.New("not implemented")
}

// lookupSession returns the session with id, live or ended, or nil.
func (s *Server) lookupSession(id string) *session { return nil }

// resume issues a fresh data-channel token for a live session. For an ended
// session it returns "" (the client must treat that as "session over", §1.3).
func (ss *session) resume() string { return "" }

// terminate ends the session as EndTerminated (TerminateSession API) and
// reports whether it was still live.
func (ss *session) terminate() bool { return false }

// end ends the session for reason, sending channel_closed with output to a
// connected client. Idempotent.
func (ss *session) end(reason, output string) {}

// serveDataChannel accepts the websocket at a StreamUrl (§2, §9.1).
func (s *Server) serveDataChannel(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not implemented", http.StatusNotImplemented)
}
