package proxy

import (
	"errors"

	"github.com/aws/smithy-go"
)

// isPermanentAPIError reports API errors that retrying cannot fix: denied
// permissions and credentials that are missing, invalid or expired.
func isPermanentAPIError(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
		"ExpiredTokenException", "InvalidClientTokenId", "ExpiredToken", "SignatureDoesNotMatch",
		"ValidationException", "InvalidDocument", "TargetNotConnected":
		return true
	}
	return false
}

// isThrottled reports an API error that asks the caller to slow down.
func isThrottled(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded":
		return true
	}
	return false
}
