package awscfg

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// CredentialsError reports that no credentials could be obtained: none
// configured, an expired SSO session, a failed assume-role, no terminal for
// the MFA code, a failing credential_process. The SDK wraps it in its own
// operation errors; find it with errors.As.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string { return "get AWS credentials: " + e.Err.Error() }

func (e *CredentialsError) Unwrap() error { return e.Err }

// checked marks its provider's failures as *CredentialsError. It sits
// under the aws.CredentialsCache that Load returns, so it is asked only when
// that cache misses: expired, or invalidated before a resume. Either way the
// credentials must come from their source again, so it first invalidates
// the caches beneath it (the SDK's own, behind the disk cache).
type checked struct{ inner aws.CredentialsProvider }

var _ aws.CredentialsProvider = (*checked)(nil)

// invalidator is implemented by aws.CredentialsCache and diskCache.
type invalidator interface{ Invalidate() }

func (c *checked) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if i, ok := c.inner.(invalidator); ok {
		i.Invalidate()
	}
	creds, err := c.inner.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, &CredentialsError{Err: err}
	}
	return creds, nil
}
