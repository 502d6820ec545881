package main

// The session log as the CLI writes it (sessionlog.go): one line per session
// with target, identity (one GetCallerIdentity per access key), bytes and
// how it ended, errors scrubbed, none for a session that never started, and
// off by flag or environment. The file itself (rotation, locking, modes) is
// internal/sessionlog's; forward's lines are e2e/forward_test.go's.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/sessionlog"
	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// runLoggedSession runs one session the way connect and proxyCommand do
// with the session log hooks: sessionStarted after sf.start, sessionEnded
// with the exit status. It returns the session's id.
func runLoggedSession(t *testing.T, c *cli, o options, u *used, stdin string, endErr error) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	c.stderr = &stderr
	log := newLogger(&stderr, true)
	sf, err := c.prepare(ctx, o, u, log)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := sf.start(ctx, u, proxy.StartInput{
		Document:   o.document,
		Parameters: map[string][]string{"portNumber": {"22"}},
	}, proxy.Options{DrainTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.sessionStarted(ctx, sess, sf.cfg, o.document)
	var out bytes.Buffer
	err = sess.Run(ctx, strings.NewReader(stdin), &out)
	if endErr != nil {
		err = endErr
	}
	code := exitOK
	if err != nil {
		code = exitCode(err)
	}
	c.sessionEnded(ctx, u, err, code, log)
	if strings.Contains(stderr.String(), "warning") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	return sess.ID()
}

// logEntries reads the session log at path.
func logEntries(t *testing.T, path string) []sessionlog.Entry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var es []sessionlog.Entry
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e sessionlog.Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		es = append(es, e)
	}
	return es
}

func TestSessionLog(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: bannerServer(t, true)})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	front := newAPIFront(t, emu, false)
	setAWSEnv(t, front.URL)
	t.Setenv(sessionLogEnv, "")
	path, err := sessionlog.DefaultPath()
	if err != nil || !strings.HasPrefix(path, os.Getenv("HOME")) {
		t.Fatalf("log path %q %v", path, err) // the test's HOME, never the user's
	}
	o := options{document: "AWS-StartSSHSession"}
	id := runLoggedSession(t, &cli{}, o, &used{target: "web-1", id: "i-0123456789abcdef0"}, "ping\n", nil)

	es := logEntries(t, path)
	if len(es) != 1 {
		t.Fatalf("%d entries", len(es))
	}
	e := es[0]
	if e.SessionID != id || e.Target != "web-1" || e.TargetID != "i-0123456789abcdef0" || e.Document != "AWS-StartSSHSession" ||
		e.Region != ssmtest.DefaultRegion || e.IdentityARN != ssmtest.CallerARN || e.BytesUp != 5 || e.BytesDown != int64(len(sshBanner)) ||
		e.Resumes != 0 || e.Ended != "closed" || e.ExitCode != 0 || e.Error != "" || e.Version != version() ||
		e.Time.IsZero() || e.Duration < 0 {
		t.Errorf("entry %+v", e)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want %v", p, fi, err, mode)
		}
	}
	if data, _ := os.ReadFile(path); bytes.Contains(data, []byte(ssmtest.SecretAccessKey)) || bytes.Contains(data, []byte("ping")) {
		t.Errorf("the log holds a secret or payload:\n%s", data)
	}
	if n := front.count("GetCallerIdentity"); n != 1 {
		t.Errorf("%d GetCallerIdentity calls, want 1", n)
	}

	// The identity is cached per access key: the next session asks STS
	// nothing.
	runLoggedSession(t, &cli{}, o, &used{target: "i-0123456789abcdef0", id: "i-0123456789abcdef0"}, "", nil)
	if n := front.count("GetCallerIdentity"); n != 1 {
		t.Errorf("%d GetCallerIdentity calls after a second session, want 1", n)
	}
	if es := logEntries(t, path); len(es) != 2 || es[1].IdentityARN != ssmtest.CallerARN || es[1].BytesUp != 0 {
		t.Errorf("second entry %+v", es[len(es)-1])
	}
}

// TestSessionLogEnds: how a session ended and its exit status; an error
// text is kept, scrubbed of secrets.
func TestSessionLogEnds(t *testing.T) {
	startEmulator(t, ssmtest.Options{TargetAddr: "127.0.0.1:1"})
	path := filepath.Join(t.TempDir(), "log", "sessions.jsonl")
	c := &cli{}
	c.sessionLog.flag = path
	o := options{document: "AWS-StartSSHSession"}
	u := &used{target: "i-0123456789abcdef0", id: "i-0123456789abcdef0"}
	runLoggedSession(t, c, o, u, "", nil)
	c.sessionEnded(context.Background(), u, nil, exitOK, slog.New(slog.DiscardHandler)) // no second line
	if es := logEntries(t, path); len(es) != 1 {
		t.Fatalf("%d entries for one session", len(es))
	}
	const token = "FwoGZXIvYXdzEJrsessiontokensecret"
	c = &cli{}
	c.sessionLog.flag = path
	runLoggedSession(t, c, o, &used{target: "i-0123456789abcdef0", id: "i-0123456789abcdef0"}, "",
		errors.New("ssm ResumeSession: InvalidSignatureException: x-amz-security-token:"+token))
	es := logEntries(t, path)
	if len(es) != 2 {
		t.Fatalf("%d entries", len(es))
	}
	if e := es[0]; e.Ended != "remote_error" || e.ExitCode != exitRemote || !strings.Contains(e.Error, "Unable to connect to specified port") {
		t.Errorf("dial failure: %+v", e)
	}
	if e := es[1]; e.Ended != "error" || e.ExitCode != exitError || strings.Contains(e.Error, token) || !strings.Contains(e.Error, "[redacted]") {
		t.Errorf("error: %+v", e)
	}
	if endedHow(nil, exitSignalsBase+1) != "signal" || endedHow(proxy.ErrIdleTimeout, exitIdle) != "idle_timeout" ||
		endedHow(proxy.ErrSessionEnded, exitLost) != "connection_lost" {
		t.Error("endedHow")
	}
}

// TestSessionLogOff: the flag and the environment variable turn it off;
// with only AWS_ENDPOINT_URL_SSM set, STS is not asked.
func TestSessionLogOff(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: bannerServer(t, true)})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	front := newAPIFront(t, emu, false)
	setAWSEnv(t, front.URL)
	path, _ := sessionlog.DefaultPath()
	o := options{document: "AWS-StartSSHSession"}
	u := &used{target: "i-0123456789abcdef0", id: "i-0123456789abcdef0"}

	t.Setenv(sessionLogEnv, "off")
	runLoggedSession(t, &cli{}, o, u, "", nil)
	c := &cli{}
	c.sessionLog.flag = "off"
	t.Setenv(sessionLogEnv, "")
	runLoggedSession(t, c, o, u, "", nil)
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("%s written while off", path)
	}

	moved := filepath.Join(t.TempDir(), "elsewhere.jsonl")
	t.Setenv(sessionLogEnv, moved)
	t.Setenv("AWS_ENDPOINT_URL_STS", "")
	runLoggedSession(t, &cli{}, o, u, "", nil)
	if es := logEntries(t, moved); len(es) != 1 || es[0].IdentityARN != "" {
		t.Errorf("entries %+v", es)
	}
	if n := front.count("GetCallerIdentity"); n != 0 {
		t.Errorf("%d STS calls with only AWS_ENDPOINT_URL_SSM set", n)
	}

	// Without sessionStarted (no session was opened) nothing is logged.
	t.Setenv(sessionLogEnv, "")
	(&cli{}).sessionEnded(context.Background(), u, errors.New("no session"), exitError, slog.New(slog.DiscardHandler))
	if _, err := os.Stat(path); err == nil {
		t.Errorf("a line for a session that never started")
	}
}
