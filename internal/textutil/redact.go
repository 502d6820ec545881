package textutil

import (
	"regexp"
	"sync"
)

// secretPatterns find the values of credentials and signatures in text
// that came from elsewhere: AWS echoes the canonical request it expected in
// an InvalidSignatureException, headers included, and SDK and HTTP errors
// may quote URLs with presigned queries. Group 1 is kept, the value after
// it is replaced. They are compiled on first use, not at every process's
// start.
var secretPatterns = sync.OnceValue(func() []*regexp.Regexp {
	return []*regexp.Regexp{
		// Headers, as in a canonical request ("x-amz-security-token:VALUE") or
		// an HTTP dump ("X-Amz-Security-Token: VALUE", "Authorization: …").
		regexp.MustCompile(`(?i)(x-amz-security-token\s*[:=]\s*)[^\s'",;&]+`),
		regexp.MustCompile(`(?i)(authorization\s*[:=]\s*)[^\r\n'"]+`),
		// SigV4 parts wherever they stand (headers, queries, strings to sign).
		regexp.MustCompile(`(?i)(signature\s*=\s*)[0-9a-f]+`),
		regexp.MustCompile(`(?i)(credential\s*=\s*)[^\s'",;&]+`),
		regexp.MustCompile(`(?i)(x-amz-signature\s*[:=]\s*)[^\s'",;&]+`),
		regexp.MustCompile(`(?i)(x-amz-credential\s*[:=]\s*)[^\s'",;&]+`),
		// Session Manager's data-channel token in JSON ("TokenValue":"…").
		regexp.MustCompile(`(?i)("?tokenvalue"?\s*[:=]\s*"?)[^\s'",;&]+`),
		// Credentials in JSON, as a credential_process prints them or an SSO
		// token cache holds them.
		regexp.MustCompile(`(?i)("?(?:secretaccesskey|sessiontoken|accesstoken|refreshtoken|clientsecret)"?\s*[:=]\s*"?)[^\s'",;&]+`),
		// Shared-config style keys.
		regexp.MustCompile(`(?i)(aws_secret_access_key\s*[:=]\s*)[^\s'",;&]+`),
		regexp.MustCompile(`(?i)(aws_session_token\s*[:=]\s*)[^\s'",;&]+`),
	}
})

// Redacted replaces a secret's value in Redact's output.
const Redacted = "[redacted]"

// Redact returns s with the values of session tokens, Authorization
// headers, SigV4 signatures and credentials replaced by Redacted, whatever
// produced the text. Everything printed to the user goes through it.
func Redact(s string) string {
	for _, re := range secretPatterns() {
		s = re.ReplaceAllString(s, "${1}"+Redacted)
	}
	return userinfoPattern().ReplaceAllString(s, "${1}"+Redacted+"@")
}

// userinfoPattern finds the password of a URL's user information
// ("http://user:PASSWORD@proxy:3128", a proxy variable quoted in an
// error): up to the last "@" before the host, as url.Parse reads it, so
// that a password holding "@" is hidden whole. A host and port followed
// by a path with an "@" in it is not a password: "/", "?" and "#" end it.
var userinfoPattern = LazyRegexp(`(?i)(\b[a-z][a-z0-9+.-]*://[^\s/?#@:]*:)[^\s/?#]*@`)
