package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/sshconfig"
)

// sshConfigOptions are the flags of `ssm-proxy ssh-config`.
type sshConfigOptions struct {
	options
	install, replace, multiplex bool
	file                        string
}

// sshConfig runs `ssm-proxy ssh-config [--install [--file PATH]] [flags]`:
// it prints the ssh_config block, or installs it (internal/sshconfig) and
// says what ssh will now use.
func (c *cli) sshConfig(ctx context.Context, args []string) int {
	var o sshConfigOptions
	fs := c.newFlagSet("ssm-proxy ssh-config")
	o.flags(fs)
	fs.BoolVar(&o.install, "install", false, "")
	fs.StringVar(&o.file, "file", "", "")
	fs.BoolVar(&o.replace, "replace", false, "")
	fs.BoolVar(&o.multiplex, "multiplex", false, "")
	fs.DurationVar(&o.share, "share", 0, "")
	fs.StringVar(&o.stripPrefix, "strip-prefix", "", "")
	fs.StringVar(&o.stripSuffix, "strip-suffix", "", "")
	fs.Var(&o.pushKey, "push-key", "")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	switch {
	case fs.NArg() != 0:
		return c.usageError(fmt.Errorf("ssh-config: unexpected argument %q", fs.Arg(0)))
	case !o.install && (o.file != "" || o.replace):
		return c.usageError(errors.New("ssh-config: --file and --replace go with --install"))
	}
	program := proxyProgram
	if c.program != nil {
		program = c.program
	}
	blocks, err := sshBlocks(program(), o)
	if err != nil {
		return c.usageError(err)
	}
	if !o.install {
		c.stdout.Write(sshconfig.Render(blocks, "\n"))
		return exitOK
	}
	log := newLogger(c.stderr, o.verbose)
	file := o.file
	if file == "" {
		if file, err = c.defaultSSHConfig(ctx, log); err != nil {
			printError(c.stderr, "find ~/.ssh/config: "+err.Error(), []string{"name the file with --file"})
			return exitError
		}
	}
	in := &sshconfig.Install{
		File:    file,
		Blocks:  blocks,
		Replace: o.replace,
		Exact:   o.profile != "" || o.region != "" || o.stripPrefix != "" || o.stripSuffix != "" || o.multiplex || o.share != 0 || o.pushKey.set,
		SSH:     c.ssh,
		Now:     c.clock(),
		Log:     func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
	}
	res, err := in.Run(ctx)
	if err != nil {
		var ie *sshconfig.Error
		if errors.As(err, &ie) {
			printError(c.stderr, ie.Msg, ie.Hints)
		} else {
			printError(c.stderr, err.Error(), nil)
		}
		return exitError
	}
	for _, l := range res.Replaced {
		printNote(c.stderr, fmt.Sprintf("commented out %s line %d: %s", l.File, l.Line, l.Text))
	}
	printNote(c.stderr, installMessage(res))
	return exitOK
}

// installMessage says what an install did, as ssh -G confirmed it.
func installMessage(res *sshconfig.Result) string {
	var routes []string
	seen := map[string]bool{}
	for _, r := range res.Routes {
		if seen[r.Patterns] {
			continue
		}
		seen[r.Patterns] = true
		where := "a line ssm-proxy could not locate"
		if r.From != nil {
			where = fmt.Sprintf("line %d", r.From.Line)
			if r.From.File != res.File {
				where = fmt.Sprintf("%s line %d", r.From.File, r.From.Line)
			}
		}
		routes = append(routes, fmt.Sprintf("%s (%s)", r.Patterns, where))
	}
	if !res.Changed {
		return fmt.Sprintf("%s already routes %s through ssm-proxy, as `ssh -G` confirms; nothing to do", res.File, strings.Join(routes, ", "))
	}
	var msg string
	switch {
	case res.Updated:
		msg = fmt.Sprintf("updated ssm-proxy's block in %s", res.File)
	case len(res.Added) > 0:
		msg = fmt.Sprintf("added Host %s to %s", strings.Join(res.Added, ", Host "), res.File)
	default:
		msg = fmt.Sprintf("changed %s", res.File)
	}
	if res.Backup != "" {
		msg += "; the previous file is " + res.Backup
	}
	return msg + "; `ssh -G` confirms it routes " + strings.Join(routes, ", ") + " through ssm-proxy"
}

// sshBlocks are the blocks for program and o: ids, and names with a
// suffix (default .ssm) or prefix, with the profile, region and
// --push-key pinned if given.
func sshBlocks(program string, o sshConfigOptions) ([]sshconfig.Block, error) {
	for flag, v := range map[string]string{"--strip-prefix": o.stripPrefix, "--strip-suffix": o.stripSuffix} {
		if strings.ContainsAny(v, " \t\"'#*?!,%\\") {
			return nil, fmt.Errorf("ssh-config: %s %q: a Host pattern part cannot hold white space, quotes or any of # * ? ! , %% \\", flag, v)
		}
	}
	if o.multiplex && runtime.GOOS == "windows" {
		return nil, errors.New("ssh-config: --multiplex: OpenSSH for Windows has no connection sharing (ControlMaster)")
	}
	switch {
	case o.share < 0 || o.share > 0 && o.share < minShare:
		return nil, fmt.Errorf("ssh-config: --share %s: want how long to keep a shared session after its last connection, at least %s, e.g. 60s", o.share, minShare)
	case o.share > 0 && o.pushKey.set:
		return nil, errors.New("ssh-config: --share cannot go with --push-key yet: each connection needs its own key pushed")
	case o.share > 0 && runtime.GOOS == "windows":
		return nil, errors.New("ssh-config: --share needs Unix sockets, which this build does not have")
	}
	cmd := sshArg(program)
	if o.share > 0 {
		cmd += " --share " + shortDuration(o.share) + " --fdpass"
	}
	if o.profile != "" {
		cmd += " --profile " + sshArg(o.profile)
	}
	if o.region != "" {
		cmd += " --region " + sshArg(o.region)
	}
	base := cmd // without --push-key: managed nodes take no pushed key
	if o.pushKey.set {
		cmd += " --push-key"
		if o.pushKey.value != "" {
			cmd += "=" + sshArg(o.pushKey.value)
		}
		cmd += " --os-user %r"
	}
	common := []sshconfig.Option{{Key: "ServerAliveInterval", Value: "60"}}
	if o.share > 0 {
		// ssh reads the shared session's socket itself; ssm-proxy exits.
		common = append(common, sshconfig.Option{Key: "ProxyUseFdpass", Value: "yes"})
	}
	if o.multiplex {
		common = append(common,
			sshconfig.Option{Key: "ControlMaster", Value: "auto"},
			sshconfig.Option{Key: "ControlPath", Value: "~/.ssh/ssm-proxy-%C"},
			sshconfig.Option{Key: "ControlPersist", Value: "10m"})
	}
	prefix, suffix := o.stripPrefix, o.stripSuffix
	if prefix == "" && suffix == "" {
		suffix = ".ssm"
	}
	name := cmd
	if prefix != "" {
		name += " --strip-prefix " + sshArg(prefix)
	}
	if suffix != "" {
		name += " --strip-suffix " + sshArg(suffix)
	}
	sample := prefix + "web-1" + suffix
	byID := []sshconfig.Block{{
		Comment:  "ssh i-0123456789abcdef0, ssh mi-0123456789abcdef0: by id",
		Patterns: "i-* mi-*",
		Options:  append([]sshconfig.Option{{Key: "ProxyCommand", Value: cmd + " %h %p"}}, common...),
		Samples:  []string{"i-0123456789abcdef0", "mi-0123456789abcdef0"},
	}}
	if o.pushKey.set {
		// EC2 Instance Connect has no managed (mi-) nodes, and --push-key
		// refuses them: they get the ProxyCommand without it.
		byID = []sshconfig.Block{{
			Comment:  "ssh i-0123456789abcdef0: by id, with a key pushed through EC2 Instance Connect",
			Patterns: "i-*",
			Options:  append([]sshconfig.Option{{Key: "ProxyCommand", Value: cmd + " %h %p"}}, common...),
			Samples:  []string{"i-0123456789abcdef0"},
		}, {
			Comment:  "ssh mi-0123456789abcdef0: managed nodes by id (Instance Connect cannot push keys to them)",
			Patterns: "mi-*",
			Options:  append([]sshconfig.Option{{Key: "ProxyCommand", Value: base + " %h %p"}}, common...),
			Samples:  []string{"mi-0123456789abcdef0"},
		}}
	}
	return append(byID, sshconfig.Block{
		// %n keeps the case of the name as typed; ssh lower-cases %h.
		Comment:  "ssh " + sample + ": by Name tag",
		Patterns: prefix + "*" + suffix,
		Options:  append([]sshconfig.Option{{Key: "ProxyCommand", Value: name + " %n %p"}}, common...),
		Samples:  []string{sample},
	}), nil
}

// shortDuration is d as time.Duration writes it, without zero tails: 1m,
// 1h30m, 90s → 1m30s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// sshArg is s as one word of a ProxyCommand: quoted for the shell ssh
// runs it with, and % doubled so that ssh does not expand it (a profile
// named x%h stays x%h).
func sshArg(s string) string {
	return strings.ReplaceAll(quoteArg(s), "%", "%%")
}

// quoteArg quotes s, if needed, for the shell ssh runs ProxyCommand with
// (sh -c; on Windows the command line goes to CreateProcess, where double
// quotes group and backslashes are path separators).
func quoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$`&|;<>()*?[]#~") {
		return s
	}
	if runtime.GOOS == "windows" {
		return `"` + s + `"`
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "`", "\\`").Replace(s) + `"`
}

// safeDirs are the directories in the PATH of cron (/usr/bin:/bin) and of
// applications started from a desktop (macOS adds /usr/sbin:/sbin): there
// the bare name "ssm-proxy" is found wherever ssh runs.
var safeDirs = []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"}

// proxyProgram is how ProxyCommand should name this program: "ssm-proxy"
// if it is installed in one of safeDirs, else its absolute path, which ssh
// finds from cron, an IDE or a login shell alike.
func proxyProgram() string {
	exe, err := os.Executable()
	if err != nil {
		return "ssm-proxy"
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	if runtime.GOOS == "windows" {
		return exe
	}
	for _, dir := range safeDirs {
		if resolved, err := filepath.EvalSymlinks(filepath.Join(dir, "ssm-proxy")); err == nil && resolved == exe {
			return "ssm-proxy"
		}
	}
	return exe
}

// defaultSSHConfig is ~/.ssh/config as ssh reads it: in the home
// directory of the passwd database, which may differ from $HOME. When it
// does, a note says which file is written.
func (c *cli) defaultSSHConfig(ctx context.Context, log *slog.Logger) (string, error) {
	lookup := c.passwdHome
	if lookup == nil {
		lookup = func() (string, error) { return passwdHomeDir(ctx, c.ssh) }
	}
	home, err := lookup()
	if err != nil {
		return "", err
	}
	file := filepath.Join(home, ".ssh", "config")
	if env := os.Getenv("HOME"); env != "" && filepath.Clean(env) != filepath.Clean(home) {
		printNote(c.stderr, fmt.Sprintf("ssh reads %s: ~ is the home directory in the passwd database (%s), not $HOME (%s); that is the file changed", file, home, env))
	}
	log.Debug("ssh config file", "file", file)
	return file, nil
}

// passwdHomeDir is the home directory ssh expands ~ with: the passwd
// entry of the current user (getpwuid). Where the user database cannot be
// read (a static build and LDAP users), ssh itself is asked: it expands %d
// in ControlPath to that directory. $HOME is the last resort.
func passwdHomeDir(ctx context.Context, ssh func(context.Context, ...string) ([]byte, []byte, error)) (string, error) {
	if u, err := user.Current(); err == nil && u.HomeDir != "" {
		return u.HomeDir, nil
	}
	if ssh == nil {
		ssh = sshconfig.ExecSSH
	}
	if out, _, err := ssh(ctx, "-G", "-F", os.DevNull, "-o", "ControlPath=%d", "localhost"); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if d, ok := strings.CutPrefix(strings.TrimSpace(l), "controlpath "); ok && filepath.IsAbs(d) {
				return d, nil
			}
		}
	}
	return os.UserHomeDir()
}
