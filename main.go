// Command ssm-proxy is an OpenSSH ProxyCommand that reaches instances
// through AWS Systems Manager Session Manager, without the AWS CLI or the
// session-manager-plugin:
//
//	Host i-* mi-*
//	    ProxyCommand ssm-proxy %h %p
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// Version is set with -ldflags "-X main.Version=…"; otherwise the module
// version from the build info is used.
var Version = ""

const usage = `Usage: ssm-proxy [flags] TARGET PORT

Connects stdin/stdout to PORT on TARGET through AWS Systems Manager Session
Manager (document AWS-StartSSHSession). Meant as an OpenSSH ProxyCommand:

    Host i-* mi-*
        ProxyCommand ssm-proxy %h %p

TARGET is an instance id (i-…) or managed node id (mi-…).

Flags:
    --profile NAME         AWS shared-config profile (default: $AWS_PROFILE)
    --region REGION        AWS region (default: $AWS_REGION or the profile's)
    --document NAME        session document (default AWS-StartSSHSession)
    --reason TEXT          reason recorded with the session
    --resume-timeout DUR   how long to keep trying to restore a lost
                           connection before giving up (default 2m)
    --ping-interval DUR    websocket keep-alive ping interval (default 15s)
    --dead-peer-timeout DUR  treat the connection as lost when nothing has
                           arrived for this long (default 40s)
    -v, --verbose          diagnostics on stderr
    --version              print the version and exit
    -h, --help             this help

Credentials, region and endpoints come from the AWS SDK's usual sources
(AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_SSM, ~/.aws/config, SSO, …).

Exit status: 0 session ended normally; 1 error; 2 bad usage; 3 session ended
by the remote side with an error; 4 session timed out for inactivity;
5 connection lost and not restored; 128+N killed by signal N.
`

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitRemote      = 3
	exitIdle        = 4
	exitLost        = 5
	exitSignalsBase = 128
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type options struct {
	profile, region, document, reason string
	resumeTimeout, ping, deadPeer     time.Duration
	verbose, version                  bool
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("ssm-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { io.WriteString(stderr, usage) }
	fs.StringVar(&o.profile, "profile", "", "")
	fs.StringVar(&o.region, "region", "", "")
	fs.StringVar(&o.document, "document", "AWS-StartSSHSession", "")
	fs.StringVar(&o.reason, "reason", "", "")
	fs.DurationVar(&o.resumeTimeout, "resume-timeout", 2*time.Minute, "")
	fs.DurationVar(&o.ping, "ping-interval", 15*time.Second, "")
	fs.DurationVar(&o.deadPeer, "dead-peer-timeout", 40*time.Second, "")
	fs.BoolVar(&o.verbose, "v", false, "")
	fs.BoolVar(&o.verbose, "verbose", false, "")
	fs.BoolVar(&o.version, "version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if o.version {
		fmt.Fprintln(stdout, "ssm-proxy", version())
		return exitOK
	}
	target, port, err := parseArgs(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "ssm-proxy: error: %v\n", err)
		io.WriteString(stderr, usage)
		return exitUsage
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, sig := withSignals(ctx)
	err = connect(ctx, o, target, port, stdin, stdout, log)
	if n := sig(); n != 0 {
		return exitSignalsBase + n
	}
	if err == nil {
		return exitOK
	}
	reportError(stderr, err, o, target)
	return exitCode(err)
}

// parseArgs validates TARGET and PORT (ssh's %h %p).
func parseArgs(args []string) (target, port string, err error) {
	if len(args) != 2 {
		return "", "", fmt.Errorf("want TARGET and PORT, got %d argument(s)", len(args))
	}
	target, port = args[0], args[1]
	if target == "" {
		return "", "", errors.New("empty TARGET")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", fmt.Errorf("invalid PORT %q: want a number from 1 to 65535", port)
	}
	return target, port, nil
}

// connect resolves AWS configuration, starts the session and runs it.
func connect(ctx context.Context, o options, target, port string, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	var loadOpts []func(*config.LoadOptions) error
	if o.profile != "" {
		loadOpts = append(loadOpts, config.WithSharedConfigProfile(o.profile))
	}
	if o.region != "" {
		loadOpts = append(loadOpts, config.WithRegion(o.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return errNoRegion
	}
	var refresh func()
	if c, ok := cfg.Credentials.(*aws.CredentialsCache); ok {
		refresh = c.Invalidate
	}
	api := ssm.NewFromConfig(cfg)
	sess, err := proxy.Start(ctx, api, cfg.Credentials, cfg.Region, proxy.StartInput{
		Target:     target,
		Document:   o.document,
		Reason:     o.reason,
		Parameters: map[string][]string{"portNumber": {port}},
	}, proxy.Options{
		ResumeBudget:       o.resumeTimeout,
		PingInterval:       o.ping,
		DeadPeerTimeout:    o.deadPeer,
		RefreshCredentials: refresh,
		Logger:             log,
	})
	if err != nil {
		return err
	}
	log.Debug("connecting", "session", sess.ID(), "region", cfg.Region)
	return sess.Run(ctx, stdin, stdout)
}

var errNoRegion = errors.New("no AWS region configured")

// withSignals cancels ctx on SIGINT, SIGTERM or SIGHUP (ssh sends SIGHUP to
// its ProxyCommand when it exits) and reports which signal arrived.
func withSignals(ctx context.Context) (context.Context, func() int) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	got := make(chan int, 1)
	go func() {
		select {
		case s := <-ch:
			got <- int(s.(syscall.Signal))
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() int {
		signal.Stop(ch)
		select {
		case n := <-got:
			return n
		default:
			return 0
		}
	}
}

func exitCode(err error) int {
	var re *proxy.RemoteError
	var le *proxy.ResumeError
	switch {
	case errors.Is(err, proxy.ErrIdleTimeout):
		return exitIdle
	case errors.As(err, &re):
		return exitRemote
	case errors.As(err, &le), errors.Is(err, proxy.ErrSessionEnded):
		return exitLost
	}
	return exitError
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// reportError prints err as one `ssm-proxy: error:` line plus hints.
func reportError(w io.Writer, err error, o options, target string) {
	fmt.Fprintf(w, "ssm-proxy: error: %s\n", strings.TrimSpace(oneLine(err.Error())))
	for _, h := range hints(err, o, target) {
		fmt.Fprintf(w, "ssm-proxy: hint: %s\n", h)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
