// Package ssmtest is a local stand-in for the AWS side of Session Manager:
// the SSM JSON 1.1 API (StartSession, ResumeSession, TerminateSession,
// DescribeInstanceInformation, DescribeInstanceProperties for names), the
// message gateway's data channel and the SSM agent's port plugin, all on
// one loopback port. It behaves as docs/protocol.md describes the real
// service and agent, including the unpleasant parts, each selectable in
// Options.
//
// Use it like net/http/httptest: Start, point the client at Endpoint(),
// read Stats(), Close.
package ssmtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"maps"
	"math"
	"math/rand"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Fixed test credentials. Every request must be signed with them.
const (
	AccessKeyID     = "AKIDEXAMPLE"
	SecretAccessKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	DefaultRegion   = "us-east-1"
	// DefaultAgentVersion is what HandshakeRequest reports unless set.
	DefaultAgentVersion = "3.3.1142.0"
)

// Instance is one fake managed node.
type Instance struct {
	ID           string            `json:"InstanceId"`
	Name         string            `json:"Name,omitempty"` // also exposed as tag Name
	Tags         map[string]string `json:"Tags,omitempty"`
	PingStatus   string            `json:"PingStatus,omitempty"` // Online (default), ConnectionLost, Inactive
	LastPing     time.Time         `json:"LastPingDateTime,omitempty"`
	AgentVersion string            `json:"AgentVersion,omitempty"` // default DefaultAgentVersion
	Platform     string            `json:"PlatformName,omitempty"` // default "Amazon Linux"
	PlatformType string            `json:"PlatformType,omitempty"` // default "Linux"
	IPAddress    string            `json:"IPAddress,omitempty"`
	// Denied makes StartSession on this target fail with AccessDeniedException.
	Denied bool `json:"Denied,omitempty"`
	// StandardTier makes an on-premises (mi-) node one of an account on
	// the standard-instances tier: Session Manager refuses it, and
	// StartSession fails with BadRequest (§15.4).
	StandardTier bool `json:"StandardTier,omitempty"`
	// Addr, if set, is where the agent dials for this instance instead of
	// Options.TargetAddr or localhost:<portNumber>.
	Addr string `json:"Addr,omitempty"`
}

// Options select the emulator's behaviour. The zero value is a well-behaved
// service and agent with DefaultInstances, as the service is today: it
// enforces DefaultMinClientVersion.
type Options struct {
	// Instances is the inventory; nil means DefaultInstances().
	Instances []Instance
	// TargetAddr, if set, is the host:port every session dials instead of
	// localhost:<portNumber> (tests point it at their sshd).
	TargetAddr string
	// Region is the region requests must be signed for (DefaultRegion).
	Region string
	// PageSize bounds DescribeInstanceInformation and
	// DescribeInstanceProperties pages (default 2, so that clients must
	// follow NextToken).
	PageSize int

	// TLS, if set, makes the emulator serve HTTPS and wss instead of HTTP
	// and ws on its one port: Endpoint() is https://… and StreamUrls are
	// wss://…. NewTLSConfig makes a throw-away one. HTTP/2 is not offered
	// (the websocket upgrade needs HTTP/1.1).
	TLS *tls.Config
	// AdvertiseAddr, if set, is the host:port that Endpoint() and the
	// StreamUrls name instead of the listener's: the address of a proxy
	// placed in front of the emulator (a latency link) that forwards to
	// Addr().
	AdvertiseAddr string
	// StreamURLHost, if set, is the host (or host:port) the StreamUrls
	// name, e.g. ssmmessages.us-east-1.amazonaws.com, as the real service
	// names its own messages endpoint (§1.2). Clients then reach the data
	// channel through their messages-endpoint override
	// (AWS_ENDPOINT_URL_SSMMESSAGES=Endpoint()); the Host header they send
	// is accepted whatever it is. Default: the advertised address.
	StreamURLHost string
	// SessionIDPrefix is the caller name the service puts at the front of
	// each SessionId (default "test"). An SSO user's is the role-session
	// name, their e-mail address: "jane@example.com" gives ids whose "@"
	// is percent-encoded in the StreamUrl and encoded once more in the
	// upgrade's canonical request (§1.2, §2).
	SessionIDPrefix string

	// RequireSignedUpgrade refuses websocket upgrades without a valid SigV4
	// signature for service ssmmessages (§2). Signed upgrades are always
	// verified; a bad signature is always refused.
	RequireSignedUpgrade bool
	// MinClientVersion is the lowest OpenDataChannel ClientVersion the
	// gateway accepts (§2, §15.2); "" means DefaultMinClientVersion. A
	// missing, malformed or lower version is closed with 1008 and a reason
	// that names both versions (counted as ClientVersionRefusals).
	MinClientVersion string
	// AnyClientVersion switches the ClientVersion check off, as the
	// service was before it enforced one.
	AnyClientVersion bool
	// MoveCellOnResume moves a session to another cell on every
	// successful ResumeSession (§15.1): the answer's StreamUrl has a new
	// cell-number, and from then on the data channel refuses the session's
	// earlier URLs with HTTP 404 (StaleURLRefusals). An ended session is
	// not moved: its ResumeSession answer has an empty TokenValue as
	// always.
	MoveCellOnResume bool

	// AgentVersion reported in HandshakeRequest (default: the instance's).
	AgentVersion string
	// HandshakeTimeout is how long the agent waits for HandshakeResponse
	// (default 15 s, §6.2).
	HandshakeTimeout time.Duration
	// HandshakeCompleteDelay is how long after taking the HandshakeResponse
	// the agent sends HandshakeComplete. The real agent's receive side
	// hands the response to its handshake goroutine, which sends
	// HandshakeComplete and only then marks the handshake complete; client
	// data in between is acknowledged and discarded (§5.3). With 0 the
	// window is the rest of the agent's turn: every frame already
	// received with the response is discarded. A delay widens it, so that
	// a client that sends before HandshakeComplete loses data every time.
	HandshakeCompleteDelay time.Duration

	// Pacing reproduces the real agent: 1024-byte reads from the target and
	// a 1 ms pause after each message sent (§5.6).
	Pacing bool
	// ByeEvery closes each data-channel websocket with 1000 "Bye" after it
	// has been open this long; the session stays resumable (§2, §8.2).
	ByeEvery time.Duration
	// DropEveryBytes abruptly closes the websocket's TCP connection each
	// time this many stream bytes (both directions) have crossed it.
	DropEveryBytes int64
	// BlackholeEvery: after this many stream bytes the websocket stays open
	// but nothing more is read from it or written to it, pongs included.
	// The gateway's kernel receive buffer is kept small (recvBuffer) while
	// this fault is on, so that a client writing into the black hole
	// blocks once the buffers are full, as it would on a dead path.
	BlackholeEvery int64
	// AckLoss, Duplicate and Reorder are probabilities (0..1) applied to
	// frames in both directions: an ack dropped, a stream frame sent twice,
	// a stream frame held back and sent after the next one.
	AckLoss, Duplicate, Reorder float64
	// PauseEvery sends pause_publication to the client every interval and
	// start_publication PauseFor later; while paused, client stream data is
	// dropped unacknowledged (§8.4).
	PauseEvery, PauseFor time.Duration
	// IdleTimeout ends a session with the real channel_closed text when the
	// client has sent no stream data for this long (§8.3).
	IdleTimeout time.Duration
	// Latency delays every frame, each direction, by this much (order kept).
	Latency time.Duration
	// CloseOnOpen makes the data channel accept the upgrade and a valid
	// OpenDataChannel and then close the websocket at once (see
	// CloseOnOpenOptions).
	CloseOnOpen CloseOnOpenOptions
	// HugeFrameBytes, if positive, makes the agent send, right after
	// HandshakeComplete, one well-formed output_stream_data frame with a
	// payload of this many bytes as its next sequence number (e.g. 64 MiB,
	// far beyond any real frame). It is not kept for retransmission.
	HugeFrameBytes int
	// MalformedChannelClosed makes every channel_closed the gateway sends
	// carry a payload that is not valid JSON (cut off inside Output).
	MalformedChannelClosed bool

	// HangOperations are API operations that accept the request and never
	// answer, until the client gives up or the server closes: any of
	// StartSession, ResumeSession, TerminateSession,
	// DescribeInstanceInformation (SSM) and GetCallerIdentity, AssumeRole,
	// AssumeRoleWithWebIdentity (STS). Start refuses other names.
	HangOperations []string
	// ThrottleRate, if positive, limits StartSession and ResumeSession to
	// this many calls per second each (a token bucket holding
	// ThrottleBurst calls, default ⌈ThrottleRate⌉), as SSM's API rate
	// limits do; calls beyond it fail with ThrottlingException "Rate
	// exceeded" (HTTP 400).
	ThrottleRate float64
	// ThrottleBurst is the bucket size of ThrottleRate.
	ThrottleBurst int
	// RefuseSignatures makes every signed API call (SSM, STS) fail with
	// InvalidSignatureException, worded as AWS words a mismatch: the
	// message carries the canonical request and string to sign, session
	// token included. The data channel is not affected.
	RefuseSignatures bool

	// Forwarding selects the port-forwarding plugin's behaviour (mux.go).
	Forwarding ForwardingOptions
	// InstanceConnect selects the EC2 Instance Connect emulation (eic.go).
	InstanceConnect InstanceConnectOptions

	// Seed seeds the fault randomness (0 → 1).
	Seed int64
	// Logf, if set, receives debug lines.
	Logf func(format string, args ...any)
}

// CloseOnOpenOptions make the gateway close data channels as soon as they
// are open: the upgrade and the OpenDataChannel (a current token, an
// accepted ClientVersion) are accepted, then the websocket is closed with
// Code and Text before the agent sees it. Counted as ClosedOnOpen.
type CloseOnOpenOptions struct {
	// Code is the close code (0: off), e.g. 1000, 1001 or 1011. 1005 sends
	// a close frame without a status; 1006, which no close frame can
	// carry, closes the TCP connection without one.
	Code int
	// Text is the close reason (at most 123 bytes).
	Text string
	// Opens is how many opens are closed, counted from Start; 0 means
	// every one.
	Opens int
}

// DefaultMinClientVersion is the lowest ClientVersion the service supports
// (§15.2): 1.2.764.0, the first client that signs the upgrade.
const DefaultMinClientVersion = "1.2.764.0"

// Stats are the emulator's counters. All are totals since Start except
// Active.
type Stats struct {
	SessionsStarted    int64
	TerminatedByAPI    int64 // TerminateSession calls that ended a live session
	EndedByAgent       int64 // target EOF, dial failure, flag, handshake failure, idle timeout
	Resumes            int64 // successful ResumeSession calls
	Reconnects         int64 // data-channel websockets opened for an existing session after the first
	Active             int64 // sessions neither terminated nor ended
	BytesUp            int64 // stream payload bytes client → target (delivered once)
	BytesDown          int64 // stream payload bytes target → client (first transmissions)
	Retransmissions    int64 // agent stream frames sent again after the RTO
	DuplicatesReceived int64 // client stream frames that arrived again (re-acked from agent 3.2.1041.0)
	DuplicatesIgnored  int64 // of those, left unacknowledged by an older agent
	SignedUpgrades     int64
	UnsignedUpgrades   int64
	RefusedUpgrades    int64 // HTTP 403: a bad or (RequireSignedUpgrade) missing signature

	CellMoves             int64 // resumes that moved a session to a new cell (MoveCellOnResume)
	StaleURLRefusals      int64 // HTTP 404: an upgrade of a URL whose cell the session has left
	ClientVersionRefusals int64 // OpenDataChannel closed for a missing or too old ClientVersion
	// ClientVersions counts the OpenDataChannel ClientVersion values seen,
	// accepted or not ("" for none).
	ClientVersions map[string]int64

	Byes, Drops, Blackholes, Pauses int64 // faults injected
	// AcksLost, FramesDuplicated, FramesReordered and FramesDelayed count
	// what AckLoss, Duplicate, Reorder and Latency did, both directions.
	AcksLost, FramesDuplicated, FramesReordered, FramesDelayed int64
	PausedDrops                                                int64 // client stream frames dropped during a pause (§8.4)
	EarlyDataDiscarded                                         int64 // client stream frames acknowledged and discarded before HandshakeComplete (§5.3)
	DelayedCompletes                                           int64 // HandshakeCompletes held back by HandshakeCompleteDelay
	ClosedOnOpen                                               int64 // websockets closed right after OpenDataChannel (CloseOnOpen)
	HugeFrames                                                 int64 // HugeFrameBytes frames sent
	MalformedChannelCloses                                     int64 // channel_closed sent with a payload that is not JSON
	HungCalls                                                  int64 // API calls held without an answer (HangOperations)
	Throttled                                                  int64 // ThrottlingException answers
	SignatureMismatches                                        int64 // API calls refused with a signature mismatch (RefuseSignatures included)

	// Endings counts how sessions ended, by reason (see End* constants).
	Endings map[string]int64
}

// Reasons a session ended, the keys of Stats.Endings.
const (
	EndTerminated       = "terminated"        // TerminateSession API
	EndTargetEOF        = "target_eof"        // destination closed the connection
	EndTerminateFlag    = "terminate_flag"    // client sent FlagTerminateSession
	EndDisconnectFlag   = "disconnect_flag"   // FlagDisconnectToPort in an SSH session
	EndDialFailed       = "dial_failed"       // Unable to connect to specified port
	EndHandshakeTimeout = "handshake_timeout" // no HandshakeResponse in time
	EndHandshakeFailed  = "handshake_failed"  // an action status other than Success
	EndIdleTimeout      = "idle_timeout"
	EndServerClosed     = "server_closed" // emulator shut down
)

// DefaultInstances is the inventory used when Options.Instances is nil.
func DefaultInstances() []Instance {
	return []Instance{
		{ID: "i-0123456789abcdef0", Name: "web-1", Tags: map[string]string{"Env": "prod", "Role": "web"}},
		{ID: "i-0123456789abcdef1", Name: "web-2", Tags: map[string]string{"Env": "prod", "Role": "web"}},
		{ID: "i-0aaaaaaaaaaaaaaa2", Name: "db-bastion", Tags: map[string]string{"Env": "prod", "Role": "bastion"}},
		{ID: "i-0bbbbbbbbbbbbbbb3", Name: "old-agent", AgentVersion: "2.3.612.0"},
		{ID: "i-0ccccccccccccccc4", Name: "stopped-1", PingStatus: "ConnectionLost"},
		{ID: "i-0ddddddddddddddd5", Name: "secret-1", Denied: true},
		{ID: "mi-0123456789abcdef0", Name: "onprem-1", PlatformType: "Linux"},
	}
}

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	opts      Options
	ln        net.Listener // the TCP listener (TLS is layered on top)
	http      *http.Server
	scheme    string // http or https
	advertise string // host:port that Endpoint() and StreamUrls name
	endpoint  string
	hang      map[string]bool // HangOperations
	closing   chan struct{}   // closed by Close: hung calls return
	hung      sync.WaitGroup  // handlers of hung calls

	mu       sync.Mutex
	rng      *rand.Rand
	sessions map[string]*session
	stats    Stats
	statsCh  chan struct{} // closed on the next counter change; nil if nobody waits
	buckets  map[string]*tokenBucket
	opens    int // OpenDataChannels accepted so far (CloseOnOpen.Opens)
	closed   bool
	secrets  []string       // tokens issued, signatures and session tokens seen (Secrets)
	wg       sync.WaitGroup // session goroutines
}

// Start starts an emulator on 127.0.0.1 at a free port.
func Start(opts Options) (*Server, error) {
	return StartAddr("127.0.0.1:0", opts)
}

// StartAddr starts an emulator listening on addr.
func StartAddr(addr string, opts Options) (*Server, error) {
	if opts.Instances == nil {
		opts.Instances = DefaultInstances()
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 2
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 15 * time.Second
	}
	if opts.MinClientVersion == "" {
		opts.MinClientVersion = DefaultMinClientVersion
	}
	if opts.ThrottleRate > 0 && opts.ThrottleBurst <= 0 {
		opts.ThrottleBurst = int(math.Ceil(opts.ThrottleRate))
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	hang, err := checkOptions(&opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssmtest: listen: %w", err)
	}
	s := &Server{
		opts:      opts,
		ln:        ln,
		scheme:    "http",
		advertise: opts.AdvertiseAddr,
		hang:      hang,
		closing:   make(chan struct{}),
		rng:       rand.New(rand.NewSource(opts.Seed)),
		sessions:  make(map[string]*session),
		stats:     Stats{Endings: make(map[string]int64), ClientVersions: make(map[string]int64)},
		buckets:   make(map[string]*tokenBucket),
	}
	if s.advertise == "" {
		s.advertise = loopbackIfUnspecified(ln.Addr().String())
	}
	serveLn := ln
	if opts.TLS != nil {
		cfg := opts.TLS.Clone()
		// The websocket upgrade is HTTP/1.1 only; offering h2 would let
		// clients that prefer it fail the upgrade.
		cfg.NextProtos = []string{"http/1.1"}
		serveLn = tls.NewListener(ln, cfg)
		s.scheme = "https"
	}
	s.endpoint = s.scheme + "://" + s.advertise
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/data-channel/", s.serveDataChannel)
	mux.HandleFunc(InstanceConnectKeysPath, s.serveInstanceConnectKeys)
	mux.HandleFunc("/", s.serveAPI)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(logWriter{s}, "", 0)}
	go s.http.Serve(serveLn)
	return s, nil
}

// checkOptions refuses option values that cannot mean anything and returns
// the set of HangOperations.
func checkOptions(o *Options) (map[string]bool, error) {
	if !validVersion(o.MinClientVersion) {
		return nil, fmt.Errorf("ssmtest: MinClientVersion %q is not a dotted version such as %s", o.MinClientVersion, DefaultMinClientVersion)
	}
	if c := o.CloseOnOpen; c.Code != 0 && (c.Code < 1000 || c.Code > 4999 || len(c.Text) > maxCloseText || c.Opens < 0) {
		return nil, fmt.Errorf("ssmtest: CloseOnOpen %+v: want a code from 1000 to 4999, a text of at most %d bytes and Opens ≥ 0", c, maxCloseText)
	}
	if o.HugeFrameBytes < 0 || o.ThrottleRate < 0 || o.ThrottleBurst < 0 {
		return nil, errors.New("ssmtest: HugeFrameBytes, ThrottleRate and ThrottleBurst must not be negative")
	}
	if h := o.StreamURLHost; strings.ContainsAny(h, "/?#@ ") {
		return nil, fmt.Errorf("ssmtest: StreamURLHost %q is not a host or host:port", h)
	}
	hang := make(map[string]bool, len(o.HangOperations))
	for _, op := range o.HangOperations {
		if !slices.Contains(HangableOperations, op) {
			return nil, fmt.Errorf("ssmtest: HangOperations: %q is not one of %s", op, strings.Join(HangableOperations, ", "))
		}
		hang[op] = true
	}
	return hang, nil
}

// HangableOperations are the names HangOperations accepts.
var HangableOperations = []string{
	"StartSession", "ResumeSession", "TerminateSession", "DescribeInstanceInformation",
	"GetCallerIdentity", "AssumeRole", "AssumeRoleWithWebIdentity",
}

// loopbackIfUnspecified turns a listener's 0.0.0.0 or [::] into 127.0.0.1,
// an address clients can dial.
func loopbackIfUnspecified(hostport string) string {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			return net.JoinHostPort("127.0.0.1", p)
		}
	}
	return hostport
}

// Endpoint is the base URL for the SSM API, e.g. http://127.0.0.1:PORT
// (https with Options.TLS; the advertised address with
// Options.AdvertiseAddr). Set it as AWS_ENDPOINT_URL_SSM (and
// AWS_ENDPOINT_URL_STS) or the SDK's BaseEndpoint.
func (s *Server) Endpoint() string { return s.endpoint }

// Addr is the address the emulator listens on, which a proxy in front of
// it (Options.AdvertiseAddr) forwards to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Options returns the options in force (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked()
}

func (s *Server) statsLocked() Stats {
	st := s.stats
	st.Endings = maps.Clone(s.stats.Endings)
	st.ClientVersions = maps.Clone(s.stats.ClientVersions)
	return st
}

// add adjusts a counter under the lock.
func (s *Server) add(f func(st *Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.changedLocked()
	s.mu.Unlock()
}

// changedLocked wakes the WaitStats callers after a counter changed.
func (s *Server) changedLocked() {
	if s.statsCh != nil {
		close(s.statsCh)
		s.statsCh = nil
	}
}

// WaitStats waits until cond holds for the counters, or ctx ends, and
// returns the counters it last saw. cond is called without locks held, on
// a snapshot, each time a counter changes.
func (s *Server) WaitStats(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	for {
		s.mu.Lock()
		st := s.statsLocked()
		if s.statsCh == nil {
			s.statsCh = make(chan struct{})
		}
		ch := s.statsCh
		s.mu.Unlock()
		if cond(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("ssmtest: waiting on the counters: %w", ctx.Err())
		case <-ch:
		}
	}
}

// WaitIdle waits until no session is active or ctx ends.
func (s *Server) WaitIdle(ctx context.Context) error {
	st, err := s.WaitStats(ctx, func(st Stats) bool { return st.Active == 0 })
	if err != nil {
		return fmt.Errorf("ssmtest: %d sessions still active: %w", st.Active, ctx.Err())
	}
	return nil
}

// Close ends every session (as EndServerClosed), stops serving, answers
// nothing to hung calls and waits for the session goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	live := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		live = append(live, ss)
	}
	s.mu.Unlock()
	for _, ss := range live {
		ss.end(EndServerClosed, "")
	}
	err := s.http.Close()
	s.hung.Wait()
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// logWriter sends the HTTP server's own complaints (TLS handshake errors
// and the like) to Logf instead of the process's stderr.
type logWriter struct{ s *Server }

func (w logWriter) Write(p []byte) (int, error) {
	w.s.logf("ssmtest: http: %s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// Secrets returns every data-channel token the emulator issued and every
// SigV4 signature and session token it received, so that a test can check
// that a client never printed one.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.secrets...)
}

// rememberSecretLocked records a value for Secrets.
func (s *Server) rememberSecretLocked(v string) {
	if v != "" {
		s.secrets = append(s.secrets, v)
	}
}
