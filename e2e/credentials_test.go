package e2e

// Credentials over a session's life, through the built binary under real
// ssh: every resume re-resolves them from a credential_process profile (run
// with stdin /dev/null, never ssh's stream), and when they cannot be
// refreshed the error names the profile and the fix. Credentials at start,
// from every source, are the root package's identity_test.go.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

// rotatingProfile writes an AWS config whose profile "rotating" gets
// short-lived credentials from a credential_process that counts its calls
// and records its stdin (in counter+".stdin") and its descriptor 3 if one
// is open (counter+".fd3") and, once failAfter calls
// were made (0: never), fails the way an expired SSO login does. It returns
// the environment for ssh and the counter file.
func rotatingProfile(t *testing.T, h *harness, failAfter int) (env []string, counter string) {
	t.Helper()
	dir := t.TempDir()
	counter = filepath.Join(dir, "calls")
	script := filepath.Join(dir, "creds.sh")
	body := fmt.Sprintf(`#!/bin/sh
n=$(( $(cat %[1]q 2>/dev/null || echo 0) + 1 ))
echo $n > %[1]q
readlink /proc/self/fd/0 >> %[1]q.stdin
readlink /proc/self/fd/3 >> %[1]q.fd3 2>/dev/null
if [ %[2]d -gt 0 ] && [ $n -gt %[2]d ]; then
	echo "the SSO session associated with this profile has expired" >&2
	exit 1
fi
exp=$(date -u -d '+15 minutes' +%%Y-%%m-%%dT%%H:%%M:%%SZ)
printf '{"Version":1,"AccessKeyId":"%[3]s","SecretAccessKey":"%[4]s","SessionToken":"t%%s","Expiration":"%%s"}' $n $exp
`, counter, failAfter, ssmtest.AccessKeyID, ssmtest.SecretAccessKey)
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config")
	if err := os.WriteFile(cfg, []byte("[profile rotating]\nregion = us-east-1\ncredential_process = "+script+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kv := range h.env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONFIG_FILE", "AWS_REGION":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "AWS_CONFIG_FILE="+cfg), counter
}

func calls(t *testing.T, counter string) int {
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// TestResumeRefreshesCredentials: an established session does not need its
// credentials again, but every resume resolves them afresh from the chain;
// when they cannot be refreshed the error names the profile and the fix.
func TestResumeRefreshesCredentials(t *testing.T) {
	emu := ssmtest.Options{ByeEvery: 400 * time.Millisecond}
	flags := []string{"--profile", "rotating"}

	t.Run("refreshed", func(t *testing.T) {
		h := newHarness(t, harnessOptions{emu: emu, proxyFlags: flags})
		env, counter := rotatingProfile(t, h, 0)
		c := h.ssh(testCtx(t, time.Minute), instance, "sleep 2; echo ok")
		c.Env = env
		if out := run(t, c); out != "ok\n" {
			t.Fatalf("stdout %q", out)
		}
		st := h.checkEnded(1)
		if st.Resumes == 0 {
			t.Fatal("no resume happened")
		}
		if n := calls(t, counter); n < int(st.Resumes)+1 {
			t.Errorf("credential_process ran %d times for %d resumes; want once more per resume", n, st.Resumes)
		}
		// ssh's byte stream is the session's alone: a credential_process
		// (which the AWS SDK gives the process's stdin) reads /dev/null.
		stdins, err := os.ReadFile(counter + ".stdin")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(stdins)), "\n") {
			if l != "/dev/null" {
				t.Errorf("credential_process ran with stdin %q, want /dev/null", l)
			}
		}
	})

	t.Run("expired", func(t *testing.T) {
		h := newHarness(t, harnessOptions{emu: emu, proxyFlags: flags})
		env, _ := rotatingProfile(t, h, 1)
		c := h.ssh(testCtx(t, time.Minute), instance, "sleep 3; echo ok")
		c.Env = env
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		if err := c.Run(); err == nil {
			t.Fatalf("ssh succeeded although the credentials could not be refreshed")
		}
		for _, w := range []string{"ssm-proxy: error:", "restore the connection", `"rotating"`, "ssm-proxy: hint:"} {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
			}
		}
		if strings.Contains(stdout.String(), "ok") {
			t.Errorf("stdout %q", stdout.String())
		}
		h.checkEnded(1)
	})
}
