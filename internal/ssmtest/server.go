// Package ssmtest is a local stand-in for the AWS side of Session Manager:
// the SSM JSON 1.1 API (StartSession, ResumeSession, TerminateSession,
// DescribeInstanceInformation), the message gateway's data channel and the
// SSM agent's port plugin, all on one loopback port. It behaves as
// docs/protocol.md describes the real service and agent, including the
// unpleasant parts, each selectable in Options.
//
// Use it like net/http/httptest: Start, point the client at Endpoint(),
// read Stats(), Close.
package ssmtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/http"
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
	// Addr, if set, is where the agent dials for this instance instead of
	// Options.TargetAddr or localhost:<portNumber>.
	Addr string `json:"Addr,omitempty"`
}

// Options select the emulator's behaviour. The zero value is a well-behaved
// service and agent with DefaultInstances.
type Options struct {
	// Instances is the inventory; nil means DefaultInstances().
	Instances []Instance
	// TargetAddr, if set, is the host:port every session dials instead of
	// localhost:<portNumber> (tests point it at their sshd).
	TargetAddr string
	// Region is the region requests must be signed for (DefaultRegion).
	Region string
	// PageSize bounds DescribeInstanceInformation pages (default 2, so that
	// clients must follow NextToken).
	PageSize int

	// RequireSignedUpgrade refuses websocket upgrades without a valid SigV4
	// signature for service ssmmessages (§2). Signed upgrades are always
	// verified; a bad signature is always refused.
	RequireSignedUpgrade bool
	// AgentVersion reported in HandshakeRequest (default: the instance's).
	AgentVersion string
	// HandshakeTimeout is how long the agent waits for HandshakeResponse
	// (default 15 s, §6.2).
	HandshakeTimeout time.Duration

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
	// but nothing more is read or written on it (no pongs either).
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
	// Forwarding selects the port-forwarding plugin's behaviour (mux.go).
	Forwarding ForwardingOptions
	// InstanceConnect selects the EC2 Instance Connect emulation (eic.go).
	InstanceConnect InstanceConnectOptions

	// Seed seeds the fault randomness (0 → 1).
	Seed int64
	// Logf, if set, receives debug lines.
	Logf func(format string, args ...any)
}

// Stats are the emulator's counters. All are totals since Start except
// Active.
type Stats struct {
	SessionsStarted                 int64
	TerminatedByAPI                 int64 // TerminateSession calls that ended a live session
	EndedByAgent                    int64 // target EOF, dial failure, flag, handshake failure, idle timeout
	Resumes                         int64 // successful ResumeSession calls
	Reconnects                      int64 // data-channel websockets opened for an existing session after the first
	Active                          int64 // sessions neither terminated nor ended
	BytesUp                         int64 // stream payload bytes client → target (delivered once)
	BytesDown                       int64 // stream payload bytes target → client (first transmissions)
	Retransmissions                 int64 // agent stream frames sent again after the RTO
	DuplicatesReceived              int64 // client stream frames that arrived again (re-acked)
	SignedUpgrades                  int64
	UnsignedUpgrades                int64
	RefusedUpgrades                 int64
	Byes, Drops, Blackholes, Pauses int64 // faults injected
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
	opts     Options
	ln       net.Listener
	http     *http.Server
	endpoint string

	mu       sync.Mutex
	rng      *rand.Rand
	sessions map[string]*session
	stats    Stats
	closed   bool
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
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssmtest: listen: %w", err)
	}
	s := &Server{
		opts:     opts,
		ln:       ln,
		endpoint: "http://" + ln.Addr().String(),
		rng:      rand.New(rand.NewSource(opts.Seed)),
		sessions: make(map[string]*session),
		stats:    Stats{Endings: make(map[string]int64)},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/data-channel/", s.serveDataChannel)
	mux.HandleFunc(InstanceConnectKeysPath, s.serveInstanceConnectKeys)
	mux.HandleFunc("/", s.serveAPI)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.http.Serve(ln)
	return s, nil
}

// Endpoint is the base URL for the SSM API, e.g. http://127.0.0.1:PORT. Set
// it as AWS_ENDPOINT_URL_SSM or the SDK's BaseEndpoint.
func (s *Server) Endpoint() string { return s.endpoint }

// Options returns the options in force (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Endings = make(map[string]int64, len(s.stats.Endings))
	for k, v := range s.stats.Endings {
		st.Endings[k] = v
	}
	return st
}

// add adjusts a counter under the lock.
func (s *Server) add(f func(st *Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// WaitIdle waits until no session is active or ctx ends.
func (s *Server) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.Stats().Active == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ssmtest: %d sessions still active: %w", s.Stats().Active, ctx.Err())
		case <-t.C:
		}
	}
}

// Close ends every session (as EndServerClosed), stops serving and waits for
// the session goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	live := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		live = append(live, ss)
	}
	s.mu.Unlock()
	for _, ss := range live {
		ss.end(EndServerClosed, "")
	}
	err := s.http.Close()
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}
