package sshconfig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/fsutil"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

// Kinds of ProxyCommand ssh may report for a host.
var (
	ssmProxyCommand = textutil.LazyRegexp(`(^|[\s/\\'"])ssm-proxy(\.exe)?(["']?\s|["']?$)`)
	awsCLICommand   = textutil.LazyRegexp(`\bssm\s+start-session\b|session-manager-plugin`)
)

// Error is a configuration Install will not change, or a change it undid;
// Hints say what the user can do.
type Error struct {
	Msg   string
	Hints []string
}

func (e *Error) Error() string { return e.Msg }

// Install adds Blocks to File, or rewrites the managed region that holds
// them, and checks the result with ssh.
type Install struct {
	// File is the ssh_config to change. A symlink is followed: the file it
	// points to is replaced, the link kept.
	File   string
	Blocks []Block
	// Replace comments out an `aws ssm start-session` ProxyCommand in File
	// that would win over a block, instead of refusing.
	Replace bool
	// Exact demands that a ProxyCommand for a block's hosts that Install
	// did not write be the block's own; otherwise any ssm-proxy
	// ProxyCommand will do (the user wrote it).
	Exact bool
	// SSH runs ssh; nil means ExecSSH.
	SSH Runner
	// Now names the backup.
	Now time.Time
	// Log, if set, receives what ssh -G reported.
	Log func(format string, args ...any)
}

// Result says what Install did.
type Result struct {
	File    string // the file, symlinks resolved
	Changed bool   // the file was written
	Updated bool   // the managed region was there and was rewritten
	// Added are the patterns of the blocks in the managed region now.
	Added []string
	// Replaced are the `aws ssm start-session` lines commented out.
	Replaced []*Line
	Backup   string // the previous file, "" for a new one
	// Routes say, for every sample host, where ssh takes its ProxyCommand
	// from, as ssh -G confirmed.
	Routes []Route
}

// Route is where ssh takes a host's ProxyCommand from.
type Route struct {
	Host, Patterns string
	From           *Line // nil when no line could be located
}

// verdict is how the ProxyCommand ssh would use for a host relates to a
// block's.
type verdict int

const (
	verdictOK       verdict = iota // the block's, or (not Exact) another ssm-proxy one
	verdictMissing                 // no ProxyCommand or ProxyJump at all
	verdictAWS                     // aws ssm start-session / session-manager-plugin
	verdictOther                   // some other ProxyCommand (or none)
	verdictJump                    // a ProxyJump, which shuts ProxyCommand out
	verdictNotExact                // ssm-proxy, but not the ProxyCommand asked for
	verdictControl                 // --multiplex's ControlMaster loses to another
	verdictNone                    // ProxyCommand none turns it off
)

func (in *Install) verdict(bl Block, e *Effective) verdict {
	pc, pj := e.Values["proxycommand"], e.Values["proxyjump"]
	switch {
	case pj != "" && !strings.EqualFold(pj, "none"):
		return verdictJump
	case pc == "" && e.Sets("proxycommand", "none") != nil:
		return verdictNone
	case pc == "":
		return verdictMissing
	case pc == bl.Get("ProxyCommand"):
	case ssmProxyCommand().MatchString(pc) && !in.Exact:
	case ssmProxyCommand().MatchString(pc):
		return verdictNotExact
	case awsCLICommand().MatchString(pc):
		return verdictAWS
	default:
		return verdictOther
	}
	if want := bl.Get("ControlMaster"); want != "" && !sameValue("controlmaster", want, e.Values["controlmaster"]) {
		return verdictControl
	}
	return verdictOK
}

// Run performs the install.
func (in *Install) Run(ctx context.Context) (*Result, error) {
	if in.SSH == nil {
		in.SSH = ExecSSH
	}
	file, err := filepath.Abs(in.File)
	if err != nil {
		return nil, err
	}
	if resolved, err := filepath.EvalSymlinks(file); err == nil {
		file = resolved // keep a dotfile manager's symlink
	}
	old, err := os.ReadFile(file)
	exists := err == nil
	perm := fs.FileMode(0o600)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		fi, err := os.Stat(file)
		if err != nil {
			return nil, err
		}
		perm = fi.Mode().Perm()
		if perm&0o200 == 0 {
			return nil, &Error{
				Msg: fmt.Sprintf("%s is read-only (mode %04o): ssm-proxy does not replace a file its owner made read-only", file, perm),
				Hints: []string{
					"if it is yours to change, make it writable (chmod u+w) and run again; if a tool generates it, add the block to that tool's source: `ssm-proxy ssh-config` prints it",
				},
			}
		}
	}
	ls := splitLines(old)
	eol := dominantEOL(ls)
	reg, hasRegion, err := findRegion(ls)
	if err != nil {
		return nil, &Error{Msg: fmt.Sprintf("%s: %v", file, err), Hints: []string{"fix or delete that block by hand, then run again"}}
	}

	tmp, err := os.MkdirTemp("", "ssm-proxy-ssh-config-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	probe := filepath.Join(tmp, "config")

	// What would ssh use without our region? The region's lines become
	// comments so that line numbers stay those of the file.
	base := append([]line(nil), ls...)
	if hasRegion {
		for i := reg.first; i <= reg.last; i++ {
			base[i].text = "#"
		}
	}
	var need []Block
	var replaced []*Line
	for attempt := 0; ; attempt++ {
		if err := os.WriteFile(probe, joinLines(base), 0o600); err != nil {
			return nil, err
		}
		need = need[:0]
		again := false
		for _, bl := range in.Blocks {
			missing := false
			for _, host := range bl.Samples {
				e, err := in.query(ctx, probe, file, host)
				if err != nil {
					return nil, err
				}
				switch v := in.verdict(bl, e); v {
				case verdictOK:
				case verdictMissing:
					missing = true
				case verdictAWS:
					w := e.Winner("proxycommand")
					if in.Replace && w != nil && w.File == probe && attempt < 8 {
						base[w.Line-1].text = commentOut(ls[w.Line-1].text)
						again = true
						continue
					}
					return nil, in.conflict(v, bl, e, probe, file, false)
				default:
					return nil, in.conflict(v, bl, e, probe, file, false)
				}
			}
			if missing {
				need = append(need, bl)
			}
		}
		if !again {
			break
		}
	}

	// The new file: lines commented out, the region rewritten, or the
	// region added at the end.
	var out []line
	for i := range ls {
		switch {
		case hasRegion && i == reg.first:
			if len(need) > 0 {
				out = append(out, renderLines(need, eol)...)
			}
		case hasRegion && i > reg.first && i <= reg.last:
		case base[i].text != ls[i].text:
			w := &Line{File: file, Line: i + 1, Text: strings.TrimSpace(ls[i].text)}
			replaced = append(replaced, w)
			out = append(out, line{text: base[i].text, eol: ls[i].eol})
		default:
			out = append(out, ls[i])
		}
	}
	if !hasRegion && len(need) > 0 {
		if n := len(out); n > 0 {
			if out[n-1].eol == "" {
				out[n-1].eol = eol
			}
			if strings.TrimSpace(out[n-1].text) != "" {
				out = append(out, line{eol: eol})
			}
		}
		out = append(out, renderLines(need, eol)...)
	}
	res := &Result{File: file, Updated: hasRegion, Replaced: replaced}
	for _, bl := range need {
		res.Added = append(res.Added, bl.Patterns)
	}
	data := joinLines(out)
	if exists && bytes.Equal(data, old) {
		res.Updated = false
		if res.Routes, err = in.verify(ctx, file); err != nil {
			return nil, err
		}
		return res, nil
	}

	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, err
	}
	if exists {
		if res.Backup, err = writeBackup(file, old, perm, in.Now); err != nil {
			return nil, fmt.Errorf("back up %s: %w", file, err)
		}
	}
	if err := fsutil.WriteFileAtomic(file, data, perm); err != nil {
		return nil, err
	}
	res.Changed = true
	routes, verr := in.verify(ctx, file)
	if verr == nil {
		res.Routes = routes
		return res, nil
	}
	// Roll back: the file as it was.
	if exists {
		if err := fsutil.WriteFileAtomic(file, old, perm); err != nil {
			return nil, fmt.Errorf("%v; and restoring %s from %s failed: %w", verr, file, res.Backup, err)
		}
		os.Remove(res.Backup)
	} else {
		os.Remove(file)
	}
	var ie *Error
	if errors.As(verr, &ie) {
		ie.Msg += "; " + file + " is as it was"
	}
	return nil, verr
}

// query runs ssh -G for host on the file at path; messages name display
// instead.
func (in *Install) query(ctx context.Context, path, display, host string) (*Effective, error) {
	e, err := Query(ctx, in.SSH, path, host)
	var se *SSHError
	if errors.As(err, &se) {
		msg := strings.ReplaceAll(se.Msg, path, display)
		return nil, &Error{
			Msg:   fmt.Sprintf("ssh cannot use %s: %s", display, msg),
			Hints: []string{"fix the line ssh names (`ssh -G " + host + "` shows it), then run again"},
		}
	}
	if errors.Is(err, ErrNoSSH) {
		return nil, &Error{
			Msg:   "ssh not found in PATH: ssm-proxy asks ssh (ssh -G) what a configuration means before it changes one",
			Hints: []string{"install OpenSSH's client, or add the block by hand: `ssm-proxy ssh-config` prints it"},
		}
	}
	if err != nil {
		return nil, err
	}
	if in.Log != nil {
		in.Log("ssh -G %s: proxycommand %q, proxyjump %q", host, e.Values["proxycommand"], e.Values["proxyjump"])
	}
	return e, nil
}

// verify asks ssh about file for every sample host and returns where
// their ProxyCommands come from, or the Error naming the line that wins.
func (in *Install) verify(ctx context.Context, file string) ([]Route, error) {
	var routes []Route
	for _, bl := range in.Blocks {
		for _, host := range bl.Samples {
			e, err := in.query(ctx, file, file, host)
			if err != nil {
				return nil, err
			}
			if v := in.verdict(bl, e); v != verdictOK {
				return nil, in.conflict(v, bl, e, file, file, true)
			}
			routes = append(routes, Route{Host: host, Patterns: bl.Patterns, From: e.Winner("proxycommand")})
		}
	}
	return routes, nil
}

// conflict explains verdict v for the host of e; written says whether the
// new file was written (and is being rolled back).
func (in *Install) conflict(v verdict, bl Block, e *Effective, path, display string, written bool) error {
	where := func(key string) string {
		w := e.Winner(key)
		if w == nil {
			return "a line ssm-proxy could not locate (`ssh -G -vvv " + e.Host + "` lists the files ssh reads)"
		}
		l := *w
		if l.File == path {
			l.File = display
		}
		return l.String()
	}
	above := "put ssm-proxy's block (`ssm-proxy ssh-config` prints it) above that line by hand: ssh uses the first value it finds"
	pc := e.Values["proxycommand"]
	prefix := ""
	if written {
		prefix = "ssh would not use the new block: "
	}
	switch v {
	case verdictJump:
		return &Error{
			Msg:   fmt.Sprintf("%sfor %s ssh takes ProxyJump %s from %s, and a ProxyJump shuts out every later ProxyCommand", prefix, e.Host, e.Values["proxyjump"], where("proxyjump")),
			Hints: []string{above, "or make that block skip these hosts (e.g. `Host * !i-* !mi-*`)"},
		}
	case verdictAWS:
		h := "`ssm-proxy ssh-config --install --replace` comments that line out and adds ssm-proxy's block, keeping a backup; ssm-proxy needs neither the AWS CLI nor the session-manager-plugin"
		if in.Replace {
			h = "--replace edits only " + display + "; comment that line out where it is, then run again"
		}
		return &Error{
			Msg:   fmt.Sprintf("%sfor %s ssh takes its ProxyCommand from %s, which goes through `aws ssm start-session`", prefix, e.Host, where("proxycommand")),
			Hints: []string{h},
		}
	case verdictNotExact:
		return &Error{
			Msg:   fmt.Sprintf("%sfor %s ssh takes ProxyCommand %s from %s, not the one asked for (%s)", prefix, e.Host, pc, where("proxycommand"), bl.Get("ProxyCommand")),
			Hints: []string{"edit that line, or delete it and run again to have ssm-proxy's block added"},
		}
	case verdictControl:
		return &Error{
			Msg:   fmt.Sprintf("%sfor %s ssh takes ControlMaster %s from %s, so --multiplex would not apply", prefix, e.Host, e.Values["controlmaster"], where("controlmaster")),
			Hints: []string{above, "or run without --multiplex"},
		}
	case verdictNone:
		w := e.Sets("proxycommand", "none")
		l := *w
		if l.File == path {
			l.File = display
		}
		return &Error{
			Msg:   fmt.Sprintf("%sfor %s ssh takes ProxyCommand none from %s, which turns every later ProxyCommand off", prefix, e.Host, l.String()),
			Hints: []string{above},
		}
	case verdictMissing:
		return &Error{
			Msg:   fmt.Sprintf("%sssh -G finds no ProxyCommand for %s", prefix, e.Host),
			Hints: []string{"check `ssh -G " + e.Host + "`: a Match or CanonicalizeHostname may change the host name before Host lines are matched"},
		}
	}
	return &Error{
		Msg:   fmt.Sprintf("%sfor %s ssh takes ProxyCommand %s from %s", prefix, e.Host, pc, where("proxycommand")),
		Hints: []string{above},
	}
}

// writeBackup copies data next to file under a name no other backup has:
// two installs within the same second keep both.
func writeBackup(file string, data []byte, perm fs.FileMode, now time.Time) (string, error) {
	stem := fmt.Sprintf("%s.ssm-proxy-%s", file, now.Format("20060102-150405"))
	for n := 1; n < 1000; n++ {
		name := stem + ".bak"
		if n > 1 {
			name = fmt.Sprintf("%s-%d.bak", stem, n)
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = f.Write(data)
		if serr := f.Sync(); err == nil {
			err = serr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(name)
			return "", err
		}
		return name, nil
	}
	return "", fmt.Errorf("%s.bak and 998 more names are taken", stem)
}
