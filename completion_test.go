package main

// `ssm-proxy completion` and the hidden __complete through run: commands,
// flags and shells completed; targets from the owner-only cache that list
// writes, refreshed when stale, a failed refresh not retried at once; each
// shell's script parsed by that shell and run in it against this test binary
// (TestHelperMain). Target lookup itself is internal/target's; list's output
// is list_test.go's.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

// TestHelperMain is not a test: run by helperProgram's wrapper, it is
// ssm-proxy, so that shells can run the code under test.
func TestHelperMain(t *testing.T) {
	if os.Getenv("SSM_PROXY_HELPER_MAIN") != "1" {
		t.Skip("the ssm-proxy helper process for the shell completion tests")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(context.Background(), args, os.Stdin, os.Stdout, os.Stderr))
}

// helperProgram puts an executable called ssm-proxy first in PATH that
// runs this test binary as ssm-proxy.
func helperProgram(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the wrapper is a shell script")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\nSSM_PROXY_HELPER_MAIN=1 exec '" + exe + "' -test.run='^TestHelperMain$' -- \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "ssm-proxy"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// completeWords runs `ssm-proxy __complete` for the last of words and returns
// the candidates without their descriptions.
func completeWords(t *testing.T, c *cli, words ...string) []string {
	t.Helper()
	n := len(words) - 1
	args := append([]string{completeCommand, strconv.Itoa(n), "--"}, words...)
	code, stdout, stderr := runWith(t, c, "", args...)
	if code != exitOK || stderr != "" {
		t.Fatalf("%q: exit %d stderr %q", words, code, stderr)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		if l != "" {
			w, _, _ := strings.Cut(l, "\t")
			out = append(out, w)
		}
	}
	return out
}

func TestCompleteCommandsAndFlags(t *testing.T) {
	setAWSEnv(t, "http://127.0.0.1:1") // nothing listens: targets stay empty
	c := &cli{}
	cases := []struct {
		words []string
		want  string
	}{
		{[]string{"do"}, "doctor"},
		{[]string{"ssh-"}, "ssh-config"},
		{[]string{"doctor", "--st"}, "--strip-prefix --strip-suffix"},
		{[]string{"ssh-config", "--m"}, "--multiplex"},
		{[]string{"list", "--"}, "--filter --json --profile --region --verbose"},
		{[]string{"--se"}, "--session-log"},
		{[]string{"--push"}, "--push-key"},
		{[]string{"-"}, "--dead-peer-timeout --document --fdpass --os-user --ping-interval --profile --push-key --reason --region --resume-timeout --session-log --share --strip-prefix --strip-suffix --to --verbose --version -v"},
		{[]string{"completion", ""}, "bash zsh fish powershell"},
		{[]string{"completion", "z"}, "zsh"},
		{[]string{"help", "c"}, "completion"},
		{[]string{"--region", ""}, ""}, // a flag's value: left to the shell
		{[]string{"ssh-config", "--file", ""}, ""},
		{[]string{"version", ""}, ""},
	}
	for _, tc := range cases {
		if got := strings.Join(completeWords(t, c, tc.words...), " "); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.words, got, tc.want)
		}
	}
	for _, bad := range [][]string{{completeCommand}, {completeCommand, "x", "--"}, {completeCommand, "0"}} {
		if code, stdout, stderr := runCLI(t, "", bad...); code != exitUsage || stdout != "" || stderr != "" {
			t.Errorf("%q: exit %d stdout %q stderr %q", bad, code, stdout, stderr)
		}
	}
}

// TestCompleteTargets: targets come from the cache a list wrote, without
// an API call, until the cache is older than targetCacheTTL; then one
// completion refreshes it. The cache is owner-only.
func TestCompleteTargets(t *testing.T) {
	front := listEnv(t, ssmtest.Options{}, false)
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	c := &cli{now: func() time.Time { return now }}
	if code, _, stderr := runWith(t, c, "", "list"); code != exitOK {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	listed := front.count("DescribeInstanceInformation")
	path, err := targetCachePath(options{})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache %s: %v %v", path, fi, err)
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Errorf("cache directory mode %v", fi.Mode().Perm())
	}

	if got := strings.Join(completeWords(t, c, "i-0"), " "); got != "i-0aaaaaaaaaaaaaaa2 i-0bbbbbbbbbbbbbbb3 i-0ddddddddddddddd5 i-0ccccccccccccccc4 i-0123456789abcdef0 i-0123456789abcdef1" {
		t.Errorf("ids: %s", got)
	}
	if got := strings.Join(completeWords(t, c, "doctor", "-v", "web"), " "); got != "web-1 web-2" {
		t.Errorf("names: %s", got)
	}
	if got := strings.Join(completeWords(t, c, "on"), " "); got != "onprem-1" {
		t.Errorf("first word: %s", got)
	}
	if n := front.count("DescribeInstanceInformation"); n != listed {
		t.Errorf("completion called the API (%d calls) with a fresh cache", n-listed)
	}

	now = now.Add(targetCacheTTL + time.Second)
	if got := completeWords(t, c, "web-"); strings.Join(got, " ") != "web-1 web-2" {
		t.Errorf("after expiry: %v", got)
	}
	refreshed := front.count("DescribeInstanceInformation")
	if refreshed <= listed {
		t.Errorf("an expired cache was used without a refresh")
	}
	completeWords(t, c, "web-")
	if n := front.count("DescribeInstanceInformation"); n != refreshed {
		t.Errorf("the refreshed cache was not used: %d more calls", n-refreshed)
	}

	// Another region is another cache. A failed refresh (the emulator
	// refuses signatures for eu-west-1) is not tried again at once.
	if got := completeWords(t, c, "--region", "eu-west-1", "web"); len(got) != 0 {
		t.Errorf("eu-west-1: %v", got)
	}
	failed := front.count("DescribeInstanceInformation")
	if failed != refreshed+1 {
		t.Errorf("%d calls for the refresh of eu-west-1, want 1 (no retries)", failed-refreshed)
	}
	completeWords(t, c, "--region", "eu-west-1", "web")
	if n := front.count("DescribeInstanceInformation"); n != failed {
		t.Errorf("a failed refresh was tried again at once")
	}
	now = now.Add(targetRetryAfter + time.Second)
	completeWords(t, c, "--region", "eu-west-1", "web")
	if n := front.count("DescribeInstanceInformation"); n != failed+1 {
		t.Errorf("%d calls after targetRetryAfter, want 1", n-failed)
	}
}

// completionShells are the shells whose scripts are checked, with the
// command that checks a script's syntax.
var completionShells = map[string][]string{
	"bash": {"bash", "-n"},
	"zsh":  {"zsh", "-n"},
	"fish": {"fish", "--no-execute"},
	// powershell: pwsh is checked where installed.
	"powershell": {"pwsh", "-NoProfile", "-Command", "$null = [System.Management.Automation.Language.Parser]::ParseFile($args[0], [ref]$null, [ref]$e); if ($e) { $e; exit 1 }"},
}

// TestCompletionScriptsParse: each script is accepted by its shell, where
// that shell is installed.
func TestCompletionScriptsParse(t *testing.T) {
	for shell, check := range completionShells {
		t.Run(shell, func(t *testing.T) {
			code, script, stderr := runCLI(t, "", "completion", shell)
			if code != exitOK || stderr != "" || !strings.Contains(script, completeCommand) {
				t.Fatalf("exit %d stderr %q", code, stderr)
			}
			bin, err := exec.LookPath(check[0])
			if err != nil {
				t.Skipf("%s is not installed: the %s script is not checked here", check[0], shell)
			}
			file := filepath.Join(t.TempDir(), "completion."+shell)
			writeFile(t, file, script, 0o600)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, append(check[1:], file)...).CombinedOutput()
			if err != nil {
				t.Errorf("%s rejects the script: %v\n%s", shell, err, out)
			}
		})
	}
}

// TestCompletionInShells runs each script in its shell against the code
// under test (helperProgram): commands, flags and cached targets.
func TestCompletionInShells(t *testing.T) {
	listEnv(t, ssmtest.Options{}, false)
	helperProgram(t)
	cases := []struct {
		shell  string
		script string // run after the completion script is loaded
		want   []string
	}{
		{"bash", `COMP_WORDS=(ssm-proxy do); COMP_CWORD=1; _ssm_proxy; printf '%s\n' "${COMPREPLY[@]}"
COMP_WORDS=(ssm-proxy doctor web); COMP_CWORD=2; _ssm_proxy; printf '%s\n' "${COMPREPLY[@]}"
COMP_WORDS=(ssm-proxy ssh-config --mu); COMP_CWORD=2; _ssm_proxy; printf '%s\n' "${COMPREPLY[@]}"`,
			[]string{"doctor", "web-1", "web-2", "--multiplex"}},
		{"zsh", `_describe() { print -rl -- "${(@P)2}" }
_files() { print -r -- FILES }
words=(ssm-proxy do); CURRENT=2; _ssm_proxy
words=(ssm-proxy doctor web); CURRENT=3; _ssm_proxy
words=(ssm-proxy --region ''); CURRENT=3; _ssm_proxy`,
			[]string{"doctor:check, one line each, what a connection to TARGET needs", "web-1:i-0123456789abcdef0 Online", "web-2:i-0123456789abcdef1 Online", "FILES"}},
		{"fish", `complete -C 'ssm-proxy do'
complete -C 'ssm-proxy doctor web'`,
			[]string{"doctor\tcheck, one line each, what a connection to TARGET needs", "web-1\ti-0123456789abcdef0 Online", "web-2\ti-0123456789abcdef1 Online"}},
	}
	for _, tc := range cases {
		t.Run(tc.shell, func(t *testing.T) {
			bin, err := exec.LookPath(tc.shell)
			if err != nil {
				t.Skipf("%s is not installed", tc.shell)
			}
			_, script, _ := runCLI(t, "", "completion", tc.shell)
			file := filepath.Join(t.TempDir(), "completion."+tc.shell)
			prelude := ""
			if tc.shell == "zsh" {
				prelude = "compdef() { : }\n"
			}
			writeFile(t, file, prelude+script, 0o600)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-c", "source "+file+"\n"+tc.script)
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
