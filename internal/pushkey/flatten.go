package pushkey

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxIncludeDepth is ssh's own limit on nested Include (READCONF_MAX_DEPTH).
const maxIncludeDepth = 16

// neverMatches is the Host line that stands in for a Match block ssm-proxy
// cannot evaluate: a pattern list with only a negation matches no host, in
// ssh and in kevinburke/ssh_config alike, so the block's settings are not
// used.
const neverMatches = "Host !*"

// flattenSSHConfig reads an ssh_config file for kevinburke/ssh_config,
// which gives up on a whole file (and on the file that Includes it) at the
// first Match it does not support: exec, user, localuser, originalhost,
// canonical, final, or host combined with another criterion. ssh accepts
// them all, and a single such line (RHEL's system file has `Match final
// all`) used to hide every IdentityFile and User from --push-key.
//
// So each Include is read here and inlined, and each Match other than
// `Match all` and `Match host PATTERNS` becomes a block that matches no
// host: its settings are left out, as ssh leaves them out when the
// criteria are false. After an inlined file the enclosing Host or Match
// line is repeated, because ssh restores the including file's state after
// an Include. (ssh also never activates a Host line of a file included
// from an inactive block; inlined, such a line is evaluated on its own.)
//
// system says whether path is a system file: relative Include paths are
// then under /etc/ssh rather than ~/.ssh.
func flattenSSHConfig(path, home string, system bool, depth int, log *slog.Logger) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	header := "" // the Host or Match line in force; "" before the first
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		keyword, args := splitConfigLine(line)
		switch strings.ToLower(keyword) {
		case "host":
			header = line
		case "match":
			if !matchSupported(args) {
				log.Debug("ssh_config: a Match that is not evaluated; its settings are not used", "path", path, "line", n, "match", strings.Join(args, " "))
				line = neverMatches
			}
			header = line
		case "include":
			if depth >= maxIncludeDepth {
				return nil, fmt.Errorf("%s:%d: Include nested more than %d deep", path, n, maxIncludeDepth)
			}
			for _, f := range includeFiles(args, home, system) {
				inc, err := flattenSSHConfig(f, home, system, depth+1, log)
				if err != nil {
					log.Debug("ssh_config: an included file is not read", "path", f, "err", err)
					continue
				}
				out.Write(inc)
				out.WriteByte('\n')
			}
			if header == "" {
				out.WriteString("Host *\n")
			} else {
				out.WriteString(header + "\n")
			}
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.Bytes(), sc.Err()
}

// matchSupported says whether kevinburke/ssh_config evaluates a Match line
// with these arguments as ssh does.
func matchSupported(args []string) bool {
	switch {
	case len(args) == 1 && strings.EqualFold(args[0], "all"):
		return true
	case len(args) == 2 && strings.EqualFold(args[0], "host"):
		return true
	}
	return false
}

// includeFiles expands an Include line's arguments as ssh does: ~ is the
// home directory, a relative path is under ~/.ssh (or /etc/ssh for a
// system file), and globs expand in sorted order.
func includeFiles(args []string, home string, system bool) []string {
	var files []string
	for _, a := range args {
		switch {
		case a == "~" || strings.HasPrefix(a, "~/"):
			a = filepath.Join(home, a[1:])
		case filepath.IsAbs(a):
		case system:
			a = filepath.Join("/etc/ssh", a)
		default:
			a = filepath.Join(home, ".ssh", a)
		}
		m, err := filepath.Glob(a)
		if err != nil {
			continue
		}
		slices.Sort(m)
		files = append(files, m...)
	}
	return files
}

// splitConfigLine splits an ssh_config line into its keyword and
// arguments: `Key value...` or `Key=value...`, arguments separated by
// white space, double quotes grouping. A comment or blank line has no
// keyword.
func splitConfigLine(line string) (keyword string, args []string) {
	s := strings.TrimLeft(line, " \t")
	if s == "" || s[0] == '#' {
		return "", nil
	}
	i := strings.IndexAny(s, " \t=")
	if i < 0 {
		return s, nil
	}
	keyword, s = s[:i], strings.TrimLeft(s[i:], " \t")
	s = strings.TrimPrefix(s, "=")
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case (r == ' ' || r == '\t') && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		case r == '#' && !inQuote && !have:
			return keyword, args
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return keyword, args
}
