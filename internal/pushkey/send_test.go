package pushkey

// Tests of Send (send.go) against the emulator's EC2 Instance Connect: one
// push, 25 at once through a throttle, a throttle that outlasts the budget
// (ThrottledError), ServiceException retried up to its limit, errors that
// cannot heal not retried, each checked on the emulator's counters. The same
// through run is the root package's pushkey_test.go; sshd accepting the
// pushed key e2e/pushkey_test.go's.

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect/types"
	"github.com/aws/smithy-go"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

const testInstance = "i-0123456789abcdef0"

// emulator starts the Session Manager emulator with o and returns an EC2
// Instance Connect client for it that, like ssm-proxy's, does not retry.
func emulator(t *testing.T, o ssmtest.InstanceConnectOptions) (*ssmtest.Server, *ec2instanceconnect.Client) {
	t.Helper()
	emu, err := ssmtest.Start(ssmtest.Options{InstanceConnect: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	return emu, ec2instanceconnect.New(ec2instanceconnect.Options{
		Region:       ssmtest.DefaultRegion,
		BaseEndpoint: aws.String(emu.Endpoint()),
		Credentials:  ssmtest.Credentials(),
		Retryer:      aws.NopRetryer{},
	})
}

func request(t *testing.T, user string) Request {
	k, err := NewEphemeral(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Request{InstanceID: testInstance, OSUser: user, Key: k}
}

// fastRetry retries quickly: the waits are not what these tests measure.
var fastRetry = Retry{Base: time.Millisecond, Max: 5 * time.Millisecond}

func TestSend(t *testing.T) {
	emu, api := emulator(t, ssmtest.InstanceConnectOptions{})
	req := request(t, "ec2-user")
	res, err := Send(agentContext(t), api, req, Retry{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 1 || res.Throttled != 0 || res.RequestID == "" {
		t.Errorf("result %+v", res)
	}
	// What was pushed is the key, without a comment.
	if keys := emu.InstanceConnectKeys(testInstance, "ec2-user"); len(keys) != 1 || keys[0] != req.Key.AuthorizedKey() {
		t.Errorf("listed %q, want %q", keys, req.Key.AuthorizedKey())
	}
}

// TestSendThrottledForks: 25 pushes at once against a throttle of 10 a
// second in bursts of 5 all get through, most after retries.
func TestSendThrottledForks(t *testing.T) {
	emu, api := emulator(t, ssmtest.InstanceConnectOptions{ThrottleRate: 10, ThrottleBurst: 5})
	const forks = 25
	ctx := agentContext(t)
	var wg sync.WaitGroup
	results := make(chan Result, forks)
	errs := make(chan error, forks)
	for i := 0; i < forks; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := Send(ctx, api, request(t, "ec2-user"), Retry{Base: 50 * time.Millisecond, Max: time.Second}, nil)
			if err != nil {
				errs <- err
				return
			}
			results <- res
		}()
	}
	wg.Wait()
	close(errs)
	close(results)
	for err := range errs {
		t.Error(err)
	}
	var throttled int64
	for res := range results {
		throttled += int64(res.Throttled)
		if res.Attempts != res.Throttled+1 {
			t.Errorf("result %+v: every attempt but the last throttled", res)
		}
	}
	st := emu.InstanceConnectStats()
	if st.Pushed != forks || st.Throttled == 0 || st.Throttled != throttled {
		t.Errorf("stats %+v; clients saw %d throttles", st, throttled)
	}
	if n := len(emu.InstanceConnectKeys(testInstance, "ec2-user")); n != forks {
		t.Errorf("%d keys listed", n)
	}
}

// TestSendThrottledBudget: a throttle that never lets up ends in a
// *ThrottledError once the budget is spent, after several attempts.
func TestSendThrottledBudget(t *testing.T) {
	emu, api := emulator(t, ssmtest.InstanceConnectOptions{ThrottleRate: 1e-9, ThrottleBurst: 1})
	ctx := agentContext(t)
	if _, err := Send(ctx, api, request(t, "ec2-user"), fastRetry, nil); err != nil {
		t.Fatal(err) // the burst's one token
	}
	r := fastRetry
	r.Budget = 300 * time.Millisecond
	res, err := Send(ctx, api, request(t, "ec2-user"), r, nil)
	var te *ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want *ThrottledError", err)
	}
	var tx *types.ThrottlingException
	// The last attempt may be the one the budget cut short.
	if !errors.As(err, &tx) || te.Attempts != res.Attempts || res.Throttled < res.Attempts-1 || res.Attempts < 3 {
		t.Errorf("err %v, result %+v", err, res)
	}
	if st := emu.InstanceConnectStats(); st.Throttled-int64(res.Throttled) > 1 || st.Throttled < int64(res.Throttled) || st.Pushed != 1 {
		t.Errorf("stats %+v, %d attempts", st, res.Attempts)
	}
	if !strings.Contains(err.Error(), "still throttled after") {
		t.Errorf("err = %q", err)
	}

	// A cancelled context ends the waits, reported as the throttling.
	cctx, cancel := context.WithCancel(ctx)
	r.Budget = 2 * time.Hour
	r.Base, r.Max = time.Hour, time.Hour
	r.Rand = func() float64 { cancel(); return 1 }
	_, err = Send(cctx, api, request(t, "ec2-user"), r, nil)
	if !errors.As(err, &te) || te.Attempts != 1 {
		t.Errorf("cancelled while waiting: %v", err)
	}
}

// TestSendTransient: a ServiceException is retried, up to Transient tries.
func TestSendTransient(t *testing.T) {
	_, api := emulator(t, ssmtest.InstanceConnectOptions{FailFirst: 2})
	res, err := Send(agentContext(t), api, request(t, "ec2-user"), fastRetry, nil)
	if err != nil || res.Attempts != 3 {
		t.Fatalf("result %+v, %v", res, err)
	}
	emu, api := emulator(t, ssmtest.InstanceConnectOptions{FailFirst: 5})
	res, err = Send(agentContext(t), api, request(t, "ec2-user"), fastRetry, nil)
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ServiceException" || res.Attempts != 3 {
		t.Errorf("result %+v, %v", res, err)
	}
	if st := emu.InstanceConnectStats(); st.ServiceErrors != 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestSendFailsAtOnce: errors that cannot heal are not retried.
func TestSendFailsAtOnce(t *testing.T) {
	emu, api := emulator(t, ssmtest.InstanceConnectOptions{DeniedUsers: []string{"root"},
		InstanceStates: map[string]string{"i-0123456789abcdef1": ssmtest.StatePending}})
	for _, c := range []struct {
		req  Request
		code string
	}{
		{request(t, "root"), "AccessDeniedException"},
		{Request{InstanceID: "i-0999999999999999f", OSUser: "ec2-user", Key: request(t, "").Key}, "EC2InstanceNotFoundException"},
		{request(t, "bad user"), "ValidationException"},
		{Request{InstanceID: "i-0123456789abcdef1", OSUser: "ec2-user", Key: request(t, "").Key}, "EC2InstanceUnavailableException"},
	} {
		res, err := Send(agentContext(t), api, c.req, fastRetry, nil)
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != c.code || res.Attempts != 1 {
			t.Errorf("%s: result %+v, err %v", c.code, res, err)
		}
	}
	if st := emu.InstanceConnectStats(); st.Calls != 4 {
		t.Errorf("stats %+v", st)
	}
}
