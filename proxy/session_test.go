package proxy_test

// Whole sessions in-process against the emulator (internal/ssmtest) through
// the real SDK client: 1 MiB echoed under each fault knob with a check that
// it fired, cancellation, idle timeout, the agent failing to dial, resume
// giving up, and termination from elsewhere. Frame-by-frame behaviour is
// gateway_test.go's; the same knobs through real ssh e2e/resume_test.go's;
// exit codes and messages the root package's.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// stEchoServer is the session's target: a TCP server on loopback that
// echoes every connection back until the client half-closes it.
func stEchoServer(t *testing.T) string {
	return testenv.ServeTCP(t, func(c net.Conn) { io.Copy(c, c) })
}

// stSession starts an emulator with o and a session to its default
// instance through the real SDK client.
func stSession(t *testing.T, o ssmtest.Options, po proxy.Options) (*ssmtest.Server, *proxy.Session) {
	return stSessionAPI(t, o, po, nil)
}

// failingResume is an API whose ResumeSession always fails transiently.
type failingResume struct{ proxy.API }

func (failingResume) ResumeSession(context.Context, *ssm.ResumeSessionInput, ...func(*ssm.Options)) (*ssm.ResumeSessionOutput, error) {
	return nil, errors.New("connection refused")
}

func stSessionAPI(t *testing.T, o ssmtest.Options, po proxy.Options, wrap func(proxy.API) proxy.API) (*ssmtest.Server, *proxy.Session) {
	t.Helper()
	emu, err := ssmtest.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	creds := aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: ssmtest.AccessKeyID, SecretAccessKey: ssmtest.SecretAccessKey, Source: "test"}, nil
	}))
	api := ssm.New(ssm.Options{
		Region:       ssmtest.DefaultRegion,
		BaseEndpoint: aws.String(emu.Endpoint()),
		Credentials:  creds,
	})
	if po.PingInterval == 0 {
		po.PingInterval, po.DeadPeerTimeout = 200*time.Millisecond, time.Second
	}
	if po.DrainTimeout == 0 {
		po.DrainTimeout = 200 * time.Millisecond
	}
	po.RefreshCredentials = creds.Invalidate
	po.StreamHosts = []string{"127.0.0.1"} // the emulator, as AWS_ENDPOINT_URL_SSM names it
	var a proxy.API = api
	if wrap != nil {
		a = wrap(api)
	}
	sess, err := proxy.Start(context.Background(), a, creds, ssmtest.DefaultRegion, proxy.StartInput{
		Target: "i-0123456789abcdef0", Document: "AWS-StartSSHSession",
		Parameters: map[string][]string{"portNumber": {"22"}},
	}, po)
	if err != nil {
		t.Fatal(err)
	}
	return emu, sess
}

// stRun runs sess with stdin from r, collecting stdout.
func stRun(ctx context.Context, sess *proxy.Session, r io.Reader) (<-chan error, *stBuffer) {
	out := &stBuffer{}
	done := make(chan error, 1)
	go func() { done <- sess.Run(ctx, r, out) }()
	return done, out
}

type stBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *stBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *stBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

func (s *stBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

func stWait(t *testing.T, done <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		t.Fatalf("Run did not return within %s\n%s", d, buf[:runtime.Stack(buf, true)])
		return nil
	}
}

func stIdle(t *testing.T, emu *ssmtest.Server) ssmtest.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := emu.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	return emu.Stats()
}

// stNoLeaks checks that the session's goroutines are gone.
func stNoLeaks(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stEcho pushes size random bytes through an echo target while the
// emulator applies o, and checks they come back intact and in order.
func stEcho(t *testing.T, o ssmtest.Options, size int) (ssmtest.Stats, proxy.Stats) {
	t.Helper()
	o.TargetAddr = stEchoServer(t)
	before := runtime.NumGoroutine()
	emu, sess := stSession(t, o, proxy.Options{})
	data := make([]byte, size)
	rand.New(rand.NewSource(int64(size))).Read(data)
	pr, pw := io.Pipe()
	done, out := stRun(context.Background(), sess, pr)
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 7777)
			if _, err := pw.Write(p[:n]); err != nil {
				return
			}
			p = p[n:]
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for out.Len() < size && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	pw.Close() // stdin EOF: Run ends the session after a grace period
	if err := stWait(t, done, 30*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := out.Bytes(); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echoed %d bytes differ from the %d sent", len(got), size)
	}
	st := stIdle(t, emu)
	if st.EarlyDataDiscarded != 0 {
		t.Errorf("the agent discarded %d frames sent before HandshakeComplete", st.EarlyDataDiscarded)
	}
	ss := sess.Stats()
	if ss.BytesUp != int64(size) || ss.BytesDown != int64(size) || int64(ss.Resumes) != st.Reconnects {
		t.Errorf("session stats %+v, want %d bytes each way and %d resumes", ss, size, st.Reconnects)
	}
	emu.Close()
	stNoLeaks(t, before)
	return st, ss
}

func TestSessionEcho(t *testing.T) {
	st, _ := stEcho(t, ssmtest.Options{}, 1<<20)
	if st.BytesUp != 1<<20 || st.BytesDown != 1<<20 {
		t.Errorf("bytes up %d down %d", st.BytesUp, st.BytesDown)
	}
	// Ended by us: the TerminateSession flag on the data channel, with the
	// API call as the backstop (whichever the emulator saw first).
	if st.TerminatedByAPI+st.Endings[ssmtest.EndTerminateFlag] != 1 {
		t.Errorf("stdin EOF did not end the session: %+v", st)
	}
}

// TestSessionEchoOldAgent: an agent before 2.3.756.0 ignores the
// TerminateSession flag; the TerminateSession call that always follows it
// ends the session.
func TestSessionEchoOldAgent(t *testing.T) {
	st, _ := stEcho(t, ssmtest.Options{AgentVersion: "2.3.740.0"}, 64<<10)
	if st.TerminatedByAPI != 1 || st.Endings[ssmtest.EndTerminateFlag] != 0 {
		t.Errorf("terminated by API %d, endings %v: want the API call to end it", st.TerminatedByAPI, st.Endings)
	}
}

// TestSessionSSOCallerID: the SessionId of an SSO caller contains "@",
// which the upgrade's canonical path encodes twice (§2): every signed
// upgrade, first and resumed, is accepted.
func TestSessionSSOCallerID(t *testing.T) {
	st, ss := stEcho(t, ssmtest.Options{SessionIDPrefix: "jane@example.com", RequireSignedUpgrade: true,
		ByeEvery: 200 * time.Millisecond, Seed: 3}, 256<<10)
	if st.RefusedUpgrades != 0 || st.SignedUpgrades != int64(ss.Resumes)+1 || ss.Resumes == 0 {
		t.Errorf("%d upgrades signed, %d refused, %d resumes", st.SignedUpgrades, st.RefusedUpgrades, ss.Resumes)
	}
}

// TestSessionFaults: the session survives every emulator knob on its own
// (§5, §8), in-process, 1 MiB each way. Each case checks that its fault
// fired — on the emulator's side and in what the session saw — as well as
// the bytes; e2e/resume_test.go runs the same knobs, together, through real
// ssh.
func TestSessionFaults(t *testing.T) {
	cases := []struct {
		name  string
		o     ssmtest.Options
		fired func(emu ssmtest.Stats, sess proxy.Stats) bool
	}{
		{"bye", ssmtest.Options{ByeEvery: 100 * time.Millisecond}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.Byes > 0 && s.Resumes > 0
		}},
		// Every ResumeSession moves the cell and no upgrade used a stale
		// URL. Resumes may outnumber the session's: a Bye while it drains
		// can start one that the session's end makes moot.
		{"cell moves", ssmtest.Options{ByeEvery: 100 * time.Millisecond, MoveCellOnResume: true}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.CellMoves > 0 && e.StaleURLRefusals == 0 && e.CellMoves == e.Resumes && s.Resumes > 0
		}},
		{"drop", ssmtest.Options{DropEveryBytes: 900 << 10}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.Drops > 0 && s.Resumes > 0
		}},
		{"blackhole", ssmtest.Options{BlackholeEvery: 900 << 10}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.Blackholes > 0 && s.Resumes > 0
		}},
		{"ack_loss", ssmtest.Options{AckLoss: 0.1}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.AcksLost > 0 && e.Retransmissions > 0 && s.Retransmits > 0
		}},
		{"duplicate", ssmtest.Options{Duplicate: 0.1}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.FramesDuplicated > 0 && e.DuplicatesReceived > 0 && s.Duplicates > 0
		}},
		{"reorder", ssmtest.Options{Reorder: 0.1}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.FramesReordered > 0 && s.OutOfOrder > 0
		}},
		{"pause", ssmtest.Options{PauseEvery: 100 * time.Millisecond, PauseFor: 50 * time.Millisecond}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.Pauses > 0 && s.Pauses > 0
		}},
		{"latency", ssmtest.Options{Latency: 20 * time.Millisecond}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.FramesDelayed > 0
		}},
		// A slow HandshakeComplete: whatever is sent before it is lost
		// (stEcho checks that nothing was).
		{"slow handshake complete", ssmtest.Options{HandshakeCompleteDelay: 200 * time.Millisecond}, func(e ssmtest.Stats, s proxy.Stats) bool {
			return e.DelayedCompletes == 1
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.Seed = 3
			emu, sess := stEcho(t, c.o, 1<<20)
			if !c.fired(emu, sess) {
				t.Fatalf("the fault did not fire: emulator %+v, session %+v", emu, sess)
			}
		})
	}
}

func TestSessionCancelTerminates(t *testing.T) {
	established := make(chan struct{})
	emu, sess := stSession(t, ssmtest.Options{TargetAddr: stEchoServer(t)}, proxy.Options{OnEvent: onHandshake(established)})
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	defer pw.Close()
	done, _ := stRun(ctx, sess, pr)
	stWaitChan(t, established)
	cancel()
	if err := stWait(t, done, 10*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if st := stIdle(t, emu); st.TerminatedByAPI+st.Endings[ssmtest.EndTerminateFlag] != 1 {
		t.Fatalf("session not terminated: %+v", st)
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	_, sess := stSession(t, ssmtest.Options{TargetAddr: stEchoServer(t), IdleTimeout: 300 * time.Millisecond}, proxy.Options{})
	pr, pw := io.Pipe()
	defer pw.Close()
	done, _ := stRun(context.Background(), sess, pr)
	if err := stWait(t, done, 10*time.Second); !errors.Is(err, proxy.ErrIdleTimeout) {
		t.Fatalf("Run = %v, want ErrIdleTimeout", err)
	}
}

func TestSessionDialFailure(t *testing.T) {
	_, sess := stSession(t, ssmtest.Options{TargetAddr: "127.0.0.1:1"}, proxy.Options{})
	pr, pw := io.Pipe()
	defer pw.Close()
	done, out := stRun(context.Background(), sess, pr)
	err := stWait(t, done, 10*time.Second)
	var re *proxy.RemoteError
	if !errors.As(err, &re) || !strings.HasPrefix(re.Output, "Unable to connect to specified port") {
		t.Fatalf("Run = %v, want RemoteError with the agent's dial text", err)
	}
	if out.Len() != 0 {
		t.Fatalf("stdout got %q", out.Bytes())
	}
}

// TestSessionResumeGivesUp: when the websocket is lost and ResumeSession
// keeps failing, Run gives up after the budget with a ResumeError.
func TestSessionResumeGivesUp(t *testing.T) {
	_, sess := stSessionAPI(t, ssmtest.Options{TargetAddr: stEchoServer(t), ByeEvery: 200 * time.Millisecond},
		proxy.Options{ResumeBudget: 700 * time.Millisecond},
		func(a proxy.API) proxy.API { return failingResume{a} })
	pr, pw := io.Pipe()
	defer pw.Close()
	done, _ := stRun(context.Background(), sess, pr)
	err := stWait(t, done, 15*time.Second)
	var re *proxy.ResumeError
	if !errors.As(err, &re) || re.Attempts < 2 {
		t.Fatalf("Run = %v, want ResumeError after several attempts", err)
	}
}

// TestSessionTerminatedElsewhere: TerminateSession by someone else ends the
// session with channel_closed; Run returns without error.
func TestSessionTerminatedElsewhere(t *testing.T) {
	established := make(chan struct{})
	emu, sess := stSession(t, ssmtest.Options{TargetAddr: stEchoServer(t)}, proxy.Options{OnEvent: onHandshake(established)})
	pr, pw := io.Pipe()
	defer pw.Close()
	done, _ := stRun(context.Background(), sess, pr)
	stWaitChan(t, established)
	if _, err := ssmtest.APIClient(emu.Endpoint()).TerminateSession(context.Background(), &ssm.TerminateSessionInput{SessionId: aws.String(sess.ID())}); err != nil {
		t.Fatal(err)
	}
	if err := stWait(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// onHandshake returns an OnEvent that closes ch at HandshakeComplete.
func onHandshake(ch chan struct{}) func(proxy.Event) {
	var once sync.Once
	return func(e proxy.Event) {
		if e.Kind == proxy.EventHandshakeComplete {
			once.Do(func() { close(ch) })
		}
	}
}

// stWaitChan waits for ch to be closed.
func stWaitChan(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake within 10 s")
	}
}

// TestStartThrottled: StartSession throttled beyond the SDK's three
// attempts is retried with backoff, so that a burst of sessions (Ansible's
// forks) all start instead of failing with ThrottlingException.
func TestStartThrottled(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: stEchoServer(t), ThrottleRate: 5, ThrottleBurst: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			sess, err := proxy.Start(context.Background(), ssmtest.APIClient(emu.Endpoint()), ssmtest.Credentials(), ssmtest.DefaultRegion,
				proxy.StartInput{Target: "i-0123456789abcdef0", Document: "AWS-StartSSHSession"}, proxy.Options{StreamHosts: []string{"127.0.0.1"}})
			if err == nil {
				_, err = ssmtest.APIClient(emu.Endpoint()).TerminateSession(context.Background(), &ssm.TerminateSessionInput{SessionId: aws.String(sess.ID())})
			}
			errs <- err
		}()
	}
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("a session did not start: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("sessions still starting after 60 s")
		}
	}
	if st := emu.Stats(); st.Throttled == 0 || st.SessionsStarted != n {
		t.Errorf("throttled %d, sessions started %d: want throttling and all %d started", st.Throttled, st.SessionsStarted, n)
	}
}
