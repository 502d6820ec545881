package ssmtest

// OWNED BY THE API WORK. Stub.

import (
	"errors"
	"net/http"
)

// errUnsigned reports a request with no SigV4 Authorization header and no
// presigned query.
var errUnsigned = errors.New("request is not signed")

// verifySigV4 checks r's SigV4 signature (header or presigned query) for
// service against the fixed test credentials and s.opts.Region. body is the
// request body (nil for GET). It returns errUnsigned when r carries no
// signature at all, an *apiError-compatible error otherwise.
func (s *Server) verifySigV4(r *http.Request, service string, body []byte) error {
	return errUnsigned
}
