package pushkey

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/smithy-go"
)

// API is the part of the EC2 Instance Connect API that Send uses.
// *ec2instanceconnect.Client implements it; build it with a retryer that
// does not retry (aws.NopRetryer), as Send does the retrying.
type API interface {
	SendSSHPublicKey(ctx context.Context, in *ec2instanceconnect.SendSSHPublicKeyInput, optFns ...func(*ec2instanceconnect.Options)) (*ec2instanceconnect.SendSSHPublicKeyOutput, error)
}

var _ API = (*ec2instanceconnect.Client)(nil)

// Request is one push: Key for OSUser on the instance InstanceID.
type Request struct {
	InstanceID, OSUser string
	Key                *Key
}

// Retry bounds Send. SendSSHPublicKey is rate-limited per account, and a
// fleet command (Ansible with 25 forks) pushes in a burst: throttled calls
// are retried after a random wait of up to min(Max, Base·2ⁿ) (full
// jitter, so that the forks spread out instead of retrying in step) until
// Budget is spent. Other transient failures (HTTP 5xx, a dropped
// connection) are tried Transient times in all; anything else, and an
// instance EC2 calls unavailable for minutes, is returned at once. The zero value is the defaults.
type Retry struct {
	Budget    time.Duration // the whole push, waits included (default 30 s)
	Base, Max time.Duration // backoff bounds (default 200 ms, 3 s)
	Attempt   time.Duration // each call (default 10 s)
	Transient int           // tries for non-throttling transient errors (default 3)
	// Rand returns a number in [0, 1) for the jitter (default
	// math/rand/v2.Float64).
	Rand func() float64
}

func (r Retry) withDefaults() Retry {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&r.Budget, 30*time.Second)
	def(&r.Base, 200*time.Millisecond)
	def(&r.Max, 3*time.Second)
	def(&r.Attempt, 10*time.Second)
	if r.Transient <= 0 {
		r.Transient = 3
	}
	if r.Rand == nil {
		r.Rand = rand.Float64
	}
	return r
}

// Result describes a successful push.
type Result struct {
	Attempts  int    // calls made
	Throttled int    // of which throttled
	RequestID string // the service's, for support cases and CloudTrail
}

// ThrottledError reports a push still throttled when its budget ran out.
type ThrottledError struct {
	Attempts int
	Waited   time.Duration
	Err      error // the last ThrottlingException
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("still throttled after %d attempts in %s: %v", e.Attempts, e.Waited.Round(100*time.Millisecond), e.Err)
}

func (e *ThrottledError) Unwrap() error { return e.Err }

var (
	throttles  = retry.IsErrorThrottles(retry.DefaultThrottles)
	retryables = retry.IsErrorRetryables(retry.DefaultRetryables)
)

// Send pushes req.Key with SendSSHPublicKey, retrying as r says. Errors
// are the API's (find codes with smithy.APIError), a *ThrottledError, or
// ctx's.
func Send(ctx context.Context, api API, req Request, r Retry, log *slog.Logger) (Result, error) {
	log = orDiscard(log)
	r = r.withDefaults()
	start := time.Now()
	deadline := start.Add(r.Budget)
	in := &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId:     aws.String(req.InstanceID),
		InstanceOSUser: aws.String(req.OSUser),
		SSHPublicKey:   aws.String(req.Key.AuthorizedKey()),
	}
	var res Result
	var throttle error // the last ThrottlingException
	transient := 0
	gaveUp := func(err error) error {
		if throttle != nil {
			return &ThrottledError{Attempts: res.Attempts, Waited: time.Since(start), Err: throttle}
		}
		return err
	}
	for {
		res.Attempts++
		actx, cancel := context.WithTimeout(ctx, min(r.Attempt, time.Until(deadline)))
		out, err := api.SendSSHPublicKey(actx, in)
		cancel()
		if err == nil {
			res.RequestID = aws.ToString(out.RequestId)
			return res, nil
		}
		if ctx.Err() != nil {
			return res, gaveUp(ctx.Err())
		}
		throttled := throttles.IsErrorThrottle(err) == aws.TrueTernary
		var ae smithy.APIError
		switch {
		case errors.As(err, &ae) && ae.ErrorCode() == "EC2InstanceUnavailableException":
			return res, err // "wait a few minutes": not worth seconds of retries
		case throttled:
			res.Throttled++
			throttle = err
		case retryables.IsErrorRetryable(err) == aws.TrueTernary || errors.Is(err, context.DeadlineExceeded):
			transient++
			if transient >= r.Transient {
				return res, err
			}
		default:
			return res, err
		}
		wait := time.Duration(r.Rand() * float64(min(r.Max, r.Base<<min(res.Attempts-1, 20))))
		if time.Now().Add(wait).After(deadline) {
			return res, gaveUp(err)
		}
		log.Debug("SendSSHPublicKey failed; retrying", "attempt", res.Attempts, "throttled", throttled, "wait", wait.Round(time.Millisecond), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, gaveUp(ctx.Err())
		case <-t.C:
		}
	}
}
