package ssmtest

// SigV4 verification (docs/protocol.md §1.1, §2), written from the public
// "Create a signed AWS API request" documentation and checked against
// aws-sdk-go-v2's signer in sigv4_test.go.
//
// Both forms are verified: the Authorization header (SDK API calls, service
// ssm; the websocket upgrade GET, service ssmmessages) and the presigned
// query (X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
// X-Amz-SignedHeaders, X-Amz-Signature, optional X-Amz-Security-Token).
//
// What is not reproduced: SigV4a, the Date header as an alternative to
// X-Amz-Date, S3's single encoding of the path and the dot-segment
// normalisation AWS applies to non-S3 paths (the SDK does not normalise
// either, so it never matters to a Go client).

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Temporary credentials. AccessKeyID signs with or without a session token
// (any X-Amz-Security-Token value is accepted with it); SessionAccessKeyID
// stands for credentials from STS and SSO and is refused without one. Both
// use SecretAccessKey.
const (
	SessionAccessKeyID = "ASIAEXAMPLE"
	// ExpiredSessionToken, sent as X-Amz-Security-Token with either key,
	// makes the request fail with ExpiredTokenException, so that clients
	// can test their "log in again" path.
	ExpiredSessionToken = "EXPIRED"
)

// errUnsigned reports a request with no SigV4 Authorization header and no
// presigned query.
var errUnsigned = errors.New("request is not signed")

// apiError is an error as the SSM API reports it (AWS JSON 1.1, §1.1): the
// HTTP status, the __type code and the message text.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// newAPIError returns a 400 apiError with a formatted message.
func newAPIError(code, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error texts of the real service (§10).
const (
	msgInvalidToken      = "The security token included in the request is invalid."
	msgExpiredToken      = "The security token included in the request is expired"
	msgSignatureMismatch = "The request signature we calculated does not match the signature you provided. " +
		"Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

const (
	sigAlgorithm    = "AWS4-HMAC-SHA256"
	sigTerminator   = "aws4_request"
	amzDateLayout   = "20060102T150405Z"
	scopeDateLayout = "20060102"
	// maxClockSkew is how far X-Amz-Date may be from the server's clock:
	// AWS's 5 minutes ("Signature expired: … (… - 5 min.)").
	maxClockSkew = 5 * time.Minute
	// maxPresignExpires is the longest X-Amz-Expires AWS accepts (7 days).
	maxPresignExpires = 7 * 24 * time.Hour
	unsignedPayload   = "UNSIGNED-PAYLOAD"
)

// sigClaim is what a request's SigV4 signature claims, from either the
// Authorization header or the presigned query.
type sigClaim struct {
	presigned     bool
	accessKey     string
	scopeDate     string // YYYYMMDD
	region        string
	service       string
	terminator    string
	signedHeaders []string // lower-case, in the order given
	signature     string   // hex
	amzDate       string   // X-Amz-Date as sent
	time          time.Time
	token         string        // X-Amz-Security-Token
	expires       time.Duration // presigned only
}

// scope is the credential scope, date/region/service/aws4_request.
func (sig *sigClaim) scope() string {
	return strings.Join([]string{sig.scopeDate, sig.region, sig.service, sig.terminator}, "/")
}

// verifySigV4 checks r's SigV4 signature (header or presigned query) for
// service against the fixed test credentials and s.opts.Region. body is the
// request body (nil for GET). It returns errUnsigned when r carries no
// signature at all and an *apiError otherwise. A signature mismatch
// (forced for every API service under RefuseSignatures) is counted and
// logs the canonical request the emulator expected, session token
// redacted; the error itself carries it unredacted, as AWS's does.
func (s *Server) verifySigV4(r *http.Request, service string, body []byte) error {
	refuse := s.opts.RefuseSignatures && service != "ssmmessages"
	if sig, err := parseSignature(r); err == nil {
		s.mu.Lock()
		s.rememberSecretLocked(sig.signature)
		s.rememberSecretLocked(sig.token)
		s.mu.Unlock()
	}
	canonical, err := verifySignature(r, body, s.opts.Region, service, time.Now(), refuse)
	if canonical != "" {
		s.add(func(st *Stats) { st.SignatureMismatches++ })
		s.logf("sigv4: signature mismatch; expected canonical request:\n%s", canonical)
	}
	return err
}

// verifySignature is verifySigV4 with the region, the clock and whether to
// refuse a matching signature passed in. On a mismatch it also returns the
// canonical request it computed, session token redacted, for the log.
func verifySignature(r *http.Request, body []byte, region, service string, now time.Time, refuse bool) (string, error) {
	sig, err := parseSignature(r)
	if err != nil {
		return "", err
	}
	if err := sig.checkCredentials(); err != nil {
		return "", err
	}
	if err := sig.checkScope(region, service); err != nil {
		return "", err
	}
	if err := sig.checkTime(now); err != nil {
		return "", err
	}
	if !slices.Contains(sig.signedHeaders, "host") {
		return "", newAPIError("InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	payload, err := payloadHash(r, body)
	if err != nil {
		return "", err
	}
	canonical := canonicalRequest(r, sig, payload)
	toSign := stringToSign(sig, canonical)
	want := computeSignature(SecretAccessKey, sig, toSign)
	if refuse || !hmac.Equal([]byte(want), []byte(sig.signature)) {
		return redactToken(canonical, sig.token), signatureMismatch(canonical, toSign)
	}
	return "", nil
}

// signatureMismatch is InvalidSignatureException worded as AWS words it:
// the fixed text, then the canonical request and the string to sign the
// service computed, each quoted on lines of its own. The canonical request
// holds every signed header's value, so with temporary credentials the
// caller's x-amz-security-token is in the message: a client must scrub
// what it prints.
func signatureMismatch(canonical, toSign string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "InvalidSignatureException",
		Message: msgSignatureMismatch +
			"\n\nThe Canonical String for this request should have been\n'" + canonical + "'" +
			"\n\nThe String-to-Sign should have been\n'" + toSign + "'\n"}
}

// parseSignature finds the signature in r: the Authorization header or the
// presigned query, not both.
func parseSignature(r *http.Request) (*sigClaim, error) {
	auth := r.Header.Get("Authorization")
	query := r.URL.Query()
	presigned := query.Has("X-Amz-Algorithm") || query.Has("X-Amz-Signature") || query.Has("X-Amz-Credential")
	switch {
	case auth != "" && presigned:
		return nil, newAPIError("IncompleteSignatureException",
			"Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified")
	case auth != "":
		return parseAuthorization(auth, r.Header)
	case presigned:
		return parsePresigned(query)
	}
	return nil, errUnsigned
}

// parseAuthorization parses the header form:
//
//	AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/ssm/aws4_request, SignedHeaders=host;x-amz-date, Signature=<hex>
func parseAuthorization(auth string, h http.Header) (*sigClaim, error) {
	alg, rest, _ := strings.Cut(auth, " ")
	if alg != sigAlgorithm {
		return nil, newAPIError("IncompleteSignatureException", "Unsupported Authorization Type")
	}
	fields := make(map[string]string)
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			fields[k] = v
		}
	}
	var missing []string
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if fields[k] == "" {
			missing = append(missing, fmt.Sprintf("Authorization header requires '%s' parameter.", k))
		}
	}
	if len(missing) > 0 {
		return nil, newAPIError("IncompleteSignatureException", "%s Authorization=%s", strings.Join(missing, " "), auth)
	}
	sig := &sigClaim{
		signedHeaders: strings.Split(fields["SignedHeaders"], ";"),
		signature:     fields["Signature"],
		amzDate:       h.Get("X-Amz-Date"),
		token:         h.Get("X-Amz-Security-Token"),
	}
	if sig.amzDate == "" {
		return nil, newAPIError("IncompleteSignatureException",
			"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=%s", auth)
	}
	if err := sig.parseCredential(fields["Credential"]); err != nil {
		return nil, err
	}
	return sig, sig.parseDate()
}

// parsePresigned parses the query form.
func parsePresigned(q url.Values) (*sigClaim, error) {
	var missing []string
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Expires"} {
		if q.Get(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, newAPIError("IncompleteSignatureException",
			"AWS query-string parameters must include %s. Re-examine the query-string parameters.", strings.Join(missing, ", "))
	}
	if q.Get("X-Amz-Algorithm") != sigAlgorithm {
		return nil, newAPIError("IncompleteSignatureException", "Unsupported X-Amz-Algorithm %q", q.Get("X-Amz-Algorithm"))
	}
	secs, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > maxPresignExpires {
		return nil, newAPIError("AuthorizationQueryParametersError",
			"X-Amz-Expires must be a number of seconds between 1 and %d", int(maxPresignExpires.Seconds()))
	}
	sig := &sigClaim{
		presigned:     true,
		signedHeaders: strings.Split(q.Get("X-Amz-SignedHeaders"), ";"),
		signature:     q.Get("X-Amz-Signature"),
		amzDate:       q.Get("X-Amz-Date"),
		token:         q.Get("X-Amz-Security-Token"),
		expires:       time.Duration(secs) * time.Second,
	}
	if err := sig.parseCredential(q.Get("X-Amz-Credential")); err != nil {
		return nil, err
	}
	return sig, sig.parseDate()
}

// parseCredential splits AKID/date/region/service/aws4_request.
func (sig *sigClaim) parseCredential(cred string) error {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return newAPIError("IncompleteSignatureException",
			"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '%s'", cred)
	}
	sig.accessKey, sig.scopeDate, sig.region, sig.service, sig.terminator = parts[0], parts[1], parts[2], parts[3], parts[4]
	return nil
}

// parseDate parses X-Amz-Date (ISO 8601 basic format, UTC).
func (sig *sigClaim) parseDate() error {
	t, err := time.Parse(amzDateLayout, sig.amzDate)
	if err != nil {
		return newAPIError("IncompleteSignatureException", "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
	}
	sig.time = t
	return nil
}

// checkCredentials accepts AccessKeyID, and SessionAccessKeyID with a
// session token; ExpiredSessionToken is refused with either.
func (sig *sigClaim) checkCredentials() error {
	switch {
	case sig.accessKey != AccessKeyID && sig.accessKey != SessionAccessKeyID,
		sig.accessKey == SessionAccessKeyID && sig.token == "":
		return newAPIError("UnrecognizedClientException", msgInvalidToken)
	case sig.token == ExpiredSessionToken:
		return newAPIError("ExpiredTokenException", msgExpiredToken)
	}
	return nil
}

// checkScope checks the credential scope against the request date, the
// emulator's region and the service being called.
func (sig *sigClaim) checkScope(region, service string) error {
	switch date := sig.time.Format(scopeDateLayout); {
	case sig.terminator != sigTerminator:
		return newAPIError("InvalidSignatureException", "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'.", sig.terminator)
	case sig.scopeDate != date:
		return newAPIError("InvalidSignatureException",
			"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			sig.scopeDate, date, sig.amzDate)
	case sig.region != region:
		return newAPIError("InvalidSignatureException", "Credential should be scoped to a valid region, not '%s'. ", sig.region)
	case sig.service != service:
		return newAPIError("InvalidSignatureException", "Credential should be scoped to correct service: '%s'. ", service)
	}
	return nil
}

// checkTime refuses a header signature more than maxClockSkew away from
// now, and a presigned one that has expired or is dated in the future.
func (sig *sigClaim) checkTime(now time.Time) error {
	now = now.UTC()
	if sig.time.After(now.Add(maxClockSkew)) {
		return newAPIError("InvalidSignatureException", "Signature not yet current: %s is still later than %s (%s + 5 min.)",
			sig.amzDate, now.Add(maxClockSkew).Format(amzDateLayout), now.Format(amzDateLayout))
	}
	window, unit := maxClockSkew, "5 min."
	if sig.presigned {
		window, unit = sig.expires, fmt.Sprintf("%d sec.", int(sig.expires.Seconds()))
	}
	if sig.time.Before(now.Add(-window)) {
		return newAPIError("InvalidSignatureException", "Signature expired: %s is now earlier than %s (%s - %s)",
			sig.amzDate, now.Add(-window).Format(amzDateLayout), now.Format(amzDateLayout), unit)
	}
	return nil
}

// payloadHash is the hex SHA-256 the client signed: X-Amz-Content-Sha256 if
// present, else the hash of body. A header that contradicts a body we have
// is refused, as S3 does, so the body cannot be swapped under a signature.
func payloadHash(r *http.Request, body []byte) (string, error) {
	sum := sha256.Sum256(body)
	computed := hex.EncodeToString(sum[:])
	claimed := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case claimed == "":
		return computed, nil
	case claimed == unsignedPayload || strings.HasPrefix(claimed, "STREAMING-"):
		return claimed, nil
	case body != nil && !strings.EqualFold(claimed, computed):
		return "", newAPIError("InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	return claimed, nil
}

// canonicalRequest builds the SigV4 canonical request:
//
//	METHOD \n URI \n QUERY \n HEADERS \n SIGNED-HEADERS \n PAYLOAD-HASH
func canonicalRequest(r *http.Request, sig *sigClaim, payload string) string {
	return strings.Join([]string{
		r.Method,
		canonicalURI(r),
		canonicalQuery(r.URL.RawQuery, sig.presigned),
		canonicalHeaders(r, sig.signedHeaders),
		strings.Join(sig.signedHeaders, ";"),
		payload,
	}, "\n")
}

// canonicalURI encodes the path as it was sent once more, as every service
// but S3 does: a SessionId sent as "user%40corp-0123" is canonicalised as
// "user%2540corp-0123" (§2). The path is taken from the request line, not
// the decoded URL, so that it is byte-for-byte what the client signed.
func canonicalURI(r *http.Request) string {
	path := r.URL.EscapedPath()
	if strings.HasPrefix(r.RequestURI, "/") {
		path, _, _ = strings.Cut(r.RequestURI, "?")
	}
	if path == "" {
		path = "/"
	}
	return uriEncode(path, false)
}

// canonicalQuery decodes the query, drops X-Amz-Signature from a presigned
// one, and re-encodes it sorted by encoded name, then encoded value.
func canonicalQuery(rawQuery string, presigned bool) string {
	values, _ := url.ParseQuery(rawQuery) // keep what parses, as AWS does
	if presigned {
		values.Del("X-Amz-Signature")
	}
	type pair struct{ k, v string }
	pairs := make([]pair, 0, len(values))
	for k, vs := range values {
		for _, v := range vs {
			pairs = append(pairs, pair{uriEncode(k, true), uriEncode(v, true)})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// canonicalHeaders renders the signed headers, each "name:value\n", the
// values of a repeated header joined with commas and each value trimmed
// with inner runs of spaces collapsed. Go's server keeps Host and
// Content-Length out of r.Header; they come from r.Host and
// r.ContentLength.
func canonicalHeaders(r *http.Request, names []string) string {
	var b strings.Builder
	for _, name := range names {
		var values []string
		switch name {
		case "host":
			values = []string{r.Host}
		case "content-length":
			values = r.Header.Values("Content-Length")
			if len(values) == 0 {
				values = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		default:
			values = r.Header.Values(name)
		}
		for i, v := range values {
			values[i] = trimAll(v)
		}
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(strings.Join(values, ","))
		b.WriteByte('\n')
	}
	return b.String()
}

// trimAll trims v and collapses inner runs of spaces to one.
func trimAll(v string) string {
	return strings.Join(strings.Fields(v), " ")
}

// uriEncode percent-encodes every byte except the RFC 3986 unreserved
// characters, and '/' unless encodeSlash, with upper-case hex.
func uriEncode(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0f])
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// stringToSign is the SigV4 string to sign for canonical:
//
//	AWS4-HMAC-SHA256 \n X-Amz-Date \n SCOPE \n hex(SHA-256(canonical))
func stringToSign(sig *sigClaim, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return strings.Join([]string{sigAlgorithm, sig.amzDate, sig.scope(), hex.EncodeToString(sum[:])}, "\n")
}

// computeSignature derives the signing key from secret and the scope and
// signs toSign.
func computeSignature(secret string, sig *sigClaim, toSign string) string {
	key := []byte("AWS4" + secret)
	for _, part := range []string{sig.scopeDate, sig.region, sig.service, sig.terminator} {
		key = hmacSHA256(key, part)
	}
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// redactToken hides the session token in a canonical request before it is
// logged.
func redactToken(canonical, token string) string {
	if token == "" {
		return canonical
	}
	canonical = strings.ReplaceAll(canonical, token, "<redacted>")
	return strings.ReplaceAll(canonical, uriEncode(token, true), "<redacted>")
}
