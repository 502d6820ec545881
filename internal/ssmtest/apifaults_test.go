package ssmtest

// Tests of the API faults: calls that never answer, throttling, and
// signature mismatches worded as AWS words them. ssm-proxy meets a hung
// ResumeSession in e2e/hardening_test.go; its own bounds on hung calls are
// internal/awscfg/bounds_test.go's (against a local server that never
// answers), and the throttling hint is the root package's targets_test.go.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// TestHangOperations: a hung operation takes the request and answers
// nothing until the client gives up; other operations answer; Close
// returns with calls still held, and they end.
func TestHangOperations(t *testing.T) {
	t.Parallel()
	s, err := Start(Options{HangOperations: []string{"StartSession", "ResumeSession", "GetCallerIdentity"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client := apiTestClient(s)

	// The client gives up: its call ends with its own cancellation, not an
	// answer.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := client.StartSession(ctx, &ssm.StartSessionInput{Target: aws.String(DefaultInstances()[0].ID)})
		done <- err
	}()
	waitStats(t, s, 10*time.Second, "the held StartSession", func(st Stats) bool { return st.HungCalls == 1 })
	// Other operations still answer meanwhile.
	if _, err := client.DescribeInstanceInformation(apiContext(t), &ssm.DescribeInstanceInformationInput{}); err != nil {
		t.Fatalf("DescribeInstanceInformation: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("StartSession answered: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("StartSession: %v, want the client's cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("StartSession did not return after the cancellation")
	}
	if st := s.Stats(); st.SessionsStarted != 0 {
		t.Errorf("a hung StartSession started a session: %+v", st)
	}

	// STS too, and Close while calls are held.
	stsDone := make(chan error, 1)
	go func() {
		_, err := stsClient(s, AccessKeyID, SecretAccessKey, "").GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{},
			func(o *sts.Options) { o.RetryMaxAttempts = 1 })
		stsDone <- err
	}()
	resumeDone := make(chan error, 1)
	go func() {
		_, err := client.ResumeSession(context.Background(), &ssm.ResumeSessionInput{SessionId: aws.String("test-0123456789abcdef0")})
		resumeDone <- err
	}()
	waitStats(t, s, 10*time.Second, "the held STS and ResumeSession calls", func(st Stats) bool { return st.HungCalls == 3 })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for the held calls")
	}
	for name, ch := range map[string]chan error{"GetCallerIdentity": stsDone, "ResumeSession": resumeDone} {
		select {
		case err := <-ch:
			// The SDK wraps transport errors too, with status 0.
			var re *awshttp.ResponseError
			if err == nil || (errors.As(err, &re) && re.HTTPStatusCode() != 0) {
				t.Errorf("%s after Close: %v, want a transport error, not an answer", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s still held after Close", name)
		}
	}
}

// TestHangOperationsOption: only operations the emulator serves can hang.
func TestHangOperationsOption(t *testing.T) {
	t.Parallel()
	if _, err := Start(Options{HangOperations: []string{"SendCommand"}}); err == nil || !strings.Contains(err.Error(), "SendCommand") {
		t.Errorf("Start: %v", err)
	}
}

// TestThrottling: StartSession and ResumeSession each have a token bucket;
// beyond it they fail with ThrottlingException "Rate exceeded" (HTTP 400),
// other operations are not limited, and without ThrottleRate nothing is.
func TestThrottling(t *testing.T) {
	t.Parallel()
	// A rate so low that the bucket cannot refill during the test.
	s := apiTestServer(t, Options{ThrottleRate: 0.001, ThrottleBurst: 2})
	client := apiTestClient(s)
	ctx := apiContext(t)
	var ids []string
	for i := range 3 {
		out, err := client.StartSession(ctx, &ssm.StartSessionInput{Target: aws.String(DefaultInstances()[0].ID), DocumentName: aws.String(docSSH)})
		if i < 2 {
			if err != nil {
				t.Fatalf("StartSession %d: %v", i, err)
			}
			ids = append(ids, aws.ToString(out.SessionId))
			continue
		}
		checkAPIError(t, err, "ThrottlingException", "Rate exceeded")
	}
	for i := range 3 {
		_, err := client.ResumeSession(ctx, &ssm.ResumeSessionInput{SessionId: aws.String(ids[0])})
		if i < 2 {
			if err != nil {
				t.Fatalf("ResumeSession %d: %v", i, err)
			}
			continue
		}
		checkAPIError(t, err, "ThrottlingException", "Rate exceeded")
	}
	for range 3 {
		if _, err := client.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{}); err != nil {
			t.Fatalf("DescribeInstanceInformation: %v", err)
		}
	}
	if st := s.Stats(); st.Throttled != 2 || st.SessionsStarted != 2 || st.Resumes != 2 {
		t.Errorf("stats %+v", st)
	}

	plain := apiTestServer(t, Options{})
	for i := range 5 {
		if _, err := apiTestClient(plain).StartSession(ctx, &ssm.StartSessionInput{Target: aws.String(DefaultInstances()[0].ID)}); err != nil {
			t.Fatalf("unthrottled StartSession %d: %v", i, err)
		}
	}
	if st := plain.Stats(); st.Throttled != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestTokenBucket: refill at the rate, never above the burst.
func TestTokenBucket(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	b := tokenBucket{tokens: 2, last: t0}
	steps := []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {0, true}, {0, false}, // the burst, then empty
		{50 * time.Millisecond, false}, // half a call refilled at 10/s
		{100 * time.Millisecond, true}, // one call
		{100 * time.Millisecond, false},
		{time.Hour, true}, {time.Hour, true}, {time.Hour, false}, // capped at the burst
	}
	for i, st := range steps {
		if got := b.take(10, 2, t0.Add(st.at)); got != st.want {
			t.Errorf("step %d at %s: take = %v, want %v", i, st.at, got, st.want)
		}
	}
}

// apiErrorMessage is the message of an API error.
func apiErrorMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return ""
}

// canonicalFromMessage cuts the quoted canonical request and string to
// sign out of an InvalidSignatureException message.
func canonicalFromMessage(t *testing.T, msg string) (canonical, toSign string) {
	t.Helper()
	const c1, c2 = "\n\nThe Canonical String for this request should have been\n'", "'\n\nThe String-to-Sign should have been\n'"
	head, rest, ok := strings.Cut(msg, c1)
	if !ok || head != msgSignatureMismatch {
		t.Fatalf("message does not quote the canonical request:\n%s", msg)
	}
	canonical, rest, ok = strings.Cut(rest, c2)
	if !ok || !strings.HasSuffix(rest, "'\n") {
		t.Fatalf("message does not quote the string to sign:\n%s", msg)
	}
	return canonical, strings.TrimSuffix(rest, "'\n")
}

// TestSignatureMismatchMessage: a signature that does not match is
// answered as AWS answers it, with the canonical request (every signed
// header, the session token among them) and the string to sign; the
// string to sign hashes that canonical request.
func TestSignatureMismatchMessage(t *testing.T) {
	t.Parallel()
	const token = "ssmtest-session-token-VALUE"
	s := apiTestServer(t, Options{})
	creds := sigCredentials(SessionAccessKeyID, token)
	creds.SecretAccessKey = "wrong"
	_, err := apiClient(s, creds, DefaultRegion).DescribeInstanceInformation(apiContext(t), &ssm.DescribeInstanceInformationInput{})
	checkAPIError(t, err, "InvalidSignatureException", msgSignatureMismatch)
	msg := apiErrorMessage(err)
	canonical, toSign := canonicalFromMessage(t, msg)
	for _, want := range []string{"POST\n/\n\n", "x-amz-security-token:" + token + "\n", "x-amz-target:AmazonSSM.DescribeInstanceInformation\n"} {
		if !strings.Contains(canonical, want) {
			t.Errorf("canonical request lacks %q:\n%s", want, canonical)
		}
	}
	lines := strings.Split(toSign, "\n")
	sum := sha256.Sum256([]byte(canonical))
	if len(lines) != 4 || lines[0] != "AWS4-HMAC-SHA256" || !strings.HasSuffix(lines[2], "/"+DefaultRegion+"/ssm/aws4_request") || lines[3] != hex.EncodeToString(sum[:]) {
		t.Errorf("string to sign:\n%s", toSign)
	}
	if st := s.Stats(); st.SignatureMismatches != 1 {
		t.Errorf("stats %+v", st)
	}
	// Correct signatures still pass.
	if _, err := apiTestClient(s).DescribeInstanceInformation(apiContext(t), &ssm.DescribeInstanceInformationInput{}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.SignatureMismatches != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestRefuseSignatures: every signed API call, SSM and STS, is refused
// with a mismatch that quotes the session token; the data channel still
// opens.
func TestRefuseSignatures(t *testing.T) {
	t.Parallel()
	const token = "ssmtest-session-token-VALUE"
	s := apiTestServer(t, Options{RefuseSignatures: true, RequireSignedUpgrade: true, TargetAddr: echoServer(t)})
	_, err := apiClient(s, sigCredentials(SessionAccessKeyID, token), DefaultRegion).StartSession(apiContext(t),
		&ssm.StartSessionInput{Target: aws.String(DefaultInstances()[0].ID)})
	checkAPIError(t, err, "InvalidSignatureException", msgSignatureMismatch)
	if canonical, _ := canonicalFromMessage(t, apiErrorMessage(err)); !strings.Contains(canonical, "x-amz-security-token:"+token+"\n") {
		t.Errorf("canonical request lacks the token:\n%s", canonical)
	}

	_, err = stsClient(s, SessionAccessKeyID, SecretAccessKey, token).GetCallerIdentity(apiContext(t), &sts.GetCallerIdentityInput{},
		func(o *sts.Options) { o.RetryMaxAttempts = 1 })
	if stsErrorCode(err) != "SignatureDoesNotMatch" {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	if canonical, _ := canonicalFromMessage(t, apiErrorMessage(err)); !strings.Contains(canonical, "x-amz-security-token:"+token+"\n") {
		t.Errorf("STS canonical request lacks the token:\n%s", canonical)
	}
	if re := (*awshttp.ResponseError)(nil); !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
		t.Errorf("STS status: %v", err)
	}

	ss := startSession(t, s)
	c, err := tryDialRaw(t, ss.streamURL, ss.firstToken, signedHeader(t, ss.streamURL, SecretAccessKey))
	if err != nil {
		t.Fatalf("signed upgrade: %v", err)
	}
	c.ss = ss
	c.handshake()
	if st := s.Stats(); st.SignatureMismatches != 2 || st.SignedUpgrades != 1 || st.RefusedUpgrades != 0 {
		t.Errorf("stats %+v", st)
	}
}
