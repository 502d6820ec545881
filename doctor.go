package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/target"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
	"github.com/ssm-proxy/ssm-proxy/protocol"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// `ssm-proxy doctor [flags] TARGET [PORT]` checks, one line each, what a
// connection to TARGET needs, in the order a connection needs it: what ssh
// would run for TARGET, credentials, region, who the credentials are, the
// SSM and data-channel endpoints, the node, its agent, a session and the
// port. A check runs whenever what it needs is there, whatever failed
// before it, so that one run shows every problem it can see.

// Doctor timing.
const (
	// doctorHandshakeTimeout bounds StartSession to HandshakeComplete.
	doctorHandshakeTimeout = 30 * time.Second
	// defaultBannerWait is how long to wait for the port's first bytes
	// after the handshake. SSH servers speak first; other services may not.
	defaultBannerWait = 5 * time.Second
	// doctorResumeBudget is the session's resume budget: doctor's session
	// lives seconds.
	doctorResumeBudget = 15 * time.Second
	// doctorIdentityTimeout bounds the STS question, which only informs.
	doctorIdentityTimeout = 10 * time.Second
)

// Line marks.
const (
	markPass = "✓"
	markWarn = "!"
	markFail = "✗"
	markSkip = "-"
)

// doctor runs `ssm-proxy doctor [flags] TARGET [PORT]`: each check prints
// one line on stdout — ✓ passed, ! a warning, ✗ failed, - not checked —
// warnings and failures followed by hint lines. The exit status is
// exitError when a check failed.
func (c *cli) doctor(ctx context.Context, args []string) int {
	var o options
	var sshConfig string
	fs := c.newFlagSet("ssm-proxy doctor")
	o.flags(fs)
	fs.StringVar(&o.document, "document", defaultDocument, "")
	fs.StringVar(&o.stripPrefix, "strip-prefix", "", "")
	fs.StringVar(&o.stripSuffix, "strip-suffix", "", "")
	fs.StringVar(&sshConfig, "ssh-config", "", "")
	fs.StringVar(&sshConfig, "F", "", "")
	o.pushKeyFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	rest := fs.Args()
	portGiven := len(rest) == 2
	switch len(rest) {
	case 1:
		rest = append(rest, "22")
	case 2:
	default:
		return c.usageError(fmt.Errorf("doctor: want TARGET and optionally PORT, got %d argument(s)", len(rest)))
	}
	name, port, err := parseArgs(rest, o.stripPrefix, o.stripSuffix)
	if err != nil {
		return c.usageError(fmt.Errorf("doctor: %w", err))
	}
	ctx, sig := withSignals(ctx)
	d := &doctorRun{
		cli: c, o: o, used: &used{target: name}, port: port, log: newLogger(c.stderr, o.verbose),
		alias: rest[0], portGiven: portGiven, sshConfig: sshConfig, given: setFlags(fs),
	}
	ok := d.run(ctx)
	if n := sig(); n != 0 {
		return exitSignalsBase + n
	}
	if !ok {
		return exitError
	}
	return exitOK
}

// setFlags is the set of flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// doctorRun is the state of one doctor run.
type doctorRun struct {
	*cli
	o    options
	used *used
	port string
	log  *slog.Logger

	alias     string          // TARGET as given, what ssh would be given
	portGiven bool            // PORT was given
	sshConfig string          // --ssh-config, for ssh -F
	given     map[string]bool // flags given to doctor, which win over the ProxyCommand's

	cfg      aws.Config
	loaded   bool // cfg is loaded
	hasCreds bool // credentials were obtained
	refused  bool // STS refused the credentials: SSM will too
	api      *ssm.Client
	inst     target.Instance
	found    bool // inst is the target
	online   bool // and its agent is connected
	agentOK  bool // and new enough for SSH
	noStream bool // the data channel's host does not answer
	failed   bool // a check failed
}

// line prints one check line with its hints.
func (d *doctorRun) line(mark, check, msg string, hints []string) {
	fmt.Fprintf(d.stdout, "%s %s: %s\n", mark, check, textutil.Redact(textutil.OneLine(msg)))
	for _, h := range hints {
		fmt.Fprintf(d.stdout, "    hint: %s\n", textutil.Redact(h))
	}
}

// pass prints a ✓ line.
func (d *doctorRun) pass(check, format string, args ...any) {
	d.line(markPass, check, fmt.Sprintf(format, args...), nil)
}

// warn prints a ! line with hints: something to know that does not stop
// a connection.
func (d *doctorRun) warn(check, msg string, hints ...string) {
	d.line(markWarn, check, msg, hints)
}

// fail prints a ✗ line with hints and returns false.
func (d *doctorRun) fail(check, msg string, hints ...string) bool {
	d.failed = true
	d.line(markFail, check, msg, hints)
	return false
}

// failErr prints a ✗ line for err with the hints the proxy command would
// give, worded for doctor.
func (d *doctorRun) failErr(check string, err error) bool {
	return d.fail(check, errorText(err), doctorHints(err, d.o, d.used)...)
}

// skip prints a - line: the check cannot tell anything without what an
// earlier one did not get.
func (d *doctorRun) skip(check, reason string) bool {
	d.line(markSkip, check, "not checked: "+reason, nil)
	return true
}

// optional is check when on is true, else a check that prints nothing.
func (d *doctorRun) optional(on bool, check func(context.Context) bool) func(context.Context) bool {
	if on {
		return check
	}
	return func(context.Context) bool { return true }
}

// needsTarget runs a check that needs the node found, connected and with
// an agent for SSH; without, it is skipped.
func (d *doctorRun) needsTarget(check string, run func(context.Context) bool) func(context.Context) bool {
	return func(ctx context.Context) bool {
		switch {
		case !d.found:
			return d.skip(check, "the target was not found")
		case !d.online || !d.agentOK:
			return d.skip(check, "the node cannot take sessions (see above)")
		}
		return run(ctx)
	}
}

// run performs the checks in order and reports whether none failed.
func (d *doctorRun) run(ctx context.Context) bool {
	d.checkSSHConfig(ctx)
	for _, check := range []func(context.Context) bool{
		d.checkCredentials,
		d.checkRegion,
		d.checkIdentity,
		d.checkSSMEndpoint,
		d.checkMessagesEndpoint,
		d.checkTarget,
		d.checkPing,
		d.checkAgent,
		// Checks of optional features, each wrapped in d.needsTarget
		// when it needs the node.
		d.optional(d.o.pushKey.set, d.needsTarget("push-key", d.checkPushKey)), // pushkey.go
		d.needsTarget("session", d.checkSession),
	} {
		check(ctx)
		if ctx.Err() != nil {
			return false
		}
	}
	return !d.failed
}

// checkCredentials loads the configuration and obtains credentials from
// their source, locally where the source is local: nothing asks STS who
// they are yet.
func (d *doctorRun) checkCredentials(ctx context.Context) bool {
	const check = "credentials"
	cfg, err := d.loadAWS(ctx, d.o, d.used, d.log)
	if err != nil {
		return d.failErr(check, err)
	}
	d.cfg, d.loaded = cfg, true
	if cfg.Credentials == nil {
		return d.fail(check, "no credentials provider", "configure credentials: pass --profile or set AWS_PROFILE")
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return d.failErr(check, err)
	}
	d.hasCreds = true
	d.pass(check, "%s", d.used.aws.Credentials)
	return true
}

func (d *doctorRun) checkRegion(context.Context) bool {
	const check = "region"
	switch {
	case !d.loaded:
		return d.skip(check, "the AWS configuration did not load")
	case d.cfg.Region == "":
		return d.failErr(check, errNoRegion)
	}
	d.pass(check, "%s (from %s)", d.cfg.Region, d.used.aws.RegionFrom)
	d.api = ssm.NewFromConfig(d.cfg)
	return true
}

// checkIdentity asks STS whose the credentials are. STS that cannot be
// reached is a warning: ssm-proxy needs it only to assume roles, and a
// private subnet with only an SSM VPC endpoint is a working set-up.
func (d *doctorRun) checkIdentity(ctx context.Context) bool {
	const check = "identity"
	if !d.hasCreds {
		return d.skip(check, "no credentials")
	}
	stsCfg := d.cfg.Copy()
	if stsCfg.Region == "" {
		stsCfg.Region = "us-east-1" // STS answers identity questions anywhere
	}
	ictx, cancel := context.WithTimeout(ctx, doctorIdentityTimeout)
	defer cancel()
	out, err := sts.NewFromConfig(stsCfg).GetCallerIdentity(ictx, &sts.GetCallerIdentityInput{})
	var ae smithy.APIError
	var ee *awscfg.EndpointError
	switch {
	case err == nil:
		d.pass(check, "%s (account %s)", aws.ToString(out.Arn), aws.ToString(out.Account))
		return true
	case errors.As(err, &ee):
		hs := doctorHints(err, d.o, d.used)
		hs = append(hs, "ssm-proxy needs STS only to assume a role; the checks below do not")
		d.warn(check, errorText(err), hs...)
		return true
	case errors.As(err, &ae):
		d.refused = true
		return d.failErr(check, err)
	}
	d.warn(check, errorText(err), doctorHints(err, d.o, d.used)...)
	return true
}

// checkSSMEndpoint checks that the SSM API's endpoint answers.
func (d *doctorRun) checkSSMEndpoint(ctx context.Context) bool {
	const check = "ssm endpoint"
	if !d.loaded {
		return d.skip(check, "the AWS configuration did not load")
	}
	if d.cfg.Region == "" {
		return d.skip(check, "no region")
	}
	e, err := awscfg.SSMEndpoint(ctx, d.cfg)
	if err != nil {
		return d.failErr(check, err)
	}
	return d.probe(ctx, check, e)
}

// checkMessagesEndpoint checks that the data channel's host answers: every
// session's websocket goes there.
func (d *doctorRun) checkMessagesEndpoint(ctx context.Context) bool {
	const check = "ssmmessages endpoint"
	if !d.loaded {
		return d.skip(check, "the AWS configuration did not load")
	}
	if d.cfg.Region == "" {
		return d.skip(check, "no region")
	}
	e, err := awscfg.DataChannelEndpoint(ctx, d.cfg)
	if err != nil {
		d.noStream = true
		return d.fail(check, err.Error(), "AWS_ENDPOINT_URL_SSMMESSAGES must be a URL such as https://vpce-0123-abcd.ssmmessages."+d.cfg.Region+".vpce.amazonaws.com")
	}
	if !d.probe(ctx, check, e) {
		d.noStream = true
		return false
	}
	return true
}

// probe checks one endpoint and prints its line.
func (d *doctorRun) probe(ctx context.Context, check string, e awscfg.Endpoint) bool {
	r := awscfg.Probe(ctx, d.cfg, e, d.awsTimeouts)
	from := "the default"
	if e.Setting != "" {
		from = e.Setting
	}
	if r.Err == nil {
		var steps []string
		switch {
		case r.Proxy != "":
			steps = append(steps, "CONNECT through "+r.Proxy)
		default:
			steps = append(steps, "resolves to "+strings.Join(r.Addrs, ", "), "TCP connects")
		}
		if r.TLS {
			steps = append(steps, "TLS verified")
		} else {
			steps = append(steps, "plain "+e.URL.Scheme)
		}
		if took := r.Took.Round(time.Millisecond); took > 0 {
			steps = append(steps, took.String())
		}
		d.pass(check, "%s (%s): %s", r.Addr, from, strings.Join(steps, ", "))
		return true
	}
	return d.fail(check, fmt.Sprintf("%s (%s): %s failed: %v", r.Addr, from, r.Step, r.Err), probeHints(e, r)...)
}

// probeHints explains an endpoint that does not answer.
func probeHints(e awscfg.Endpoint, r awscfg.ProbeResult) []string {
	variable := settingOr(e.Setting, "AWS_ENDPOINT_URL_SSM")
	private := "from a private subnet, use an interface VPC endpoint for ssm with private DNS (its security group allowing HTTPS from here), or set AWS_ENDPOINT_URL_SSM to its DNS name; or allow HTTPS egress; behind a proxy, set HTTPS_PROXY"
	if e.Service == "ssmmessages" {
		variable = settingOr(e.Setting, awscfg.EndpointEnvSSMMessages)
		private = "every session's websocket goes here: from a private subnet, use an interface VPC endpoint for ssmmessages with private DNS (its security group allowing HTTPS from here), or set AWS_ENDPOINT_URL_SSMMESSAGES to its DNS name; or allow HTTPS egress; behind a proxy, set HTTPS_PROXY"
	}
	var pe *awscfg.ProxyError
	switch {
	case r.Step == awscfg.StepProxy && errors.As(r.Err, &pe):
		return []string{proxyHint(pe.ProxyVariable(), r.Addr)}
	case r.Step == awscfg.StepProxy:
		return []string{proxyHint("", r.Addr)}
	case r.Step == awscfg.StepTLS && isUntrusted(r.Err):
		return []string{hintCABundle}
	case r.Step == awscfg.StepTLS:
		return []string{fmt.Sprintf("the TLS handshake with %s (server name %s) failed: a proxy or firewall that intercepts TLS needs AWS_CA_BUNDLE; an http:// endpoint written as https:// in %s does not speak TLS", r.Addr, e.ServerName, variable)}
	case e.Setting != "":
		return []string{fmt.Sprintf("%s points %s at %s: check that it is right, and that this host may reach it (a VPC endpoint's security group must allow HTTPS from here)", e.Setting, e.Service, r.Addr)}
	}
	return []string{private}
}

// checkTarget finds the target in Systems Manager's inventory.
func (d *doctorRun) checkTarget(ctx context.Context) bool {
	const check = "target"
	q, err := target.Parse(d.used.target)
	switch {
	case err != nil:
		return d.failErr(check, err)
	case strings.HasPrefix(q.ID, "ecs:"):
		d.inst = target.Instance{ID: q.ID, PingStatus: target.PingOnline}
		d.found, d.online, d.agentOK = true, true, true
		d.pass(check, "%s is an ECS task; registration, ping and agent are not checked", q.ID)
		return true
	case !d.hasCreds:
		return d.skip(check, "no credentials")
	case d.api == nil:
		return d.skip(check, "no region")
	case d.refused:
		return d.skip(check, "the credentials were refused")
	}
	found, err := target.Lookup(ctx, d.api, q)
	switch {
	case err != nil:
		return d.failErr(check, err)
	case len(found) == 0 && q.ID != "":
		return d.fail(check, fmt.Sprintf("%s is not registered with Systems Manager in %s", q.ID, d.cfg.Region),
			hintInstanceProfile, hintEndpoints,
			fmt.Sprintf("check the region and account: the instance must be in %s, seen with %s", d.cfg.Region, d.used.aws.Credentials))
	case len(found) == 0:
		return d.failErr(check, &target.NotFoundError{Query: q, Near: target.Suggest(ctx, d.api, q)})
	case len(found) > 1:
		return d.failErr(check, &target.AmbiguousError{Query: q, Matches: found})
	}
	d.inst, d.found = found[0], true
	d.used.id = d.inst.ID
	what := d.inst.ID
	if q.ID == "" {
		what = fmt.Sprintf("%s is %s", q, d.inst.ID)
	}
	var about []string
	for _, s := range []string{d.inst.ResourceType, d.inst.Platform, d.inst.ComputerName} {
		if s != "" {
			about = append(about, s)
		}
	}
	d.pass(check, "%s, registered with Systems Manager (%s)", what, strings.Join(about, ", "))
	return true
}

func (d *doctorRun) checkPing(context.Context) bool {
	const check = "ping status"
	switch {
	case !d.found:
		return d.skip(check, "the target was not found")
	case strings.HasPrefix(d.inst.ID, "ecs:"):
		return true
	}
	last := target.LastPing(d.inst.LastPing, time.Now())
	if d.inst.PingStatus != target.PingOnline {
		return d.fail(check, fmt.Sprintf("%s, %s", d.inst.PingStatus, last), notOnlineHints(d.inst)...)
	}
	d.online = true
	d.pass(check, "%s, %s", d.inst.PingStatus, last)
	return true
}

func (d *doctorRun) checkAgent(context.Context) bool {
	const check = "agent version"
	v := d.inst.AgentVersion
	switch {
	case !d.found:
		return d.skip(check, "the target was not found")
	case strings.HasPrefix(d.inst.ID, "ecs:"):
		return true
	case v == "":
		d.pass(check, "not reported (SSH needs %s or later)", protocol.AgentVersionPort)
	case protocol.CompareAgentVersions(v, protocol.AgentVersionPort) < 0:
		return d.fail(check, fmt.Sprintf("%s is too old for SSH sessions (needs %s or later)", v, protocol.AgentVersionPort), hintAgentUpdate)
	default:
		d.pass(check, "%s (SSH needs %s or later)", v, protocol.AgentVersionPort)
	}
	d.agentOK = true
	return true
}

// checkSession starts a session, waits for the handshake and then for the
// port's first bytes, and ends the session.
func (d *doctorRun) checkSession(ctx context.Context) bool {
	if d.noStream {
		return d.skip("session", "the data channel's host does not answer (see above)")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The session the ProxyCommand would start, bar the timing.
	sf, err := newSessionFactory(ctx, d.o, d.log, d.cfg, d.api)
	if err != nil {
		return d.failErr("session", err)
	}
	handshake := make(chan struct{})
	var once sync.Once
	sess, err := sf.start(ctx, &used{id: d.inst.ID}, proxy.StartInput{
		Document:   d.o.document,
		Reason:     "ssm-proxy doctor",
		Parameters: map[string][]string{"portNumber": {d.port}},
	}, proxy.Options{
		ResumeBudget:     doctorResumeBudget,
		HandshakeTimeout: doctorHandshakeTimeout,
		OnEvent: func(ev proxy.Event) {
			if ev.Kind == proxy.EventHandshakeComplete {
				once.Do(func() { close(handshake) })
			}
		},
	})
	if err != nil {
		return d.failErr("session", err)
	}
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	banner := newBannerWriter()
	var runErr error // set before done is closed
	done := make(chan struct{})
	go func() {
		runErr = sess.Run(ctx, stdin, banner)
		close(done)
	}()
	defer func() {
		cancel() // Run ends the session on the AWS side before returning
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}()

	select {
	case <-handshake:
		d.pass("session", "started %s; handshake complete", sess.ID())
	case <-done:
		err := runErr
		if err == nil {
			err = errors.New("the session ended before the handshake completed")
		}
		return d.failErr("session", err)
	case <-ctx.Done():
		return d.fail("session", ctx.Err().Error())
	}

	check := "port " + d.port
	wait := d.bannerWait
	if wait <= 0 {
		wait = defaultBannerWait
	}
	select {
	case <-banner.got:
		d.pass(check, "answers: %s", banner.line())
	case <-done:
		err := runErr
		var re *proxy.RemoteError
		if errors.As(err, &re) {
			return d.fail(check, fmt.Sprintf("the agent could not connect to it: %s", re.Output), remoteHints(re)...)
		}
		if err != nil {
			return d.failErr(check, err)
		}
		return d.fail(check, "the connection was closed without a byte sent",
			"the service on the port closed the connection at once; check its logs on the instance")
	case <-time.After(wait):
		d.pass(check, "the agent connected; nothing received within %s (not an SSH server?)", wait)
	case <-ctx.Done():
		return d.fail(check, ctx.Err().Error())
	}
	return true
}

// bannerWriter keeps the first bytes the port sends and signals their
// arrival. It is the session's stdout.
type bannerWriter struct {
	mu   sync.Mutex
	buf  []byte
	got  chan struct{}
	once sync.Once
}

func newBannerWriter() *bannerWriter { return &bannerWriter{got: make(chan struct{})} }

// maxBanner bounds what is kept of the port's output.
const maxBanner = 200

func (b *bannerWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	if n := maxBanner - len(b.buf); n > 0 {
		b.buf = append(b.buf, p[:min(n, len(p))]...)
	}
	b.mu.Unlock()
	b.once.Do(func() { close(b.got) })
	return len(p), nil
}

// line is the first line received, printable characters only.
func (b *bannerWriter) line() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	first, _, _ := bytes.Cut(b.buf, []byte("\n"))
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, string(first))
}

// What ssh would do: `ssh -G ALIAS` prints the configuration ssh would
// use for ALIAS, with Match, Include, HostName and its tokens resolved. It
// is the authority on which ProxyCommand runs, so doctor checks what that
// ProxyCommand would connect to: `doctor prod-web-1` with
// `ProxyCommand ssm-proxy --strip-prefix prod- %h %p` checks web-1.

// sshTimeout bounds `ssh -G`.
const sshTimeout = 5 * time.Second

// sshHost is what `ssh -G` says for one alias.
type sshHost struct {
	hostname, port, user    string
	proxyCommand, proxyJump string // "" for none
}

// sshG runs `ssh -G [-F file] alias`.
func sshG(ctx context.Context, file, alias string) (sshHost, error) {
	args := []string{"-G"}
	if file != "" {
		args = append(args, "-F", file)
	}
	ctx, cancel := context.WithTimeout(ctx, sshTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(args, alias)...)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return sshHost{}, fmt.Errorf("ssh -G %s: %w: %s", alias, err, textutil.OneLine(stderr.String()))
	}
	var h sshHost
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		switch v = strings.TrimSpace(v); strings.ToLower(k) {
		case "hostname":
			h.hostname = v
		case "port":
			h.port = v
		case "user":
			h.user = v
		case "proxycommand":
			h.proxyCommand = v
		case "proxyjump":
			h.proxyJump = v
		}
	}
	if strings.EqualFold(h.proxyCommand, "none") {
		h.proxyCommand = ""
	}
	if strings.EqualFold(h.proxyJump, "none") {
		h.proxyJump = ""
	}
	return h, nil
}

// checkSSHConfig asks ssh what it would run for the alias and, when that
// is ssm-proxy, takes TARGET, PORT and the flags doctor was not given
// from its ProxyCommand. Without ssh it checks the target as given.
func (d *doctorRun) checkSSHConfig(ctx context.Context) bool {
	const check = "ssh config"
	h, err := sshG(ctx, d.sshConfig, d.alias)
	if err != nil {
		if d.sshConfig != "" {
			return d.fail(check, err.Error(), "check the file given with --ssh-config")
		}
		d.log.Debug("not reading the ssh configuration", "err", err)
		return true
	}
	pc := h.proxyCommand
	args, isOurs := ssmProxyArgs(pc)
	switch {
	case isOurs:
		return d.fromProxyCommand(check, h, pc, args)
	case pc != "":
		d.warn(check, fmt.Sprintf("ssh %s runs ProxyCommand %s, not ssm-proxy; checking %s as ssm-proxy would reach it", d.alias, pc, d.used.target),
			"`ssm-proxy ssh-config --install` writes a Host block that uses ssm-proxy (with --replace it swaps an `aws ssm start-session` block for it)")
	case h.proxyJump != "":
		d.warn(check, fmt.Sprintf("ssh %s jumps through %s (ProxyJump); checking %s as ssm-proxy would reach it", d.alias, h.proxyJump, d.used.target),
			"with ProxyJump, each hop that is reached through Session Manager needs its own ProxyCommand through ssm-proxy")
	default:
		d.warn(check, fmt.Sprintf("ssh %s would connect to %s:%s directly: no ProxyCommand applies; checking %s as ssm-proxy would reach it", d.alias, h.hostname, h.port, d.used.target),
			"`ssm-proxy ssh-config --install` adds a Host block for i-* and mi-* with ProxyCommand ssm-proxy; add the name to it, or use the instance id")
	}
	return true
}

// fromProxyCommand applies an ssm-proxy ProxyCommand's arguments.
func (d *doctorRun) fromProxyCommand(check string, h sshHost, pc string, args []string) bool {
	flags, pos := proxyCommandFlags(args)
	for name, set := range map[string]*string{
		"profile": &d.o.profile, "region": &d.o.region, "document": &d.o.document,
		"strip-prefix": &d.o.stripPrefix, "strip-suffix": &d.o.stripSuffix,
	} {
		if v, ok := flags[name]; ok && !d.given[name] {
			*set = v
		}
	}
	expand := func(s string) string {
		r := strings.NewReplacer("%%", "%", "%h", h.hostname, "%n", d.alias, "%p", h.port, "%r", h.user)
		return r.Replace(s)
	}
	// A keyless ProxyCommand is checked as keyless: the push with the OS
	// user ssh would log in as (%r).
	if v, ok := flags["push-key"]; ok && !d.given["push-key"] {
		if v == "" {
			v = "true"
		}
		d.o.pushKey.Set(v)
	}
	if v, ok := flags["os-user"]; ok && !d.given["os-user"] {
		d.o.osUser = expand(v)
	}
	if len(pos) != 2 {
		return d.fail(check, fmt.Sprintf("ssh %s runs ProxyCommand %s, which does not give ssm-proxy TARGET and PORT", d.alias, pc),
			"the ProxyCommand must end with the target and the port, e.g. `ssm-proxy %h %p`")
	}
	name := strings.TrimSuffix(strings.TrimPrefix(expand(pos[0]), d.o.stripPrefix), d.o.stripSuffix)
	if name == "" {
		return d.fail(check, fmt.Sprintf("ssh %s runs ProxyCommand %s, which gives ssm-proxy an empty TARGET", d.alias, pc))
	}
	d.used.target = name
	if !d.portGiven {
		d.port = expand(pos[1])
	}
	what := fmt.Sprintf("target %s, port %s", name, d.port)
	for _, f := range []struct{ name, value string }{{"profile", d.o.profile}, {"region", d.o.region}, {"os-user", d.o.osUser}} {
		if f.value != "" && !d.given[f.name] {
			what += fmt.Sprintf(", %s %s", f.name, f.value)
		}
	}
	if d.o.pushKey.set && !d.given["push-key"] {
		what += ", pushing a key (--push-key)"
	}
	d.pass(check, "ssh %s runs ProxyCommand %s: checking %s", d.alias, pc, what)
	return true
}

// ssmProxyArgs splits a ProxyCommand and, when it runs ssm-proxy (by any
// path, with or without exec), returns ssm-proxy's arguments.
func ssmProxyArgs(pc string) ([]string, bool) {
	words, ok := splitWords(pc)
	if !ok || len(words) == 0 {
		return nil, false
	}
	if words[0] == "exec" {
		words = words[1:]
	}
	if len(words) == 0 {
		return nil, false
	}
	base := words[0][strings.LastIndexAny(words[0], `/\`)+1:]
	if base != "ssm-proxy" && !strings.EqualFold(base, "ssm-proxy.exe") {
		return nil, false
	}
	return words[1:], true
}

// valueFlags are the proxy command's flags that take a value.
var valueFlags = map[string]bool{
	"profile": true, "region": true, "document": true, "reason": true,
	"strip-prefix": true, "strip-suffix": true, "resume-timeout": true,
	"ping-interval": true, "dead-peer-timeout": true, "os-user": true,
}

// proxyCommandFlags separates ssm-proxy's flags (as the flag package reads
// them: -x or --x, =value or the next word) from its positional arguments.
func proxyCommandFlags(args []string) (map[string]string, []string) {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, args[i+1:]
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			return flags, args[i:]
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasValue && valueFlags[name] && i+1 < len(args) {
			i++
			value = args[i]
		}
		flags[name] = value
	}
	return flags, nil
}

// splitWords splits s into words as a POSIX shell would for a simple
// command: blanks separate, '…' and "…" quote, \ escapes. It reports false
// for an unterminated quote.
func splitWords(s string) ([]string, bool) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, false
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, true
}
