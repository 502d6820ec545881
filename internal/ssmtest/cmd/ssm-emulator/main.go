// Command ssm-emulator runs the ssmtest Session Manager emulator as a
// process, for trying ssm-proxy, the official plugin or the AWS CLI against
// it by hand.
//
//	go run ./internal/ssmtest/cmd/ssm-emulator -target-addr 127.0.0.1:22
//
// The first line on stdout is "endpoint http://127.0.0.1:PORT"; everything
// else goes to stderr. -h prints the flags, every fault knob among them,
// and the inventory file's fields.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

const usage = `Usage: ssm-emulator [flags]

Runs a local AWS Session Manager emulator: the SSM API (StartSession,
ResumeSession, TerminateSession, DescribeInstanceInformation,
DescribeInstanceProperties), STS
(GetCallerIdentity, AssumeRole, AssumeRoleWithWebIdentity), the message
gateway's data channel and the agent's port plugin, all on one port.

The first line on stdout is "endpoint http://HOST:PORT" (https with TLS).
Shell settings for clients follow on stderr. It serves until SIGINT or
SIGTERM, then prints its counters as one JSON line on stderr. Requests must
be signed with the fixed test credentials it prints.

Service:
  -listen ADDR              listen address (default 127.0.0.1:0, a free port)
  -advertise HOST:PORT      name this address in the endpoint and StreamUrls
                            instead of the listener's: a proxy in front of
                            the emulator (a latency link) that forwards to it
  -stream-url-host HOST     the host StreamUrls name, e.g.
                            ssmmessages.us-east-1.amazonaws.com; clients then
                            reach the data channel through
                            AWS_ENDPOINT_URL_SSMMESSAGES (printed below)
  -session-id-prefix NAME   the caller name that starts each SessionId
                            (default test); an SSO user's is an e-mail address
  -tls-ca-out FILE          serve HTTPS and wss with a throw-away CA, written
                            to FILE as PEM for AWS_CA_BUNDLE or SSL_CERT_FILE
  -tls-cert FILE            serve HTTPS and wss with this certificate (PEM) ...
  -tls-key FILE             ... and its key (PEM)
  -inventory FILE           instances (see "Inventory" below; default: the
                            built-in test inventory)
  -target-addr HOST:PORT    every session dials this instead of localhost:PORT
  -region REGION            region requests must be signed for (default us-east-1)
  -page-size N              DescribeInstanceInformation and -Properties page size (default 2)
  -require-signed-upgrade   refuse websocket upgrades without a SigV4 signature
  -min-client-version V     close an OpenDataChannel whose ClientVersion is
                            missing or below V with 1008 and a reason that
                            names both versions (default 1.2.764.0, the
                            documented minimum)
  -any-client-version       accept any ClientVersion, or none
  -move-cell-on-resume      move each resumed session to a new cell: the
                            ResumeSession answer carries a new StreamUrl and
                            the earlier ones are refused (HTTP 404)

Agent:
  -agent-version V          AgentVersion in HandshakeRequest (default: the instance's)
  -handshake-timeout D      how long to wait for HandshakeResponse (default 15s)
  -handshake-complete-delay D
                            send HandshakeComplete D after the response; client
                            data in between is acknowledged and discarded
  -pacing                   1024-byte reads and 1 ms per message, as the real agent

Data-channel faults:
  -bye-every D              close each websocket with 1000 "Bye" after D
  -drop-every-bytes N       cut the connection each time N stream bytes crossed it
  -blackhole-every-bytes N  after N stream bytes, stop reading and writing
                            (pongs included) and leave the connection open
  -ack-loss P               probability (0..1) that an ack is lost
  -duplicate P              probability that a stream frame is sent twice
  -reorder P                probability that a stream frame is sent after the next
  -pause-every D            send pause_publication every D ...
  -pause-for D              ... and start_publication D later
  -idle-timeout D           end sessions with no client data for D
  -latency D                delay every frame by D
  -close-on-open CODE       accept the upgrade and OpenDataChannel, then close
                            at once with CODE (1000-4999; 1005: no status,
                            1006: drop the connection without a close frame)
  -close-on-open-text TEXT  the close reason for -close-on-open
  -close-on-open-count N    close only the first N opens (default 0: all)
  -huge-frame-bytes N       right after HandshakeComplete, send one well-formed
                            output_stream_data of N bytes (e.g. 67108864)
  -malformed-channel-closed end sessions with a channel_closed whose payload is
                            not valid JSON
  -seed N                   seed of the fault randomness (default 1)

API faults:
  -hang OP[,OP...]          accept these calls and never answer them: any of
                            StartSession, ResumeSession, TerminateSession,
                            DescribeInstanceInformation, GetCallerIdentity,
                            AssumeRole, AssumeRoleWithWebIdentity
  -throttle-rate R          allow StartSession and ResumeSession R calls per
                            second each; beyond, ThrottlingException
                            "Rate exceeded"
  -throttle-burst N         calls the throttle lets through at once
                            (default: R rounded up)
  -refuse-signatures        refuse every signed API call with
                            InvalidSignatureException, quoting the canonical
                            request (session token included) as AWS does

Port forwarding (AWS-StartPortForwardingSession*):
  -forward-host NAME=IP[,NAME=IP...]
                            how the agent resolves the host parameter of
                            …ToRemoteHost (names not given resolve only as
                            IP literals or localhost; no real DNS)
  -forward-dial-delay D     hold each multiplexed dial back by D (the agent
                            dials serially, so streams behind it wait)
  -forward-keepalive D      smux keep-alive interval when the agent's is on
                            (timeout 3×D; default 10s/30s)

EC2 Instance Connect (SendSSHPublicKey, service ec2-instance-connect):
  -eic-key-lifetime D       how long a pushed key stays valid (default 60s)
  -eic-throttle-rate R      allow R calls per second; beyond, ThrottlingException
  -eic-throttle-burst N     calls the throttle lets through at once (default 1)
  -eic-deny-users U[,U...]  refuse pushes for these OS users (AccessDenied)
  -eic-deny-instances I[,I...]
                            refuse pushes to these instances (AccessDenied)
  -eic-fail-first N         fail the first N pushes with ServiceException
  The keys currently valid for an instance and user are listed at
  ENDPOINT/ssmtest/instance-connect/keys?instance=ID&user=USER, for an
  sshd AuthorizedKeysCommand.

Output:
  -stats-every D            also print the counters every D
  -v                        log requests and sessions
  -h                        print this help on stdout

Inventory: a JSON array of instances, or {"Instances": [...]}. Fields:
  InstanceId        i-… or mi-… (required, unique)
  Name              the Name tag (and, for mi-, the activation name)
  Tags              {"Key": "Value", ...}
  PingStatus        Online (default), ConnectionLost or Inactive:
                    StartSession needs Online
  LastPingDateTime  RFC 3339 time (default: now, an hour ago if not Online)
  AgentVersion      the agent's version (default 3.3.1142.0)
  PlatformName      default "Amazon Linux"
  PlatformType      Linux (default), Windows or MacOS
  IPAddress         reported by DescribeInstanceInformation
  Denied            true: StartSession on it fails with AccessDeniedException
  StandardTier      true, for an mi- node: the account is on the standard
                    tier, StartSession fails with BadRequest
  Addr              host:port this instance's sessions dial, over
                    -target-addr
Unknown fields are errors.

Exit status: 0 after a signal or -h, 1 if it cannot start, 2 for bad usage.
`

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the parsed command line.
type config struct {
	listen     string
	inventory  string
	tlsCAOut   string // -tls-ca-out
	tlsCert    string
	tlsKey     string
	hang       string // -hang, comma-separated
	fwdHosts   string // -forward-host NAME=IP,...
	eicUsers   string // -eic-deny-users
	eicInsts   string // -eic-deny-instances
	statsEvery time.Duration
	verbose    bool
	opts       ssmtest.Options
}

// usageError is a bad command line, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// run is the whole command; it returns the exit status. It serves until
// ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	stderr = &syncWriter{w: stderr}
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "ssm-emulator: error: %s\n", ue.msg)
		fmt.Fprintln(stderr, "ssm-emulator: hint: ssm-emulator -h lists the flags")
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "ssm-emulator: error: %v\n", err)
		return exitUsage
	}
	if err := serve(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "ssm-emulator: error: %v\n", err)
		return exitError
	}
	return exitOK
}

// parseFlags parses args into a config. -h returns flag.ErrHelp and prints
// nothing: run prints the usage, once.
func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	fs := newFlagSet(cfg)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	cfg.opts.HangOperations = splitList(cfg.hang)
	cfg.opts.InstanceConnect.DeniedUsers = splitList(cfg.eicUsers)
	cfg.opts.InstanceConnect.DeniedInstances = splitList(cfg.eicInsts)
	for _, kv := range splitList(cfg.fwdHosts) {
		name, ip, ok := strings.Cut(kv, "=")
		if !ok || name == "" || net.ParseIP(ip) == nil {
			return nil, &usageError{fmt.Sprintf("-forward-host %q: want NAME=IP", kv)}
		}
		if cfg.opts.Forwarding.Hosts == nil {
			cfg.opts.Forwarding.Hosts = map[string][]string{}
		}
		cfg.opts.Forwarding.Hosts[name] = append(cfg.opts.Forwarding.Hosts[name], ip)
	}
	return cfg, cfg.check()
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// newFlagSet defines the command's flags on cfg. It prints nothing: run
// reports errors and prints the usage.
func newFlagSet(cfg *config) *flag.FlagSet {
	o := &cfg.opts
	fs := flag.NewFlagSet("ssm-emulator", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:0", "")
	fs.StringVar(&o.AdvertiseAddr, "advertise", "", "")
	fs.StringVar(&o.StreamURLHost, "stream-url-host", "", "")
	fs.StringVar(&o.SessionIDPrefix, "session-id-prefix", "", "")
	fs.StringVar(&cfg.tlsCAOut, "tls-ca-out", "", "")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "")
	fs.StringVar(&cfg.inventory, "inventory", "", "")
	fs.StringVar(&o.TargetAddr, "target-addr", "", "")
	fs.StringVar(&o.Region, "region", ssmtest.DefaultRegion, "")
	fs.IntVar(&o.PageSize, "page-size", 2, "")
	fs.BoolVar(&o.RequireSignedUpgrade, "require-signed-upgrade", false, "")
	fs.StringVar(&o.MinClientVersion, "min-client-version", ssmtest.DefaultMinClientVersion, "")
	fs.BoolVar(&o.AnyClientVersion, "any-client-version", false, "")
	fs.BoolVar(&o.MoveCellOnResume, "move-cell-on-resume", false, "")
	fs.StringVar(&o.AgentVersion, "agent-version", "", "")
	fs.DurationVar(&o.HandshakeTimeout, "handshake-timeout", 15*time.Second, "")
	fs.DurationVar(&o.HandshakeCompleteDelay, "handshake-complete-delay", 0, "")
	fs.BoolVar(&o.Pacing, "pacing", false, "")
	fs.DurationVar(&o.ByeEvery, "bye-every", 0, "")
	fs.Int64Var(&o.DropEveryBytes, "drop-every-bytes", 0, "")
	fs.Int64Var(&o.BlackholeEvery, "blackhole-every-bytes", 0, "")
	fs.Float64Var(&o.AckLoss, "ack-loss", 0, "")
	fs.Float64Var(&o.Duplicate, "duplicate", 0, "")
	fs.Float64Var(&o.Reorder, "reorder", 0, "")
	fs.DurationVar(&o.PauseEvery, "pause-every", 0, "")
	fs.DurationVar(&o.PauseFor, "pause-for", 0, "")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 0, "")
	fs.DurationVar(&o.Latency, "latency", 0, "")
	fs.IntVar(&o.CloseOnOpen.Code, "close-on-open", 0, "")
	fs.StringVar(&o.CloseOnOpen.Text, "close-on-open-text", "", "")
	fs.IntVar(&o.CloseOnOpen.Opens, "close-on-open-count", 0, "")
	fs.IntVar(&o.HugeFrameBytes, "huge-frame-bytes", 0, "")
	fs.BoolVar(&o.MalformedChannelClosed, "malformed-channel-closed", false, "")
	fs.Int64Var(&o.Seed, "seed", 1, "")
	fs.StringVar(&cfg.hang, "hang", "", "")
	fs.Float64Var(&o.ThrottleRate, "throttle-rate", 0, "")
	fs.IntVar(&o.ThrottleBurst, "throttle-burst", 0, "")
	fs.BoolVar(&o.RefuseSignatures, "refuse-signatures", false, "")
	fs.StringVar(&cfg.fwdHosts, "forward-host", "", "")
	fs.DurationVar(&o.Forwarding.DialDelay, "forward-dial-delay", 0, "")
	fs.DurationVar(&o.Forwarding.KeepAliveInterval, "forward-keepalive", 0, "")
	fs.DurationVar(&o.InstanceConnect.KeyLifetime, "eic-key-lifetime", ssmtest.DefaultKeyLifetime, "")
	fs.Float64Var(&o.InstanceConnect.ThrottleRate, "eic-throttle-rate", 0, "")
	fs.IntVar(&o.InstanceConnect.ThrottleBurst, "eic-throttle-burst", 1, "")
	fs.StringVar(&cfg.eicUsers, "eic-deny-users", "", "")
	fs.StringVar(&cfg.eicInsts, "eic-deny-instances", "", "")
	fs.IntVar(&o.InstanceConnect.FailFirst, "eic-fail-first", 0, "")
	fs.DurationVar(&cfg.statsEvery, "stats-every", 0, "")
	fs.BoolVar(&cfg.verbose, "v", false, "")
	return fs
}

// check refuses values Options cannot mean.
func (cfg *config) check() error {
	o := &cfg.opts
	for name, p := range map[string]float64{"-ack-loss": o.AckLoss, "-duplicate": o.Duplicate, "-reorder": o.Reorder} {
		if p < 0 || p > 1 {
			return &usageError{fmt.Sprintf("%s %v: want a probability between 0 and 1", name, p)}
		}
	}
	for name, d := range map[string]time.Duration{"-handshake-timeout": o.HandshakeTimeout,
		"-handshake-complete-delay": o.HandshakeCompleteDelay, "-bye-every": o.ByeEvery,
		"-pause-every": o.PauseEvery, "-pause-for": o.PauseFor, "-idle-timeout": o.IdleTimeout, "-latency": o.Latency,
		"-stats-every": cfg.statsEvery} {
		if d < 0 {
			return &usageError{fmt.Sprintf("%s %v: want a duration of 0 or more", name, d)}
		}
	}
	for name, n := range map[string]int64{"-drop-every-bytes": o.DropEveryBytes, "-blackhole-every-bytes": o.BlackholeEvery,
		"-huge-frame-bytes": int64(o.HugeFrameBytes), "-close-on-open-count": int64(o.CloseOnOpen.Opens), "-throttle-burst": int64(o.ThrottleBurst)} {
		if n < 0 {
			return &usageError{fmt.Sprintf("%s %d: want 0 or more", name, n)}
		}
	}
	c := o.CloseOnOpen
	switch {
	case o.PageSize < 1:
		return &usageError{fmt.Sprintf("-page-size %d: want 1 or more", o.PageSize)}
	case (o.PauseEvery > 0) != (o.PauseFor > 0):
		return &usageError{"-pause-every and -pause-for go together"}
	case o.Region == "":
		return &usageError{"-region must not be empty"}
	case o.ThrottleRate < 0:
		return &usageError{fmt.Sprintf("-throttle-rate %v: want 0 or more", o.ThrottleRate)}
	case c.Code != 0 && (c.Code < 1000 || c.Code > 4999):
		return &usageError{fmt.Sprintf("-close-on-open %d: want a close code from 1000 to 4999", c.Code)}
	case c.Code == 0 && (c.Text != "" || c.Opens != 0):
		return &usageError{"-close-on-open-text and -close-on-open-count need -close-on-open"}
	case (cfg.tlsCert == "") != (cfg.tlsKey == ""):
		return &usageError{"-tls-cert and -tls-key go together"}
	case cfg.tlsCert != "" && cfg.tlsCAOut != "":
		return &usageError{"-tls-ca-out makes its own certificate; it does not go with -tls-cert"}
	}
	for _, op := range o.HangOperations {
		if !slices.Contains(ssmtest.HangableOperations, op) {
			return &usageError{fmt.Sprintf("-hang %q: want a comma-separated list of %s", op, strings.Join(ssmtest.HangableOperations, ", "))}
		}
	}
	return nil
}

// serve runs the emulator until ctx is done.
func serve(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	if cfg.inventory != "" {
		insts, err := ssmtest.LoadInstances(cfg.inventory)
		if err != nil {
			return err
		}
		cfg.opts.Instances = insts
	}
	if err := cfg.loadTLS(); err != nil {
		return err
	}
	if cfg.verbose {
		cfg.opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(stderr, "ssm-emulator: "+format+"\n", args...)
		}
	}
	srv, err := ssmtest.StartAddr(cfg.listen, cfg.opts)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "endpoint %s\n", srv.Endpoint()); err != nil {
		srv.Close()
		return fmt.Errorf("write endpoint: %w", err)
	}
	printHints(stderr, srv, cfg.tlsCAOut)

	var wg sync.WaitGroup
	done := make(chan struct{})
	if cfg.statsEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			printStatsEvery(stderr, srv, cfg.statsEvery, done)
		}()
	}
	<-ctx.Done()
	close(done)
	wg.Wait()
	err = srv.Close()
	printStats(stderr, srv.Stats())
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// loadTLS sets opts.TLS from -tls-cert/-tls-key, or makes a throw-away CA
// for -tls-ca-out and writes its certificate there. The CA covers the
// listen, advertised and stream hosts.
func (cfg *config) loadTLS() error {
	switch {
	case cfg.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		cfg.opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	case cfg.tlsCAOut != "":
		tc, caPEM, err := ssmtest.NewTLSConfig(cfg.listen, cfg.opts.AdvertiseAddr, cfg.opts.StreamURLHost)
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.tlsCAOut, caPEM, 0o644); err != nil {
			return fmt.Errorf("-tls-ca-out: %w", err)
		}
		cfg.opts.TLS = tc
	}
	return nil
}

// printHints tells the user how to point clients at srv: every service at
// its endpoint, the messages endpoint too when the StreamUrls name another
// host, and the CA to trust.
func printHints(w io.Writer, srv *ssmtest.Server, caFile string) {
	o := srv.Options()
	fmt.Fprintf(w, "# ssm-emulator: %d instances; point clients at it with:\n", len(o.Instances))
	fmt.Fprintf(w, "export AWS_ENDPOINT_URL_SSM=%s\n", srv.Endpoint())
	fmt.Fprintf(w, "export AWS_ENDPOINT_URL_STS=%s\n", srv.Endpoint())
	fmt.Fprintf(w, "export AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT=%s\n", srv.Endpoint())
	if o.StreamURLHost != "" {
		fmt.Fprintf(w, "export AWS_ENDPOINT_URL_SSMMESSAGES=%s\n", srv.Endpoint())
	}
	if caFile != "" {
		if abs, err := filepath.Abs(caFile); err == nil {
			caFile = abs
		}
		fmt.Fprintf(w, "export AWS_CA_BUNDLE=%s\n", caFile)
	}
	fmt.Fprintf(w, "export AWS_ACCESS_KEY_ID=%s\n", ssmtest.AccessKeyID)
	fmt.Fprintf(w, "export AWS_SECRET_ACCESS_KEY=%s\n", ssmtest.SecretAccessKey)
	fmt.Fprintf(w, "export AWS_REGION=%s\n", o.Region)
	fmt.Fprintln(w, "export AWS_EC2_METADATA_DISABLED=true")
	fmt.Fprintln(w, "unset AWS_PROFILE AWS_SESSION_TOKEN")
}

// printStatsEvery prints the counters every interval until done closes.
func printStatsEvery(w io.Writer, srv *ssmtest.Server, every time.Duration, done <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			printStats(w, srv.Stats())
		}
	}
}

// printStats writes st as one JSON line.
func printStats(w io.Writer, st ssmtest.Stats) {
	b, err := json.Marshal(st)
	if err != nil {
		fmt.Fprintf(w, "ssm-emulator: error: encode stats: %v\n", err)
		return
	}
	fmt.Fprintf(w, "%s\n", b)
}

// syncWriter serialises writes from the emulator's goroutines, the stats
// ticker and run, so that lines never interleave.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
