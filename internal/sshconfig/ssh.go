package sshconfig

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

// Runner runs ssh with args and returns what it wrote; a non-zero exit is
// an *exec.ExitError.
type Runner func(ctx context.Context, args ...string) (stdout, stderr []byte, err error)

// sshTimeout bounds one ssh -G (a Match exec in the file runs a command).
const sshTimeout = 10 * time.Second

// ExecSSH runs the ssh that PATH finds, stdin closed.
func ExecSSH(ctx context.Context, args ...string) ([]byte, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, sshTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A Match exec child that keeps stderr open must not hold Run past
	// the timeout.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("ssh did not finish within %s: %w", sshTimeout, err)
	}
	return stdout.Bytes(), stderr.Bytes(), err
}

// SSHError is ssh refusing a configuration file.
type SSHError struct {
	File string
	Msg  string // ssh's own lines, joined
	Err  error
}

func (e *SSHError) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("ssh -G -F %s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("ssh cannot use %s: %s", e.File, e.Msg)
}

func (e *SSHError) Unwrap() error { return e.Err }

// Effective is what ssh -G reports for one host: the configuration ssh
// would connect with, and which blocks applied.
type Effective struct {
	Host string
	// Values maps lower-case keywords to the values ssh -G prints.
	Values map[string]string
	trace  trace
}

// Query asks ssh for the configuration of host when it reads file (an
// absolute path) as its only configuration file.
func Query(ctx context.Context, ssh Runner, file, host string) (*Effective, error) {
	stdout, stderr, err := ssh(ctx, "-G", "-vvv", "-F", file, host)
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("%w: %v", ErrNoSSH, err)
	}
	if err != nil {
		return nil, &SSHError{File: file, Msg: sshMessages(stderr), Err: err}
	}
	e := &Effective{Host: host, Values: map[string]string{}, trace: parseTrace(stderr)}
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		if k = strings.ToLower(k); k != "" {
			if _, dup := e.Values[k]; !dup {
				e.Values[k] = strings.TrimSpace(v)
			}
		}
	}
	return e, nil
}

// sshMessages are the lines of ssh's stderr that are not debugging.
func sshMessages(stderr []byte) string {
	var msgs []string
	for _, l := range strings.Split(string(stderr), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "debug") || strings.HasPrefix(l, "OpenSSH_") ||
			strings.HasPrefix(l, "Pseudo-terminal will not be allocated") {
			continue
		}
		msgs = append(msgs, l)
	}
	return strings.Join(msgs, "; ")
}

// loc is a line of a file.
type loc struct {
	file string
	line int
}

// trace is what ssh -vvv says about reading its configuration: the files
// it read and the Host and Match lines that applied, in its first pass.
type trace struct {
	files   []string
	applied map[loc]bool
}

var (
	traceRead     = textutil.LazyRegexp(`^debug1: Reading configuration data (.+)$`)
	traceApplying = textutil.LazyRegexp(`^debug1: (.+) line (\d+): Applying options for `)
	traceMatched  = textutil.LazyRegexp(`^debug3: (.+) line (\d+): (not )?matched '`)
)

func parseTrace(stderr []byte) trace {
	t := trace{applied: map[loc]bool{}}
	var pending *loc // the Match line being evaluated
	matched := true
	for _, l := range strings.Split(string(stderr), "\n") {
		l = strings.TrimRight(l, "\r ")
		if m := traceRead().FindStringSubmatch(l); m != nil {
			if len(t.files) > 0 && m[1] == t.files[0] {
				break // a second pass (Match final, canonicalisation)
			}
			t.files = append(t.files, m[1])
			continue
		}
		if m := traceApplying().FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[2])
			t.applied[loc{m[1], n}] = true
			continue
		}
		if strings.HasPrefix(l, "debug2: checking match for ") {
			pending, matched = nil, true
			continue
		}
		if m := traceMatched().FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[2])
			pending = &loc{m[1], n}
			matched = matched && m[3] == ""
			continue
		}
		if l == "debug2: match found" && pending != nil && matched {
			t.applied[*pending] = true
		}
	}
	return t
}

// Line is a line of a configuration file.
type Line struct {
	File string
	Line int    // 1-based
	Text string // as written, trimmed
	// Header is the Host or Match line of its block, "" before the first.
	Header string
}

// String names the line for a message: "FILE line N (Host *): TEXT".
func (l *Line) String() string {
	s := fmt.Sprintf("%s line %d", l.File, l.Line)
	if l.Header != "" {
		s += " (" + l.Header + ")"
	}
	return s + ": " + l.Text
}

// Winner is the line ssh took the value of key (lower case) from, or nil
// when no line sets it (a default). See Sets.
func (e *Effective) Winner(key string) *Line {
	want, ok := e.Values[key]
	if !ok {
		return nil
	}
	return e.Sets(key, want)
}

// Sets is the first line in the files ssh read that sets key to value in
// a block that applied; or, when the trace does not show which blocks
// applied, the first line setting that value at all; or nil.
func (e *Effective) Sets(key, value string) *Line {
	var fallback *Line
	for _, f := range e.trace.files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		active, header := true, ""
		for i, l := range splitLines(data) {
			k, v := keyword(l.text)
			switch k {
			case "host":
				active, header = e.trace.applied[loc{f, i + 1}], strings.TrimSpace(l.text)
			case "match":
				active, header = e.trace.applied[loc{f, i + 1}] || strings.EqualFold(v, "all"), strings.TrimSpace(l.text)
			case key:
				if !sameValue(key, v, value) {
					continue
				}
				w := &Line{File: f, Line: i + 1, Text: strings.TrimSpace(l.text), Header: header}
				if active {
					return w
				}
				if fallback == nil {
					fallback = w
				}
			}
		}
	}
	return fallback
}

// sameValue reports whether a value written in a file is the one ssh -G
// printed for key.
func sameValue(key, written, printed string) bool {
	switch key {
	case "proxycommand":
		return written == printed
	case "controlmaster":
		norm := map[string]string{"yes": "true", "no": "false"}
		w := strings.ToLower(written)
		if n, ok := norm[w]; ok {
			w = n
		}
		return w == strings.ToLower(printed)
	}
	return strings.EqualFold(written, printed)
}

// ErrNoSSH is returned when ssh cannot be run at all.
var ErrNoSSH = errors.New("ssh not found")
