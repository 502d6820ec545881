package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// Losing and regaining the websocket (§8.2, §15.1): the loop notices a lost
// link, a resume goroutine calls ResumeSession and dials the StreamUrl it
// returns, and the loop attaches the new link and brings the agent up to
// date at once.

const (
	// minBackoff and maxBackoff bound the delay between attempts; each is
	// jittered to [½, 1½) of the nominal value.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// healthyLife: an idle link counts as healthy once the gateway has
	// answered on it and it has lived this long; a young one once it has
	// relayed healthyFrames (link.healthy).
	healthyLife   = time.Second
	healthyFrames = 16
	// resumeCallTimeout bounds one ResumeSession call.
	resumeCallTimeout = 20 * time.Second
)

// resumePlan is the state of a streak of failed links, kept by the loop
// across links until one of them is healthy.
type resumePlan struct {
	first     bool      // the first connection: StartSession's token is still good
	streamURL string    // the most recent StreamUrl (§15.1)
	deadline  time.Time // the streak's budget ends
	delay     time.Duration
	lastErr   error // the last attempt's failure
	linkErr   error // the last websocket's: how it was lost, or its dial failed
}

// failure is the error of a streak that ended after attempts: the last
// attempt's, and how the last websocket failed when that was something
// else (a gateway that closed it, say, before a ResumeSession the budget
// cut short).
func (p *resumePlan) failure(attempts int) *ResumeError {
	err := p.lastErr
	switch {
	case err == nil:
		err = p.linkErr
	case p.linkErr != nil && p.linkErr != err:
		err = fmt.Errorf("%w (the websocket before: %v)", err, p.linkErr)
	}
	return &ResumeError{Attempts: attempts, Err: err}
}

type resumeResult struct {
	link *link
	plan resumePlan
	err  error
}

// nextDelay doubles d, from minBackoff up to maxBackoff.
func nextDelay(d time.Duration) time.Duration {
	if d == 0 {
		return minBackoff
	}
	return min(2*d, maxBackoff)
}

// jitter spreads d over [½d, 1½d).
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}

// lost gives up the current websocket and marks the loop for a resume
// (§8.2). With drain the websocket's reader may still deliver what the
// kernel had received; otherwise it is closed now.
func (lp *loop) lost(cause error, drain bool) {
	l := lp.link
	if l == nil {
		return
	}
	lp.link = nil
	if drain {
		l.abandon()
	} else {
		l.ws.Close()
	}
	if lp.stopping {
		return
	}
	now := time.Now()
	healthy := l.healthy(now)
	lp.s.log.Debug("websocket lost; resuming", "err", cause, "close_frame", isCloseFrame(cause), "healthy", healthy)
	if healthy {
		lp.plan = resumePlan{streamURL: lp.plan.streamURL, deadline: now.Add(lp.s.opts.ResumeBudget)}
	} else {
		lp.plan.delay = nextDelay(lp.plan.delay)
		lp.plan.lastErr = cause
	}
	lp.plan.linkErr = cause
	lp.lostAt = now
	lp.handshaking.stop(now)
	lp.emit(EventLinkLost, cause)
}

// startResume re-establishes the websocket in the background.
func (lp *loop) startResume(ctx context.Context) {
	lp.resuming = true
	lp.gen++
	go func(p resumePlan, gen int) {
		lp.resumed <- lp.s.reconnect(ctx, p, gen, lp.events)
	}(lp.plan, lp.gen)
}

// attach makes the new link current and brings the agent up to date at
// once instead of waiting for timers: it repeats our recent acks (lost acks
// otherwise cost the agent a 100 ms tick each, §5.4; any ack also clears
// the agent's pause, §5.3) and retransmits the whole unacknowledged window.
func (lp *loop) attach(ctx context.Context, r resumeResult) {
	l := r.link
	lp.link = l
	lp.links++
	lp.plan = r.plan
	lp.plan.first = false
	lp.unpause("new websocket")
	lp.handshaking.start(time.Now())
	go l.read(ctx, lp.events, lp.s.log)
	if !lp.lostAt.IsZero() {
		lp.s.log.Debug("resumed", "after", time.Since(lp.lostAt).Round(time.Millisecond))
		lp.s.stats.Resumes++
		lp.emit(EventResumed, nil)
		lp.awaitingData = true
	} else {
		lp.emit(EventConnected, nil)
	}
	for i := 0; i < recentAcks && lp.link != nil; i++ {
		if f := lp.acks[(lp.ackNext+i)%recentAcks]; f != nil {
			lp.write(f)
		}
	}
	for _, f := range lp.unsentAcks {
		lp.write(f)
	}
	lp.unsentAcks = nil
	now := time.Now()
	for _, m := range lp.win.msgs {
		if lp.link == nil {
			return
		}
		lp.resend(m, now)
	}
}

// reconnect is the resume procedure; it touches no loop state. The first
// connection uses StartSession's token; every other attempt asks
// ResumeSession for a new token and StreamUrl. Attempts back off
// exponentially with jitter until the plan's deadline; an error that
// cannot heal ends it at once.
func (s *Session) reconnect(ctx context.Context, p resumePlan, gen int, events chan<- frameEvent) resumeResult {
	for attempt := 1; ; attempt++ {
		if p.delay > 0 {
			wait := jitter(p.delay)
			if time.Now().Add(wait).After(p.deadline) {
				return resumeResult{err: p.failure(attempt - 1)}
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return resumeResult{err: ctx.Err()}
			case <-t.C:
			}
		}
		l, dialed, err := s.connect(ctx, &p, gen, events)
		if err == nil {
			return resumeResult{link: l, plan: p}
		}
		if ctx.Err() != nil {
			return resumeResult{err: ctx.Err()}
		}
		if Permanent(err) {
			return resumeResult{err: err}
		}
		s.log.Debug("reconnect attempt failed", "attempt", attempt, "err", err)
		p.lastErr = err
		if dialed {
			p.linkErr = err
		}
		if !time.Now().Before(p.deadline) {
			return resumeResult{err: p.failure(attempt)} // the budget cut this attempt short
		}
		p.delay = nextDelay(p.delay)
		p.first = false
	}
}

// connect is one attempt: a token (StartSession's on the first, else
// ResumeSession's, with the StreamUrl that comes with it), then the dial;
// dialed: the dial failed, not the token.
func (s *Session) connect(ctx context.Context, p *resumePlan, gen int, events chan<- frameEvent) (l *link, dialed bool, err error) {
	token := s.token
	if !p.first {
		var streamURL string
		token, streamURL, err = s.resumeSession(ctx, p.deadline)
		if err != nil {
			return nil, false, err
		}
		if streamURL != "" && streamURL != p.streamURL {
			// The service moved the session, e.g. to another cell: the
			// old URL no longer works (§15.1).
			s.log.Debug("resume: the service gave a new stream URL")
			p.streamURL = streamURL
		}
	}
	l, err = s.dialLink(ctx, p.deadline, p.streamURL, token, gen, events)
	return l, err != nil, err
}

// resumeSession calls ResumeSession with freshly resolved credentials and
// returns its token and StreamUrl. An empty token, or a session the service
// no longer knows, means the session is over (§1.3).
func (s *Session) resumeSession(ctx context.Context, deadline time.Time) (token, streamURL string, err error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if s.opts.RefreshCredentials != nil {
		s.opts.RefreshCredentials()
	}
	if s.creds != nil {
		// Resolve credentials first, so that an expired SSO token or a
		// failed credential_process is reported as such instead of retried.
		if _, err := s.creds.Retrieve(ctx); err != nil {
			if ctx.Err() != nil {
				return "", "", fmt.Errorf("retrieve credentials: %w", ctx.Err())
			}
			return "", "", &CredentialsError{Err: err}
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, resumeCallTimeout)
	defer rcancel()
	out, err := s.api.ResumeSession(rctx, &ssm.ResumeSessionInput{SessionId: aws.String(s.id)})
	if err != nil {
		var dne *types.DoesNotExistException
		if errors.As(err, &dne) {
			return "", "", ErrSessionEnded
		}
		return "", "", fmt.Errorf("resume session: %w", err)
	}
	token = aws.ToString(out.TokenValue)
	if token == "" {
		return "", "", ErrSessionEnded
	}
	s.log.Debug("resume session ok")
	return token, aws.ToString(out.StreamUrl), nil
}

// Permanent reports errors that retrying cannot fix: a refused stream
// host, an HTTP 4xx upgrade refusal (but 408 and 429), a TLS certificate
// that does not verify, credentials that cannot be had, a session the
// service has ended, and API errors such as denied permissions or invalid
// requests.
func Permanent(err error) bool {
	var (
		he *StreamHostError
		ue *UpgradeError
		ce *CredentialsError
		cv *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &he), errors.As(err, &ce), errors.Is(err, ErrSessionEnded):
		return true
	case errors.As(err, &cv):
		// An untrusted CA (a TLS-inspecting proxy), a name the certificate
		// does not cover, an expired certificate: the same answer on every
		// attempt.
		return true
	case errors.As(err, &ue):
		return ue.permanent()
	}
	return isPermanentAPIError(err)
}
