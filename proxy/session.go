package proxy

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// DefaultClientVersion is the ClientVersion reported in OpenDataChannel and
// HandshakeResponse (§2, §6.2, §15.2). It is the newest official client
// release whose client-visible behaviour ssm-proxy implements: signed
// websocket upgrades (1.2.764.0, the minimum AWS supports), resuming into
// the StreamUrl that ResumeSession returns (1.2.835.0) and the StreamUrl
// host check (1.2.889.0). It is also above both agent thresholds of §7.1
// (1.1.70 for smux, 1.2.331.0 for smux keep-alive off), so agents treat us
// as the current client.
const DefaultClientVersion = "1.2.889.0"

// MinClientVersion is the oldest ClientVersion AWS supports (§15.2).
const MinClientVersion = "1.2.764.0"

// Mode is what a session carries over its data channel.
type Mode int

const (
	// ModeStdio carries one byte stream: a plain port session such as
	// AWS-StartSSHSession, stdin and stdout being the connection (§7.2).
	ModeStdio Mode = iota
	// ModeMux carries smux frames: a LocalPortForwarding session
	// (AWS-StartPortForwardingSession and …ToRemoteHost), stdin and stdout
	// being the smux client's connection (§7.4). The caller runs the smux
	// client; the session only checks the handshake accordingly.
	ModeMux
)

// Options tune a Session. The zero value is ready to use.
type Options struct {
	// Mode selects what the session carries (default ModeStdio).
	Mode Mode
	// ClientVersion is reported in OpenDataChannel and HandshakeResponse.
	ClientVersion string
	// Window bounds the unacknowledged messages in flight; stdin is not read
	// while it is full (back-pressure, never eviction). Default 1024.
	Window int
	// PingInterval is how often a websocket ping is sent. Default 15 s.
	PingInterval time.Duration
	// DeadPeerTimeout: a websocket on which nothing (no frame, no pong) has
	// arrived for this long is treated as lost. Default 40 s.
	DeadPeerTimeout time.Duration
	// ResumeBudget bounds the time spent re-establishing a lost websocket
	// (§8.2). Default 2 minutes.
	ResumeBudget time.Duration
	// HandshakeTimeout bounds the wait for the agent's handshake (the
	// official client waits forever, §6.1). Default 30 s.
	HandshakeTimeout time.Duration
	// DrainTimeout: after stdin ends and everything sent is acknowledged,
	// how long to wait for the remote side to close. Default 2 s.
	DrainTimeout time.Duration
	// UnconfirmedTimeout: after stdin ends, how long messages an old agent
	// will never acknowledge (sent before a lost websocket, resent after
	// it) may stay unacknowledged before the session ends with an
	// UnconfirmedError (§5.7). Default 30 s.
	UnconfirmedTimeout time.Duration
	// MaxPause bounds how long pause_publication holds sending when
	// neither start_publication nor anything else from the agent ends it
	// (§8.4, §15.4). Default 10 s.
	MaxPause time.Duration
	// RefreshCredentials, if set, is called before every ResumeSession so
	// that credentials are resolved afresh (e.g. aws.CredentialsCache's
	// Invalidate).
	RefreshCredentials func()
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Dialer opens websockets; nil means one that honours HTTPS_PROXY.
	// Zero timeouts and buffer sizes are given the session's defaults.
	Dialer *websocket.Dialer
	// OnEvent, if set, is called from the session's goroutine on state
	// changes (for measurement); it must not block.
	OnEvent func(Event)
	// PredialURL, if set, is where the StreamUrl is expected to point (its
	// scheme, host and port matter): the websocket's TCP and TLS handshakes
	// to it start while StartSession is in flight, saving their round trips
	// when the StreamUrl names that host (§0). No proxy may apply.
	PredialURL string
	// Predial, if set, is such a connection the caller started earlier
	// (StartPredial), e.g. before a name lookup; the session takes it
	// over, and PredialURL is not used.
	Predial *Predial
	// StreamHosts are hosts the user configured (the ssmmessages and SSM
	// endpoint overrides) to which a StreamUrl may point besides the AWS
	// messages endpoints of the session's region (§15.3).
	StreamHosts []string
}

// Event is a session state change reported to Options.OnEvent.
type Event struct {
	Kind         EventKind
	Time         time.Time
	Err          error  // EventLinkLost: why
	AgentVersion string // EventHandshakeComplete: the agent's version (§6.2)
}

// EventKind names a session state change.
type EventKind int

// The kinds of Event, in the order a session meets them.
const (
	// EventConnected: the first websocket is open.
	EventConnected EventKind = iota + 1
	// EventHandshakeComplete: the agent's HandshakeComplete arrived; data
	// flows from now on.
	EventHandshakeComplete
	// EventLinkLost: the websocket was lost; a resume starts.
	EventLinkLost
	// EventResumed: a new websocket is open after a loss.
	EventResumed
	// EventFirstDataAfterResume: the first agent data after a resume was
	// delivered.
	EventFirstDataAfterResume
	// EventPaused: pause_publication holds our sending (§8.4).
	EventPaused
	// EventUnpaused: sending goes on after a pause.
	EventUnpaused
	// EventConnectToPortError: in a multiplexed session the agent could
	// not connect to the destination for one connection (Flag 3, §4.3);
	// the agent closes that smux stream.
	EventConnectToPortError
)

var eventNames = [...]string{
	EventConnected:            "connected",
	EventHandshakeComplete:    "handshake_complete",
	EventLinkLost:             "link_lost",
	EventResumed:              "resumed",
	EventFirstDataAfterResume: "first_data_after_resume",
	EventPaused:               "paused",
	EventUnpaused:             "unpaused",
	EventConnectToPortError:   "connect_to_port_error",
}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", int(k))
}

func (o *Options) setDefaults() {
	if o.ClientVersion == "" {
		o.ClientVersion = DefaultClientVersion
	}
	if o.Window <= 0 {
		o.Window = 1024
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 15 * time.Second
	}
	if o.DeadPeerTimeout <= 0 {
		o.DeadPeerTimeout = 40 * time.Second
	}
	if o.ResumeBudget <= 0 {
		o.ResumeBudget = 2 * time.Minute
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 30 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 2 * time.Second
	}
	if o.MaxPause <= 0 {
		o.MaxPause = 10 * time.Second
	}
	if o.UnconfirmedTimeout <= 0 {
		o.UnconfirmedTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// The dialer's network settings (proxy, TLS, endpoint) are the
	// caller's; its timing and buffers are set here, for every caller.
	d := websocket.Dialer{Proxy: http.ProxyFromEnvironment}
	if o.Dialer != nil {
		d = *o.Dialer
	}
	if d.HandshakeTimeout <= 0 {
		d.HandshakeTimeout = defaultHandshakeTimeout
	}
	if d.ReadBufferSize <= 0 {
		d.ReadBufferSize = 64 << 10
	}
	if d.WriteBufferSize <= 0 {
		d.WriteBufferSize = 64 << 10
	}
	o.Dialer = &d
}

// StartInput names what to connect to.
type StartInput struct {
	Target     string
	Document   string
	Reason     string
	Parameters map[string][]string
}

// Session is one started Session Manager session. Run it once.
type Session struct {
	api       API
	creds     aws.CredentialsProvider
	region    string
	opts      Options
	log       *slog.Logger
	dialer    *websocket.Dialer
	rand      io.Reader
	clientID  protocol.UUID
	id        string
	streamURL string
	token     string   // from StartSession; never logged
	predial   *Predial // the early connection (Options.Predial or PredialURL); first dial only

	credsMu   sync.Mutex
	lastCreds aws.Credentials // the last that signed an upgrade; never logged

	stats Stats // written by Run's loop; read after Run returns
}

// Stats count what a session carried. They are complete once Run has
// returned.
type Stats struct {
	BytesUp     int64 // stdin bytes sent to the agent
	BytesDown   int64 // agent bytes delivered to stdout
	Resumes     int   // websockets re-established after a loss
	Retransmits int64 // stream messages sent again (timeout, fast retransmit, resume)
	Duplicates  int64 // agent stream messages received again (re-acknowledged)
	OutOfOrder  int64 // agent stream messages received ahead of a gap (buffered)
	Pauses      int   // pause_publication received
}

// Stats returns the session's counters; call it after Run returns.
func (s *Session) Stats() Stats { return s.stats }

// rememberCreds keeps c for terminate: if credentials cannot be refreshed
// later (an expired SSO login), the ones that opened the session may still
// be valid long enough to end it.
func (s *Session) rememberCreds(c aws.Credentials) {
	s.credsMu.Lock()
	s.lastCreds = c
	s.credsMu.Unlock()
}

// Start calls StartSession and returns the session, not yet connected.
// creds sign the websocket upgrade for region (§2).
func Start(ctx context.Context, api API, creds aws.CredentialsProvider, region string, in StartInput, opts Options) (*Session, error) {
	opts.setDefaults()
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, err
	}
	s := &Session{
		api:    api,
		creds:  creds,
		region: region,
		opts:   opts,
		log:    opts.Logger,
		dialer: opts.Dialer,
		rand:   mrand.NewChaCha8(seed),
	}
	var err error
	if s.clientID, err = protocol.NewUUID(crand.Reader); err != nil {
		return nil, err
	}
	s.predial = opts.Predial
	if s.predial == nil && opts.PredialURL != "" {
		s.predial = StartPredial(ctx, s.dialer, opts.PredialURL)
	}
	out, err := s.startSession(ctx, api, &ssm.StartSessionInput{
		Target:       aws.String(in.Target),
		DocumentName: nonEmpty(in.Document),
		Reason:       nonEmpty(in.Reason),
		Parameters:   in.Parameters,
	})
	if err != nil {
		s.dropPredial()
		return nil, fmt.Errorf("start session: %w", err)
	}
	s.id = aws.ToString(out.SessionId)
	s.streamURL = aws.ToString(out.StreamUrl)
	s.token = aws.ToString(out.TokenValue)
	if s.id == "" || s.streamURL == "" || s.token == "" {
		s.dropPredial()
		if s.id != "" {
			s.terminate(ctx)
		}
		return nil, errors.New("start session: response lacks SessionId, StreamUrl or TokenValue")
	}
	// Refuse a stream URL before anything is signed for it (§15.3).
	if _, err := checkStreamURL(s.streamURL, s.region, s.opts.StreamHosts); err != nil {
		s.dropPredial()
		s.terminate(ctx)
		return nil, err
	}
	s.log = s.log.With("session", s.id)
	s.log.Debug("session started", "target", in.Target, "document", in.Document)
	return s, nil
}

// startSession calls StartSession within startTimeout, retrying a
// throttled call with full-jitter backoff (200 ms doubling to 5 s): the
// SDK's own retryer gives up after three attempts, which a fleet of ssh
// connections started at once (Ansible's forks) exceeds.
func (s *Session) startSession(ctx context.Context, api API, in *ssm.StartSessionInput) (*ssm.StartSessionOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for delay := 200 * time.Millisecond; ; delay = min(2*delay, maxBackoff) {
		out, err := api.StartSession(ctx, in)
		if err == nil || !isThrottled(err) {
			return out, err
		}
		wait := mrand.N(delay)
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			return nil, err
		}
		s.log.Debug("StartSession throttled; retrying", "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// ID is the SessionId.
func (s *Session) ID() string { return s.id }

func nonEmpty(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

const (
	// defaultHandshakeTimeout bounds a websocket's TCP, TLS and upgrade
	// (§2, as the official client).
	defaultHandshakeTimeout = 45 * time.Second
	// startTimeout bounds StartSession, retries included.
	startTimeout = 60 * time.Second
	// terminateTimeout bounds the TerminateSession call on every exit path.
	terminateTimeout = 2 * time.Second
)

// terminate ends the session on the AWS side (§1.4), bounded in time and
// independent of ctx's cancellation.
func (s *Session) terminate(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), terminateTimeout)
	defer cancel()
	in := &ssm.TerminateSessionInput{SessionId: aws.String(s.id)}
	_, err := s.api.TerminateSession(ctx, in)
	s.credsMu.Lock()
	last := s.lastCreds
	s.credsMu.Unlock()
	if err != nil && last.HasKeys() && !last.Expired() {
		s.log.Debug("terminate session failed; retrying with the credentials that opened it", "err", err)
		_, err = s.api.TerminateSession(ctx, in, func(o *ssm.Options) {
			o.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return last, nil })
		})
	}
	if err != nil {
		s.log.Warn("could not terminate the session; it ends when the service times it out", "err", err)
		return
	}
	s.log.Debug("session terminated")
}

// Run connects the data channel and pipes stdin to the agent and the
// agent's output to stdout until the session ends, stdin ends, or ctx is
// cancelled. Whatever the cause, the session is ended on the AWS side before
// Run returns. A normal end (remote close without error, or stdin EOF) is a
// nil error.
func (s *Session) Run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lp := newLoop(s, stdout)
	go readStdin(ctx, stdin, lp.stdin)
	err := lp.run(ctx)
	lp.stopping = true
	cancel() // a resume in flight gives up
	if lp.resuming {
		select {
		case r := <-lp.resumed:
			if r.link != nil {
				r.link.ws.Close()
			}
		case <-time.After(closeGrace):
		}
	} else {
		s.dropPredial() // the first dial never happened
	}
	if !lp.remoteClosed {
		if lp.link != nil && lp.established {
			lp.sendFlag(protocol.FlagTerminateSession)
			lp.flushLink()
		}
		s.terminate(ctx)
	}
	if lp.link != nil {
		lp.link.close()
	}
	if ferr := lp.out.finish(5 * time.Second); err == nil && ferr != nil && !lp.stdinEOF {
		err = ferr
	}
	return err
}
