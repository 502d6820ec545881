package proxy_test

// Scripted-gateway tests of the dial around a session's life: a resume cut
// short by the session's end, a certificate that does not verify, and the
// handshake deadline. dial_test.go checks what a dial may touch.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
	"github.com/ssm-proxy/ssm-proxy/protocol"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// TestGatewayResumeCancelled: a session cancelled while a resume's upgrade
// hangs (a stream host that accepts TCP and never answers) closes that
// connection as Run ends. gorilla's dialer obeys only its deadline once
// connected — a minute here — so without the session's own guard the
// connection outlived Run, and a late 101 would have been answered with the
// token.
func TestGatewayResumeCancelled(t *testing.T) {
	dialled := make(chan struct{}, 1)
	closed := make(chan struct{})
	silent := testenv.ServeTCP(t, func(c net.Conn) {
		dialled <- struct{}{}
		io.Copy(io.Discard, c) // until the client closes
		close(closed)
	})
	g := newGateway(t)
	g.resume = func(int) (*ssm.ResumeSessionOutput, error) {
		return &ssm.ResumeSessionOutput{SessionId: aws.String("s-1"), TokenValue: aws.String("t"),
			StreamUrl: aws.String("ws://" + silent + "/v1/data-channel/s-1")}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _, _, done := g.startCtx(ctx, proxy.Options{ResumeBudget: time.Minute,
		Dialer: &websocket.Dialer{HandshakeTimeout: time.Minute}})
	c := g.accept()
	c.handshake()
	c.ws.Close()
	select {
	case <-dialled: // the fault: the resume's upgrade is in flight
	case <-time.After(gwWait):
		t.Fatal("the resume never dialled the silent stream host")
	}
	cancel()
	if err := waitDone(t, done); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	select {
	case <-closed:
	case <-time.After(gwWait):
		t.Fatal("the resume's connection is still open after Run returned")
	}
}

// TestGatewayResumeUntrustedCert: a stream host whose certificate does not
// verify (a TLS-inspecting proxy without AWS_CA_BUNDLE, say) gives the same
// answer on every attempt: the resume fails at once, it is not retried for
// the whole budget.
func TestGatewayResumeUntrustedCert(t *testing.T) {
	var handshakes atomic.Int32
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			handshakes.Add(1)
		}
	}
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	g := newGateway(t)
	g.resume = func(int) (*ssm.ResumeSessionOutput, error) {
		return &ssm.ResumeSessionOutput{SessionId: aws.String("s-1"), TokenValue: aws.String("t"),
			StreamUrl: aws.String("wss" + strings.TrimPrefix(tlsSrv.URL, "https") + "/v1/data-channel/s-1")}, nil
	}
	start := time.Now()
	_, _, _, done := g.start(proxy.Options{ResumeBudget: time.Minute})
	c := g.accept()
	c.handshake()
	c.ws.Close()
	err := waitDone(t, done)
	var cv *tls.CertificateVerificationError
	if !errors.As(err, &cv) || !proxy.Permanent(err) {
		t.Fatalf("err %T %v, want a permanent certificate verification error", err, err)
	}
	if n := handshakes.Load(); n != 1 {
		t.Errorf("%d connections to the untrusted host, want 1", n)
	}
	if resumes, terms, _ := g.counts(); resumes != 1 || terms != 1 {
		t.Errorf("ResumeSession %d times (want 1), TerminateSession %d", resumes, terms)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %s of a 1 min budget", d)
	}
}

// TestGatewayHandshakeTimeout: HandshakeTimeout is the time the agent had
// over a link. An agent that never handshakes ends the session with a
// timeout; a first dial slower than the timeout (refused upgrades, retried)
// does not count against it.
func TestGatewayHandshakeTimeout(t *testing.T) {
	const timeout = time.Second
	t.Run("silent agent", func(t *testing.T) {
		g := newGateway(t)
		_, _, _, done := g.start(proxy.Options{HandshakeTimeout: timeout})
		g.accept() // and say nothing
		err := waitDone(t, done)
		var he *proxy.HandshakeError
		if !errors.As(err, &he) || !he.Timeout {
			t.Fatalf("err %v, want a handshake timeout", err)
		}
		if _, terms, _ := g.counts(); terms != 1 {
			t.Errorf("TerminateSession %d times, want 1", terms)
		}
	})
	t.Run("slow first dial", func(t *testing.T) {
		g := newGateway(t)
		began := time.Now()
		var refused atomic.Int32
		g.refuse = func(*http.Request) int {
			if time.Since(began) < 3*timeout/2 {
				refused.Add(1)
				return http.StatusServiceUnavailable
			}
			return 0
		}
		_, stdin, _, done := g.start(proxy.Options{HandshakeTimeout: timeout, ResumeBudget: time.Minute})
		c := g.accept()
		if refused.Load() == 0 || time.Since(began) <= timeout {
			t.Fatalf("the fault did not fire: %d refusals in %s", refused.Load(), time.Since(began))
		}
		// The agent is slow to acknowledge the HandshakeResponse: seeing
		// it again shows the client's timer ran after the attach — the
		// handshake deadline is checked first — and let the handshake be.
		req, _ := json.Marshal(protocol.HandshakeRequest{AgentVersion: ssmtest.DefaultAgentVersion,
			RequestedClientActions: []protocol.RequestedClientAction{{ActionType: protocol.ActionSessionType,
				ActionParameters: json.RawMessage(`{"SessionType":"Port","Properties":{"portNumber":"22"}}`)}}})
		c.stream(protocol.PayloadHandshakeRequest, req)
		resp := c.recv(isStream(protocol.PayloadHandshakeResponse))
		again := c.recv(isStream(protocol.PayloadHandshakeResponse))
		if again.SequenceNumber != resp.SequenceNumber {
			t.Fatalf("second HandshakeResponse has seq %d, want the retransmission of %d", again.SequenceNumber, resp.SequenceNumber)
		}
		c.ack(resp)
		c.stream(protocol.PayloadHandshakeComplete, []byte(`{"HandshakeTimeToComplete":1000,"CustomerMessage":""}`))
		c.recv(isAckOf(1))
		stdin.Close()
		if err := waitDone(t, done); err != nil {
			t.Errorf("err %v, want a normal end", err)
		}
	})
}
