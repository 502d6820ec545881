// Package sshconfig adds ssm-proxy's Host blocks to an OpenSSH client
// configuration file, or updates the ones it added before, and asks ssh
// itself what the result means.
//
// No parser of ours can say which line of an ssh_config wins: Match blocks,
// Include, first-value-wins, ProxyJump competing with ProxyCommand and the
// home directory ssh expands ~ with are ssh's to decide. So Install writes
// nothing before `ssh -G` has said, for sample hosts of every block, what
// it would use without them, and keeps nothing that `ssh -G` does not
// confirm afterwards: on a mismatch the file is put back and the winning
// line is named (ssh -G -vvv tells which blocks applied).
//
// The blocks live between two marker lines, so that a later install finds
// and rewrites them (a changed profile or region) instead of adding more.
// Everything outside the markers is kept byte for byte, line endings
// included.
package sshconfig

import (
	"bytes"
	"fmt"
	"strings"
)

// Option is one keyword and its value in a Host block.
type Option struct{ Key, Value string }

// Block is one Host block ssm-proxy writes.
type Block struct {
	// Comment is the line above the Host line, without "# ".
	Comment string
	// Patterns are the Host line's patterns, e.g. "i-* mi-*".
	Patterns string
	// Options follow the Host line in order.
	Options []Option
	// Samples are host names the block is for: `ssh -G` must give each of
	// them the block's ProxyCommand.
	Samples []string
}

// Get returns the value of the block's option key (any case), or "".
func (b Block) Get(key string) string {
	for _, o := range b.Options {
		if strings.EqualFold(o.Key, key) {
			return o.Value
		}
	}
	return ""
}

// The markers around the managed region. A line that starts with one of
// them is one.
const (
	BeginMarker = "# >>> ssm-proxy >>>"
	EndMarker   = "# <<< ssm-proxy <<<"
)

// legacyHeader began the blocks that ssm-proxy wrote before the markers;
// such a region is recognised and rewritten with markers.
const legacyHeader = "# ssm-proxy: ssh through AWS Systems Manager Session Manager"

// Render returns the managed region holding blocks, each line ending with
// eol ("\n" or "\r\n").
func Render(blocks []Block, eol string) []byte {
	var b bytes.Buffer
	line := func(s string) { b.WriteString(s + eol) }
	line(BeginMarker + " added by `ssm-proxy ssh-config --install`, which rewrites what is between the markers")
	for _, bl := range blocks {
		line("# " + bl.Comment)
		line("Host " + bl.Patterns)
		for _, o := range bl.Options {
			line("    " + o.Key + " " + o.Value)
		}
	}
	line(EndMarker)
	return b.Bytes()
}

// line is one line of a file and the end-of-line sequence it had.
type line struct {
	text string
	eol  string // "\n", "\r\n", or "" for a last line without one
}

// splitLines splits data into lines, keeping each line's ending so that
// joinLines gives data back byte for byte.
func splitLines(data []byte) []line {
	var ls []line
	s := string(data)
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			ls = append(ls, line{text: s})
			break
		}
		text, eol := s[:i], "\n"
		if strings.HasSuffix(text, "\r") {
			text, eol = text[:len(text)-1], "\r\n"
		}
		ls = append(ls, line{text: text, eol: eol})
		s = s[i+1:]
	}
	return ls
}

func joinLines(ls []line) []byte {
	var b bytes.Buffer
	for _, l := range ls {
		b.WriteString(l.text + l.eol)
	}
	return b.Bytes()
}

// dominantEOL is the line ending most lines of ls have: a CRLF file stays
// CRLF. An empty file gets "\n".
func dominantEOL(ls []line) string {
	var crlf, lf int
	for _, l := range ls {
		switch l.eol {
		case "\r\n":
			crlf++
		case "\n":
			lf++
		}
	}
	if crlf > lf {
		return "\r\n"
	}
	return "\n"
}

// renderLines is Render as lines.
func renderLines(blocks []Block, eol string) []line {
	return splitLines(Render(blocks, eol))
}

// region is the managed region of a file: lines first to last, inclusive.
type region struct{ first, last int }

// findRegion finds the managed region of ls, if any.
func findRegion(ls []line) (region, bool, error) {
	for i, l := range ls {
		t := strings.TrimSpace(l.text)
		switch {
		case strings.HasPrefix(t, BeginMarker):
			for j := i + 1; j < len(ls); j++ {
				if strings.HasPrefix(strings.TrimSpace(ls[j].text), EndMarker) {
					return region{i, j}, true, nil
				}
			}
			return region{}, false, fmt.Errorf("line %d starts ssm-proxy's block, but no %q line ends it", i+1, EndMarker)
		case t == legacyHeader:
			return region{i, legacyEnd(ls, i)}, true, nil
		}
	}
	return region{}, false, nil
}

// legacyEnd is the last line of a region that starts with legacyHeader at
// ls[first]: the header, then groups of a comment, a Host line and an
// indented ssm-proxy ProxyCommand, as earlier versions wrote them.
func legacyEnd(ls []line, first int) int {
	last := first
	for i := first + 1; i+2 < len(ls); i += 3 {
		c, h, p := ls[i].text, ls[i+1].text, ls[i+2].text
		key, val := keyword(p)
		if !strings.HasPrefix(c, "# ") || !strings.HasPrefix(h, "Host ") ||
			!strings.HasPrefix(p, " ") || key != "proxycommand" || !ssmProxyCommand().MatchString(val) {
			break
		}
		last = i + 2
	}
	return last
}

// keyword splits an ssh_config line into its lower-cased keyword and its
// value the way ssh does: the keyword ends at white space or '=', and one
// '=' with white space around it may separate the two. Blank lines and
// comments give "".
func keyword(s string) (key, value string) {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '#' {
		return "", ""
	}
	i := strings.IndexAny(s, " \t=")
	if i < 0 {
		return strings.ToLower(s), ""
	}
	key, rest := strings.ToLower(s[:i]), strings.TrimLeft(s[i:], " \t")
	if strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], " \t")
	}
	return key, strings.TrimSpace(rest)
}

// commentOut turns an option line into a comment that says why.
func commentOut(s string) string {
	indent := s[:len(s)-len(strings.TrimLeft(s, " \t"))]
	return indent + "# " + strings.TrimLeft(s, " \t") + "   # replaced by the ssm-proxy block"
}
