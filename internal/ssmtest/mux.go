package ssmtest

// The agent's port-forwarding plugin for AWS-StartPortForwardingSession and
// …ToRemoteHost (§7.3–§7.5, §15.4): the remote-host deny list, and the
// multiplexed mode, in which the agent runs an smux server over the
// session's Output byte stream and dials the destination once per smux
// stream.
//
// The smux server talks to the agent's data channel through an in-memory
// pipe, as the real agent's talks through a unix socket pair: client Output
// payloads are written into one end in order (processLocked), and the
// server's output is read from it in 1024-byte chunks by the same reader
// that reads a basic-mode target (readTarget), so pacing, pause and every
// fault apply unchanged. Accepting and dialing is one goroutine, serial as
// in the agent: a slow dial holds up the streams behind it.

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// Reasons a port-forwarding session ended, keys of Stats.Endings besides
// those in server.go.
const (
	// EndForbidden: the remote host resolved to a denied address (§7.5).
	EndForbidden = "forbidden"
	// EndLookupFailed: the remote host did not resolve (§7.5).
	EndLookupFailed = "lookup_failed"
	// EndMuxClosed: the agent's smux session died (keep-alive timeout,
	// protocol error), which ends its port plugin (§7.4).
	EndMuxClosed = "mux_closed"
)

// Agent versions that change port forwarding (§9.3, §15.4).
const (
	// agentVersionVPCDenyList is the first agent that also refuses the
	// reserved addresses of its VPC's CIDR blocks.
	agentVersionVPCDenyList = "3.1.1374.0"
	// agentVersionStrictRemoteHost is the first agent that refuses loopback
	// and the container credential endpoints for remote hosts, comparing
	// normalised addresses.
	agentVersionStrictRemoteHost = "3.3.4851.0"
)

// smux keep-alive of the agent's server when it is on (§7.1, §7.4).
const (
	muxKeepAliveInterval = 10 * time.Second
	muxKeepAliveTimeout  = 30 * time.Second
)

// smux v1 frame layout (§7.4): ver(1) cmd(1) length(2, LE) sid(4, LE).
const (
	muxHeaderLen = 8
	muxVersion   = 1
	muxCmdSYN    = 0
	muxCmdFIN    = 1
	muxCmdPSH    = 2
	muxCmdNOP    = 3
)

// ForwardingOptions select how the agent's port-forwarding plugin behaves
// (AWS-StartPortForwardingSession and …ToRemoteHost). The zero value is the
// agent as deployed: system dials, the default deny list, smux keep-alive as
// the ClientVersion decides with the library's 10 s / 30 s.
type ForwardingOptions struct {
	// Hosts is the agent's name resolution for the host parameter of
	// …ToRemoteHost: name → IP addresses in the order the agent tries them,
	// as a private DNS name resolves to VPC addresses. Names not here
	// resolve only if they are IP literals or "localhost" (127.0.0.1, ::1);
	// any other name fails as a DNS lookup does. The emulator never asks a
	// real resolver.
	Hosts map[string][]string
	// DeniedAddresses replaces the agent's configurable deny list
	// (Mgs.DeniedPortForwardingRemoteIPs, default DefaultDeniedAddresses)
	// when non-nil; an empty non-nil slice denies nothing. What newer
	// agents refuse regardless (loopback, credential endpoints) still
	// applies.
	DeniedAddresses []string
	// VPCCIDRs are the instance's VPC CIDR blocks; agents from 3.1.1374.0
	// refuse the first four addresses and the broadcast address of each.
	// Empty: not on EC2.
	VPCCIDRs []string
	// Dial, if set, replaces the agent's dials to destinations, in basic
	// and multiplexed mode: a test can make one fail or block.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialDelay holds every multiplexed dial back by this long, inside the
	// serial accept loop, so that the streams opened behind it wait too.
	DialDelay time.Duration
	// KeepAliveInterval and KeepAliveTimeout replace smux's 10 s and 30 s
	// when the agent's keep-alive is on. Setting only one derives the other
	// (timeout = 3 × interval).
	KeepAliveInterval, KeepAliveTimeout time.Duration
}

// DefaultDeniedAddresses is the agent's default
// Mgs.DeniedPortForwardingRemoteIPs (§7.5): the instance metadata, DNS, time
// and other link-local services, IPv4 and IPv6.
func DefaultDeniedAddresses() []string {
	return []string{
		"169.254.169.254", "fd00:ec2::254",
		"169.254.169.253", "fd00:ec2::253",
		"169.254.169.123", "fd00:ec2::123",
		"169.254.169.250", "169.254.169.251",
		"fd00:ec2::240",
	}
}

// credentialEndpoints are what agents from 3.3.4851 also refuse for remote
// hosts (§15.4): the ECS task credential endpoint and the EKS Pod Identity
// agent, IPv4 and IPv6.
func credentialEndpoints() []string {
	return []string{"169.254.170.2", "169.254.170.23", "fd00:ec2::23"}
}

// ForwardingStats are the port-forwarding plugin's counters, totals over
// every session since Start.
type ForwardingStats struct {
	MuxSessions   int64 // LocalPortForwarding sessions whose agent ran an smux server
	BasicSessions int64 // LocalPortForwarding sessions in basic mode (§7.3)
	// StreamsRequested counts SYN frames from the client, as they reach the
	// smux server; StreamsAccepted those the accept loop has taken.
	StreamsRequested, StreamsAccepted int64
	StreamsConnected                  int64 // accepted streams whose dial succeeded
	DialFailures                      int64 // streams refused with ConnectToPortError
	// FINsReceived and FINsSent count smux FIN frames from and to the
	// client: streams closed by it and by the agent.
	FINsReceived, FINsSent int64
	BytesUp                int64 // stream bytes written to destinations
	BytesDown              int64 // bytes read from destinations into streams
	// KeepAlivesReceived and KeepAlivesSent count smux NOP frames from
	// and to the client (§7.1).
	KeepAlivesReceived, KeepAlivesSent int64
	DisconnectFlagsIgnored             int64 // FlagDisconnectToPort in mux mode (§7.4)
}

// forwardingCounters are one session's ForwardingStats, updated without
// the session's lock by the copy goroutines.
type forwardingCounters struct {
	muxSessions, basicSessions                  atomic.Int64
	streamsRequested, streamsAccepted           atomic.Int64
	streamsConnected, dialFailures              atomic.Int64
	finsReceived, finsSent, bytesUp, bytesDown  atomic.Int64
	keepAlivesReceived, keepAlivesSent, ignored atomic.Int64
}

func (c *forwardingCounters) addTo(st *ForwardingStats) {
	st.MuxSessions += c.muxSessions.Load()
	st.BasicSessions += c.basicSessions.Load()
	st.StreamsRequested += c.streamsRequested.Load()
	st.StreamsAccepted += c.streamsAccepted.Load()
	st.StreamsConnected += c.streamsConnected.Load()
	st.DialFailures += c.dialFailures.Load()
	st.FINsReceived += c.finsReceived.Load()
	st.FINsSent += c.finsSent.Load()
	st.BytesUp += c.bytesUp.Load()
	st.BytesDown += c.bytesDown.Load()
	st.KeepAlivesReceived += c.keepAlivesReceived.Load()
	st.KeepAlivesSent += c.keepAlivesSent.Load()
	st.DisconnectFlagsIgnored += c.ignored.Load()
}

// ForwardingStats returns a snapshot of the port-forwarding counters.
func (s *Server) ForwardingStats() ForwardingStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st ForwardingStats
	for _, ss := range s.sessions {
		ss.agent.fwd.addTo(&st)
	}
	return st
}

// remoteHostLocked is the agent's check of the host parameter before the
// port plugin starts (§7.5, §15.4): resolve it, refuse it if any address is
// denied, and keep the addresses to dial. false: the session is failing.
func (ss *session) remoteHostLocked(host string) bool {
	opts := &ss.srv.opts.Forwarding
	addrs, err := resolveHost(opts.Hosts, host)
	if err != nil {
		ss.finishLocked(EndLookupFailed, err.Error())
		return false
	}
	for _, a := range addrs {
		if deniedAddress(a, ss.agentVersion, opts) {
			ss.srv.logf("ssmtest: session %s: %s resolves to denied address %s", ss.id, host, a)
			ss.finishLocked(EndForbidden, protocol.ForbiddenAddressPrefix+host+" is forbidden.")
			return false
		}
	}
	ss.agent.addresses = addrs
	return true
}

// resolveHost is the agent's lookup of host: through hosts, else an IP
// literal or localhost; anything else does not exist.
func resolveHost(hosts map[string][]string, host string) ([]string, error) {
	if addrs, ok := hosts[host]; ok {
		return addrs, nil
	}
	for name, addrs := range hosts {
		if strings.EqualFold(name, host) {
			return addrs, nil
		}
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{host}, nil
	}
	if strings.EqualFold(host, "localhost") {
		return []string{"127.0.0.1", "::1"}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// deniedAddress reports whether the agent refuses to forward to addr
// (§7.5, §15.4). Agents before 3.3.4851 compare parsed addresses with
// net.IP.Equal against their list (an address they cannot parse, such as
// one with a zone, passes); later ones normalise first (zone dropped,
// IPv4-mapped and IPv4-compatible IPv6 read as IPv4) and also refuse
// loopback and the credential endpoints.
func deniedAddress(addr, agentVersion string, opts *ForwardingOptions) bool {
	list := DefaultDeniedAddresses()
	if opts.DeniedAddresses != nil {
		list = append([]string(nil), opts.DeniedAddresses...)
	}
	if protocol.CompareAgentVersions(agentVersion, agentVersionVPCDenyList) >= 0 {
		for _, cidr := range opts.VPCCIDRs {
			list = append(list, vpcReserved(cidr)...)
		}
	}
	if protocol.CompareAgentVersions(agentVersion, agentVersionStrictRemoteHost) < 0 {
		ip := net.ParseIP(addr)
		for _, d := range list {
			if ip != nil && ip.Equal(net.ParseIP(d)) {
				return true
			}
		}
		return false
	}
	a, ok := normalAddr(addr)
	if !ok {
		return false
	}
	if a.IsLoopback() {
		return true
	}
	for _, d := range append(list, credentialEndpoints()...) {
		if b, ok := normalAddr(d); ok && a == b {
			return true
		}
	}
	return false
}

// normalAddr parses an address the way agents from 3.3.4851 compare them.
func normalAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a = a.WithZone("").Unmap()
	if a.Is6() {
		// IPv4-compatible (::a.b.c.d, deprecated); :: and ::1 stay IPv6.
		b := a.As16()
		if [12]byte(b[:12]) == [12]byte{} && (b[12] != 0 || b[13] != 0) {
			a = netip.AddrFrom4([4]byte(b[12:]))
		}
	}
	return a, true
}

// vpcReserved returns the addresses of a VPC CIDR block the agent refuses:
// the first four and the broadcast address (§7.5).
func vpcReserved(cidr string) []string {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil
	}
	p = p.Masked()
	a := p.Addr()
	var out []string
	for i := 0; i < 4; i++ {
		out = append(out, a.String())
		a = a.Next()
	}
	last := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range last {
		for b := 0; b < 8; b++ {
			if i*8+b >= bits {
				last[i] |= 0x80 >> b
			}
		}
	}
	if l, ok := netip.AddrFromSlice(last); ok {
		out = append(out, l.String())
	}
	return out
}

// destinationsLocked returns where the port plugin dials, in order: the
// test's redirect (the instance's Addr or TargetAddr), localhost:portNumber
// without a host, else each resolved address of host.
func (ss *session) destinationsLocked() []string {
	if ss.instance.Addr != "" || ss.srv.opts.TargetAddr != "" || ss.properties["host"] == "" {
		return []string{ss.dialAddr}
	}
	port := ss.properties["portNumber"]
	out := make([]string, 0, len(ss.agent.addresses))
	for _, a := range ss.agent.addresses {
		out = append(out, net.JoinHostPort(a, port))
	}
	return out
}

// dialFuncLocked returns the dial function of the port plugin.
func (ss *session) dialFuncLocked() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if d := ss.srv.opts.Forwarding.Dial; d != nil {
		return d
	}
	return ss.dialFunc
}

// dialDestinations dials each address in order; the first success wins,
// else the first error is returned, as the agent's DialCall does.
func dialDestinations(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addrs []string) (net.Conn, error) {
	var first error
	for _, a := range addrs {
		conn, err := dial(ctx, "tcp", a)
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = errors.New("missing address")
	}
	return nil, first
}

// muxServer is the agent's smux server of one session. Its pipe's agent
// end is the session's agentState.target; everything else is owned by the
// accept loop and the readTarget goroutine.
type muxServer struct {
	sess *smux.Session
	// up and down follow the smux byte stream each way to count frames:
	// up on the agent goroutine (processLocked), down on readTarget's.
	up, down frameScanner

	mu    sync.Mutex
	conns map[net.Conn]struct{} // destination connections still open
	dead  bool                  // the accept loop has ended: close new ones at once
}

// track records an open destination connection; false: the smux session
// is gone and conn has been closed.
func (m *muxServer) track(conn net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead {
		conn.Close()
		return false
	}
	m.conns[conn] = struct{}{}
	return true
}

func (m *muxServer) untrack(conn net.Conn) {
	m.mu.Lock()
	delete(m.conns, conn)
	m.mu.Unlock()
}

// closeConns closes every destination connection once the smux session
// is gone. The agent leaves that to its copy loops, which a destination
// that stops reading would hold forever; the emulator must not hang.
func (m *muxServer) closeConns() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dead = true
	for c := range m.conns {
		c.Close()
	}
}

// muxConfig is the agent's smux configuration for a client (§7.1): keep-
// alive as this agent version decides it (§9.3).
func (ss *session) muxConfig(clientVersion string) *smux.Config {
	cfg := smux.DefaultConfig()
	if !protocol.AgentKeepAlive(ss.agentVersion, clientVersion) {
		cfg.KeepAliveDisabled = true
		return cfg
	}
	opts := &ss.srv.opts.Forwarding
	iv, to := opts.KeepAliveInterval, opts.KeepAliveTimeout
	switch {
	case iv > 0 && to <= 0:
		to = 3 * iv
	case iv <= 0 && to > 0:
		iv = to / 3
	case iv <= 0:
		iv, to = muxKeepAliveInterval, muxKeepAliveTimeout
	}
	cfg.KeepAliveInterval, cfg.KeepAliveTimeout = iv, to
	return cfg
}

// startMuxLocked starts the multiplexed port plugin (§7.4, §9.1 step 6):
// the smux server, the reader of its output and the accept loop. The
// plugin is ready at once; it dials nothing until a stream arrives.
func (ss *session) startMuxLocked() {
	a := &ss.agent
	agentEnd, muxEnd := net.Pipe()
	cfg := ss.muxConfig(a.clientVersion)
	sess, err := smux.Server(muxEnd, cfg)
	if err != nil {
		agentEnd.Close()
		muxEnd.Close()
		ss.finishLocked(EndMuxClosed, protocol.ErrorTitle+"ssmtest: smux server: "+err.Error())
		return
	}
	a.fwd.muxSessions.Add(1)
	a.mux = &muxServer{sess: sess, conns: make(map[net.Conn]struct{})}
	a.target = agentEnd
	ss.srv.logf("ssmtest: session %s: smux server started, keep-alive %v", ss.id, !cfg.KeepAliveDisabled)
	ss.srv.wg.Add(2)
	go ss.readTarget(agentEnd)
	go ss.acceptStreams(a.mux, ss.dialFuncLocked(), ss.destinationsLocked())
}

// acceptStreams is the agent's accept loop (§7.4): one stream at a time,
// dial its destination, then copy both ways on two goroutines of its own.
// A failed dial sends ConnectToPortError and closes that stream; the
// session goes on. When the smux session dies, the session ends.
func (ss *session) acceptStreams(m *muxServer, dial func(ctx context.Context, network, addr string) (net.Conn, error), addrs []string) {
	defer ss.srv.wg.Done()
	defer m.closeConns()
	defer m.sess.Close()
	fwd := ss.agent.fwd
	delay := ss.srv.opts.Forwarding.DialDelay
	for {
		st, err := m.sess.AcceptStream()
		if err != nil {
			ss.mu.Lock()
			if !ss.ended && !ss.agent.finishing {
				ss.srv.logf("ssmtest: session %s: smux session ended: %v", ss.id, err)
				ss.finishLocked(EndMuxClosed, "")
			}
			ss.mu.Unlock()
			return
		}
		fwd.streamsAccepted.Add(1)
		if delay > 0 && !sleepCtx(ss.ctx, delay) {
			st.Close()
			return
		}
		conn, err := dialDestinations(ss.ctx, dial, addrs)
		if err != nil {
			fwd.dialFailures.Add(1)
			ss.srv.logf("ssmtest: session %s: stream %d: dial: %v", ss.id, st.ID(), err)
			ss.mu.Lock()
			if !ss.ended && !ss.agent.finishing {
				ss.sendStreamLocked(protocol.PayloadFlag, flagBytes(protocol.FlagConnectToPortError))
			}
			ss.mu.Unlock()
			st.Close()
			continue
		}
		fwd.streamsConnected.Add(1)
		if !m.track(conn) {
			st.Close()
			continue
		}
		ss.srv.wg.Add(2)
		go func() {
			defer ss.srv.wg.Done()
			defer m.untrack(conn)
			done := make(chan struct{})
			go func() {
				defer ss.srv.wg.Done()
				defer close(done)
				copyStream(conn, st, &fwd.bytesUp)
			}()
			copyStream(st, conn, &fwd.bytesDown)
			<-done
		}()
	}
}

// copyStream copies src to dst, counting into n, and closes dst when src
// ends, as the agent does: no half-close, the other direction ends when
// its read fails.
func copyStream(dst io.WriteCloser, src io.Reader, n *atomic.Int64) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
			n.Add(int64(k))
		}
		if err != nil {
			return
		}
	}
}

// sleepCtx waits d or until ctx ends; false: ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func flagBytes(f protocol.Flag) []byte {
	b, _ := f.AppendBinary(nil)
	return b
}

// countUp counts the frames of client Output delivered to the smux server.
func (m *muxServer) countUp(p []byte, fwd *forwardingCounters) {
	m.up.scan(p, func(cmd byte) {
		switch cmd {
		case muxCmdSYN:
			fwd.streamsRequested.Add(1)
		case muxCmdFIN:
			fwd.finsReceived.Add(1)
		case muxCmdNOP:
			fwd.keepAlivesReceived.Add(1)
		}
	})
}

// countDown counts the frames of smux output sent to the client.
func (m *muxServer) countDown(p []byte, fwd *forwardingCounters) {
	m.down.scan(p, func(cmd byte) {
		switch cmd {
		case muxCmdFIN:
			fwd.finsSent.Add(1)
		case muxCmdNOP:
			fwd.keepAlivesSent.Add(1)
		}
	})
}

// frameScanner follows an smux v1 byte stream cut at arbitrary points and
// reports the command of each frame header it completes.
type frameScanner struct {
	hdr  [muxHeaderLen]byte
	n    int // header bytes collected
	skip int // data bytes of the current frame still to pass
}

func (f *frameScanner) scan(p []byte, frame func(cmd byte)) {
	for len(p) > 0 {
		if f.skip > 0 {
			k := min(f.skip, len(p))
			f.skip -= k
			p = p[k:]
			continue
		}
		k := copy(f.hdr[f.n:], p)
		f.n += k
		p = p[k:]
		if f.n < muxHeaderLen {
			return
		}
		f.n = 0
		f.skip = int(binary.LittleEndian.Uint16(f.hdr[2:4]))
		frame(f.hdr[1])
	}
}
