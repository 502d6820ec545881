package awscfg

// Every AWS API call made with a configuration from Load — SSM, STS, SSO,
// SSO-OIDC, EC2 Instance Connect, and the instance and container metadata
// endpoints behind the credentials — is bounded: an endpoint that accepts
// the connection and never answers costs at most Timeouts.Call, and then
// one error names the endpoint and the setting that points at it. The
// bounds are SDK middleware on aws.Config.APIOptions, so every client built
// from the configuration has them, those the SDK builds for credentials
// included.
//
// Per call, in the stack's Finalize step:
//
//	Retry → … → GetIdentity → attempt bound → ResolveEndpointV2 → Signing → send
//
// The attempt bound cuts each HTTP attempt at Timeouts.Attempt and makes
// that a retryable error, so the SDK's retryer (3 attempts, exponential
// backoff with jitter) tries again. The call bound starts with the first
// attempt — after the credentials have been obtained, which may take an
// MFA code or a browser sign-in, and whose own API calls have their own
// bounds — and cancels the call, backoff included, Timeouts.Call later.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

// Timeouts bound the AWS API calls. A zero field means its default.
type Timeouts struct {
	// Connect bounds a TCP connection and a TLS handshake (5 s).
	Connect time.Duration
	// Attempt bounds one HTTP request, from connecting to the end of the
	// response (10 s).
	Attempt time.Duration
	// Call bounds one API call, every attempt and the backoff between them
	// included (25 s).
	Call time.Duration
	// IMDS bounds one call to the EC2 instance metadata service, retries
	// included (1 s): on EC2 it answers within milliseconds, and
	// elsewhere, where nothing answers, the credential chain must not wait
	// long for it.
	IMDS time.Duration
	// Process bounds a credential_process (1 min, the SDK's default: such a
	// process may ask the user for something).
	Process time.Duration
	// MaxBackoff caps the wait between attempts; zero keeps the SDK's
	// (exponential with jitter, up to 20 s).
	MaxBackoff time.Duration
}

// Default timeouts.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultAttemptTimeout = 10 * time.Second
	DefaultCallTimeout    = 25 * time.Second
	DefaultIMDSTimeout    = time.Second
	DefaultProcessTimeout = time.Minute
)

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, DefaultConnectTimeout)
	def(&t.Attempt, DefaultAttemptTimeout)
	def(&t.Call, DefaultCallTimeout)
	def(&t.IMDS, DefaultIMDSTimeout)
	def(&t.Process, DefaultProcessTimeout)
	return t
}

// Services that are not SDK service clients, as bounds name them.
const (
	imdsService      = imds.ServiceID // "ec2imds"
	containerService = "container credentials"
)

// bounds puts the call and attempt bounds and the -v line of each call on
// an operation's middleware stack.
type bounds struct {
	t     Timeouts
	log   *slog.Logger
	proxy *proxyEnv
	// cfg is the loaded configuration, set once Load has it (before any
	// call is made), to name the settings behind an endpoint.
	cfg aws.Config
}

// IDs of the middleware bounds adds.
const (
	callBoundID    = "ssm-proxy.CallBound"
	attemptBoundID = "ssm-proxy.AttemptBound"
)

// apply is an aws.Config.APIOptions function.
func (b *bounds) apply(stack *middleware.Stack) error {
	svc := "" // from the context, set by the SDK's generated clients
	switch {
	case has(stack.Initialize.List(), "OperationTimeout"), has(stack.Finalize.List(), "APITokenProvider"):
		svc = imdsService // the IMDS client sets no service id
	case has(stack.Build.List(), "BuildEndpoint"):
		svc = containerService
	}
	call := middleware.InitializeMiddlewareFunc(callBoundID, func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		return b.handleCall(ctx, svc, stack.ID(), in, next)
	})
	if err := stack.Initialize.Add(call, middleware.Before); err != nil {
		return err
	}
	attempt := middleware.FinalizeMiddlewareFunc(attemptBoundID, b.handleAttempt)
	after := ""
	for _, id := range stack.Finalize.List() {
		if id == "Retry" || id == "GetIdentity" {
			after = id // the later of the two
		}
	}
	if after == "" {
		return stack.Finalize.Add(attempt, middleware.After)
	}
	return stack.Finalize.Insert(attempt, after, middleware.After)
}

func has(ids []string, id string) bool {
	for _, v := range ids {
		if v == id {
			return true
		}
	}
	return false
}

// callState is one API call's progress, shared by its attempts.
type callState struct {
	svc, op string
	budget  time.Duration
	cancel  context.CancelCauseFunc

	mu       sync.Mutex
	url      *url.URL // the last attempt's request URL
	attempts int
	inFlight bool  // an attempt is under way
	lastErr  error // the last finished attempt's error
	started  time.Time
	timer    *time.Timer
}

type callStateKey struct{}

// errCallBudget is the cancellation cause when a call's bound passes.
var errCallBudget = errors.New("API call bound passed")

func (b *bounds) handleCall(ctx context.Context, svc, op string, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	if svc == "" {
		svc = awsmiddleware.GetServiceID(ctx)
	}
	cs := &callState{svc: svc, op: op, budget: b.t.Call}
	if svc == imdsService {
		cs.budget = b.t.IMDS
	}
	parent := ctx
	ctx, cs.cancel = context.WithCancelCause(ctx)
	defer cs.cancel(nil)
	defer cs.stop()
	ctx = middleware.WithStackValue(ctx, callStateKey{}, cs)
	out, md, err := next.HandleInitialize(ctx, in)
	// A caller's deadline that came before the bound is the bound; a
	// cancellation is the caller's business.
	if err != nil && (parent.Err() == nil || errors.Is(parent.Err(), context.DeadlineExceeded)) {
		err = b.explain(ctx, cs, err)
	}
	b.logCall(cs, err)
	return out, md, err
}

// begin counts an attempt and starts the call's bound with the first: the
// budget, or what is left of the caller's deadline if that is less.
func (cs *callState) begin(ctx context.Context) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.attempts++
	cs.inFlight = true
	if cs.timer == nil {
		cs.started = time.Now()
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < cs.budget {
			cs.budget = time.Until(dl).Round(100 * time.Millisecond)
		}
		cs.timer = time.AfterFunc(cs.budget, func() { cs.cancel(errCallBudget) })
	}
}

func (cs *callState) stop() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.timer != nil {
		cs.timer.Stop()
	}
}

// end records an attempt's outcome; cut reports that the call's bound
// ended it, which leaves it in flight for failedBetween.
func (cs *callState) end(err error, cut bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if !cut {
		cs.inFlight, cs.lastErr = false, err
	}
}

// failedBetween returns the last attempt's error when the call was
// waiting to retry, not sending: nil while an attempt is under way.
func (cs *callState) failedBetween() error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.inFlight {
		return nil
	}
	return cs.lastErr
}

func (cs *callState) setURL(u *url.URL) {
	if u == nil || u.Host == "" {
		return
	}
	cs.mu.Lock()
	cs.url = u
	cs.mu.Unlock()
}

// snapshot returns the request URL, attempts and time since the first.
func (cs *callState) snapshot() (*url.URL, int, time.Duration) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var took time.Duration
	if !cs.started.IsZero() {
		took = time.Since(cs.started)
	}
	return cs.url, cs.attempts, took
}

func (b *bounds) handleAttempt(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	cs, _ := middleware.GetStackValue(ctx, callStateKey{}).(*callState)
	if cs == nil {
		return next.HandleFinalize(ctx, in)
	}
	cs.begin(ctx)
	req, _ := in.Request.(*smithyhttp.Request)
	if req != nil {
		cs.setURL(req.URL)
	}
	limit := b.t.Attempt
	if cs.svc == imdsService {
		limit = min(limit, b.t.IMDS)
	}
	actx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	out, md, err := next.HandleFinalize(actx, in)
	if req != nil {
		cs.setURL(req.URL) // resolved by now
	}
	switch {
	case err == nil:
	case ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded):
		err = &attemptTimeoutError{after: limit}
	case permanent(err):
		err = &permanentError{err}
	}
	cs.end(err, ctx.Err() != nil)
	return out, md, err
}

// permanent reports failures that another attempt would meet again: a
// certificate that is not trusted or not for the name, an endpoint that
// does not speak TLS, a proxy that refused to connect.
func permanent(err error) bool {
	var (
		ue x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
		rh tls.RecordHeaderError
		pe *ProxyError
	)
	return errors.As(err, &ue) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &rh) ||
		errors.As(err, &pe) && pe.Status != ""
}

// permanentError tells the SDK's retryer not to try again.
type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) RetryableError() bool { return false }

// callTimeoutError is a call whose bound passed: a deadline, not a
// cancellation.
type callTimeoutError struct{ after time.Duration }

func (e *callTimeoutError) Error() string { return fmt.Sprintf("no answer within %s", e.after) }
func (e *callTimeoutError) Timeout() bool { return true }
func (e *callTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// attemptTimeoutError is one attempt that got no answer in time; the SDK's
// retryer tries again.
type attemptTimeoutError struct{ after time.Duration }

func (e *attemptTimeoutError) Error() string        { return fmt.Sprintf("no answer within %s", e.after) }
func (e *attemptTimeoutError) Unwrap() error        { return context.DeadlineExceeded }
func (e *attemptTimeoutError) Timeout() bool        { return true }
func (e *attemptTimeoutError) RetryableError() bool { return true }

// explain turns a call's failure to reach its endpoint into an
// *EndpointError; other errors (the service's answers) pass unchanged.
func (b *bounds) explain(ctx context.Context, cs *callState, err error) error {
	u, attempts, _ := cs.snapshot()
	var inner *EndpointError
	if attempts == 0 || errors.As(err, &inner) {
		// Failed before sending (credentials), or a call made on the way
		// (for the credentials) has explained itself already.
		return err
	}
	ee := &EndpointError{Service: cs.svc, Operation: cs.op, Attempts: attempts, Err: err}
	if u != nil {
		ee.Host = u.Host
		ee.Proxy = b.proxy.describe(u)
	}
	if b.cfg.ConfigSources != nil {
		ee.Setting = endpointSetting(b.cfg, cs.svc)
	}
	var (
		at  *attemptTimeoutError
		se  *smithyhttp.RequestSendError
		de  *smithy.DeserializationError
		rsp *smithyhttp.ResponseError
	)
	if errors.Is(context.Cause(ctx), errCallBudget) || errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		// The bound passed while waiting to retry: the last attempt's
		// failure is what to report, unless it was no answer either.
		if last := cs.failedBetween(); last != nil && !isTimeout(last) {
			err = last
			ee.Err = last
		} else {
			// Not the SDK's error, which reads as a cancellation.
			cs.mu.Lock()
			budget := cs.budget
			cs.mu.Unlock()
			ee.Timeout, ee.Err = budget, &callTimeoutError{after: budget}
			return ee
		}
	}
	switch {
	case errors.As(err, &at):
		ee.Timeout = at.after
		ee.PerAttempt = true
	case errors.As(err, &se):
		if isTimeout(se.Err) {
			ee.Timeout = b.t.Attempt
			ee.PerAttempt = true
		}
	case errors.As(err, &de):
		ee.NotAPI = true
		if errors.As(err, &rsp) {
			ee.Status = rsp.HTTPStatusCode()
		}
	default:
		return err
	}
	return ee
}

// isTimeout reports an error that is a timeout.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// logCall writes the -v line of a finished call: service, operation,
// endpoint host, attempts and time, and how it failed. Never a URL's query
// or a header.
func (b *bounds) logCall(cs *callState, err error) {
	if !b.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	u, attempts, took := cs.snapshot()
	attrs := []any{"service", cs.svc, "operation", cs.op}
	if u != nil {
		attrs = append(attrs, "host", u.Host)
	}
	attrs = append(attrs, "attempts", attempts, "took", took.Round(time.Millisecond))
	if err != nil {
		attrs = append(attrs, "error", shortError(err))
	}
	b.log.Debug("aws call", attrs...)
}

// shortError is err as a log attribute: an API error's code, or the text.
func shortError(err error) string {
	var ae smithy.APIError
	var ee *EndpointError
	switch {
	case errors.As(err, &ee):
		return textutil.Redact(textutil.OneLine(ee.Error()))
	case errors.As(err, &ae):
		return ae.ErrorCode()
	}
	return textutil.Redact(textutil.OneLine(err.Error()))
}

// EndpointError reports an API call that got no usable answer from its
// endpoint: no answer in time, a refused connection, a name that does not
// resolve, a TLS failure, a proxy that failed, or an answer that is not
// the API's. It carries what a user needs to fix it: the host, and the
// setting that points there.
type EndpointError struct {
	// Service and Operation, as "SSM" and "StartSession".
	Service, Operation string
	// Host is the host[:port] of the last request.
	Host string
	// Setting names what points the service at Host
	// ("AWS_ENDPOINT_URL_SSM", a profile's services section, …); "" for
	// the SDK's default endpoint.
	Setting string
	// Proxy is the proxy the request went through, as "host:port
	// (HTTPS_PROXY)"; "" for none.
	Proxy string
	// Timeout is set when nothing answered: the bound that passed, the
	// call's or (PerAttempt) each attempt's.
	Timeout    time.Duration
	PerAttempt bool
	Attempts   int
	// NotAPI reports an answer that is not the service's API (Status is
	// its HTTP status): the endpoint is something else.
	NotAPI bool
	Status int
	// Err is the SDK's error.
	Err error
}

func (e *EndpointError) Unwrap() error { return e.Err }

func (e *EndpointError) Error() string {
	what := e.Service + " " + e.Operation + ": "
	host := e.Host
	switch {
	case host == "":
		host = "the endpoint"
	case e.Setting != "":
		host += " (" + e.Setting + ")"
	default:
		host += " (the default endpoint)"
	}
	via := ""
	if e.Proxy != "" {
		via = " through the proxy " + e.Proxy
	}
	var pe *ProxyError
	var oe *net.OpError
	switch {
	case e.Timeout > 0 && e.PerAttempt:
		return fmt.Sprintf("%sno answer from %s%s within %s, %s", what, host, via, e.Timeout, times(e.Attempts))
	case e.Timeout > 0:
		return fmt.Sprintf("%sno answer from %s%s within %s (%s)", what, host, via, e.Timeout, times(e.Attempts))
	case e.NotAPI:
		return fmt.Sprintf("%s%s answered (HTTP %d) with something that is not the %s API", what, host, e.Status, e.Service)
	case errors.As(e.Err, &pe):
		return what + pe.Error()
	case errors.As(e.Err, &oe) && oe.Op == "proxyconnect":
		return fmt.Sprintf("%scannot reach the proxy %s: %v", what, e.Proxy, innermost(oe.Err))
	}
	return what + describeNetError(host, e.Err)
}

// times is "1 attempt", "3 attempts".
func times(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// describeNetError says what failed on the way to host.
func describeNetError(host string, err error) string {
	var (
		dns *net.DNSError
		ue  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		cve *tls.CertificateVerificationError
		rh  tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &dns):
		return fmt.Sprintf("%s does not resolve (%s)", dns.Name, dns.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return host + " refused the connection"
	case errors.As(err, &he):
		return fmt.Sprintf("the TLS certificate of %s is not valid for that name: %v", host, he)
	case errors.As(err, &ue), errors.As(err, &cve), errors.As(err, &ci):
		return fmt.Sprintf("the TLS certificate of %s is not trusted: %v", host, innermost(err))
	case errors.As(err, &rh):
		return fmt.Sprintf("%s does not speak TLS (an http:// endpoint given as https://?)", host)
	}
	return fmt.Sprintf("cannot reach %s: %v", host, innermost(err))
}

// innermost is the end of err's chain.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
