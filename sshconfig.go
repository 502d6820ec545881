package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"

	"github.com/ssm-proxy/ssm-proxy/internal/fsutil"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

// sshConfig runs `ssm-proxy ssh-config [--install] [--file PATH] [flags]`:
// it prints the ssh_config block, or adds it to the file when no block
// there already routes the same hosts.
func (c *cli) sshConfig(_ context.Context, args []string) int {
	var o options
	var install bool
	var file string
	fs := c.newFlagSet("ssm-proxy ssh-config")
	o.flags(fs)
	fs.BoolVar(&install, "install", false, "")
	fs.StringVar(&file, "file", "", "")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return c.usageError(fmt.Errorf("ssh-config: unexpected argument %q", fs.Arg(0)))
	}
	program := proxyProgram
	if c.program != nil {
		program = c.program
	}
	blocks := sshBlocks(program(), o)
	if !install {
		c.stdout.Write(renderBlocks(blocks))
		return exitOK
	}
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			fmt.Fprintf(c.stderr, "ssm-proxy: error: find ~/.ssh/config: %v\n", err)
			return exitError
		}
		file = filepath.Join(home, ".ssh", "config")
	}
	msg, err := installSSHConfig(file, blocks, time.Now())
	if err != nil {
		fmt.Fprintf(c.stderr, "ssm-proxy: error: %s\n", textutil.OneLine(err.Error()))
		var ce *conflictError
		if errors.As(err, &ce) {
			for _, h := range ce.hints {
				fmt.Fprintf(c.stderr, "ssm-proxy: hint: %s\n", h)
			}
		}
		return exitError
	}
	fmt.Fprintf(c.stderr, "ssm-proxy: %s\n", msg)
	return exitOK
}

// sshBlock is one Host block of the generated configuration.
type sshBlock struct {
	comment  string
	patterns string // Host line
	proxy    string // ProxyCommand
	samples  []string
}

// sshBlocks are the blocks for program, with the profile and region pinned
// if given.
func sshBlocks(program string, o options) []sshBlock {
	cmd := quoteArg(program)
	if o.profile != "" {
		cmd += " --profile " + quoteArg(o.profile)
	}
	if o.region != "" {
		cmd += " --region " + quoteArg(o.region)
	}
	return []sshBlock{{
		comment:  "ssh i-0123456789abcdef0, ssh mi-0123456789abcdef0: by id",
		patterns: "i-* mi-*",
		proxy:    cmd + " %h %p",
		samples:  []string{"i-0123456789abcdef0", "mi-0123456789abcdef0"},
	}, {
		// %n keeps the case of the name as typed; ssh lower-cases %h.
		comment:  "ssh web-1.ssm: by Name tag",
		patterns: "*.ssm",
		proxy:    cmd + " --strip-suffix .ssm %n %p",
		samples:  []string{"web-1.ssm"},
	}}
}

const sshHeader = "# ssm-proxy: ssh through AWS Systems Manager Session Manager\n"

func renderBlocks(blocks []sshBlock) []byte {
	var b bytes.Buffer
	b.WriteString(sshHeader)
	for _, bl := range blocks {
		fmt.Fprintf(&b, "# %s\nHost %s\n    ProxyCommand %s\n", bl.comment, bl.patterns, bl.proxy)
	}
	return b.Bytes()
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

// proxyProgram is how ProxyCommand should name this program: "ssm-proxy"
// if that is what PATH finds, else the executable's absolute path.
func proxyProgram() string {
	exe, err := os.Executable()
	if err != nil {
		return "ssm-proxy"
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	if p, err := exec.LookPath("ssm-proxy"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil && resolved == exe {
			return "ssm-proxy"
		}
	}
	return exe
}

// conflictError is a configuration ssm-proxy will not change by itself.
type conflictError struct {
	msg   string
	hints []string
}

func (e *conflictError) Error() string { return e.msg }

// Kinds of ProxyCommand found for a host.
var (
	ssmProxyCommand = regexp.MustCompile(`(^|[\s/\\'"])ssm-proxy(\.exe)?(["']?\s|["']?$)`)
	awsCLICommand   = regexp.MustCompile(`\bssm\s+start-session\b|session-manager-plugin`)
)

// installSSHConfig adds the blocks that file does not already have and
// says what it did. It refuses when the hosts are routed through another
// ProxyCommand, which would take precedence (ssh uses the first value it
// finds). The file is replaced atomically and the old one kept as a
// timestamped backup.
func installSSHConfig(file string, blocks []sshBlock, now time.Time) (string, error) {
	if resolved, err := filepath.EvalSymlinks(file); err == nil {
		file = resolved // keep a dotfile manager's symlink
	}
	old, err := os.ReadFile(file)
	perm := fs.FileMode(0o600)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return "", err
	default:
		if fi, err := os.Stat(file); err == nil {
			perm = fi.Mode().Perm()
		}
	}
	cfg, err := ssh_config.DecodeBytes(old)
	if err != nil {
		return "", &conflictError{
			msg:   fmt.Sprintf("cannot parse %s: %v", file, err),
			hints: []string{"add the block by hand: `ssm-proxy ssh-config` prints it"},
		}
	}
	var add []sshBlock
	var have []string
	for _, bl := range blocks {
		present := true
		for _, host := range bl.samples {
			val, where := firstProxyCommand(cfg, host)
			switch {
			case val == "":
				present = false
			case ssmProxyCommand.MatchString(val):
				have = append(have, fmt.Sprintf("%s (%s)", bl.patterns, where))
			case awsCLICommand.MatchString(val):
				return "", &conflictError{
					msg: fmt.Sprintf("%s: %s already reaches %s hosts through `aws ssm start-session`", file, where, bl.patterns),
					hints: []string{
						fmt.Sprintf("to switch, replace that ProxyCommand with: ProxyCommand %s", bl.proxy),
						"or delete that block and run `ssm-proxy ssh-config --install` again; ssm-proxy needs neither the AWS CLI nor the session-manager-plugin",
					},
				}
			default:
				return "", &conflictError{
					msg:   fmt.Sprintf("%s: %s already sets ProxyCommand %q for %s, and ssh uses the first one it finds", file, where, val, host),
					hints: []string{"add the ssm-proxy block above that one by hand: `ssm-proxy ssh-config` prints it"},
				}
			}
		}
		if !present {
			add = append(add, bl)
		}
	}
	if len(add) == 0 {
		return fmt.Sprintf("%s already routes %s through ssm-proxy; nothing to do", file, strings.Join(uniq(have), ", ")), nil
	}

	var b bytes.Buffer
	b.Write(old)
	if len(old) > 0 {
		if !bytes.HasSuffix(old, []byte("\n")) {
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
	}
	b.Write(renderBlocks(add))
	if _, err := ssh_config.DecodeBytes(b.Bytes()); err != nil {
		return "", fmt.Errorf("the new %s would not parse: %w", file, err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", err
	}
	backup := ""
	if old != nil {
		backup = fmt.Sprintf("%s.ssm-proxy-%s.bak", file, now.Format("20060102-150405"))
		if err := fsutil.WriteFileAtomic(backup, old, perm); err != nil {
			return "", fmt.Errorf("back up %s: %w", file, err)
		}
	}
	if err := fsutil.WriteFileAtomic(file, b.Bytes(), perm); err != nil {
		return "", err
	}
	var pats []string
	for _, bl := range add {
		pats = append(pats, bl.patterns)
	}
	msg := fmt.Sprintf("added Host %s to %s", strings.Join(pats, ", Host "), file)
	if backup != "" {
		msg += "; the previous file is " + backup
	}
	return msg, nil
}

// firstProxyCommand is the ProxyCommand ssh would use for host, and where
// it is set ("line N", or the line of the Include that brings it in).
func firstProxyCommand(cfg *ssh_config.Config, host string) (value, where string) {
	for _, h := range cfg.Hosts {
		if !h.Matches(host) {
			continue
		}
		for _, n := range h.Nodes {
			switch n := n.(type) {
			case *ssh_config.KV:
				if strings.EqualFold(n.Key, "ProxyCommand") {
					return n.Value, fmt.Sprintf("line %d", n.Pos().Line)
				}
			case *ssh_config.Include:
				if v := n.Get(host, "ProxyCommand"); v != "" {
					return v, fmt.Sprintf("a file included at line %d", n.Pos().Line)
				}
			}
		}
	}
	return "", ""
}

func uniq(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
