package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kevinburke/ssh_config"
)

// sshConfigCLI is a cli whose ProxyCommand program is fixed.
func sshConfigCLI(program string) *cli {
	return &cli{program: func() string { return program }}
}

func TestSSHConfigPrint(t *testing.T) {
	cases := []struct {
		program string
		args    []string
		id, ssm string
	}{
		{"ssm-proxy", nil, "ssm-proxy %h %p", "ssm-proxy --strip-suffix .ssm %n %p"},
		{"/opt/bin/ssm-proxy", []string{"--profile", "prod", "--region", "eu-west-1"},
			"/opt/bin/ssm-proxy --profile prod --region eu-west-1 %h %p", "/opt/bin/ssm-proxy --profile prod --region eu-west-1 --strip-suffix .ssm %n %p"},
		{`C:\Program Files\ssm-proxy\ssm-proxy.exe`, nil,
			`"C:\\Program Files\\ssm-proxy\\ssm-proxy.exe" %h %p`, `"C:\\Program Files\\ssm-proxy\\ssm-proxy.exe" --strip-suffix .ssm %n %p`},
	}
	for _, c := range cases {
		code, stdout, stderr := runWith(t, sshConfigCLI(c.program), "", append([]string{"ssh-config"}, c.args...)...)
		if code != exitOK || stderr != "" {
			t.Fatalf("exit %d stderr %q", code, stderr)
		}
		cfg, err := ssh_config.Decode(strings.NewReader(stdout))
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, stdout)
		}
		for host, want := range map[string]string{"i-0123456789abcdef0": c.id, "mi-0123456789abcdef0": c.id, "web-1.ssm": c.ssm, "github.com": ""} {
			if got, _ := cfg.Get(host, "ProxyCommand"); got != want {
				t.Errorf("%s: ProxyCommand %q, want %q", host, got, want)
			}
		}
	}
	if code, _, _ := runCLI(t, "", "ssh-config", "extra"); code != exitUsage {
		t.Errorf("extra argument: exit %d", code)
	}
}

// install runs `ssm-proxy ssh-config --install --file file`.
func install(t *testing.T, file string) (code int, stderr string) {
	t.Helper()
	code, stdout, stderr := runWith(t, sshConfigCLI("ssm-proxy"), "", "ssh-config", "--install", "--file", file)
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

func TestSSHConfigInstallNew(t *testing.T) {
	file := filepath.Join(t.TempDir(), "home", ".ssh", "config")
	code, stderr := install(t, file)
	if code != exitOK || !strings.Contains(stderr, "added Host i-* mi-*, Host *.ssm to "+file) {
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
	before, _ := os.ReadFile(file)
	code, stderr = install(t, file)
	if code != exitOK || !strings.Contains(stderr, "already routes i-* mi-* (line 4), *.ssm (line 7) through ssm-proxy; nothing to do") {
		t.Fatalf("second install: exit %d: %s", code, stderr)
	}
	if after, _ := os.ReadFile(file); string(after) != string(before) {
		t.Errorf("second install changed the file:\n%s", after)
	}
}

func TestSSHConfigInstallAppends(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config")
	old := "Host github.com\n    User git\n    IdentityFile ~/.ssh/github" // no final newline
	if err := os.WriteFile(file, []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	code, stderr := install(t, file)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(got), old+"\n\n# ssm-proxy:") {
		t.Errorf("new file:\n%s", got)
	}
	cfg, err := ssh_config.DecodeBytes(got)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := cfg.Get("github.com", "User"); v != "git" {
		t.Errorf("existing block lost: User %q", v)
	}
	if v, _ := cfg.Get("i-0123456789abcdef0", "ProxyCommand"); v != "ssm-proxy %h %p" {
		t.Errorf("ProxyCommand %q", v)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the old 0640", fi.Mode().Perm())
	}
	b := backups(t, file)
	if len(b) != 1 {
		t.Fatalf("backups %v", b)
	}
	if data, _ := os.ReadFile(b[0]); string(data) != old {
		t.Errorf("backup holds %q", data)
	}
	if strings.Contains(stderr, b[0]) == false {
		t.Errorf("message does not name the backup: %s", stderr)
	}
}

// TestSSHConfigInstallPartial: an existing ssm-proxy block for ids is
// kept; only the name block is added.
func TestSSHConfigInstallPartial(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config")
	os.WriteFile(file, []byte("Host i-* mi-*\n  ProxyCommand /usr/local/bin/ssm-proxy --profile dev %h %p\n"), 0o600)
	code, stderr := install(t, file)
	if code != exitOK || !strings.Contains(stderr, "added Host *.ssm to") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, _ := os.ReadFile(file)
	if strings.Count(string(got), "Host i-* mi-*") != 1 || !strings.Contains(string(got), "Host *.ssm") {
		t.Errorf("file:\n%s", got)
	}
}

// TestSSHConfigInstallConflicts: a ProxyCommand that ssh would use instead
// of ours is never overridden; the file is left as it was.
func TestSSHConfigInstallConflicts(t *testing.T) {
	cases := []struct {
		name, config string
		want         []string
	}{
		{"aws cli", "Host i-* mi-*\n    ProxyCommand sh -c \"aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters 'portNumber=%p'\"\n",
			[]string{"line 2 already reaches i-* mi-* hosts through `aws ssm start-session`", "replace that ProxyCommand with: ProxyCommand ssm-proxy %h %p", "session-manager-plugin"}},
		{"another proxy for all hosts", "Host *\n    ProxyCommand nc -X connect -x proxy:3128 %h %p\n",
			[]string{`line 2 already sets ProxyCommand "nc -X connect -x proxy:3128 %h %p" for i-0123456789abcdef0`, "above that one by hand"}},
		{"unparsable", "Match exec \"true\"\n    User x\n", []string{"cannot parse", "`ssm-proxy ssh-config` prints it"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "config")
			os.WriteFile(file, []byte(c.config), 0o600)
			code, stderr := install(t, file)
			if code != exitError {
				t.Errorf("exit %d", code)
			}
			checkOneError(t, stderr, c.want...)
			if got, _ := os.ReadFile(file); string(got) != c.config {
				t.Errorf("file changed:\n%s", got)
			}
			if b := backups(t, file); len(b) != 0 {
				t.Errorf("backups %v", b)
			}
		})
	}
}

// TestSSHConfigInstallIncludeAndSymlink: a block in an included file
// counts, and a symlinked config is written through the link.
func TestSSHConfigInstallIncludeAndSymlink(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "ssm.conf")
	os.WriteFile(inc, []byte("Host i-* mi-* *.ssm\n  ProxyCommand ssm-proxy %h %p\n"), 0o600)
	file := filepath.Join(dir, "config")
	os.WriteFile(file, []byte("Include "+inc+"\n"), 0o600)
	if code, stderr := install(t, file); code != exitOK || !strings.Contains(stderr, "a file included at line 1") {
		t.Fatalf("exit %d: %s", code, stderr)
	}

	real := filepath.Join(dir, "dotfiles", "ssh_config")
	os.MkdirAll(filepath.Dir(real), 0o700)
	os.WriteFile(real, []byte("Host x\n  User y\n"), 0o600)
	link := filepath.Join(dir, "link-config")
	if err := os.Symlink(real, link); err != nil {
		t.Skip(err)
	}
	if code, stderr := install(t, link); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink replaced: %v %v", fi.Mode(), err)
	}
	if got, _ := os.ReadFile(real); !strings.Contains(string(got), "ProxyCommand ssm-proxy %h %p") {
		t.Errorf("target not updated:\n%s", got)
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
}
