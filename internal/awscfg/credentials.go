package awscfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
)

// CredentialsError reports that no credentials could be obtained: none
// configured, an expired SSO session, a failed assume-role, no terminal for
// the MFA code, a failing credential_process. The SDK wraps it in its own
// operation errors; find it with errors.As.
type CredentialsError struct{ Err error }

func (e *CredentialsError) Error() string { return "get AWS credentials: " + e.Err.Error() }

func (e *CredentialsError) Unwrap() error { return e.Err }

// RetryableError tells the SDK's retryer not to try the API call again
// for it: the credential sources retry their own calls within their own
// bounds, and another try would ask again for an MFA code or wait again
// for instance metadata.
func (e *CredentialsError) RetryableError() bool { return false }

// NoCredentialsError reports that nothing is configured: the SDK's chain
// found no keys, profile, SSO, process, web identity or container
// credentials, and the EC2 instance metadata service, its last resort,
// had none either.
type NoCredentialsError struct {
	// Tried lists the sources looked at, in the words of a setup.
	Tried []string
	// IMDS says why the instance metadata service gave none.
	IMDS string
	Err  error
}

func (e *NoCredentialsError) Error() string {
	return "no AWS credentials found: tried " + strings.Join(e.Tried, ", ") + ", and EC2 instance metadata (" + e.IMDS + ")"
}

func (e *NoCredentialsError) Unwrap() error { return e.Err }

// ProcessTimeoutError reports a credential_process that did not finish in
// time.
type ProcessTimeoutError struct {
	Profile string
	After   time.Duration
	Err     error
}

func (e *ProcessTimeoutError) Error() string {
	return fmt.Sprintf("the credential_process of profile %q did not finish within %s", e.Profile, e.After)
}

func (e *ProcessTimeoutError) Unwrap() error { return e.Err }

// checked marks its provider's failures as *CredentialsError. It sits
// under the aws.CredentialsCache that Load returns, so it is asked only when
// that cache misses: expired, or invalidated before a resume. Either way the
// credentials must come from their source again, so it first invalidates
// the caches beneath it (the SDK's own, behind the disk cache).
type checked struct {
	inner aws.CredentialsProvider
	info  Info
	log   *slog.Logger
	// process bounds the wait for a credential_process in the chain (0:
	// none, or one behind an MFA prompt, which waits for a person). The
	// SDK kills the process at its timeout, but not the children it
	// started, and waits for them while they hold its output open.
	process time.Duration
	// tried lists the sources the SDK's chain looked at, when it fell back
	// to instance metadata with nothing else configured.
	tried []string
}

var _ aws.CredentialsProvider = (*checked)(nil)

// invalidator is implemented by aws.CredentialsCache and diskCache.
type invalidator interface{ Invalidate() }

func (c *checked) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if i, ok := c.inner.(invalidator); ok {
		i.Invalidate()
	}
	start := time.Now()
	creds, err := c.retrieve(ctx)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		c.log.Debug("no credentials", "source", c.info.Credentials, "took", took)
		return aws.Credentials{}, &CredentialsError{Err: c.explain(err, took)}
	}
	c.log.Debug("credentials obtained", "source", c.info.Credentials, "took", took)
	return creds, nil
}

// retrieve asks the provider, waiting at most c.process for one that runs
// a credential_process.
func (c *checked) retrieve(ctx context.Context) (aws.Credentials, error) {
	if c.process <= 0 {
		return c.inner.Retrieve(ctx)
	}
	type result struct {
		creds aws.Credentials
		err   error
	}
	done := make(chan result, 1)
	go func() {
		creds, err := c.inner.Retrieve(ctx)
		done <- result{creds, err}
	}()
	// The SDK's own timeout fires first when it can; this is for the
	// process whose children it waits for.
	t := time.NewTimer(c.process + processGrace)
	defer t.Stop()
	select {
	case r := <-done:
		return r.creds, r.err
	case <-t.C:
		return aws.Credentials{}, &ProcessTimeoutError{Profile: c.info.Profile, After: c.process}
	case <-ctx.Done():
		return aws.Credentials{}, ctx.Err()
	}
}

// processGrace is how much longer than the SDK's process timeout checked
// waits for the SDK to report it.
const processGrace = time.Second

// explain replaces the SDK's words for three failures with ours.
func (c *checked) explain(err error, took time.Duration) error {
	var pe *processcreds.ProviderError
	switch {
	case c.process > 0 && errors.As(err, &pe) && took >= c.process:
		return &ProcessTimeoutError{Profile: c.info.Profile, After: c.process, Err: err}
	case errors.As(err, &pe) && strings.Contains(err.Error(), "parse failed of process output"):
		// The SDK quotes the process's whole output, which may hold the
		// keys: the error must not travel on with it.
		return &ProcessOutputError{Profile: c.info.Profile}
	case c.tried != nil:
		return &NoCredentialsError{Tried: c.tried, IMDS: imdsReason(err), Err: err}
	}
	return err
}

// imdsReason says why the instance metadata service gave no credentials.
func imdsReason(err error) string {
	var ee *EndpointError
	switch {
	case strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true"):
		return "turned off by AWS_EC2_METADATA_DISABLED"
	case errors.As(err, &ee) && ee.Timeout > 0:
		return fmt.Sprintf("no answer from %s within %s: not on EC2", ee.Host, ee.Timeout)
	case errors.As(err, &ee):
		return "unreachable: not on EC2"
	}
	return "no instance profile attached, or IMDS refused: " + innermost(err).Error()
}

// triedSources lists what the SDK's credential chain looks at before
// instance metadata, for a configuration where nothing was found.
func triedSources(shared config.SharedConfig) []string {
	profile := shared.Profile
	if profile == "" {
		profile = "default"
	}
	return []string{
		"environment variables (AWS_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_*)",
		fmt.Sprintf("profile %q in %s and %s (no keys, role, SSO, credential_process or credential_source)",
			profile, sharedFile("AWS_CONFIG_FILE", config.DefaultSharedConfigFilename()),
			sharedFile("AWS_SHARED_CREDENTIALS_FILE", config.DefaultSharedCredentialsFilename())),
	}
}

// sharedFile is the shared file the variable names, or def, with the home
// directory written as ~.
func sharedFile(variable, def string) string {
	p := envOr(variable, def)
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		if rel, err := filepath.Rel(home, p); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.Join("~", rel)
		}
	}
	return p
}

// ProcessOutputError reports a credential_process whose output is not the
// credentials JSON. It carries no part of the output, which may hold keys.
type ProcessOutputError struct{ Profile string }

func (e *ProcessOutputError) Error() string {
	return fmt.Sprintf("the credential_process of profile %q printed something other than the credentials JSON (Version 1)", e.Profile)
}
