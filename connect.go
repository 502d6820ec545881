package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/forward"
	"github.com/ssm-proxy/ssm-proxy/internal/target"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// The ProxyCommand: `ssm-proxy [flags] TARGET PORT` connects ssh's stdin and
// stdout to PORT on TARGET through one Session Manager session.

// proxyArgs is the ProxyCommand's parsed command line.
type proxyArgs struct {
	o          options
	name, port string       // TARGET (stripped) and PORT; no PORT with --to
	to         forward.Spec // --to HOST:PORT
}

// portNumber is PORT as a number (checked by parseProxy).
func (p proxyArgs) portNumber() int {
	n, _ := strconv.Atoi(p.port)
	return n
}

// parseProxy parses and checks the ProxyCommand's arguments; !ok: the
// command ends with code (usage printed, or --version/--help done).
func (c *cli) parseProxy(args []string) (p proxyArgs, code int, ok bool) {
	o := &p.o
	fs := c.newFlagSet("ssm-proxy")
	o.flags(fs)
	o.sessionFlags(fs)
	fs.StringVar(&o.document, "document", "AWS-StartSSHSession", "")
	fs.StringVar(&o.to, "to", "", "")
	fs.BoolVar(&o.version, "version", false, "")
	fs.DurationVar(&o.share, "share", 0, "")
	fs.BoolVar(&o.fdpass, "fdpass", false, "")
	o.pushKeyFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return p, code, false
	}
	if o.version {
		fmt.Fprintln(c.stdout, "ssm-proxy", version())
		return p, exitOK, false
	}
	var err error
	if o.to != "" {
		if p.to, err = parseTo(o.to); err == nil {
			p.name, err = parseToArgs(fs.Args(), *o)
		}
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "push-key", "os-user":
				err = fmt.Errorf("--%s cannot go with --to: it pushes a key to TARGET, and through --to ssh logs in to HOST", f.Name)
			case "document":
				err = errors.New("--document cannot go with --to, which uses AWS-StartPortForwardingSessionToRemoteHost")
			}
		})
	} else {
		p.name, p.port, err = parseArgs(fs.Args(), o.stripPrefix, o.stripSuffix)
		if err != nil && o.pushKey.set && o.pushKey.value == "" && len(fs.Args()) == 3 {
			// --push-key VALUE: the flag stands alone, so VALUE became
			// an argument.
			err = fmt.Errorf("--push-key takes its value after '=': --push-key=%s (got %d arguments: %s)", fs.Arg(0), len(fs.Args()), strings.Join(fs.Args(), " "))
		}
	}
	if err == nil && o.osUser != "" && !o.pushKey.set {
		err = errors.New("--os-user goes with --push-key: it names the user the pushed key is for (add --push-key, or leave --os-user out)")
	}
	if err == nil && o.share != 0 {
		err = checkShare(fs, o.share)
	}
	if err == nil && o.fdpass && o.share <= 0 {
		err = errors.New("--fdpass goes with --share: it hands ssh the shared session's socket (with ProxyUseFdpass yes in ssh_config)")
	}
	if err != nil {
		return p, c.usageError(err), false
	}
	return p, 0, true
}

// minShare is the shortest --share.
const minShare = time.Second

// checkShare refuses what --share cannot go with.
func checkShare(fs *flag.FlagSet, d time.Duration) (err error) {
	if d < minShare {
		// Shorter, the shared process could idle out before the
		// connection it was started for arrives.
		return fmt.Errorf("--share %s: want how long to keep the shared session after its last connection, at least %s, e.g. 60s", d, minShare)
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "push-key", "os-user":
			err = fmt.Errorf("--%s cannot go with --share yet: each connection needs its own key pushed; use --push-key alone, or ControlPersist (ssm-proxy ssh-config --multiplex)", f.Name)
		case "document":
			err = errors.New("--document cannot go with --share, which carries connections over AWS-StartPortForwardingSession")
		}
	})
	return err
}

// proxyCommand runs `ssm-proxy [flags] TARGET PORT`, the ProxyCommand.
func (c *cli) proxyCommand(ctx context.Context, args []string) int {
	p, code, ok := c.parseProxy(args)
	if !ok {
		return code
	}
	o := p.o
	log := newLogger(c.stderr, o.verbose)

	ctx, sig := withSignals(ctx)
	if o.share > 0 {
		code := c.proxyShared(ctx, o, args, log)
		if n := sig(); n != 0 {
			return exitSignalsBase + n
		}
		return code
	}
	used := &used{target: p.name}
	var err error
	if o.to != "" {
		err = c.connectTo(ctx, o, used, p.to, log)
	} else {
		err = c.connect(ctx, o, used, p.port, log)
	}
	code = exitOK
	if n := sig(); n != 0 {
		code = exitSignalsBase + n
	} else if err != nil {
		code = exitCode(err)
		reportError(c.stderr, err, o, used, code == exitError)
	}
	c.sessionEnded(ctx, used, err, code, log)
	return code
}

// sessionFlags registers the flags of the commands that open sessions.
func (o *options) sessionFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.reason, "reason", "", "")
	fs.StringVar(&o.stripPrefix, "strip-prefix", "", "")
	fs.StringVar(&o.stripSuffix, "strip-suffix", "", "")
	fs.DurationVar(&o.resumeTimeout, "resume-timeout", 2*time.Minute, "")
	fs.DurationVar(&o.ping, "ping-interval", 15*time.Second, "")
	fs.DurationVar(&o.deadPeer, "dead-peer-timeout", 40*time.Second, "")
}

// stripTarget removes --strip-prefix and --strip-suffix from name.
func stripTarget(name string, o options) string {
	return strings.TrimSuffix(strings.TrimPrefix(name, o.stripPrefix), o.stripSuffix)
}

// parseToArgs validates the one TARGET (the bastion) of --to.
func parseToArgs(args []string, o options) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("--to HOST:PORT wants one TARGET (the instance to go through), got %d argument(s)", len(args))
	}
	name := stripTarget(args[0], o)
	return name, checkTarget(name)
}

// parseArgs validates TARGET and PORT (ssh's %h %p) and strips prefix and
// suffix from TARGET.
func parseArgs(args []string, prefix, suffix string) (target, port string, err error) {
	if len(args) != 2 {
		return "", "", fmt.Errorf("want TARGET and PORT, got %d argument(s)", len(args))
	}
	target, port = stripTarget(args[0], options{stripPrefix: prefix, stripSuffix: suffix}), args[1]
	if err := checkTarget(target); err != nil {
		return "", "", err
	}
	if err := checkPort(port); err != nil {
		return "", "", err
	}
	return target, port, nil
}

func checkTarget(s string) error {
	if s == "" {
		return errors.New("empty TARGET")
	}
	_, err := target.Parse(s)
	return err
}

func checkPort(s string) error {
	if n, err := strconv.ParseUint(s, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("invalid PORT %q: want a number from 1 to 65535", s)
	}
	return nil
}

// used records what a command worked with, for the hints of its errors.
type used struct {
	target string      // TARGET as given
	id     string      // the target id it resolved to
	aws    awscfg.Info // profile, region, credentials
}

// loadAWS resolves the AWS configuration for o.
func (c *cli) loadAWS(ctx context.Context, o options, u *used, log *slog.Logger) (aws.Config, error) {
	cfg, info, err := awscfg.Load(ctx, awscfg.Options{Profile: o.profile, Region: o.region, Prompt: c.prompt, Logger: log, Timeouts: c.awsTimeouts})
	u.aws = info
	return cfg, err
}

// connect resolves AWS configuration and the target, starts the session
// and runs it over stdin and stdout.
func (c *cli) connect(ctx context.Context, o options, u *used, port string, log *slog.Logger) error {
	sf, err := c.prepare(ctx, o, u, log)
	if err != nil {
		return err
	}
	defer sf.close()
	if err := c.pushKey(ctx, o, u, sf.cfg, log); err != nil {
		return err
	}
	sess, err := sf.start(ctx, u, proxy.StartInput{
		Document:   o.document,
		Parameters: map[string][]string{"portNumber": {port}},
	}, proxy.Options{})
	if err != nil {
		return err
	}
	c.sessionStarted(ctx, sess, sf.cfg, o.document)
	in, out, restore := sessionStdio(c.stdin, c.stdout, log)
	defer restore()
	return sess.Run(ctx, in, out)
}

// sessionFactory starts sessions to one resolved target with what every
// session command shares: the AWS configuration, the SSM client, the
// websocket dialer, the stream hosts the user configured.
type sessionFactory struct {
	o           options
	log         *slog.Logger
	cfg         aws.Config
	api         *ssm.Client
	dialer      *websocket.Dialer
	refresh     func()
	streamHosts []string
	predialURL  string

	mu      sync.Mutex
	predial *proxy.Predial // opened ahead of the first session, until one takes it
}

// close closes what no session took.
func (sf *sessionFactory) close() {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.predial.Close()
	sf.predial = nil
}

// prepare resolves the AWS configuration and the target (u.target → u.id).
func (c *cli) prepare(ctx context.Context, o options, u *used, log *slog.Logger) (*sessionFactory, error) {
	cfg, err := c.loadAWS(ctx, o, u, log)
	if err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		return nil, errNoRegion
	}
	api := ssm.NewFromConfig(cfg)
	sf, err := newSessionFactory(ctx, o, log, cfg, api)
	if err != nil {
		return nil, err
	}
	// The system's roots load, and the messages endpoint's connection
	// opens, now: the first handshakes then wait only for the network, and
	// a name lookup and StartSession both run while the websocket's do.
	if awscfg.WarmRoots(cfg, aws.ToString(api.Options().BaseEndpoint), sf.predialURL) {
		log.Debug("loading the system's trusted roots ahead of the first TLS handshake")
	}
	sf.predial = proxy.StartPredial(ctx, sf.dialer, sf.predialURL)
	if u.id, err = (target.Resolver{API: api, Logger: log}).Resolve(ctx, u.target); err != nil {
		sf.close()
		return nil, err
	}
	return sf, nil
}

// newSessionFactory is the factory for sessions with cfg and api: the
// websocket dialer, the stream hosts the user configured, where the
// StreamUrl will point, and how to refresh credentials for a resume.
func newSessionFactory(ctx context.Context, o options, log *slog.Logger, cfg aws.Config, api *ssm.Client) (*sessionFactory, error) {
	dialer, err := awscfg.Dialer(cfg)
	if err != nil {
		return nil, err
	}
	sf := &sessionFactory{
		o: o, log: log, cfg: cfg, api: api, dialer: dialer,
		streamHosts: awscfg.StreamHosts(cfg, aws.ToString(api.Options().BaseEndpoint)),
	}
	if e, err := awscfg.DataChannelEndpoint(ctx, cfg); err == nil {
		sf.predialURL = predialURL(e)
	}
	if cc, ok := cfg.Credentials.(*aws.CredentialsCache); ok {
		sf.refresh = cc.Invalidate
	}
	return sf, nil
}

// start starts a session on the resolved target: in's Target and Reason
// and po's resume, ping, credential, logging and network settings are
// filled in from the command's where po leaves them zero.
func (sf *sessionFactory) start(ctx context.Context, u *used, in proxy.StartInput, po proxy.Options) (*proxy.Session, error) {
	// From here on a session may be open: a write to a closed stdout or
	// stderr must be an error, not a SIGPIPE that kills the process
	// before it ends the session (forward's and doctor's lines, a -v line
	// before the ProxyCommand's piping starts).
	catchSIGPIPE()
	in.Target = u.id
	if in.Reason == "" {
		in.Reason = sf.o.reason
	}
	po.ResumeBudget = cmp.Or(po.ResumeBudget, sf.o.resumeTimeout)
	po.PingInterval = cmp.Or(po.PingInterval, sf.o.ping)
	po.DeadPeerTimeout = cmp.Or(po.DeadPeerTimeout, sf.o.deadPeer)
	po.RefreshCredentials = sf.refresh
	po.StreamHosts = sf.streamHosts
	po.PredialURL = sf.predialURL
	sf.mu.Lock()
	po.Predial, sf.predial = sf.predial, nil // the first session takes it
	sf.mu.Unlock()
	po.Logger = sf.log
	po.Dialer = sf.dialer
	sess, err := proxy.Start(ctx, sf.api, sf.cfg.Credentials, sf.cfg.Region, in, po)
	if err != nil {
		return nil, explainNotConnected(ctx, sf.api, u.id, err)
	}
	return sess, nil
}

var errNoRegion = errors.New("no AWS region configured")

// notConnectedError adds what Systems Manager knows about an instance id
// to a TargetNotConnected error.
type notConnectedError struct {
	err  error
	inst *target.Instance // nil: not registered
}

func (e *notConnectedError) Error() string { return e.err.Error() }

func (e *notConnectedError) Unwrap() error { return e.err }

func (e *notConnectedError) hint(region string) string {
	if e.inst == nil {
		return fmt.Sprintf("Systems Manager does not know this instance in %s: its agent has never registered in this account and region", region)
	}
	return fmt.Sprintf("Systems Manager reports PingStatus %s, %s", e.inst.PingStatus, target.LastPing(e.inst.LastPing, time.Now()))
}

// explainNotConnected looks up an id that StartSession called not
// connected. The lookup is best effort: without
// ssm:DescribeInstanceInformation err is returned as it is.
func explainNotConnected(ctx context.Context, api target.API, id string, err error) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "TargetNotConnected" || !target.IsID(id) {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	found, lerr := target.Lookup(ctx, api, target.Query{ID: id})
	switch {
	case lerr != nil:
		return err
	case len(found) == 0:
		return &notConnectedError{err: err}
	}
	return &notConnectedError{err: err, inst: &found[0]}
}

// sessionStdio prepares ssh's stdin and stdout for the session: in the
// poller where they are pipes (pollableStdio), and then the whole process
// on one P unless GOMAXPROCS says otherwise. With no thread blocked in
// read(2) or write(2), one P is enough and nothing crosses threads.
// Measured through ssh on the emulator (BENCHMARKS.md) against two Ps: 10 %
// (upload) to 22 % (download) less CPU per byte, no less throughput, the
// same keystroke round trip. Call restore before exiting.
func sessionStdio(stdin io.Reader, stdout io.Writer, log *slog.Logger) (in io.Reader, out io.Writer, restore func()) {
	catchSIGPIPE()
	in, out, restore = pollableStdio(stdin, stdout)
	if in != stdin {
		onOneP(log, "stdin and stdout are in the poller")
	}
	return in, out, restore
}

// onOneP puts the whole process on one P unless GOMAXPROCS says otherwise,
// for a process that from now on only moves bytes between descriptors in
// the poller: a ProxyCommand's session (sessionStdio), a --share process,
// ssm-proxy forward. Measured against two Ps in BENCHMARKS.md. It is a
// variable so that an in-process test can keep its binary's Ps.
var onOneP = func(log *slog.Logger, why string) {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
		log.Debug(why + "; running on one P")
	}
}

// predialURL is where StartSession's StreamUrl is expected to point, so
// that the websocket's TCP and TLS handshakes can start while StartSession
// is in flight (proxy.Options.PredialURL): the regional messages endpoint
// (which the dialer sends to the ssmmessages override, if any), or a
// stand-in's own host. A wrong guess costs one unused connection.
func predialURL(e awscfg.Endpoint) string {
	scheme := "wss"
	if e.URL.Scheme == "http" {
		scheme = "ws"
	}
	host := e.URL.Host
	if e.ServerName != e.URL.Hostname() {
		host = e.ServerName // an override: the StreamUrl names the regional host
	}
	return scheme + "://" + host
}
