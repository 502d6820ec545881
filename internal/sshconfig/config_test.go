package sshconfig

// Unit tests of the ssh_config editing: line splitting that keeps each line's
// ending, keyword parsing, finding ssm-proxy's marked or legacy block,
// reading ssh -vvv traces, and Install putting the file back when a fake ssh
// says the new block loses. The root package's sshconfig_test.go runs
// ssh-config --install against the real ssh -G; e2e/examples_test.go
// connects through what ssh-config prints.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSplitJoinLines(t *testing.T) {
	for _, in := range []string{"", "a", "a\n", "a\r\nb\r\n", "a\nb\r\nc", "\n\n", "a\r\r\n"} {
		ls := splitLines([]byte(in))
		if got := string(joinLines(ls)); got != in {
			t.Errorf("%q: round trip %q", in, got)
		}
	}
	if eol := dominantEOL(splitLines([]byte("a\r\nb\r\nc\n"))); eol != "\r\n" {
		t.Errorf("dominant %q", eol)
	}
	if eol := dominantEOL(nil); eol != "\n" {
		t.Errorf("empty file: %q", eol)
	}
}

func TestKeyword(t *testing.T) {
	for in, want := range map[string][2]string{
		"  ProxyCommand ssm-proxy %h %p  ": {"proxycommand", "ssm-proxy %h %p"},
		"ProxyJump=bastion":                {"proxyjump", "bastion"},
		"User = git":                       {"user", "git"},
		"\tHost i-* mi-*":                  {"host", "i-* mi-*"},
		"# ProxyCommand x":                 {"", ""},
		"":                                 {"", ""},
		"Match":                            {"match", ""},
	} {
		if k, v := keyword(in); k != want[0] || v != want[1] {
			t.Errorf("keyword(%q) = %q, %q", in, k, v)
		}
	}
}

func TestFindRegion(t *testing.T) {
	blocks := []Block{{Comment: "c", Patterns: "i-*", Options: []Option{{"ProxyCommand", "ssm-proxy %h %p"}}}}
	region := string(Render(blocks, "\n"))
	cases := []struct {
		name, text  string
		first, last int
		ok          bool
		err         string
	}{
		{"none", "Host x\n  User y\n", 0, 0, false, ""},
		{"markers", "Host x\n\n" + region + "Host z\n", 2, 6, true, ""},
		{"no end", "Host x\n" + BeginMarker + "\nHost i-*\n", 0, 0, false, "line 2 starts"},
		{"legacy", "Host x\n" + legacyHeader + "\n# by id\nHost i-* mi-*\n    ProxyCommand ssm-proxy %h %p\n# by name\nHost *.ssm\n    ProxyCommand /usr/bin/ssm-proxy --strip-suffix .ssm %n %p\nHost github.com\n    User git\n", 1, 7, true, ""},
		{"legacy header alone", legacyHeader + "\nHost github.com\n    User git\n", 0, 0, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, ok, err := findRegion(splitLines([]byte(c.text)))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || ok != c.ok || ok && (r.first != c.first || r.last != c.last) {
				t.Errorf("region %+v %v %v, want %d..%d %v", r, ok, err, c.first, c.last, c.ok)
			}
		})
	}
}

// TestParseTrace reads what OpenSSH 9.2 prints with -vvv.
func TestParseTrace(t *testing.T) {
	trace := `OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026
debug1: Reading configuration data /c
debug2: checking match for 'all' host i-1 originally i-1
debug2: match found
debug2: checking match for 'host nomatch' host i-1 originally i-1
debug3: /c line 3: not matched 'host "i-1"'
debug2: match not found
debug2: checking match for 'host i-* exec "true"' host i-1 originally i-1
debug3: /c line 5: matched 'host "i-1"'
debug1: Executing command: 'true'
debug3: command returned status 0
debug3: /c line 5: matched 'exec "true"'
debug2: match found
debug2: checking match for 'canonical host i-*' host i-1 originally i-1
debug3: /c line 7: not matched 'canonical'
debug3: /c line 7: matched 'host "i-1"'
debug2: match not found
debug1: /c line 9: Applying options for i-*
debug3: /c line 10: Including file /inc depth 0
debug1: Reading configuration data /inc
debug1: /inc line 1: Applying options for *
debug1: Reading configuration data /c
debug1: /c line 12: Applying options for final-pass
`
	tr := parseTrace([]byte(trace))
	if got := strings.Join(tr.files, " "); got != "/c /inc" {
		t.Errorf("files %q", got)
	}
	want := map[loc]bool{{"/c", 5}: true, {"/c", 9}: true, {"/inc", 1}: true}
	if len(tr.applied) != len(want) {
		t.Errorf("applied %v, want %v", tr.applied, want)
	}
	for l := range want {
		if !tr.applied[l] {
			t.Errorf("%v not applied", l)
		}
	}
}

// fakeSSH answers ssh -G from a table: for the test of Install's logic
// where the real ssh cannot be made to answer some way.
func fakeSSH(values func(file, host string) string) Runner {
	return func(_ context.Context, args ...string) ([]byte, []byte, error) {
		file, host := args[len(args)-2], args[len(args)-1]
		return []byte(values(file, host)), []byte("debug1: Reading configuration data " + file + "\n"), nil
	}
}

// TestInstallWritesOnlyWhatSSHConfirms drives Install with an ssh that
// says the new block loses only once the file has been written (as a
// Match exec could): the file must come back as it was.
func TestInstallWritesOnlyWhatSSHConfirms(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config")
	old := []byte("Host a\r\n  User b\r\n")
	if err := os.WriteFile(file, old, 0o640); err != nil {
		t.Fatal(err)
	}
	block := Block{Comment: "c", Patterns: "i-*", Options: []Option{{"ProxyCommand", "ssm-proxy %h %p"}}, Samples: []string{"i-1"}}
	var queries []string
	in := &Install{
		File:   file,
		Blocks: []Block{block},
		Now:    time.Unix(0, 0),
		SSH: fakeSSH(func(f, host string) string {
			queries = append(queries, filepath.Base(f))
			if f == file {
				return "proxycommand other %h %p\n"
			}
			return "user b\n"
		}),
	}
	_, err := in.Run(context.Background())
	ie, ok := err.(*Error)
	if !ok || !strings.Contains(ie.Msg, "ssh would not use the new block") || !strings.Contains(ie.Msg, "is as it was") {
		t.Fatalf("err %v", err)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, old) {
		t.Errorf("not restored: %q", got)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	if m, _ := filepath.Glob(file + ".ssm-proxy-*.bak"); len(m) != 0 {
		t.Errorf("backups %v", m)
	}
	if strings.Join(queries, " ") != "config config" || len(queries) != 2 {
		t.Errorf("queries %v: want the probe, then the written file", queries)
	}

	// The same ssh, agreeing once written: a CRLF file gets a CRLF block.
	in.SSH = fakeSSH(func(f, host string) string {
		if f == file {
			return "proxycommand ssm-proxy %h %p\n"
		}
		return ""
	})
	res, err := in.Run(context.Background())
	if err != nil || !res.Changed || res.Backup == "" {
		t.Fatalf("res %+v err %v", res, err)
	}
	got, _ := os.ReadFile(file)
	if !bytes.HasPrefix(got, append(old, "\r\n"+BeginMarker...)) || bytes.Count(got, []byte("\n")) != bytes.Count(got, []byte("\r\n")) {
		t.Errorf("file %q", got)
	}
}
