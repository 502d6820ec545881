package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/target"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
	"github.com/ssm-proxy/ssm-proxy/protocol"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// Doctor timing.
const (
	// doctorHandshakeTimeout bounds StartSession to HandshakeComplete.
	doctorHandshakeTimeout = 30 * time.Second
	// defaultBannerWait is how long to wait for the port's first bytes
	// after the handshake. SSH servers speak first; other services may not.
	defaultBannerWait = 5 * time.Second
)

// doctor runs `ssm-proxy doctor [flags] TARGET [PORT]`: each check prints
// one ✓ or ✗ line on stdout, a failed one followed by hint lines, and the
// first failure ends the run with exitError.
func (c *cli) doctor(ctx context.Context, args []string) int {
	var o options
	fs := c.newFlagSet("ssm-proxy doctor")
	o.flags(fs)
	fs.StringVar(&o.document, "document", "AWS-StartSSHSession", "")
	fs.StringVar(&o.stripPrefix, "strip-prefix", "", "")
	fs.StringVar(&o.stripSuffix, "strip-suffix", "", "")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	rest := fs.Args()
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
	d := &doctorRun{cli: c, o: o, used: &used{target: name}, port: port, log: newLogger(c.stderr, o.verbose)}
	ok := d.run(ctx)
	if n := sig(); n != 0 {
		return exitSignalsBase + n
	}
	if !ok {
		return exitError
	}
	return exitOK
}

// doctorRun is the state of one doctor run.
type doctorRun struct {
	*cli
	o    options
	used *used
	port string
	log  *slog.Logger

	cfg  aws.Config
	api  *ssm.Client
	inst target.Instance
}

// pass prints a ✓ line.
func (d *doctorRun) pass(check, format string, args ...any) {
	fmt.Fprintf(d.stdout, "✓ %s: %s\n", check, fmt.Sprintf(format, args...))
}

// fail prints a ✗ line with hints and returns false.
func (d *doctorRun) fail(check, msg string, hints ...string) bool {
	fmt.Fprintf(d.stdout, "✗ %s: %s\n", check, textutil.OneLine(msg))
	for _, h := range hints {
		fmt.Fprintf(d.stdout, "    hint: %s\n", h)
	}
	return false
}

// failErr prints a ✗ line for err with the hints the proxy command would
// give.
func (d *doctorRun) failErr(check string, err error) bool {
	return d.fail(check, errorText(err), hints(err, d.o, d.used)...)
}

// run performs the checks in order and reports whether all passed.
func (d *doctorRun) run(ctx context.Context) bool {
	for _, check := range []func(context.Context) bool{
		d.checkCredentials, d.checkRegion, d.checkTarget, d.checkPing, d.checkAgent, d.checkSession,
	} {
		if !check(ctx) {
			return false
		}
	}
	return true
}

// checkCredentials resolves credentials and asks STS whose they are.
func (d *doctorRun) checkCredentials(ctx context.Context) bool {
	const check = "credentials"
	cfg, err := d.loadAWS(ctx, d.o, d.used, d.log)
	if err != nil {
		return d.failErr(check, err)
	}
	d.cfg = cfg
	stsCfg := cfg.Copy()
	if stsCfg.Region == "" {
		stsCfg.Region = "us-east-1" // STS answers identity questions anywhere
	}
	out, err := sts.NewFromConfig(stsCfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return d.failErr(check, err)
	}
	d.pass(check, "%s (account %s), from %s", aws.ToString(out.Arn), aws.ToString(out.Account), d.used.aws.Credentials)
	return true
}

func (d *doctorRun) checkRegion(context.Context) bool {
	if d.cfg.Region == "" {
		return d.failErr("region", errNoRegion)
	}
	d.pass("region", "%s (from %s)", d.cfg.Region, d.used.aws.RegionFrom)
	d.api = ssm.NewFromConfig(d.cfg)
	return true
}

// checkTarget finds the target in Systems Manager's inventory.
func (d *doctorRun) checkTarget(ctx context.Context) bool {
	const check = "target"
	q, err := target.Parse(d.used.target)
	if err != nil {
		return d.failErr(check, err)
	}
	if strings.HasPrefix(q.ID, "ecs:") {
		d.inst = target.Instance{ID: q.ID, PingStatus: target.PingOnline}
		d.pass(check, "%s is an ECS task; registration, ping and agent are not checked", q.ID)
		return true
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
		return d.failErr(check, &target.NotFoundError{Query: q})
	case len(found) > 1:
		return d.failErr(check, &target.AmbiguousError{Query: q, Matches: found})
	}
	d.inst = found[0]
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
	if strings.HasPrefix(d.inst.ID, "ecs:") {
		return true
	}
	last := target.LastPing(d.inst.LastPing, time.Now())
	if d.inst.PingStatus != target.PingOnline {
		return d.fail("ping status", fmt.Sprintf("%s, %s", d.inst.PingStatus, last), notOnlineHints(d.inst)...)
	}
	d.pass("ping status", "%s, %s", d.inst.PingStatus, last)
	return true
}

func (d *doctorRun) checkAgent(context.Context) bool {
	const check = "agent version"
	v := d.inst.AgentVersion
	switch {
	case strings.HasPrefix(d.inst.ID, "ecs:"):
		return true
	case v == "":
		d.pass(check, "not reported (SSH needs %s or later)", protocol.AgentVersionPort)
	case protocol.CompareAgentVersions(v, protocol.AgentVersionPort) < 0:
		return d.fail(check, fmt.Sprintf("%s is too old for SSH sessions (needs %s or later)", v, protocol.AgentVersionPort), hintAgentUpdate)
	default:
		d.pass(check, "%s (SSH needs %s or later)", v, protocol.AgentVersionPort)
	}
	return true
}

// checkSession starts a session, waits for the handshake and then for the
// port's first bytes, and ends the session.
func (d *doctorRun) checkSession(ctx context.Context) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dialer, err := awscfg.Dialer(d.cfg)
	if err != nil {
		return d.failErr("session", err)
	}
	handshake := make(chan struct{})
	var once sync.Once
	sess, err := proxy.Start(ctx, d.api, d.cfg.Credentials, d.cfg.Region, proxy.StartInput{
		Target:     d.inst.ID,
		Document:   d.o.document,
		Reason:     "ssm-proxy doctor",
		Parameters: map[string][]string{"portNumber": {d.port}},
	}, proxy.Options{
		ResumeBudget:     15 * time.Second,
		HandshakeTimeout: doctorHandshakeTimeout,
		StreamHosts:      awscfg.StreamHosts(d.cfg, aws.ToString(d.api.Options().BaseEndpoint)),
		Logger:           d.log,
		Dialer:           dialer,
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
	case <-time.After(doctorHandshakeTimeout):
		return d.fail("session", fmt.Sprintf("started %s, but no handshake within %s", sess.ID(), doctorHandshakeTimeout),
			"the agent on the instance must reach ssmmessages.REGION.amazonaws.com on port 443 (interface endpoint or egress)")
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
