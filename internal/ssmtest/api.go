package ssmtest

// The SSM API half of the emulator (docs/protocol.md §1): AWS JSON 1.1 over
// POST /, the operation named by X-Amz-Target, every call SigV4-signed for
// service ssm. Errors are {"__type": code, "message": text} with status 400
// (500 for InternalServerError); every response carries x-amzn-RequestId.

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

const (
	// apiTargetPrefix is the model's targetPrefix (§1.1).
	apiTargetPrefix = "AmazonSSM."
	// apiContentType is the AWS JSON 1.1 media type.
	apiContentType = "application/x-amz-json-1.1"
	// maxAPIBody bounds a request body; real requests here are tiny.
	maxAPIBody = 1 << 20
	// accountID is the emulator's AWS account, seen in ARNs.
	accountID = "123456789012"
	// callerARN is the identity every signed request is taken to come from.
	callerARN = "arn:aws:sts::" + accountID + ":assumed-role/Test/test"
)

// defaultDocument is the DocumentName StartSession uses when none is given,
// as the real API does.
const defaultDocument = "SSM-SessionManagerRunShell"

// knownDocument reports whether name is one of the session documents the
// emulator has (§1.7). Document ARNs are not resolved.
func knownDocument(name string) bool {
	switch name {
	case defaultDocument, "AWS-StartSSHSession", "AWS-StartPortForwardingSession", "AWS-StartPortForwardingSessionToRemoteHost":
		return true
	}
	return false
}

// serveAPI serves the SSM JSON 1.1 API (§1): POST / with X-Amz-Target.
// STS query-protocol calls, form POSTs without X-Amz-Target, share the
// port and go to serveSTS.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if isSTSRequest(r) {
		s.serveSTS(w, r)
		return
	}
	if strings.HasPrefix(r.Header.Get("X-Amz-Target"), instanceConnectTargetPrefix) {
		s.serveInstanceConnect(w, r)
		return
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), apiTargetPrefix)
	if s.hang[op] {
		// Read the body first: only then does the server notice the
		// client closing its connection (and cancel r's context).
		io.Copy(io.Discard, io.LimitReader(r.Body, maxAPIBody))
		if s.hangIfAsked(w, r, op) {
			return
		}
	}
	requestID := newRequestID()
	w.Header().Set("x-amzn-RequestId", requestID)
	out, err := s.handleAPI(r)
	if err != nil {
		ae := toAPIError(err)
		if ae.Code == "InternalServerError" {
			s.logf("api: %s: request %s: internal error: %v", op, requestID, err)
		}
		s.logf("api: %s: request %s: %d %s: %s", op, requestID, ae.Status, ae.Code, ae.Message)
		writeAPIJSON(w, ae.Status, struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}{ae.Code, ae.Message})
		return
	}
	s.logf("api: %s: request %s: ok", op, requestID)
	writeAPIJSON(w, http.StatusOK, out)
}

// handleAPI checks the request, verifies its signature and runs the
// operation, in the order the real service does: transport, authentication,
// operation, body.
func (s *Server) handleAPI(r *http.Request) (any, error) {
	body, err := s.readSignedRequest(r, "ssm")
	if err != nil {
		return nil, err
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, apiTargetPrefix)
	if !ok {
		return nil, newAPIError("UnknownOperationException", "unknown operation %q", target)
	}
	// Rate limits apply to authenticated callers, before the request
	// itself is looked at.
	if s.throttled(op) {
		return nil, errThrottled
	}
	switch op {
	case "StartSession":
		return callAPI(body, s.apiStartSession)
	case "ResumeSession":
		return callAPI(body, s.apiResumeSession)
	case "TerminateSession":
		return callAPI(body, s.apiTerminateSession)
	case "DescribeInstanceInformation":
		return callAPI(body, s.apiDescribeInstanceInformation)
	case "DescribeInstanceProperties":
		return callAPI(body, s.apiDescribeInstanceProperties)
	}
	return nil, newAPIError("UnknownOperationException", "unknown operation %q", target)
}

// readSignedRequest checks an AWS JSON request as the real services do —
// transport (POST /), body size, SigV4 for service, content type — and
// returns its body.
func (s *Server) readSignedRequest(r *http.Request, service string) ([]byte, error) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return nil, &apiError{Status: http.StatusNotFound, Code: "UnknownOperationException",
			Message: fmt.Sprintf("%s %s is not an operation of this service", r.Method, r.URL.Path)}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	switch {
	case err != nil:
		return nil, newAPIError("SerializationException", "cannot read request body: %v", err)
	case len(body) > maxAPIBody:
		return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Code: "SerializationException",
			Message: fmt.Sprintf("request body larger than %d bytes", maxAPIBody)}
	}
	if err := s.verifySigV4(r, service, body); err != nil {
		if errors.Is(err, errUnsigned) {
			return nil, newAPIError("MissingAuthenticationTokenException", "Missing Authentication Token")
		}
		return nil, err
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	return body, nil
}

// checkContentType accepts the AWS JSON media types.
func checkContentType(ct string) error {
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == apiContentType || mt == "application/x-amz-json-1.0") {
		return nil
	}
	return newAPIError("SerializationException", "unsupported Content-Type %q, want %s", ct, apiContentType)
}

// callAPI decodes body into a fresh In and runs op on it. An empty body is
// the empty object, as for the real service.
func callAPI[In, Out any](body []byte, op func(*In) (*Out, error)) (any, error) {
	in := new(In)
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, in); err != nil {
			return nil, newAPIError("SerializationException", "cannot parse request body: %v", err)
		}
	}
	return op(in)
}

// toAPIError maps any error to what the client sees; errors that are not
// *apiError are internal ones.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		out := *ae
		if out.Status == 0 {
			out.Status = http.StatusBadRequest
		}
		return &out
	}
	return &apiError{Status: http.StatusInternalServerError, Code: "InternalServerError",
		Message: "An internal server error occurred."}
}

// writeAPIJSON writes v as an AWS JSON 1.1 response.
func writeAPIJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"__type":"InternalServerError","message":"cannot encode response"}`)
	}
	w.Header().Set("Content-Type", apiContentType)
	w.WriteHeader(status)
	w.Write(b)
}

// newRequestID returns a fresh request id, a random UUID like the real
// service's.
func newRequestID() string {
	u, err := protocol.NewUUID(rand.Reader)
	if err != nil {
		return "00000000-0000-0000-0000-000000000000"
	}
	return u.String()
}

// startSessionInput is the StartSession request (§1.2).
type startSessionInput struct {
	Target       *string
	DocumentName *string
	Reason       *string
	Parameters   map[string][]string
}

// sessionOutput is the StartSession and ResumeSession response.
type sessionOutput struct {
	SessionId  string
	StreamUrl  string
	TokenValue string
}

var (
	documentNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_\-.:/]{3,128}$`)
	reasonPattern       = regexp.MustCompile(`^.{1,256}$`)
)

// apiStartSession checks the request as the real service does — syntax, then
// permission, then document, then target — and asks the agent side for a
// session.
func (s *Server) apiStartSession(in *startSessionInput) (*sessionOutput, error) {
	if err := validateStartSession(in); err != nil {
		return nil, err
	}
	target := *in.Target
	inst, known := s.inventoryInstance(target)
	if known && inst.Denied {
		return nil, &apiError{Status: http.StatusBadRequest, Code: "AccessDeniedException",
			Message: accessDeniedMessage("ssm:StartSession", s.instanceARN(target))}
	}
	doc := defaultDocument
	if in.DocumentName != nil {
		doc = *in.DocumentName
	}
	if !knownDocument(doc) {
		return nil, newAPIError("InvalidDocument", "Document with name %s does not exist.", doc)
	}
	if known && inst.StandardTier && strings.HasPrefix(target, "mi-") {
		return nil, newAPIError("BadRequest", "Enable advanced-instances tier to use Session Manager with your on-premises instances")
	}
	if !known || inst.PingStatus != pingOnline {
		return nil, newAPIError("TargetNotConnected", "%s is not connected.", target)
	}
	ss, err := s.newSession(inst, doc, in.Parameters)
	if err != nil {
		return nil, fmt.Errorf("start session on %s: %w", target, err)
	}
	return &sessionOutput{SessionId: ss.id, StreamUrl: ss.streamURL, TokenValue: ss.firstToken}, nil
}

// validateStartSession applies the model's constraints (§1.2).
func validateStartSession(in *startSessionInput) error {
	var v validation
	v.length("target", in.Target, 1, 400)
	if in.DocumentName != nil {
		v.pattern("documentName", *in.DocumentName, documentNamePattern)
	}
	if in.Reason != nil {
		v.length("reason", in.Reason, 1, 256)
		v.pattern("reason", *in.Reason, reasonPattern)
	}
	for k, vals := range in.Parameters {
		if n := len(k); n < 1 || n > 255 {
			v.add(k, "parameters", "Map keys must satisfy constraint: [Member must have length less than or equal to 255, Member must have length greater than or equal to 1]")
		}
		for _, val := range vals {
			if n := len(val); n < 1 || n > 65535 {
				v.add(val, "parameters."+k+".member", "Member must have length less than or equal to 65535, Member must have length greater than or equal to 1")
			}
		}
	}
	return v.err()
}

// accessDeniedMessage is IAM's implicit-deny text (§10).
func accessDeniedMessage(action, resource string) string {
	return fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action",
		callerARN, action, resource, action)
}

// instanceARN is the IAM resource of a target: an EC2 instance, or an SSM
// managed instance for mi- ids.
func (s *Server) instanceARN(id string) string {
	if strings.HasPrefix(id, "mi-") {
		return fmt.Sprintf("arn:aws:ssm:%s:%s:managed-instance/%s", s.opts.Region, accountID, id)
	}
	return fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", s.opts.Region, accountID, id)
}

// sessionIDInput is the ResumeSession and TerminateSession request.
type sessionIDInput struct {
	SessionId *string
}

// validate checks SessionId's constraints (1–96 characters, §1.3).
func (in *sessionIDInput) validate() error {
	var v validation
	v.length("sessionId", in.SessionId, 1, 96)
	return v.err()
}

// apiResumeSession returns a fresh token for the session's websocket and
// the StreamUrl to use it with (a new one under MoveCellOnResume, §15.1),
// or an empty token for a session that has ended, which the client must
// treat as over (§1.3). Resumes are counted by the session.
func (s *Server) apiResumeSession(in *sessionIDInput) (*sessionOutput, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	ss := s.lookupSession(*in.SessionId)
	if ss == nil {
		return nil, newAPIError("DoesNotExistException", "Session with id %s does not exist.", *in.SessionId)
	}
	token, streamURL := ss.resumeSession()
	return &sessionOutput{SessionId: ss.id, StreamUrl: streamURL, TokenValue: token}, nil
}

// terminateSessionOutput is the TerminateSession response (§1.4).
type terminateSessionOutput struct {
	SessionId string
}

// apiTerminateSession ends a session. Like the real API it does not complain
// about ids it does not know or sessions already over: it just echoes the
// id.
func (s *Server) apiTerminateSession(in *sessionIDInput) (*terminateSessionOutput, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	if ss := s.lookupSession(*in.SessionId); ss != nil {
		ss.terminate()
	}
	return &terminateSessionOutput{SessionId: *in.SessionId}, nil
}

// validation collects constraint violations into one ValidationException
// worded as AWS words them ("1 validation error detected: Value 'x' at
// 'target' failed to satisfy constraint: ...").
type validation struct {
	errs []string
}

// add records that value at member breaks constraint.
func (v *validation) add(value, member, constraint string) {
	v.errs = append(v.errs, fmt.Sprintf("Value '%s' at '%s' failed to satisfy constraint: %s", value, member, constraint))
}

// required records a missing member.
func (v *validation) required(member string) {
	v.errs = append(v.errs, fmt.Sprintf("Value null at '%s' failed to satisfy constraint: Member must not be null", member))
}

// length checks a required string member's length.
func (v *validation) length(member string, s *string, min, max int) {
	switch {
	case s == nil:
		v.required(member)
	case len(*s) < min:
		v.add(*s, member, fmt.Sprintf("Member must have length greater than or equal to %d", min))
	case len(*s) > max:
		v.add(*s, member, fmt.Sprintf("Member must have length less than or equal to %d", max))
	}
}

// count checks the number of members of a required list.
func (v *validation) count(member string, list []string, min, max int) {
	value := "[" + strings.Join(list, ", ") + "]"
	switch {
	case list == nil:
		v.required(member)
	case len(list) < min:
		v.add(value, member, fmt.Sprintf("Member must have length greater than or equal to %d", min))
	case len(list) > max:
		v.add(value, member, fmt.Sprintf("Member must have length less than or equal to %d", max))
	}
}

// pattern checks a string member against the model's pattern.
func (v *validation) pattern(member, s string, re *regexp.Regexp) {
	if !re.MatchString(s) {
		v.add(s, member, "Member must satisfy regular expression pattern: "+re.String())
	}
}

// err is the ValidationException for what was recorded, or nil.
func (v *validation) err() error {
	switch len(v.errs) {
	case 0:
		return nil
	case 1:
		return newAPIError("ValidationException", "1 validation error detected: %s", v.errs[0])
	}
	return newAPIError("ValidationException", "%d validation errors detected: %s", len(v.errs), strings.Join(v.errs, "; "))
}
