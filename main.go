// Command ssm-proxy is an OpenSSH ProxyCommand that reaches instances
// through AWS Systems Manager Session Manager, without the AWS CLI or the
// session-manager-plugin:
//
//	Host i-* mi-*
//	    ProxyCommand ssm-proxy %h %p
//
// Its commands (forward, doctor, ssh-config, list, completion, version,
// help) are
// one entry each in the table commands returns; dispatch, help and shell
// completion all read that table. An argument list that does not start with
// a command name is the ProxyCommand's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/target"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// Version is set with -ldflags "-X main.Version=…"; otherwise the module
// version from the build info is used.
var Version = ""

// command is one subcommand: what dispatch, help and completion know of it.
type command struct {
	name    string
	summary string // one line, for the overview
	usage   string // its own help, printed by `help NAME` and `NAME --help`
	// args says what its positional arguments are, for completion; the
	// last kind repeats.
	args []argKind
	// flags registers flags whose code lives outside the command's own
	// file; newFlagSet calls it.
	flags  func(c *cli, fs *flag.FlagSet)
	run    func(c *cli, ctx context.Context, args []string) int
	hidden bool // not listed in help or completion
}

// argKind is what a positional argument is.
type argKind int

const (
	argOther   argKind = iota
	argTarget          // a TARGET: ids and names from the target cache
	argCommand         // a command name
	argShell           // a shell name
)

// proxyCommandEntry is the default command: ssh's ProxyCommand, run when
// the first argument is no command's name.
func proxyCommandEntry() command {
	return command{
		args:  []argKind{argTarget, argOther},
		flags: func(c *cli, fs *flag.FlagSet) { c.sessionLogFlags(fs) },
		run:   (*cli).proxyCommand,
	}
}

// commands is the table of subcommands. A new command is one entry here.
func commands() []command {
	return []command{
		{name: "doctor", summary: "check, one line each, what a connection to TARGET needs", usage: doctorUsage,
			args: []argKind{argTarget, argOther}, run: (*cli).doctor},
		{name: "forward", summary: "forward local ports to TARGET or through it, as ssh -L does, without ssh", usage: forwardUsage,
			args: []argKind{argTarget, argOther}, run: (*cli).forward},
		{name: "ssh-config", summary: "print the ssh_config block, or install it in ~/.ssh/config", usage: sshConfigUsage,
			run: (*cli).sshConfig},
		{name: "list", summary: "list the managed nodes you can reach, and whether SSH works on each", usage: listUsage,
			run: (*cli).list},
		{name: "completion", summary: "print a shell completion script (bash, zsh, fish, powershell)", usage: completionUsage,
			args: []argKind{argShell}, run: (*cli).completion},
		{name: "version", summary: "print the version", usage: versionUsage, run: (*cli).versionCommand},
		{name: "help", summary: "print the help of a command", usage: helpUsage,
			args: []argKind{argCommand}, run: (*cli).help},
		{name: shareServeCommand, usage: "Usage: ssm-proxy " + shareServeCommand + " SOCKET ARGS...\n",
			run: (*cli).shareServe, hidden: true},
		{name: completeCommand, usage: "Usage: ssm-proxy " + completeCommand + " N -- WORDS...\n",
			run: (*cli).complete, hidden: true},
	}
}

// lookup returns the command called name.
func lookup(name string) (command, bool) {
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}

// topUsage is the overview: the ProxyCommand's help and the command list.
func topUsage() string {
	var b strings.Builder
	for _, cmd := range commands() {
		if !cmd.hidden {
			fmt.Fprintf(&b, "    %-12s %s\n", cmd.name, cmd.summary)
		}
	}
	return fmt.Sprintf(usageOverview, b.String())
}

// usageOf is the help text of the command called name ("" for the
// ProxyCommand).
func usageOf(name string) string {
	if cmd, ok := lookup(name); ok {
		return cmd.usage
	}
	return topUsage()
}

const usageOverview = `Usage: ssm-proxy [flags] TARGET PORT
       ssm-proxy --to HOST:PORT [flags] TARGET
       ssm-proxy COMMAND [flags] [ARGS]

Connects stdin/stdout to PORT on TARGET through AWS Systems Manager Session
Manager (document AWS-StartSSHSession). Meant as an OpenSSH ProxyCommand:

    Host i-* mi-*
        ProxyCommand ssm-proxy %%h %%p
    Host *.ssm
        ProxyCommand ssm-proxy --strip-suffix .ssm %%n %%p

TARGET is an instance id (i-…), a managed node id (mi-…), the value of a
Name tag (web-1), or tag:Key=Value. Names and tags are looked up with
ssm:DescribeInstanceInformation and must match one online node. A TARGET
spelt like a command goes after --: ssm-proxy -- list %%p.

Commands:
%s
` + "`ssm-proxy help COMMAND` or `ssm-proxy COMMAND --help`" + ` prints a command's help.

Flags (they go before TARGET):
    --profile NAME         AWS shared-config profile (default: $AWS_PROFILE)
    --region REGION        AWS region (default: $AWS_REGION or the profile's)
    --document NAME        session document (default AWS-StartSSHSession)
    --reason TEXT          reason recorded with the session
    --strip-prefix PREFIX, --strip-suffix SUFFIX
                           remove PREFIX (e.g. prod-) or SUFFIX (e.g. .ssm)
                           from TARGET
    --to HOST:PORT         carry stdin/stdout to HOST:PORT as TARGET sees it
                           (ssm-proxy --to %%h:%%p bastion, for a host behind
                           TARGET) instead of to PORT on TARGET
    --push-key[=PATH|ephemeral]
                           make an ssh public key valid on the instance for
                           60 s with EC2 Instance Connect first (the key ssh
                           would use, PATH, or a new key in ssh-agent)
    --os-user USER         the OS user --push-key pushes the key for (%%r)
    --share DUR            carry this connection, and every later one to the
                           same TARGET and PORT, over one shared session
                           (AWS-StartPortForwardingSession) that a background
                           ssm-proxy keeps until DUR after the last one ends:
                           later connections skip StartSession, TLS and the
                           websocket (e.g. --share 60s, for Ansible and scp
                           loops without ControlPersist)
    --fdpass               with --share and ssh's ProxyUseFdpass yes: hand ssh
                           the shared session's socket and exit, rather than
                           copy between them
    --resume-timeout DUR   how long to keep trying to restore a lost
                           connection before giving up (default 2m)
    --ping-interval DUR    websocket keep-alive ping interval (default 15s)
    --dead-peer-timeout DUR  treat the connection as lost when nothing has
                           arrived for this long (default 40s)
    --session-log PATH|off where to append this session's line of the local
                           session log, or off (default: $SSM_PROXY_SESSION_LOG,
                           else the user state directory)
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
(owner-only) until they expire. Each session adds one JSON line (no
tokens, no payload) to the session log; SSM_PROXY_SESSION_LOG=off turns
it off.

Exit status: 0 session ended normally; 1 error; 2 bad usage; 3 session
ended by the remote side with an error; 4 session timed out for
inactivity; 5 connection lost and not restored; 128+N killed by signal N.
An error is one line on stderr, followed by hint lines naming the likely
fix; nothing but session bytes goes to stdout.
`

const doctorUsage = `Usage: ssm-proxy doctor [flags] TARGET [PORT]

Checks, one line each on stdout, what a connection to PORT (default 22) on
TARGET needs: what ssh -G makes of TARGET, credentials, region, identity,
the SSM and ssmmessages endpoints (DNS, TCP, TLS), registration with
Systems Manager, ping status, agent version, EC2 Instance Connect (with
--push-key), a session, and the port's answer. A failed check is followed
by hint lines naming the likely fix; every check runs that still can.

Flags (they go before TARGET):
    --profile NAME         AWS shared-config profile (default: $AWS_PROFILE)
    --region REGION        AWS region (default: $AWS_REGION or the profile's)
    --document NAME        session document (default AWS-StartSSHSession)
    --strip-prefix PREFIX, --strip-suffix SUFFIX
                           remove PREFIX or SUFFIX from TARGET
    --ssh-config PATH, -F PATH
                           the ssh_config ssh -G reads for TARGET (default:
                           ssh's own)
    --push-key[=PATH|ephemeral]
                           also check that EC2 Instance Connect takes a key:
                           pushes a throw-away key
    --os-user USER         the OS user for --push-key
    -v, --verbose          diagnostics on stderr
    -h, --help             this help

Exit status: 0 every check passed (warnings, !, do not fail); 1 a check
failed (✗); 2 bad usage.
`

const forwardUsage = `Usage: ssm-proxy forward [flags] TARGET [BIND:]LOCALPORT:[HOST:]PORT...

Listens on each LOCALPORT (on 127.0.0.1 unless BIND is given) and carries
every connection to PORT on TARGET, or, with HOST, to HOST:PORT as TARGET
sees it (an RDS database behind a bastion), through Session Manager
port-forwarding sessions (AWS-StartPortForwardingSession, or
...ToRemoteHost), one stream per connection. Runs until interrupted.

    ssm-proxy forward db-bastion 5432:mydb.abc123.eu-west-1.rds.amazonaws.com:5432

Flags (they go before TARGET):
    --profile NAME         AWS shared-config profile (default: $AWS_PROFILE)
    --region REGION        AWS region (default: $AWS_REGION or the profile's)
    --reason TEXT          reason recorded with the sessions
    --strip-prefix PREFIX, --strip-suffix SUFFIX
                           remove PREFIX or SUFFIX from TARGET
    --resume-timeout DUR   how long to keep trying to restore a lost
                           connection before giving up (default 2m)
    --ping-interval DUR    websocket keep-alive ping interval (default 15s)
    --dead-peer-timeout DUR  treat the connection as lost when nothing has
                           arrived for this long (default 40s)
    --session-log PATH|off where to append each session's line of the local
                           session log, or off (default: $SSM_PROXY_SESSION_LOG,
                           else the user state directory)
    -v, --verbose          diagnostics on stderr
    -h, --help             this help

Exit status as for the ProxyCommand (` + "`ssm-proxy --help`" + `).
`

const sshConfigUsage = `Usage: ssm-proxy ssh-config [flags]
       ssm-proxy ssh-config --install [--file PATH] [--replace] [flags]

Prints the ssh_config block that sends instance and managed-node ids
(Host i-* mi-*) and names (Host *.ssm: ssh web-1.ssm) through ssm-proxy,
with ServerAliveInterval. ProxyCommand names ssm-proxy by its absolute path
unless ssh finds it in /usr/bin or /bin, as it must from cron or an IDE.

--install adds the block to ~/.ssh/config, or updates the block it added
before, keeping a timestamped backup of the file. ~ is the home directory
the passwd database gives, which is the one ssh reads even when $HOME
differs. Then it asks ssh itself (ssh -G) what it will use for a sample of
each pattern: when another line wins (a Match or Host * block with its own
ProxyCommand or ProxyJump, an Include), the file is put back as it was and
that line is named.

Flags:
    --install              add or update the block in the file
    --file PATH            the file to install into (default ~/.ssh/config)
    --replace              with --install: comment out an ` + "`aws ssm start-session`" + `
                           ProxyCommand that would win, and add the block
    --profile NAME         pin this AWS profile in the blocks
    --region REGION        pin this region in the blocks
    --strip-prefix PREFIX  names are PREFIX+NAME (Host PREFIX*)
    --strip-suffix SUFFIX  names are NAME+SUFFIX (default .ssm unless
                           --strip-prefix is given)
    --multiplex            one session per host shared by ssh connections:
                           ControlMaster auto, ControlPath ~/.ssh/ssm-proxy-%C,
                           ControlPersist 10m
    --share DUR            one session per host for every tool that runs ssh,
                           even without ControlPersist (Ansible, scp loops):
                           the blocks run ssm-proxy with --share DUR, and
                           ssh is handed its socket (ProxyUseFdpass yes)
    --push-key[=PATH|ephemeral]
                           push the key with EC2 Instance Connect before each
                           session: ProxyCommand … --push-key --os-user %r
    -v, --verbose          show what ssh -G reports
    -h, --help             this help

Exit status: 0 printed, installed, or nothing to do; 1 the file was not
changed (the reason and the line that wins follow); 2 bad usage.
`

const listUsage = `Usage: ssm-proxy list [--filter TARGET] [--json] [flags]

Lists the managed nodes Systems Manager knows in the region: id, Name tag,
ping status, agent version, platform, and whether SSH sessions work (agent
` + minAgentText + ` or later). --filter keeps what TARGET would match: tag:Key=Value,
a Name tag value, or an id.

The output is an aligned table whether or not stdout is a terminal;
scripts should use --json: an array of objects with fixed field names.
Names come from ssm:DescribeInstanceProperties where that is allowed; the
NAME column is "-" otherwise. A list without --filter also refreshes the
target cache that shell completion reads.

Flags:
    --filter TARGET        only the nodes TARGET matches
    --json                 JSON instead of the table
    --profile NAME         AWS shared-config profile (default: $AWS_PROFILE)
    --region REGION        AWS region (default: $AWS_REGION or the profile's)
    -v, --verbose          diagnostics on stderr
    -h, --help             this help

Exit status: 0 listed (also when nothing matched); 1 error; 2 bad usage.
`

const completionUsage = `Usage: ssm-proxy completion bash|zsh|fish|powershell

Prints a script that completes ssm-proxy's commands, flags and targets in
that shell. Load it from the shell's start-up file:

    bash        source <(ssm-proxy completion bash)            # ~/.bashrc
    zsh         source <(ssm-proxy completion zsh)             # ~/.zshrc, after compinit
    fish        ssm-proxy completion fish > ~/.config/fish/completions/ssm-proxy.fish
    powershell  ssm-proxy completion powershell | Out-String | Invoke-Expression   # $PROFILE

Targets (ids and Name tags) come from a cache of ` + "`ssm-proxy list`" + ` per
profile and region in the user cache directory, owner-only, used for ` + targetCacheTTLText + `;
an expired cache is refreshed on the next completion, for at most ` + targetRefreshText + `.
`

const versionUsage = `Usage: ssm-proxy version

Prints the version (the same as ssm-proxy --version).
`

const helpUsage = `Usage: ssm-proxy help [COMMAND]

Prints the help of COMMAND, or the overview of ssm-proxy and its commands.
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
	deferGC(3 * time.Second)
	// stdin is ssh's byte stream, for the session alone. Children started
	// on the way (the AWS SDK gives a credential_process os.Stdin) get
	// /dev/null instead, so none can swallow what ssh sends.
	stdin := os.Stdin
	if null, err := os.Open(os.DevNull); err == nil {
		os.Stdin = null
	}
	os.Exit(run(context.Background(), os.Args[1:], stdin, os.Stdout, os.Stderr))
}

// deferGC lets the process's first seconds run with a heap goal four times
// the usual (GOGC=400), then returns to the default; a GOGC in the
// environment wins. Package initialisation (the SDK's service tables) and
// session set-up allocate a little over the runtime's first 4 MB goal, so
// every process paid a collection in its first milliseconds: about 2 ms of
// CPU, an eighth of a short connection's own (`ssh host true`, as an
// Ansible task makes; BENCHMARKS.md). With the higher goal a connection
// that ends within d never collects; a longer one collects as before once d
// has passed, and its idle memory is no higher.
func deferGC(d time.Duration) {
	if os.Getenv("GOGC") != "" {
		return
	}
	old := debug.SetGCPercent(400)
	afterFunc(d, func() { debug.SetGCPercent(old) })
}

// afterFunc is time.AfterFunc; tests replace it to run f when they choose.
var afterFunc = func(d time.Duration, f func()) { time.AfterFunc(d, f) }

// run runs one ssm-proxy command and returns its exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return (&cli{stdin: stdin, stdout: stdout, stderr: stderr}).run(ctx, args)
}

// cli is one invocation: its standard streams, the command being run and
// the hooks tests replace.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// command is the name of the command being run, "" for the
	// ProxyCommand.
	command string
	// prompt asks for an MFA code; nil means the controlling terminal.
	prompt func(serial string) (string, error)
	// program is the command ssh-config writes into ProxyCommand; nil
	// means the running executable (see proxyProgram).
	program func() string
	// passwdHome is the home directory ssh uses (the passwd database's);
	// nil means passwdHomeDir.
	passwdHome func() (string, error)
	// ssh runs ssh for ssh-config; nil means "ssh" from PATH.
	ssh func(ctx context.Context, args ...string) (stdout, stderr []byte, err error)
	// now is the clock of caches and logs; nil means time.Now.
	now func() time.Time
	// bannerWait is how long doctor waits for the port's first bytes;
	// zero means defaultBannerWait.
	bannerWait time.Duration
	// collectFlags, if set, receives the flag set of the command instead
	// of its help being printed: completion runs a command with -h to learn
	// its flags.
	collectFlags func(fs *flag.FlagSet)
	// awsTimeouts bound the AWS API calls; zero fields mean awscfg's
	// defaults.
	awsTimeouts awscfg.Timeouts

	sessionLog sessionLogState // sessionlog.go
}

// clock returns the current time.
func (c *cli) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

type options struct {
	profile, region, document, reason string
	stripPrefix, stripSuffix          string
	resumeTimeout, ping, deadPeer     time.Duration
	verbose, version                  bool
	to                                string        // --to HOST:PORT (forward.go)
	pushKey                           pushKeyFlag   // --push-key[=PATH|ephemeral] (pushkey.go)
	osUser                            string        // --os-user
	share                             time.Duration // --share DUR (share_unix.go)
	fdpass                            bool          // --fdpass
}

// flags registers the flags every command shares.
func (o *options) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.profile, "profile", "", "")
	fs.StringVar(&o.region, "region", "", "")
	fs.BoolVar(&o.verbose, "v", false, "")
	fs.BoolVar(&o.verbose, "verbose", false, "")
}

// newFlagSet returns the flag set of the command name ("ssm-proxy" or
// "ssm-proxy NAME"), with the flags its table entry adds. -h and --help
// print the command's help on stdout; a bad flag is one error line and a
// pointer to --help on stderr.
func (c *cli) newFlagSet(name string) *flag.FlagSet {
	cmdName := strings.TrimSpace(strings.TrimPrefix(name, "ssm-proxy"))
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	r := &flagReport{c: c, fs: fs, command: cmdName}
	fs.SetOutput(r)
	fs.Usage = r.usage
	cmd, ok := lookup(cmdName)
	if !ok {
		cmd = proxyCommandEntry()
	}
	if cmd.flags != nil {
		cmd.flags(c, fs)
	}
	return fs
}

// flagReport is a flag set's output. The flag package writes its error
// message and then calls Usage, or calls Usage alone for -h: what was
// written tells the two apart.
type flagReport struct {
	c       *cli
	fs      *flag.FlagSet
	command string
	msg     strings.Builder
}

func (r *flagReport) Write(p []byte) (int, error) { return r.msg.Write(p) }

func (r *flagReport) usage() {
	msg := strings.TrimSpace(r.msg.String())
	r.msg.Reset()
	switch {
	case msg != "":
		r.c.printUsageError(r.command, msg)
	case r.c.collectFlags != nil:
		r.c.collectFlags(r.fs)
	default:
		io.WriteString(r.c.stdout, usageOf(r.command))
	}
}

// helpPointer is the hint after a usage error in command name.
func helpPointer(name string) string {
	if name == "" {
		return "`ssm-proxy --help` lists the flags and commands"
	}
	return fmt.Sprintf("`ssm-proxy %s --help` lists its flags and arguments", name)
}

// printUsageError prints a usage error of command name: one error line and
// a pointer to its help.
func (c *cli) printUsageError(name, msg string) {
	printError(c.stderr, msg, []string{helpPointer(name)})
}

// usageError prints a usage error of the running command and returns
// exitUsage.
func (c *cli) usageError(err error) int {
	c.printUsageError(c.command, err.Error())
	return exitUsage
}

// parseFlags parses args, reporting whether to go on and, if not, the exit
// status. Flags go before the arguments (ssh's ProxyCommand is
// `ssm-proxy [flags] %h %p`); one after them is a usage error that says
// so, unless "--" ended the flags.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	rest := fs.Args()
	if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
		return 0, true
	}
	for _, a := range rest {
		if len(a) > 1 && a[0] == '-' {
			fmt.Fprintf(fs.Output(), "flag %s comes after the arguments; flags go first: %s", a, synopsis(fs.Name()))
			fs.Usage()
			return exitUsage, false
		}
	}
	return 0, true
}

// synopsis is the first usage line of the command whose flag set is
// called name.
func synopsis(name string) string {
	first, _, _ := strings.Cut(usageOf(strings.TrimSpace(strings.TrimPrefix(name, "ssm-proxy"))), "\n")
	return strings.TrimPrefix(first, "Usage: ")
}

func (c *cli) run(ctx context.Context, args []string) int {
	if len(args) > 0 {
		if cmd, ok := lookup(args[0]); ok {
			c.command = cmd.name
			return cmd.run(c, ctx, args[1:])
		}
		// A misspelt command: alone, or before what cannot be a PORT
		// (`ssm-proxy doctr i-0123…`); `ssm-proxy doctr 22` is TARGET
		// doctr, PORT 22.
		if len(args) == 1 || checkPort(args[1]) != nil {
			if near := nearCommand(args[0]); near != "" {
				printError(c.stderr, fmt.Sprintf("unknown command %q", args[0]),
					[]string{fmt.Sprintf("did you mean `ssm-proxy %s`? `ssm-proxy help` lists the commands", near)})
				return exitUsage
			}
		}
		if code, ok := c.commandAfterFlags(ctx, args); ok {
			return code
		}
	}
	return proxyCommandEntry().run(c, ctx, args)
}

// commandAfterFlags catches `ssm-proxy -v list`: flags, then a command
// name where the ProxyCommand's TARGET would be, and no valid PORT after
// it (`ssm-proxy -v list 22` is TARGET list, PORT 22). It reports the
// mistake and returns true.
func (c *cli) commandAfterFlags(ctx context.Context, args []string) (int, bool) {
	if c.collectFlags != nil || !strings.HasPrefix(args[0], "-") {
		return 0, false
	}
	fs := c.flagsOf(ctx, "")
	if fs == nil {
		return 0, false
	}
	pos, flags, _ := splitArgs(fs, args)
	if len(pos) == 0 {
		return 0, false
	}
	cmd, ok := lookup(pos[0])
	if !ok || cmd.hidden || len(pos) == 2 && checkPort(pos[1]) == nil {
		return 0, false
	}
	// The hint keeps the flags the command takes.
	words := []string{cmd.name}
	if sub := c.flagsOf(ctx, cmd.name); sub != nil {
		for _, f := range flags {
			if name, _, _ := strings.Cut(strings.TrimLeft(f[0], "-"), "="); sub.Lookup(name) != nil {
				words = append(words, f...)
			}
		}
	}
	printError(c.stderr, fmt.Sprintf("the command %s comes after flags; a command goes first, then its flags", cmd.name),
		[]string{fmt.Sprintf("`ssm-proxy %s`", strings.Join(append(words, pos[1:]...), " "))})
	return exitUsage, true
}

// splitArgs separates args into positional arguments and flags, each
// flag with its value if it takes one, as fs would parse them wherever
// they stand; lastWants says the last word is a flag still wanting its
// value.
func splitArgs(fs *flag.FlagSet, args []string) (pos []string, flags [][]string, lastWants bool) {
	dashes := false
	for i := 0; i < len(args); i++ {
		w := args[i]
		switch {
		case dashes || w == "-" || !strings.HasPrefix(w, "-"):
			pos = append(pos, w)
		case w == "--":
			dashes = true
		case strings.Contains(w, "="):
			flags = append(flags, []string{w})
		default:
			f := fs.Lookup(strings.TrimLeft(w, "-"))
			switch {
			case f == nil || isBoolFlag(f):
				flags = append(flags, []string{w})
			case i == len(args)-1:
				flags = append(flags, []string{w})
				lastWants = true
			default:
				flags = append(flags, []string{w, args[i+1]})
				i++
			}
		}
	}
	return pos, flags, lastWants
}

// nearCommand is the command name s looks like a misspelling or an
// abbreviation of, or "". A lone argument is never a valid ProxyCommand
// invocation, so guessing costs nothing; what looks like a host or a tag
// is not guessed at.
func nearCommand(s string) string {
	if len(s) < 3 || s[0] == '-' || strings.ContainsAny(s, ".:=") {
		return ""
	}
	for _, cmd := range commands() {
		if cmd.hidden {
			continue
		}
		if strings.HasPrefix(cmd.name, s) || target.EditDistance(s, cmd.name) <= 2 {
			return cmd.name
		}
	}
	return ""
}

// help runs `ssm-proxy help [COMMAND]`.
func (c *cli) help(_ context.Context, args []string) int {
	fs := c.newFlagSet("ssm-proxy help")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	switch fs.NArg() {
	case 0:
		io.WriteString(c.stdout, topUsage())
		return exitOK
	case 1:
		if cmd, ok := lookup(fs.Arg(0)); ok && !cmd.hidden {
			io.WriteString(c.stdout, cmd.usage)
			return exitOK
		}
		printError(c.stderr, fmt.Sprintf("unknown command %q", fs.Arg(0)), []string{"`ssm-proxy help` lists the commands"})
		return exitUsage
	}
	return c.usageError(fmt.Errorf("help: want at most one COMMAND, got %d arguments", fs.NArg()))
}

// versionCommand runs `ssm-proxy version`.
func (c *cli) versionCommand(_ context.Context, args []string) int {
	fs := c.newFlagSet("ssm-proxy version")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return c.usageError(fmt.Errorf("version: unexpected argument %q", fs.Arg(0)))
	}
	fmt.Fprintln(c.stdout, "ssm-proxy", version())
	return exitOK
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
	var pke *pushKeyError
	var de *dialError
	switch {
	case errors.As(err, &pke):
		return pke.code
	case errors.As(err, &de):
		return exitRemote
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
	hs := hints(err, o, u)
	if context {
		hs = append(hs, usedHint(u))
	}
	msg := errorText(err)
	if !o.verbose {
		msg = withoutCanonicalString(msg)
	}
	printError(w, msg, hs)
}

// withoutCanonicalString shortens AWS's signature-mismatch message, which
// quotes the whole canonical request it expected (hundreds of characters
// of headers), to its first sentence and a pointer to -v, which keeps it.
func withoutCanonicalString(msg string) string {
	i := strings.Index(msg, "The Canonical String for this request")
	if i <= 0 {
		return msg
	}
	return strings.TrimSpace(msg[:i]) + " (-v shows the canonical request AWS expected)"
}

// printError prints one `ssm-proxy: error:` line and a `ssm-proxy: hint:`
// line for each hint, each one line and scrubbed of secrets
// (textutil.Redact), whatever produced the text.
func printError(w io.Writer, msg string, hints []string) {
	var b strings.Builder
	b.WriteString("ssm-proxy: error: " + textutil.OneLine(msg) + "\n")
	for _, h := range hints {
		b.WriteString("ssm-proxy: hint: " + textutil.OneLine(h) + "\n")
	}
	io.WriteString(w, textutil.Redact(b.String()))
}

// printNote prints an informational line: what a command did.
func printNote(w io.Writer, msg string) {
	io.WriteString(w, textutil.Redact("ssm-proxy: "+textutil.OneLine(msg))+"\n")
}
