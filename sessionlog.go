package main

// The local session log (internal/sessionlog): connect calls
// sessionStarted once StartSession has succeeded, and proxyCommand calls
// sessionEnded with the exit status; nothing happens on the way of the
// connection. The caller identity ARN in the line costs no call on the
// critical path: the credentials that opened the session are taken from
// the SDK's cache at the start (no call), and STS GetCallerIdentity is
// asked after the session has ended, within identityTimeout, only when no
// earlier answer for the same access key is cached; the answer is kept
// until the credentials expire (a failure for negativeIdentityTTL).

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/sessionlog"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// sessionLogEnv turns the session log off ("off") or moves it (a path)
// where no flag can be given.
const sessionLogEnv = "SSM_PROXY_SESSION_LOG"

const (
	// identityTimeout bounds the STS call after a session.
	identityTimeout = 1500 * time.Millisecond
	// staticIdentityTTL is how long the ARN of credentials without an
	// expiry (access keys) is cached.
	staticIdentityTTL = 24 * time.Hour
	// negativeIdentityTTL is how long a failed lookup is not retried.
	negativeIdentityTTL = 15 * time.Minute
	// credsPeekTimeout bounds reading the cached credentials at the start.
	credsPeekTimeout = 200 * time.Millisecond
)

// sessionLogState is what the session log needs of one ProxyCommand run.
type sessionLogState struct {
	flag string         // --session-log
	ls   *loggedSession // the run's session, from sessionStarted
}

// sessionLogFlags registers --session-log PATH|off, starting the run's
// session log state afresh.
func (c *cli) sessionLogFlags(fs *flag.FlagSet) {
	c.sessionLog = sessionLogState{}
	fs.StringVar(&c.sessionLog.flag, "session-log", "", "")
}

// loggedSession is one session for the session log.
type loggedSession struct {
	sess     *proxy.Session
	document string
	cfg      aws.Config
	creds    aws.Credentials // the ones that opened the session; never logged
	start    time.Time
}

// newLoggedSession records sess, just started with document, for the
// session log: the start time, and the credentials that opened it, which
// the SDK's cache answers without a call.
func (c *cli) newLoggedSession(ctx context.Context, sess *proxy.Session, cfg aws.Config, document string) loggedSession {
	ls := loggedSession{sess: sess, cfg: cfg, start: c.clock(), document: document}
	if cfg.Credentials != nil {
		ctx, cancel := context.WithTimeout(ctx, credsPeekTimeout)
		defer cancel()
		if creds, err := cfg.Credentials.Retrieve(ctx); err == nil {
			ls.creds = creds
		}
	}
	return ls
}

// sessionStarted records the run's session for sessionEnded. connect (and
// connectTo for --to) calls it as soon as the session has started.
func (c *cli) sessionStarted(ctx context.Context, sess *proxy.Session, cfg aws.Config, document string) {
	ls := c.newLoggedSession(ctx, sess, cfg, document)
	c.sessionLog.ls = &ls
}

// sessionEnded appends the line of the session recorded by
// sessionStarted, if any, to the session log. proxyCommand calls it with
// the run's error and exit status. A log that cannot be written is a
// warning, never a changed exit status.
func (c *cli) sessionEnded(ctx context.Context, u *used, err error, code int, log *slog.Logger) {
	ls := c.sessionLog.ls
	if ls == nil {
		return
	}
	c.sessionLog.ls = nil // one line per session
	c.logSession(ctx, u, *ls, err, code, log)
}

// logSession appends ls's line to the session log; ls.sess must have
// ended (its Stats are final). forward calls it for each of its sessions.
func (c *cli) logSession(ctx context.Context, u *used, ls loggedSession, err error, code int, log *slog.Logger) {
	path, on, perr := c.sessionLogPath()
	if !on {
		return
	}
	if perr != nil {
		log.Warn("session log not written; "+sessionLogEnv+"=off turns it off", "err", perr)
		return
	}
	stats := ls.sess.Stats()
	e := sessionlog.Entry{
		Time:      ls.start.UTC(),
		Duration:  c.clock().Sub(ls.start).Round(time.Millisecond).Seconds(),
		Profile:   u.aws.Profile,
		Region:    ls.cfg.Region,
		Target:    u.target,
		TargetID:  u.id,
		SessionID: ls.sess.ID(),
		Document:  ls.document,
		BytesUp:   stats.BytesUp,
		BytesDown: stats.BytesDown,
		Resumes:   stats.Resumes,
		Ended:     endedHow(err, code),
		ExitCode:  code,
		Version:   version(),
	}
	if err != nil && code < exitSignalsBase {
		e.Error = errorText(err)
	}
	e.IdentityARN = c.identityARN(ctx, ls, log)
	if err := (&sessionlog.Log{Path: path}).Append(e); err != nil {
		log.Warn("session log not written; "+sessionLogEnv+"=off turns it off", "err", err)
		return
	}
	log.Debug("session logged", "file", path, "session", ls.sess.ID())
}

// sessionLogPath is where the session log goes: --session-log, else
// $SSM_PROXY_SESSION_LOG, else the state directory; on is false when
// either says off.
func (c *cli) sessionLogPath() (path string, on bool, err error) {
	v := c.sessionLog.flag
	if v == "" {
		v = os.Getenv(sessionLogEnv)
	}
	switch strings.ToLower(v) {
	case "off", "0", "false", "no", "none":
		return "", false, nil
	case "":
		path, err := sessionlog.DefaultPath()
		return path, true, err
	}
	return v, true, nil
}

// endedHow names how a session ended, for the log.
func endedHow(err error, code int) string {
	switch {
	case code >= exitSignalsBase:
		return "signal"
	case err == nil:
		return "closed"
	case code == exitIdle:
		return "idle_timeout"
	case code == exitRemote:
		return "remote_error"
	case code == exitLost:
		return "connection_lost"
	}
	return "error"
}

// identityARN is the ARN of the credentials that opened the session, from
// the identity cache or STS (see the file comment), or "" when unknown.
// STS is not asked when the SSM API goes to an endpoint override and STS
// does not: in a private subnet with an SSM endpoint only, the public STS
// is likely unreachable, and waiting for it would only delay the exit.
func (c *cli) identityARN(ctx context.Context, ls loggedSession, log *slog.Logger) string {
	creds := ls.creds
	if creds.AccessKeyID == "" {
		return ""
	}
	dir, err := awscfg.DefaultCacheDir()
	if err != nil {
		return ""
	}
	cache := &sessionlog.Identities{Path: filepath.Join(dir, "identities.json"), Now: c.clock}
	if arn, ok := cache.Get(creds.AccessKeyID); ok {
		return arn
	}
	now := c.clock()
	if creds.CanExpire && !creds.Expires.After(now) {
		return ""
	}
	if os.Getenv("AWS_ENDPOINT_URL_SSM") != "" && os.Getenv("AWS_ENDPOINT_URL_STS") == "" && os.Getenv("AWS_ENDPOINT_URL") == "" {
		log.Debug("identity for the session log not looked up: AWS_ENDPOINT_URL_SSM is set and AWS_ENDPOINT_URL_STS is not")
		return ""
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), identityTimeout)
	defer cancel()
	cfg := ls.cfg.Copy()
	cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
	cfg.RetryMaxAttempts = 1
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	start := time.Now()
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		log.Debug("identity for the session log not known", "err", errorText(err), "took", time.Since(start).Round(time.Millisecond))
		cache.Put(creds.AccessKeyID, "", now.Add(negativeIdentityTTL))
		return ""
	}
	arn := aws.ToString(out.Arn)
	until := now.Add(staticIdentityTTL)
	if creds.CanExpire {
		until = creds.Expires
	}
	if err := cache.Put(creds.AccessKeyID, arn, until); err != nil {
		log.Debug("identity cache not written", "err", err)
	}
	log.Debug("identity for the session log", "arn", arn, "took", time.Since(start).Round(time.Millisecond))
	return arn
}
