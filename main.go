// Command ssm-proxy is an OpenSSH ProxyCommand that reaches instances
// through AWS Systems Manager Session Manager, without the AWS CLI or the
// session-manager-plugin:
//
//	Host i-* mi-*
//	    ProxyCommand ssm-proxy %h %p
//
// `ssm-proxy doctor TARGET` diagnoses a target that cannot be reached and
// `ssm-proxy ssh-config` prints (or installs) the ssh_config block.
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
	"syscall"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// Version is set with -ldflags "-X main.Version=…"; otherwise the module
// version from the build info is used.
var Version = ""

const usage = `Usage: ssm-proxy [flags] TARGET PORT
       ssm-proxy doctor [flags] TARGET [PORT]
       ssm-proxy ssh-config [--install [--file PATH]] [flags]

Connects stdin/stdout to PORT on TARGET through AWS Systems Manager Session
Manager (document AWS-StartSSHSession). Meant as an OpenSSH ProxyCommand:

    Host i-* mi-*
        ProxyCommand ssm-proxy %h %p
    Host *.ssm
        ProxyCommand ssm-proxy --strip-suffix .ssm %n %p

TARGET is an instance id (i-…), a managed node id (mi-…), the value of a
Name tag (web-1), or tag:Key=Value. Names and tags are looked up with
ssm:DescribeInstanceInformation and must match one online node.

doctor checks, one line each, what a connection to TARGET needs:
credentials, region, registration, ping status, agent version, session
and port. ssh-config prints the ssh_config block; --install adds it to
~/.ssh/config (or PATH) unless an equivalent block is there, keeping a
backup; --profile and --region are written into its ProxyCommand.

Flags:
    --profile NAME         AWS shared-config profile (default: $AWS_PROFILE)
    --region REGION        AWS region (default: $AWS_REGION or the profile's)
    --document NAME        session document (default AWS-StartSSHSession)
    --reason TEXT          reason recorded with the session
    --strip-prefix PREFIX, --strip-suffix SUFFIX
                           remove PREFIX (e.g. prod-) or SUFFIX (e.g. .ssm)
                           from TARGET
    --resume-timeout DUR   how long to keep trying to restore a lost
                           connection before giving up (default 2m)
    --ping-interval DUR    websocket keep-alive ping interval (default 15s)
    --dead-peer-timeout DUR  treat the connection as lost when nothing has
                           arrived for this long (default 40s)
    -v, --verbose          diagnostics on stderr
    --version              print the version and exit
    -h, --help             this help

Credentials, region and endpoints come from the AWS SDK's usual sources:
AWS_PROFILE, AWS_REGION, AWS_ACCESS_KEY_ID…, ~/.aws/config and credentials
(SSO, assume-role with source_profile, credential_process, web identity),
instance metadata; AWS_ENDPOINT_URL_SSM / _STS / _SSMMESSAGES for VPC
endpoints; HTTPS_PROXY, NO_PROXY and AWS_CA_BUNDLE for the API and the
websocket alike. MFA codes are asked for on the terminal (never stdin),
and assumed-role credentials are cached in the user cache directory
(owner-only) until they expire.

Exit status: 0 session ended normally (doctor: every check passed);
1 error (doctor: a check failed); 2 bad usage; 3 session ended by the
remote side with an error; 4 session timed out for inactivity;
5 connection lost and not restored; 128+N killed by signal N.
An error is one line on stderr, followed by hint lines naming the likely
fix; nothing but session bytes goes to stdout.
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
	// stdin is ssh's byte stream, for the session alone. Children started
	// on the way (the AWS SDK gives a credential_process os.Stdin) get
	// /dev/null instead, so none can swallow what ssh sends.
	stdin := os.Stdin
	if null, err := os.Open(os.DevNull); err == nil {
		os.Stdin = null
	}
	os.Exit(run(context.Background(), os.Args[1:], stdin, os.Stdout, os.Stderr))
}

// run runs one ssm-proxy command and returns its exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return (&cli{stdin: stdin, stdout: stdout, stderr: stderr}).run(ctx, args)
}

// cli is one invocation: its standard streams and the hooks tests replace.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// prompt asks for an MFA code; nil means the controlling terminal.
	prompt func(serial string) (string, error)
	// program is the command ssh-config writes into ProxyCommand; nil
	// means the running executable (see proxyProgram).
	program func() string
	// bannerWait is how long doctor waits for the port's first bytes;
	// zero means defaultBannerWait.
	bannerWait time.Duration
	// awsTimeouts bound the AWS API calls; zero fields mean awscfg's
	// defaults.
	awsTimeouts awscfg.Timeouts
}

type options struct {
	profile, region, document, reason string
	stripPrefix, stripSuffix          string
	resumeTimeout, ping, deadPeer     time.Duration
	verbose, version                  bool
	to                                string      // --to HOST:PORT (forward.go)
	pushKey                           pushKeyFlag // --push-key[=PATH|ephemeral] (pushkey.go)
	osUser                            string      // --os-user
}

// flags registers the flags every command shares.
func (o *options) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.profile, "profile", "", "")
	fs.StringVar(&o.region, "region", "", "")
	fs.BoolVar(&o.verbose, "v", false, "")
	fs.BoolVar(&o.verbose, "verbose", false, "")
}

// newFlagSet returns a flag set that prints the usage text on stderr.
func (c *cli) newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() { io.WriteString(c.stderr, usage) }
	return fs
}

// usageError prints a usage error and returns exitUsage.
func (c *cli) usageError(err error) int {
	fmt.Fprintf(c.stderr, "ssm-proxy: error: %v\n", err)
	io.WriteString(c.stderr, usage)
	return exitUsage
}

// parseFlags parses args, reporting whether to go on and, if not, the exit
// status.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

func (c *cli) run(ctx context.Context, args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "doctor":
			return c.doctor(ctx, args[1:])
		case "ssh-config":
			return c.sshConfig(ctx, args[1:])
		case "forward":
			return c.forward(ctx, args[1:])
		}
	}
	return c.proxyCommand(ctx, args)
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

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

// reportError prints err as one `ssm-proxy: error:` line plus hints; with
// context, a last hint says which target, region and credentials were
// used.
func reportError(w io.Writer, err error, o options, u *used, context bool) {
	fmt.Fprintf(w, "ssm-proxy: error: %s\n", errorText(err))
	hs := hints(err, o, u)
	if context {
		hs = append(hs, usedHint(u))
	}
	for _, h := range hs {
		fmt.Fprintf(w, "ssm-proxy: hint: %s\n", h)
	}
}
