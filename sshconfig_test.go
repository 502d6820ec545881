package main

// `ssm-proxy ssh-config` through run, each result read back with the real
// ssh -G: what it prints for every form of the flags, a % in a profile name
// reaching the program, and --install (new, appended, updated in place,
// conflicts, --replace, rollback, Include and symlinks, the legacy block).
// The line editing is internal/sshconfig's; connecting through what it
// prints is e2e/examples_test.go's (TestGeneratedSSHConfig).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/sshconfig"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// The tests ask the real ssh (ssh -G) what a written file means, always
// with -F and a temporary file: never the user's ~/.ssh/config.

// sshConfigCLI is a cli whose ProxyCommand program is fixed, whose passwd
// home is a temporary directory and whose clock stands still.
func sshConfigCLI(t *testing.T, program string) *cli {
	t.Helper()
	home := t.TempDir()
	now := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	return &cli{
		program:    func() string { return program },
		passwdHome: func() (string, error) { return home, nil },
		now:        func() time.Time { return now },
	}
}

// sshGTest is what ssh -G says about host when it reads file alone.
func sshGTest(t *testing.T, file, host string) map[string]string {
	t.Helper()
	testenv.Require(t, "ssh")
	e, err := sshconfig.Query(context.Background(), sshconfig.ExecSSH, file, host)
	if err != nil {
		t.Fatalf("ssh -G %s: %v", host, err)
	}
	return e.Values
}

// install runs `ssm-proxy ssh-config --install --file file args...`.
func install(t *testing.T, c *cli, file string, args ...string) (code int, stderr string) {
	t.Helper()
	code, stdout, stderr := runWith(t, c, "", append([]string{"ssh-config", "--install", "--file", file}, args...)...)
	if stdout != "" {
		t.Errorf("stdout %q", stdout)
	}
	return code, stderr
}

func backups(t *testing.T, file string) []string {
	t.Helper()
	m, _ := filepath.Glob(file + ".ssm-proxy-*.bak")
	return m
}

func writeFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSSHConfigPrint: what ssh-config prints is what ssh then uses, for
// every form of the flags.
func TestSSHConfigPrint(t *testing.T) {
	cases := []struct {
		name    string
		program string
		args    []string
		want    map[string]map[string]string // host → ssh -G values
	}{
		{"default", "ssm-proxy", nil, map[string]map[string]string{
			"i-0123456789abcdef0":  {"proxycommand": "ssm-proxy %h %p", "serveraliveinterval": "60"},
			"mi-0123456789abcdef0": {"proxycommand": "ssm-proxy %h %p"},
			"web-1.ssm":            {"proxycommand": "ssm-proxy --strip-suffix .ssm %n %p", "serveraliveinterval": "60"},
			"github.com":           {"proxycommand": "", "serveraliveinterval": "0"},
		}},
		{"pinned", "/opt/bin/ssm-proxy", []string{"--profile", "prod", "--region", "eu-west-1"}, map[string]map[string]string{
			"i-0123456789abcdef0": {"proxycommand": "/opt/bin/ssm-proxy --profile prod --region eu-west-1 %h %p"},
			"web-1.ssm":           {"proxycommand": "/opt/bin/ssm-proxy --profile prod --region eu-west-1 --strip-suffix .ssm %n %p"},
		}},
		{"percent and spaces", "/opt/my tools/ssm-proxy", []string{"--profile", "x%h"}, map[string]map[string]string{
			"i-0123456789abcdef0": {"proxycommand": `"/opt/my tools/ssm-proxy" --profile x%%h %h %p`},
		}},
		{"prefix", "ssm-proxy", []string{"--strip-prefix", "prod-"}, map[string]map[string]string{
			"prod-web-1": {"proxycommand": "ssm-proxy --strip-prefix prod- %n %p"},
			"web-1.ssm":  {"proxycommand": ""},
		}},
		{"prefix and suffix", "ssm-proxy", []string{"--strip-prefix", "p-", "--strip-suffix", ".aws"}, map[string]map[string]string{
			"p-web-1.aws": {"proxycommand": "ssm-proxy --strip-prefix p- --strip-suffix .aws %n %p"},
		}},
		{"multiplex", "ssm-proxy", []string{"--multiplex"}, map[string]map[string]string{
			"i-0123456789abcdef0": {"controlmaster": "auto", "controlpersist": "600"},
		}},
		{"share", "ssm-proxy", []string{"--share", "90s"}, map[string]map[string]string{
			"i-0123456789abcdef0": {"proxycommand": "ssm-proxy --share 1m30s --fdpass %h %p", "proxyusefdpass": "yes"},
			"web-1.ssm":           {"proxycommand": "ssm-proxy --share 1m30s --fdpass --strip-suffix .ssm %n %p", "proxyusefdpass": "yes"},
		}},
		{"share in hours", "ssm-proxy", []string{"--share", "1h"}, map[string]map[string]string{
			"i-0123456789abcdef0": {"proxycommand": "ssm-proxy --share 1h --fdpass %h %p"},
		}},
		{"push key", "ssm-proxy", []string{"--push-key", "--profile", "prod"}, map[string]map[string]string{
			"i-0123456789abcdef0":  {"proxycommand": "ssm-proxy --profile prod --push-key --os-user %r %h %p"},
			"mi-0123456789abcdef0": {"proxycommand": "ssm-proxy --profile prod %h %p", "serveraliveinterval": "60"},
			"web-1.ssm":            {"proxycommand": "ssm-proxy --profile prod --push-key --os-user %r --strip-suffix .ssm %n %p"},
		}},
		{"push ephemeral key", "ssm-proxy", []string{"--push-key=ephemeral"}, map[string]map[string]string{
			"i-0123456789abcdef0": {"proxycommand": "ssm-proxy --push-key=ephemeral --os-user %r %h %p"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runWith(t, sshConfigCLI(t, c.program), "", append([]string{"ssh-config"}, c.args...)...)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d stderr %q", code, stderr)
			}
			file := filepath.Join(t.TempDir(), "config")
			writeFile(t, file, stdout, 0o600)
			for host, want := range c.want {
				got := sshGTest(t, file, host)
				for k, v := range want {
					if got[k] != v {
						t.Errorf("%s: %s %q, want %q", host, k, got[k], v)
					}
				}
			}
		})
	}
	for _, bad := range []string{"a b", "*", "x,y", `q"`} {
		if code, _, stderr := runWith(t, sshConfigCLI(t, "ssm-proxy"), "", "ssh-config", "--strip-suffix", bad); code != exitUsage {
			t.Errorf("--strip-suffix %q: exit %d %s", bad, code, stderr)
		}
	}
}

// TestSSHConfigPercentReachesProgram: ssh runs the ProxyCommand written
// for a profile with % in its name, and the program gets the name as it
// was given, its path with a space intact.
func TestSSHConfigPercentReachesProgram(t *testing.T) {
	testenv.Require(t, "ssh")
	dir := filepath.Join(t.TempDir(), "my tools")
	argsFile := filepath.Join(dir, "args")
	program := filepath.Join(dir, "ssm-proxy")
	writeFile(t, program, "#!/bin/sh\nprintf '%s\\n' \"$@\" > '"+argsFile+"'\n", 0o755)
	c := sshConfigCLI(t, program)
	code, stdout, stderr := runWith(t, c, "", "ssh-config", "--profile", "x%h y")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	file := filepath.Join(t.TempDir(), "config")
	writeFile(t, file, stdout, 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ssh := exec.CommandContext(ctx, "ssh", "-F", file, "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=/dev/null", "i-0123456789abcdef0", "true")
	ssh.Run() // fails at the key exchange: the program closes at once
	got := readFile(t, argsFile)
	if want := "--profile\nx%h y\ni-0123456789abcdef0\n22\n"; got != want {
		t.Errorf("the program got %q, want %q", got, want)
	}
}

func TestSSHConfigInstallNew(t *testing.T) {
	c := sshConfigCLI(t, "ssm-proxy")
	file := filepath.Join(t.TempDir(), "home", ".ssh", "config")
	code, stderr := install(t, c, file)
	if code != exitOK || !strings.Contains(stderr, "added Host i-* mi-*, Host *.ssm to "+file) ||
		!strings.Contains(stderr, "`ssh -G` confirms it routes i-* mi-* (line 4), *.ssm (line 8) through ssm-proxy") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for p, mode := range map[string]os.FileMode{file: 0o600, filepath.Dir(file): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", p, fi.Mode(), err, mode)
		}
	}
	if b := backups(t, file); len(b) != 0 {
		t.Errorf("backups of a new file: %v", b)
	}
	before := readFile(t, file)
	code, stderr = install(t, c, file)
	if code != exitOK || !strings.Contains(stderr, file+" already routes i-* mi-* (line 4), *.ssm (line 8) through ssm-proxy, as `ssh -G` confirms; nothing to do") {
		t.Fatalf("second install: exit %d: %s", code, stderr)
	}
	if after := readFile(t, file); after != before {
		t.Errorf("second install changed the file:\n%s", after)
	}
	if b := backups(t, file); len(b) != 0 {
		t.Errorf("backups after nothing to do: %v", b)
	}
}

// TestSSHConfigInstallDefaultFile: without --file the file is
// ~/.ssh/config in the passwd home, which is where ssh looks, and a note
// says so when $HOME is elsewhere.
func TestSSHConfigInstallDefaultFile(t *testing.T) {
	c := sshConfigCLI(t, "ssm-proxy")
	home, _ := c.passwdHome()
	envHome := t.TempDir()
	t.Setenv("HOME", envHome)
	code, stdout, stderr := runWith(t, c, "", "ssh-config", "--install")
	file := filepath.Join(home, ".ssh", "config")
	if code != exitOK || stdout != "" {
		t.Fatalf("exit %d stdout %q: %s", code, stdout, stderr)
	}
	want := "ssm-proxy: ssh reads " + file + ": ~ is the home directory in the passwd database (" + home + "), not $HOME (" + envHome + "); that is the file changed"
	if !strings.Contains(stderr, want) || !strings.Contains(stderr, "added Host i-* mi-*, Host *.ssm to "+file) {
		t.Errorf("stderr:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(envHome, ".ssh")); err == nil {
		t.Errorf("wrote under $HOME")
	}
	if got := sshGTest(t, file, "i-0123456789abcdef0")["proxycommand"]; got != "ssm-proxy %h %p" {
		t.Errorf("ProxyCommand %q", got)
	}
	t.Setenv("HOME", home)
	if _, _, stderr := runWith(t, c, "", "ssh-config", "--install"); strings.Contains(stderr, "not $HOME") {
		t.Errorf("note with $HOME the passwd home:\n%s", stderr)
	}
}

func TestSSHConfigInstallAppends(t *testing.T) {
	for _, eol := range []string{"\n", "\r\n"} {
		t.Run(map[string]string{"\n": "LF", "\r\n": "CRLF"}[eol], func(t *testing.T) {
			c := sshConfigCLI(t, "ssm-proxy")
			file := filepath.Join(t.TempDir(), "config")
			old := strings.ReplaceAll("Host github.com\n    User git\n    IdentityFile ~/.ssh/github", "\n", eol) // no final newline
			writeFile(t, file, old, 0o640)
			code, stderr := install(t, c, file)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got := readFile(t, file)
			if !strings.HasPrefix(got, old+eol+eol+sshconfig.BeginMarker) {
				t.Errorf("new file:\n%q", got)
			}
			if lf := strings.Count(got, "\n"); strings.Count(got, eol) != lf {
				t.Errorf("line endings mixed:\n%q", got)
			}
			if v := sshGTest(t, file, "github.com")["user"]; v != "git" {
				t.Errorf("existing block lost: User %q", v)
			}
			if v := sshGTest(t, file, "i-0123456789abcdef0")["proxycommand"]; v != "ssm-proxy %h %p" {
				t.Errorf("ProxyCommand %q", v)
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want the old 0640", fi.Mode().Perm())
			}
			b := backups(t, file)
			if len(b) != 1 || readFile(t, b[0]) != old || !strings.Contains(stderr, "the previous file is "+b[0]) {
				t.Fatalf("backups %v; stderr %s", b, stderr)
			}
		})
	}
}

// TestSSHConfigInstallUpdates: a changed --profile or --region rewrites
// ssm-proxy's own block in place; every install keeps its own backup, two
// within the same second included (11.10).
func TestSSHConfigInstallUpdates(t *testing.T) {
	c := sshConfigCLI(t, "ssm-proxy")
	file := filepath.Join(t.TempDir(), "config")
	const old = "Host github.com\n    User git\n"
	writeFile(t, file, old, 0o600)
	steps := []struct {
		args []string
		want string // ProxyCommand of i-…
		msg  string
	}{
		{nil, "ssm-proxy %h %p", "added Host i-* mi-*, Host *.ssm"},
		{[]string{"--profile", "prod"}, "ssm-proxy --profile prod %h %p", "updated ssm-proxy's block in"},
		{[]string{"--profile", "prod", "--region", "eu-west-1"}, "ssm-proxy --profile prod --region eu-west-1 %h %p", "updated ssm-proxy's block in"},
		{[]string{"--profile", "prod", "--region", "eu-west-1"}, "ssm-proxy --profile prod --region eu-west-1 %h %p", "nothing to do"},
	}
	var contents []string // the file before each change
	for i, s := range steps {
		before := readFile(t, file)
		code, stderr := install(t, c, file, s.args...)
		if code != exitOK || !strings.Contains(stderr, s.msg) {
			t.Fatalf("step %d: exit %d: %s", i, code, stderr)
		}
		if got := sshGTest(t, file, "i-0123456789abcdef0")["proxycommand"]; got != s.want {
			t.Errorf("step %d: ProxyCommand %q, want %q", i, got, s.want)
		}
		got := readFile(t, file)
		if n := strings.Count(got, sshconfig.BeginMarker); n != 1 {
			t.Errorf("step %d: %d ssm-proxy blocks:\n%s", i, n, got)
		}
		if !strings.HasPrefix(got, old) {
			t.Errorf("step %d: the user's lines changed:\n%s", i, got)
		}
		if got != before {
			contents = append(contents, before)
		}
	}
	b := backups(t, file)
	if len(b) != len(contents) {
		t.Fatalf("%d backups %v, want %d", len(b), b, len(contents))
	}
	for _, want := range contents {
		found := false
		for _, p := range b {
			found = found || readFile(t, p) == want
		}
		if !found {
			t.Errorf("no backup holds:\n%s", want)
		}
	}
}

// TestSSHConfigInstallPartial: a block of the user's that already routes
// ids through ssm-proxy is kept; only the name block is added.
func TestSSHConfigInstallPartial(t *testing.T) {
	c := sshConfigCLI(t, "ssm-proxy")
	file := filepath.Join(t.TempDir(), "config")
	writeFile(t, file, "Host i-* mi-*\n  ProxyCommand /usr/local/bin/ssm-proxy --profile dev %h %p\n", 0o600)
	code, stderr := install(t, c, file)
	if code != exitOK || !strings.Contains(stderr, "added Host *.ssm to") || !strings.Contains(stderr, "routes i-* mi-* (line 2), *.ssm (line") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := readFile(t, file)
	if strings.Count(got, "Host i-* mi-*") != 1 || !strings.Contains(got, "Host *.ssm") {
		t.Errorf("file:\n%s", got)
	}
	// Asked for another profile, the user's line is not the one asked for.
	code, stderr = install(t, c, file, "--profile", "prod")
	checkOneError(t, stderr, "not the one asked for (ssm-proxy --profile prod %h %p)", file+" line 2 (Host i-* mi-*)")
	if code != exitError || readFile(t, file) != got {
		t.Errorf("exit %d; file changed", code)
	}
}

// TestSSHConfigInstallConflicts: when another line wins for ssm-proxy's
// hosts, nothing is written and the winning line is named.
func TestSSHConfigInstallConflicts(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "work.conf")
	writeFile(t, inc, "Host i-*\n    ProxyCommand /opt/work/proxy %h %p\n", 0o600)
	awsCommand := `sh -c "aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters 'portNumber=%p'"`
	cases := []struct {
		name, config string
		args         []string
		want         []string
	}{
		{"aws cli host block", "Host i-* mi-*\n    ProxyCommand " + awsCommand + "\n",
			nil, []string{"line 2 (Host i-* mi-*): ProxyCommand " + awsCommand, "goes through `aws ssm start-session`", "--install --replace", "session-manager-plugin"}},
		{"aws cli match block", "Match host i-*,mi-*\n    ProxyCommand " + awsCommand + "\n",
			nil, []string{"line 2 (Match host i-*,mi-*)", "--replace"}},
		{"proxy for all hosts", "Host *\n    ProxyCommand nc -X connect -x proxy:3128 %h %p\n",
			nil, []string{"ssh takes ProxyCommand nc -X connect -x proxy:3128 %h %p from", "line 2 (Host *)", "above that line by hand"}},
		{"proxyjump for all hosts", "Host *\n    ProxyJump bastion\n",
			nil, []string{"ssh takes ProxyJump bastion from", "line 2 (Host *)", "shuts out every later ProxyCommand"}},
		{"proxyjump for ids", "Host i-*\n    ProxyJump jump.example.com\n",
			nil, []string{"ProxyJump jump.example.com", "line 2 (Host i-*)"}},
		{"proxycommand none", "Host *\n    ProxyCommand none\n",
			nil, []string{"ssh takes ProxyCommand none from", "line 2 (Host *)", "turns every later ProxyCommand off"}},
		{"include wins", "Include " + inc + "\n",
			nil, []string{inc + " line 2 (Host i-*): ProxyCommand /opt/work/proxy %h %p"}},
		{"bad option", "Host x\n    Bogus yes\n",
			nil, []string{"ssh cannot use", "line 2: Bad configuration option: bogus"}},
		{"unterminated block", sshconfig.BeginMarker + "\nHost i-*\n",
			nil, []string{"line 1 starts ssm-proxy's block, but no", "fix or delete that block"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "config")
			writeFile(t, file, c.config, 0o600)
			code, stderr := install(t, sshConfigCLI(t, "ssm-proxy"), file, c.args...)
			if code != exitError {
				t.Errorf("exit %d", code)
			}
			checkOneError(t, stderr, c.want...)
			if got := readFile(t, file); got != c.config {
				t.Errorf("file changed:\n%s", got)
			}
			if b := backups(t, file); len(b) != 0 {
				t.Errorf("backups %v", b)
			}
		})
	}
}

func TestSSHConfigInstallReadOnly(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config")
	const old = "Host github.com\n    User git\n"
	writeFile(t, file, old, 0o444)
	code, stderr := install(t, sshConfigCLI(t, "ssm-proxy"), file)
	if code != exitError {
		t.Errorf("exit %d", code)
	}
	checkOneError(t, stderr, file+" is read-only (mode 0444)", "chmod u+w")
	if readFile(t, file) != old || len(backups(t, file)) != 0 {
		t.Error("file or backups changed")
	}
}

// TestSSHConfigInstallReplace: --replace comments out the aws ssm
// start-session ProxyCommand that wins and adds ssm-proxy's block; the
// block's other options still apply and the backup holds the old file.
func TestSSHConfigInstallReplace(t *testing.T) {
	awsCommand := `sh -c "aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters 'portNumber=%p'"`
	for _, header := range []string{"Host i-* mi-*", "Match host i-*,mi-*"} {
		t.Run(header, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "config")
			old := header + "\n    User ec2-user\n    ProxyCommand " + awsCommand + "\n"
			writeFile(t, file, old, 0o600)
			code, stderr := install(t, sshConfigCLI(t, "ssm-proxy"), file, "--replace")
			if code != exitOK || !strings.Contains(stderr, "commented out "+file+" line 3: ProxyCommand "+awsCommand) {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			for _, host := range []string{"i-0123456789abcdef0", "mi-0123456789abcdef0"} {
				g := sshGTest(t, file, host)
				if g["proxycommand"] != "ssm-proxy %h %p" || g["user"] != "ec2-user" {
					t.Errorf("%s: ProxyCommand %q User %q", host, g["proxycommand"], g["user"])
				}
			}
			b := backups(t, file)
			if len(b) != 1 || readFile(t, b[0]) != old {
				t.Errorf("backups %v", b)
			}
			if !strings.Contains(readFile(t, file), "# ProxyCommand "+awsCommand) {
				t.Errorf("the old line is not kept as a comment:\n%s", readFile(t, file))
			}
		})
	}
}

// TestSSHConfigInstallRollback: when ssh, asked after writing, would not
// use the new block, the file is put back as it was and the winning line
// is named. Here an earlier Host * block turns connection sharing off, so
// --multiplex would not apply.
func TestSSHConfigInstallRollback(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config")
	const old = "Host *\n    ControlMaster no\n"
	writeFile(t, file, old, 0o600)
	code, stderr := install(t, sshConfigCLI(t, "ssm-proxy"), file, "--multiplex")
	if code != exitError {
		t.Errorf("exit %d", code)
	}
	checkOneError(t, stderr, "ssh would not use the new block: for i-0123456789abcdef0 ssh takes ControlMaster false from "+file+" line 2 (Host *)",
		"--multiplex would not apply", file+" is as it was")
	if readFile(t, file) != old {
		t.Errorf("not rolled back:\n%s", readFile(t, file))
	}
	if b := backups(t, file); len(b) != 0 {
		t.Errorf("backups left after the roll-back: %v", b)
	}

	// A new file that ssh rejects is removed again: a Match exec that
	// only holds once the file mentions ssm-proxy.
	file2 := filepath.Join(t.TempDir(), "config")
	cfg := "Match exec \"grep -q strip-suffi[x] " + file2 + "\"\n    ProxyJump bastion\n"
	writeFile(t, file2, cfg, 0o600)
	code, stderr = install(t, sshConfigCLI(t, "ssm-proxy"), file2)
	checkOneError(t, stderr, "ssh would not use the new block", "ProxyJump bastion from "+file2+" line 2 (Match exec")
	if code != exitError || readFile(t, file2) != cfg {
		t.Errorf("exit %d, file:\n%s", code, readFile(t, file2))
	}
}

// TestSSHConfigInstallIncludeAndSymlink: a block in an included file
// counts, and a symlinked config is written through the link.
func TestSSHConfigInstallIncludeAndSymlink(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "ssm.conf")
	writeFile(t, inc, "Host i-* mi-* *.ssm\n  ProxyCommand ssm-proxy %h %p\n", 0o600)
	file := filepath.Join(dir, "config")
	writeFile(t, file, "Include "+inc+"\n", 0o600)
	if code, stderr := install(t, sshConfigCLI(t, "ssm-proxy"), file); code != exitOK || !strings.Contains(stderr, "i-* mi-* ("+inc+" line 2)") {
		t.Fatalf("exit %d: %s", code, stderr)
	}

	real := filepath.Join(dir, "dotfiles", "ssh_config")
	writeFile(t, real, "Host x\n  User y\n", 0o600)
	link := filepath.Join(dir, "link-config")
	if err := os.Symlink(real, link); err != nil {
		t.Skip(err)
	}
	if code, stderr := install(t, sshConfigCLI(t, "ssm-proxy"), link); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink replaced: %v %v", fi.Mode(), err)
	}
	if got := sshGTest(t, link, "i-0123456789abcdef0")["proxycommand"]; got != "ssm-proxy %h %p" {
		t.Errorf("ProxyCommand through the link %q", got)
	}
}

// TestSSHConfigInstallLegacyBlock: the block earlier versions wrote,
// without markers, is recognised and rewritten, not added to.
func TestSSHConfigInstallLegacyBlock(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config")
	legacy := "Host github.com\n  User git\n\n# ssm-proxy: ssh through AWS Systems Manager Session Manager\n" +
		"# ssh i-0123456789abcdef0, ssh mi-0123456789abcdef0: by id\nHost i-* mi-*\n    ProxyCommand ssm-proxy %h %p\n" +
		"# ssh web-1.ssm: by Name tag\nHost *.ssm\n    ProxyCommand ssm-proxy --strip-suffix .ssm %n %p\n"
	writeFile(t, file, legacy, 0o600)
	code, stderr := install(t, sshConfigCLI(t, "ssm-proxy"), file, "--region", "eu-west-1")
	if code != exitOK || !strings.Contains(stderr, "updated ssm-proxy's block") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := readFile(t, file)
	if strings.Contains(got, "ssh through AWS Systems Manager") || strings.Count(got, "Host i-* mi-*") != 1 || !strings.HasPrefix(got, "Host github.com\n  User git\n\n"+sshconfig.BeginMarker) {
		t.Errorf("file:\n%s", got)
	}
	if pc := sshGTest(t, file, "web-1.ssm")["proxycommand"]; pc != "ssm-proxy --region eu-west-1 --strip-suffix .ssm %n %p" {
		t.Errorf("ProxyCommand %q", pc)
	}
}

func TestQuoteArg(t *testing.T) {
	for in, want := range map[string]string{
		"ssm-proxy":              "ssm-proxy",
		"/usr/bin/ssm-proxy":     "/usr/bin/ssm-proxy",
		"/a b/ssm-proxy":         `"/a b/ssm-proxy"`,
		`it's $HOME`:             `"it's \$HOME"`,
		"":                       `""`,
		`C:\tools\ssm-proxy.exe`: `"C:\\tools\\ssm-proxy.exe"`,
	} {
		if got := quoteArg(in); got != want {
			t.Errorf("quoteArg(%q) = %s, want %s", in, got, want)
		}
	}
	if got := sshArg("100%"); got != "100%%" {
		t.Errorf("sshArg = %s", got)
	}
}
