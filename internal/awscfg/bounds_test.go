package awscfg

// Tests of the bounds on API calls (bounds.go) and of what the errors say,
// against local servers that accept connections and never answer. The
// root package's tests check the same failures as a user sees them
// (error and hint lines, through run); these check the mechanism: which
// bound fired, how many attempts were made, which host and setting are
// named.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// hangServer accepts connections on loopback, reads what is sent and never
// answers. It returns its address and a count of the connections made.
func hangServer(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	addr := testenv.ServeTCP(t, func(c net.Conn) {
		n.Add(1)
		io.Copy(io.Discard, c)
	})
	return addr, &n
}

// settledCount is n once it has reached atLeast, or after 5 s: the client
// may give up on a connection before the server's goroutine has counted
// its accept.
func settledCount(n *atomic.Int32, atLeast int32) int32 {
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < atLeast && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return n.Load()
}

// short are timeouts that keep the tests quick.
var short = Timeouts{Connect: time.Second, Attempt: 200 * time.Millisecond, Call: 2 * time.Second, IMDS: 300 * time.Millisecond, Process: 300 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}

// envKeys sets the emulator's static keys and a region.
func envKeys(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", ssmtest.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", ssmtest.SecretAccessKey)
	t.Setenv("AWS_REGION", "us-east-1")
}

func describeOnce(ctx context.Context, cfg aws.Config) error {
	_, err := ssm.NewFromConfig(cfg).DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{})
	return err
}

// TestAttemptBound: each attempt is cut at Timeouts.Attempt and retried;
// after the SDK's three attempts the error names the host, the setting
// and the bound.
func TestAttemptBound(t *testing.T) {
	isolate(t, "")
	envKeys(t)
	addr, conns := hangServer(t)
	t.Setenv("AWS_ENDPOINT_URL_SSM", "http://"+addr)
	var logs bytes.Buffer
	to := short
	to.Call = 20 * time.Second // only the attempts' bound fires
	cfg, _, err := Load(testCtx(t), Options{Timeouts: to, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	err = describeOnce(testCtx(t), cfg)
	var ee *EndpointError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want an EndpointError", err)
	}
	if ee.Host != addr || ee.Setting != "AWS_ENDPOINT_URL_SSM" || ee.Timeout != to.Attempt || !ee.PerAttempt || ee.Attempts != 3 {
		t.Errorf("EndpointError %+v", ee)
	}
	if n := settledCount(conns, 3); n != 3 {
		t.Errorf("%d connections, want 3 (one per attempt)", n)
	}
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("err = %v: DeadlineExceeded %t, Canceled %t", err, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled))
	}
	want := "SSM DescribeInstanceInformation: no answer from " + addr + " (AWS_ENDPOINT_URL_SSM) within 200ms, 3 attempts"
	if ee.Error() != want {
		t.Errorf("Error() = %q, want %q", ee.Error(), want)
	}
	line := logs.String()
	for _, w := range []string{`msg="aws call"`, "service=SSM", "operation=DescribeInstanceInformation", "host=" + addr, "attempts=3", "took="} {
		if !strings.Contains(line, w) {
			t.Errorf("log lacks %q:\n%s", w, line)
		}
	}
}

// TestEveryClientBounded: clients other than SSM built from the
// configuration have the same bounds, and name their own setting.
func TestEveryClientBounded(t *testing.T) {
	isolate(t, "")
	envKeys(t)
	addr, conns := hangServer(t)
	t.Setenv("AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT", "http://"+addr)
	t.Setenv("AWS_ENDPOINT_URL_STS", "http://"+addr)
	cfg, _, err := Load(testCtx(t), Options{Timeouts: short})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ec2instanceconnect.NewFromConfig(cfg).SendSSHPublicKey(testCtx(t), &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId: aws.String("i-0123456789abcdef0"), InstanceOSUser: aws.String("ec2-user"), SSHPublicKey: aws.String("ssh-ed25519 AAAA")})
	var ee *EndpointError
	if !errors.As(err, &ee) || ee.Service != "EC2 Instance Connect" || ee.Setting != "AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT" || ee.Timeout == 0 {
		t.Errorf("EC2 Instance Connect: err = %v (%+v)", err, ee)
	}
	_, err = sts.NewFromConfig(cfg).GetCallerIdentity(testCtx(t), &sts.GetCallerIdentityInput{})
	if !errors.As(err, &ee) || ee.Service != "STS" || ee.Setting != "AWS_ENDPOINT_URL_STS" || ee.Timeout == 0 {
		t.Errorf("STS: err = %v (%+v)", err, ee)
	}
	if settledCount(conns, 2) < 2 {
		t.Errorf("%d connections", conns.Load())
	}
}

// TestCallBound: the call's bound ends the retries, backoff included.
func TestCallBound(t *testing.T) {
	isolate(t, "")
	envKeys(t)
	addr, conns := hangServer(t)
	t.Setenv("AWS_ENDPOINT_URL_SSM", "http://"+addr)
	to := short
	to.Attempt, to.Call = 20*time.Second, 300*time.Millisecond
	cfg, _, err := Load(testCtx(t), Options{Timeouts: to})
	if err != nil {
		t.Fatal(err)
	}
	err = describeOnce(testCtx(t), cfg)
	var ee *EndpointError
	if !errors.As(err, &ee) || ee.Timeout != to.Call || ee.PerAttempt || ee.Attempts != 1 {
		t.Fatalf("err = %v (%+v), want the call's bound after 1 attempt", err, ee)
	}
	if n := settledCount(conns, 1); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	// A deadline, not a cancellation: callers tell the user's Ctrl-C from
	// an endpoint that did not answer.
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("err = %v: DeadlineExceeded %t, Canceled %t", err, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled))
	}
}

// TestCallerDeadline: a caller's deadline shorter than the call's bound
// ends the call the same way, as a timeout naming the endpoint.
func TestCallerDeadline(t *testing.T) {
	isolate(t, "")
	envKeys(t)
	addr, _ := hangServer(t)
	t.Setenv("AWS_ENDPOINT_URL_SSM", "http://"+addr)
	to := short
	to.Attempt, to.Call = 20*time.Second, 20*time.Second
	cfg, _, err := Load(testCtx(t), Options{Timeouts: to})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	err = describeOnce(ctx, cfg)
	var ee *EndpointError
	if !errors.As(err, &ee) || ee.Timeout != 300*time.Millisecond || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v (%+v), want a 300ms timeout", err, ee)
	}
	// A cancellation is the caller's: not explained.
	ctx, cancel = context.WithCancel(testCtx(t))
	time.AfterFunc(100*time.Millisecond, cancel)
	if err = describeOnce(ctx, cfg); errors.As(err, &ee) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
}

// TestBoundsAnsweringEndpoint: a working endpoint is not slowed or
// changed, and its calls are logged.
func TestBoundsAnsweringEndpoint(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	isolate(t, "")
	envKeys(t)
	t.Setenv("AWS_ENDPOINT_URL_SSM", emu.Endpoint())
	t.Setenv("AWS_ENDPOINT_URL_STS", emu.Endpoint())
	var logs bytes.Buffer
	cfg, _, err := Load(testCtx(t), Options{Timeouts: short, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := describeOnce(testCtx(t), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(testCtx(t), &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"service=SSM operation=DescribeInstanceInformation", "service=STS operation=GetCallerIdentity", "attempts=1"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
	if strings.Contains(logs.String(), ssmtest.SecretAccessKey) || strings.Contains(logs.String(), "Signature=") {
		t.Errorf("log shows a secret:\n%s", logs.String())
	}
}

// TestAssumeRoleSTSHangs: the STS call the credential chain makes has its
// own bound, and its error names AWS_ENDPOINT_URL_STS, not the SSM call
// that needed the credentials.
func TestAssumeRoleSTSHangs(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	isolate(t, baseProfile+"\n[profile role]\nrole_arn = arn:aws:iam::123456789012:role/Dev\nsource_profile = base\nregion = us-east-1\n")
	addr, conns := hangServer(t)
	t.Setenv("AWS_ENDPOINT_URL_SSM", emu.Endpoint())
	t.Setenv("AWS_ENDPOINT_URL_STS", "http://"+addr)
	to := short
	to.Call = 500 * time.Millisecond
	cfg, _, err := Load(testCtx(t), Options{Profile: "role", Timeouts: to})
	if err != nil {
		t.Fatal(err)
	}
	err = describeOnce(testCtx(t), cfg)
	var ce *CredentialsError
	var ee *EndpointError
	if !errors.As(err, &ce) || !errors.As(err, &ee) {
		t.Fatalf("err = %v, want a CredentialsError with an EndpointError", err)
	}
	if ee.Service != "STS" || ee.Operation != "AssumeRole" || ee.Setting != "AWS_ENDPOINT_URL_STS" || ee.Host != addr || ee.Timeout == 0 {
		t.Errorf("EndpointError %+v", ee)
	}
	if settledCount(conns, 1) == 0 {
		t.Error("STS was never called")
	}
}

// TestIMDSBound: with nothing configured, the instance metadata service
// that does not answer costs Timeouts.IMDS, not the SDK's retries, and
// the error lists what was tried.
func TestIMDSBound(t *testing.T) {
	isolate(t, "")
	t.Setenv("AWS_REGION", "us-east-1")
	addr, conns := hangServer(t)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://"+addr)
	var logs bytes.Buffer
	cfg, info, err := Load(testCtx(t), Options{Timeouts: short, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Fallback {
		t.Errorf("Info.Fallback false: %+v", info)
	}
	_, err = cfg.Credentials.Retrieve(testCtx(t))
	var nc *NoCredentialsError
	if !errors.As(err, &nc) {
		t.Fatalf("err = %v, want a NoCredentialsError", err)
	}
	msg := nc.Error()
	for _, w := range []string{"no AWS credentials found: tried environment variables", `profile "default" in`, "no answer from " + addr + " within 300ms: not on EC2"} {
		if !strings.Contains(msg, w) {
			t.Errorf("message lacks %q: %s", w, msg)
		}
	}
	for _, w := range []string{"service=ec2imds operation=getToken host=" + addr, "service=ec2imds operation=GetMetadata host=" + addr} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
	// The token request and the metadata request each get one bounded
	// try: 300 ms for the call, 300 ms for each attempt.
	if n := settledCount(conns, 1); n == 0 || n > 2 {
		t.Errorf("%d connections to IMDS, want 1 or 2", n)
	}

	// An API call that needs the credentials does not retry their
	// retrieval: once more costs the same.
	before := conns.Load()
	err = describeOnce(testCtx(t), cfg)
	if !errors.As(err, &nc) {
		t.Fatalf("API call: err = %v, want a NoCredentialsError", err)
	}
	if n := settledCount(conns, before+1) - before; n == 0 || n > 2 {
		t.Errorf("the API call made %d connections to IMDS, want 1 or 2 (no retries)", n)
	}
}

// TestIMDSDisabled: with AWS_EC2_METADATA_DISABLED the list says so.
func TestIMDSDisabled(t *testing.T) {
	isolate(t, "")
	cfg, _, err := Load(testCtx(t), Options{Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Credentials.Retrieve(testCtx(t))
	var nc *NoCredentialsError
	if !errors.As(err, &nc) || !strings.Contains(nc.Error(), "turned off by AWS_EC2_METADATA_DISABLED") {
		t.Fatalf("err = %v", err)
	}
}

// TestCredentialProcessBound: a credential_process that hangs, directly or
// through a child that keeps its output open, ends at Timeouts.Process.
func TestCredentialProcessBound(t *testing.T) {
	for _, c := range []struct {
		name, cmd string
		sdkFired  bool // the SDK's timeout reported it, not checked's wait
	}{
		// The SDK's kill ends the process.
		{"process", "exec sleep 2", true},
		// The shell waits for its child, which keeps stdout open after
		// the shell is killed: the SDK waits for it; checked does not.
		{"child holds stdout", "sh -c 'sleep 2; true'", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			isolate(t, "[profile slow]\ncredential_process = "+c.cmd+"\nregion = us-east-1\n")
			cfg, info, err := Load(testCtx(t), Options{Profile: "slow", Timeouts: short})
			if err != nil {
				t.Fatal(err)
			}
			if !info.Process {
				t.Errorf("Info.Process false")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			_, err = cfg.Credentials.Retrieve(ctx)
			var pe *ProcessTimeoutError
			if !errors.As(err, &pe) || pe.Profile != "slow" || pe.After != short.Process {
				t.Fatalf("err = %v, want a ProcessTimeoutError", err)
			}
			if want := `the credential_process of profile "slow" did not finish within 300ms`; pe.Error() != want {
				t.Errorf("Error() = %q, want %q", pe.Error(), want)
			}
			if fired := pe.Err != nil; fired != c.sdkFired {
				t.Errorf("SDK's timeout reported it: %t, want %t", fired, c.sdkFired)
			}
		})
	}
}

// TestCredentialProcessOutputNotQuoted: a credential_process whose output
// the SDK cannot parse gets an error that does not quote that output,
// which may hold the keys (the SDK's own error does).
func TestCredentialProcessOutputNotQuoted(t *testing.T) {
	const secret = "wJalrXUtnFEMIprocessSecret"
	isolate(t, `[profile bad]
credential_process = echo '{"Version": 1, "AccessKeyId": "ASIAX", "SecretAccessKey": "`+secret+`", oops}'
region = us-east-1
`)
	cfg, _, err := Load(testCtx(t), Options{Profile: "bad"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Credentials.Retrieve(testCtx(t))
	var pe *ProcessOutputError
	if !errors.As(err, &pe) || pe.Profile != "bad" {
		t.Fatalf("err = %v, want a ProcessOutputError", err)
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.Contains(e.Error(), secret) {
			t.Fatalf("the error chain quotes the process output: %v", e)
		}
	}
}
