package ssmtest

// OWNED BY THE API WORK. Stub.

import "net/http"

// serveAPI serves the SSM JSON 1.1 API (§1): POST / with X-Amz-Target.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not implemented", http.StatusNotImplemented)
}
