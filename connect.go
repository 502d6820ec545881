package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/target"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// The ProxyCommand: `ssm-proxy [flags] TARGET PORT` connects ssh's stdin and
// stdout to PORT on TARGET through one Session Manager session.

// proxyCommand runs `ssm-proxy [flags] TARGET PORT`, the ProxyCommand.
func (c *cli) proxyCommand(ctx context.Context, args []string) int {
	var o options
	fs := c.newFlagSet("ssm-proxy")
	o.flags(fs)
	fs.StringVar(&o.document, "document", "AWS-StartSSHSession", "")
	fs.StringVar(&o.reason, "reason", "", "")
	fs.StringVar(&o.stripPrefix, "strip-prefix", "", "")
	fs.StringVar(&o.stripSuffix, "strip-suffix", "", "")
	fs.DurationVar(&o.resumeTimeout, "resume-timeout", 2*time.Minute, "")
	fs.DurationVar(&o.ping, "ping-interval", 15*time.Second, "")
	fs.DurationVar(&o.deadPeer, "dead-peer-timeout", 40*time.Second, "")
	fs.BoolVar(&o.version, "version", false, "")
	o.pushKeyFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if o.version {
		fmt.Fprintln(c.stdout, "ssm-proxy", version())
		return exitOK
	}
	name, port, err := parseArgs(fs.Args(), o.stripPrefix, o.stripSuffix)
	if err != nil {
		return c.usageError(err)
	}
	log := newLogger(c.stderr, o.verbose)

	ctx, sig := withSignals(ctx)
	used := &used{target: name}
	err = c.connect(ctx, o, used, port, log)
	if n := sig(); n != 0 {
		return exitSignalsBase + n
	}
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	reportError(c.stderr, err, o, used, code == exitError)
	return code
}

// parseArgs validates TARGET and PORT (ssh's %h %p) and strips prefix and
// suffix from TARGET.
func parseArgs(args []string, prefix, suffix string) (target, port string, err error) {
	if len(args) != 2 {
		return "", "", fmt.Errorf("want TARGET and PORT, got %d argument(s)", len(args))
	}
	target, port = strings.TrimSuffix(strings.TrimPrefix(args[0], prefix), suffix), args[1]
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
// and runs it.
func (c *cli) connect(ctx context.Context, o options, u *used, port string, log *slog.Logger) error {
	cfg, err := c.loadAWS(ctx, o, u, log)
	if err != nil {
		return err
	}
	if cfg.Region == "" {
		return errNoRegion
	}
	api := ssm.NewFromConfig(cfg)
	if u.id, err = (target.Resolver{API: api, Logger: log}).Resolve(ctx, u.target); err != nil {
		return err
	}
	dialer, err := awscfg.Dialer(cfg)
	if err != nil {
		return err
	}
	if err := c.pushKey(ctx, o, u, cfg, log); err != nil {
		return err
	}
	var refresh func()
	if cc, ok := cfg.Credentials.(*aws.CredentialsCache); ok {
		refresh = cc.Invalidate
	}
	sess, err := proxy.Start(ctx, api, cfg.Credentials, cfg.Region, proxy.StartInput{
		Target:     u.id,
		Document:   o.document,
		Reason:     o.reason,
		Parameters: map[string][]string{"portNumber": {port}},
	}, proxy.Options{
		ResumeBudget:       o.resumeTimeout,
		PingInterval:       o.ping,
		DeadPeerTimeout:    o.deadPeer,
		RefreshCredentials: refresh,
		Logger:             log,
		Dialer:             dialer,
	})
	if err != nil {
		return explainNotConnected(ctx, api, u.id, err)
	}
	log.Debug("connecting", "session", sess.ID(), "target", u.id, "region", cfg.Region)
	in, out, restore := sessionStdio(c.stdin, c.stdout, log)
	defer restore()
	return sess.Run(ctx, in, out)
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
	in, out, restore = pollableStdio(stdin, stdout)
	if in != stdin && os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
		log.Debug("stdin and stdout are in the poller; running on one P")
	}
	return in, out, restore
}
