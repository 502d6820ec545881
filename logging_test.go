package main

// The stderr logger (logging.go) and error printing: the line format with
// and without -v, tokens, signatures and keys redacted in attributes and in
// error and hint lines, whole lines under concurrent writers, and a real
// session's -v lines carrying the session id. The redaction patterns are
// internal/textutil's; that no secret value reaches -v output through ssh
// and resumes is e2e/ssh_test.go's (TestVerboseKeepsStdoutClean).

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

func TestLineHandler(t *testing.T) {
	var b bytes.Buffer
	log := newLogger(&b, true)
	log.Debug("Resumed", "after", 1200*time.Millisecond, "attempt", 2)
	log.With("session", "alice-0a1b2c3d").Warn("could not terminate the session", "err", errors.New("ssm TerminateSession: AccessDenied"))
	log.Error("TLS handshake failed", "host", "ssm.us-east-1.amazonaws.com", "empty", "")
	log.WithGroup("api").Debug("call", slog.Group("req", "op", "StartSession"), "took", time.Second)
	log.Info("multi\nline", "text", "a=b")
	want := `ssm-proxy: resumed after=1.2s attempt=2
ssm-proxy: warning: could not terminate the session session=alice-0a1b2c3d err="ssm TerminateSession: AccessDenied"
ssm-proxy: error: TLS handshake failed host=ssm.us-east-1.amazonaws.com empty=""
ssm-proxy: call api.req.op=StartSession api.took=1s
ssm-proxy: multi line text="a=b"
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	b.Reset()
	quiet := newLogger(&b, false)
	quiet.Debug("not shown")
	quiet.Info("not shown either")
	quiet.Warn("shown")
	if got := b.String(); got != "ssm-proxy: warning: shown\n" {
		t.Errorf("without -v: %q", got)
	}
}

// TestLineHandlerRedacts: whatever an attribute holds, no session token,
// signature or secret reaches the output.
func TestLineHandlerRedacts(t *testing.T) {
	const token = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+secretsessiontoken=="
	const sig = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
	var b bytes.Buffer
	log := newLogger(&b, true)
	canonical := errors.New("InvalidSignatureException: The Canonical String for this request should have been\n'POST\n/\n\nhost:ssm.us-east-1.amazonaws.com\nx-amz-security-token:" + token + "\n'")
	log.Warn("start session failed", "err", canonical)
	log.Debug("dialing", "url", "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s?X-Amz-Security-Token="+token+"&X-Amz-Signature="+sig)
	log.With("header", "Authorization: AWS4-HMAC-SHA256 Credential="+ssmtest.AccessKeyID+"/20261202/us-east-1/ssm/aws4_request, Signature="+sig).Debug("signed")
	log.Debug("token", "json", `{"TokenValue":"`+token+`"}`)
	out := b.String()
	for _, secret := range []string{token, sig, "secretsessiontoken"} {
		if strings.Contains(out, secret) {
			t.Errorf("output holds %q:\n%s", secret, out)
		}
	}
	if n := strings.Count(out, textutil.Redacted); n < 5 {
		t.Errorf("%d redactions, want at least 5:\n%s", n, out)
	}
	if n := strings.Count(out, "\n"); n != 4 {
		t.Errorf("%d lines, want 4:\n%s", n, out)
	}
}

// TestPrintErrorRedacts: error and hint lines are scrubbed too.
func TestPrintErrorRedacts(t *testing.T) {
	const token = "FwoGZXIvYXdzEJr//////////secrettoken"
	var b bytes.Buffer
	printError(&b, "ssm StartSession: InvalidSignatureException: x-amz-security-token:"+token, []string{"aws_secret_access_key = " + ssmtest.SecretAccessKey})
	if out := b.String(); strings.Contains(out, token) || strings.Contains(out, ssmtest.SecretAccessKey) || strings.Count(out, textutil.Redacted) != 2 {
		t.Errorf("not redacted:\n%s", out)
	}
}

// TestLineHandlerConcurrent: lines written from many goroutines stay whole.
func TestLineHandlerConcurrent(t *testing.T) {
	var b bytes.Buffer
	log := newLogger(&b, true)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				log.With("g", i).Debug("line", "j", j)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "ssm-proxy: line g=") {
			t.Fatalf("torn line %q", l)
		}
	}
}

// TestVerboseLines: with -v every stderr line of a real session is an
// ssm-proxy line, and session lines carry the session id.
func TestVerboseLines(t *testing.T) {
	emu := startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, false)})
	_ = emu
	code, stdout, stderr := runCLI(t, "", "-v", "--session-log", "off", "i-0123456789abcdef0", "22")
	if code != exitOK || stdout != sshBanner {
		t.Fatalf("exit %d stdout %q stderr:\n%s", code, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("-v printed %d lines:\n%s", len(lines), stderr)
	}
	withSession := 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "ssm-proxy: ") || strings.Contains(l, "level=") || strings.Contains(l, "time=") {
			t.Errorf("line %q", l)
		}
		if strings.Contains(l, " session=") {
			withSession++
		}
	}
	if withSession == 0 {
		t.Errorf("no line carries the session id:\n%s", stderr)
	}
}
