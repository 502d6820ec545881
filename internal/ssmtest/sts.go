package ssmtest

// The STS half of the emulator: enough of AWS Security Token Service for a
// client to show whose credentials it uses (GetCallerIdentity) and to
// resolve assume-role and web-identity profiles (AssumeRole,
// AssumeRoleWithWebIdentity) without reaching AWS. Point the SDK at it with
// AWS_ENDPOINT_URL_STS=Endpoint().
//
// STS speaks the AWS query protocol: POST / with a form body
// (Action=…&Version=2011-06-15&…), SigV4-signed for service sts, answered
// with XML. It shares the port with the SSM JSON API; serveAPI tells them
// apart by the form content type and the absent X-Amz-Target.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// STS test values.
const (
	// MFATokenCode is the only MFA code AssumeRole accepts with a
	// SerialNumber.
	MFATokenCode = "123456"
	// ExpiredWebIdentityToken, as the web identity token, makes
	// AssumeRoleWithWebIdentity fail with ExpiredTokenException.
	ExpiredWebIdentityToken = "expired"
	// DeniedRoleSuffix: AssumeRole on a role whose name ends with it fails
	// with AccessDenied.
	DeniedRoleSuffix = "Denied"
	// CallerARN is the identity GetCallerIdentity reports.
	CallerARN = callerARN
	// AccountID is the emulator's account.
	AccountID = accountID
)

const (
	stsNamespace   = "https://sts.amazonaws.com/doc/2011-06-15/"
	stsVersion     = "2011-06-15"
	formMediaType  = "application/x-www-form-urlencoded"
	defaultRoleTTL = time.Hour
)

var roleARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$`)

// isSTSRequest reports a query-protocol request: a form POST without
// X-Amz-Target.
func isSTSRequest(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return r.Method == http.MethodPost && r.Header.Get("X-Amz-Target") == "" && mt == formMediaType
}

// serveSTS answers one STS call, unless its action is one of
// HangOperations.
func (s *Server) serveSTS(w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxAPIBody))
	if readErr == nil {
		if form, err := url.ParseQuery(string(body)); err == nil && s.hangIfAsked(w, r, form.Get("Action")) {
			return
		}
	}
	requestID := newRequestID()
	w.Header().Set("x-amzn-RequestId", requestID)
	action, result, err := s.handleSTS(r, body, readErr)
	if err != nil {
		ae := toAPIError(err)
		s.logf("sts: %s: request %s: %d %s: %s", action, requestID, ae.Status, ae.Code, ae.Message)
		writeXML(w, ae.Status, stsErrorResponse{
			Xmlns:     stsNamespace,
			Error:     stsErrorBody{Type: "Sender", Code: ae.Code, Message: ae.Message},
			RequestID: requestID,
		})
		return
	}
	s.logf("sts: %s: request %s: ok", action, requestID)
	writeXML(w, http.StatusOK, stsResponse{
		XMLName:  xml.Name{Local: action + "Response"},
		Xmlns:    stsNamespace,
		Result:   result,
		Metadata: stsMetadata{RequestID: requestID},
	})
}

// handleSTS parses and authenticates the request (its body already read,
// or readErr) and runs the action. The result's XMLName is <Action>Result.
// AssumeRoleWithWebIdentity is unsigned, as for the real service: the
// token is the credential.
func (s *Server) handleSTS(r *http.Request, body []byte, readErr error) (action string, result any, err error) {
	if readErr != nil {
		return "", nil, newAPIError("MalformedInput", "cannot read request body: %v", readErr)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", nil, newAPIError("MalformedInput", "cannot parse request body: %v", err)
	}
	action = form.Get("Action")
	if action != "AssumeRoleWithWebIdentity" {
		if err := s.verifySigV4(r, "sts", body); err != nil {
			if errors.Is(err, errUnsigned) {
				return action, nil, &apiError{Status: http.StatusForbidden, Code: "MissingAuthenticationToken", Message: "Request is missing Authentication Token"}
			}
			return action, nil, stsAuthError(err)
		}
	}
	if v := form.Get("Version"); v != stsVersion {
		return action, nil, newAPIError("InvalidAction", "Could not find operation %s for version %s", action, v)
	}
	name := xml.Name{Local: action + "Result"}
	switch action {
	case "GetCallerIdentity":
		return action, &callerIdentity{XMLName: name, Arn: callerARN, UserID: "AROAEXAMPLE:test", Account: accountID}, nil
	case "AssumeRole", "AssumeRoleWithWebIdentity":
		assume := assumeRole
		if action == "AssumeRoleWithWebIdentity" {
			assume = assumeRoleWithWebIdentity
		}
		res, err := assume(form)
		if err != nil {
			return action, nil, err
		}
		res.XMLName = name
		return action, res, nil
	}
	return action, nil, newAPIError("InvalidAction", "Could not find operation %s for version %s", action, stsVersion)
}

// assumeRole checks RoleArn, the MFA code and the duration and returns
// temporary credentials for SessionAccessKeyID.
func assumeRole(form url.Values) (*assumeRoleResult, error) {
	role, session := form.Get("RoleArn"), form.Get("RoleSessionName")
	m := roleARNPattern.FindStringSubmatch(role)
	if m == nil {
		return nil, newAPIError("ValidationError", "%s is invalid", role)
	}
	if session == "" {
		return nil, newAPIError("ValidationError", "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
	}
	if strings.HasSuffix(m[2], DeniedRoleSuffix) {
		return nil, &apiError{Status: http.StatusForbidden, Code: "AccessDenied",
			Message: fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", callerARN, role)}
	}
	if serial := form.Get("SerialNumber"); serial != "" && form.Get("TokenCode") != MFATokenCode {
		return nil, &apiError{Status: http.StatusForbidden, Code: "AccessDenied",
			Message: "MultiFactorAuthentication failed with invalid MFA one time pass code. "}
	}
	ttl, err := roleDuration(form.Get("DurationSeconds"))
	if err != nil {
		return nil, err
	}
	return &assumeRoleResult{
		Credentials:     newTemporaryCredentials(ttl),
		AssumedRoleUser: assumedRoleUser(m[1], m[2], session),
	}, nil
}

// assumeRoleWithWebIdentity accepts any token but ExpiredWebIdentityToken.
func assumeRoleWithWebIdentity(form url.Values) (*assumeRoleResult, error) {
	role, session, token := form.Get("RoleArn"), form.Get("RoleSessionName"), form.Get("WebIdentityToken")
	m := roleARNPattern.FindStringSubmatch(role)
	switch {
	case m == nil:
		return nil, newAPIError("ValidationError", "%s is invalid", role)
	case token == "" || session == "":
		return nil, newAPIError("ValidationError", "WebIdentityToken and RoleSessionName are required")
	case token == ExpiredWebIdentityToken:
		return nil, newAPIError("ExpiredTokenException", "Token expired: current date/time %s must be before the expiration date/time", time.Now().UTC().Format(time.RFC3339))
	}
	ttl, err := roleDuration(form.Get("DurationSeconds"))
	if err != nil {
		return nil, err
	}
	return &assumeRoleResult{
		Credentials:     newTemporaryCredentials(ttl),
		AssumedRoleUser: assumedRoleUser(m[1], m[2], session),
		Subject:         "system:serviceaccount:default:test",
	}, nil
}

// roleDuration parses DurationSeconds (900 s to 12 h; default 1 h).
func roleDuration(v string) (time.Duration, error) {
	if v == "" {
		return defaultRoleTTL, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 900 || n > 43200 {
		return 0, newAPIError("ValidationError", "1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200", v)
	}
	return time.Duration(n) * time.Second, nil
}

// newTemporaryCredentials returns SessionAccessKeyID credentials with a
// fresh session token, valid for ttl.
func newTemporaryCredentials(ttl time.Duration) stsCredentials {
	var b [16]byte
	rand.Read(b[:])
	return stsCredentials{
		AccessKeyID:     SessionAccessKeyID,
		SecretAccessKey: SecretAccessKey,
		SessionToken:    "ssmtest-" + hex.EncodeToString(b[:]),
		Expiration:      time.Now().Add(ttl).UTC().Format(time.RFC3339),
	}
}

func assumedRoleUser(account, role, session string) *stsRoleUser {
	return &stsRoleUser{
		AssumedRoleID: "AROAEXAMPLE:" + session,
		Arn:           fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", account, role, session),
	}
}

// stsAuthError maps a SigV4 verification error, worded as the SSM API
// words it, to the codes and statuses STS uses.
func stsAuthError(err error) *apiError {
	ae := toAPIError(err)
	switch ae.Code {
	case "UnrecognizedClientException":
		return &apiError{Status: http.StatusForbidden, Code: "InvalidClientTokenId", Message: ae.Message}
	case "InvalidSignatureException":
		return &apiError{Status: http.StatusForbidden, Code: "SignatureDoesNotMatch", Message: ae.Message}
	case "ExpiredTokenException":
		return &apiError{Status: http.StatusBadRequest, Code: "ExpiredToken", Message: ae.Message}
	case "InternalServerError":
		return &apiError{Status: http.StatusInternalServerError, Code: "InternalFailure", Message: ae.Message}
	}
	return ae
}

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, nil
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	w.Write([]byte(xml.Header))
	w.Write(b)
}

// The XML shapes of the STS responses.
type (
	stsResponse struct {
		XMLName  xml.Name
		Xmlns    string      `xml:"xmlns,attr"`
		Result   any         // a struct whose XMLName is <Action>Result
		Metadata stsMetadata `xml:"ResponseMetadata"`
	}
	stsMetadata struct {
		RequestID string `xml:"RequestId"`
	}
	callerIdentity struct {
		XMLName xml.Name
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	}
	assumeRoleResult struct {
		XMLName         xml.Name
		Credentials     stsCredentials `xml:"Credentials"`
		AssumedRoleUser *stsRoleUser   `xml:"AssumedRoleUser"`
		Subject         string         `xml:"SubjectFromWebIdentityToken,omitempty"`
	}
	stsCredentials struct {
		AccessKeyID     string `xml:"AccessKeyId"`
		SecretAccessKey string `xml:"SecretAccessKey"`
		SessionToken    string `xml:"SessionToken"`
		Expiration      string `xml:"Expiration"`
	}
	stsRoleUser struct {
		AssumedRoleID string `xml:"AssumedRoleId"`
		Arn           string `xml:"Arn"`
	}
	stsErrorResponse struct {
		XMLName   xml.Name     `xml:"ErrorResponse"`
		Xmlns     string       `xml:"xmlns,attr"`
		Error     stsErrorBody `xml:"Error"`
		RequestID string       `xml:"RequestId"`
	}
	stsErrorBody struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
)
