package ssmtest

// Tests of the gateway's 2026 behaviour (§15.1, §15.2) and of the
// data-channel knobs that refuse or close opens: cell moves,
// MinClientVersion, CloseOnOpen. ssm-proxy following cell moves against
// this emulator is proxy/session_test.go's and e2e/resume_test.go's; the
// official plugin failing them is interop/cellmove_e2e_test.go's. ssm-proxy
// against MinClientVersion and CloseOnOpen is proxy/gateway_test.go's and
// e2e/hardening_test.go's.

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/gorilla/websocket"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// waitStats waits up to d for cond on s's counters.
func waitStats(t testing.TB, s *Server, d time.Duration, what string, cond func(Stats) bool) Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	st, err := s.WaitStats(ctx, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v (stats %+v)", what, err, st)
	}
	return st
}

// resumeAPI calls ResumeSession through the SDK, as a client does.
func resumeAPI(t *testing.T, s *Server, id string) (token, streamURL string) {
	t.Helper()
	out, err := apiTestClient(s).ResumeSession(apiContext(t), &ssm.ResumeSessionInput{SessionId: aws.String(id)})
	if err != nil {
		t.Fatalf("ResumeSession: %v", err)
	}
	if aws.ToString(out.SessionId) != id {
		t.Errorf("ResumeSession SessionId %q, want %q", aws.ToString(out.SessionId), id)
	}
	return aws.ToString(out.TokenValue), aws.ToString(out.StreamUrl)
}

// cellOf is the cell-number of a StreamUrl; the rest of it must be the
// session's.
func cellOf(t *testing.T, streamURL, id string) string {
	t.Helper()
	u, err := url.Parse(streamURL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != "/v1/data-channel/"+id || u.Query().Get("role") != "publish_subscribe" {
		t.Errorf("StreamUrl %s is not the session's", streamURL)
	}
	return u.Query().Get("cell-number")
}

// expectHTTP checks that dialling a data channel failed with an HTTP
// status before the upgrade.
func expectHTTP(t *testing.T, err error, status string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "HTTP "+status) {
		t.Errorf("dial: %v, want HTTP %s", err, status)
	}
}

// TestCellMoves: under MoveCellOnResume every ResumeSession names a new
// cell, and the data channel refuses the URLs of the cells the session has
// left; without it the URL never changes and stays good (§15.1).
func TestCellMoves(t *testing.T) {
	t.Parallel()
	t.Run("moves", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, Options{TargetAddr: echoServer(t), MoveCellOnResume: true})
		ss := startSession(t, s)
		first := dialRaw(t, ss, ss.firstToken)
		first.handshakeReady()

		urls := []string{ss.streamURL}
		cells := map[string]bool{cellOf(t, ss.streamURL, ss.id): true}
		for i := 1; i <= 2; i++ {
			token, u := resumeAPI(t, s, ss.id)
			if token == "" {
				t.Fatal("empty token for a live session")
			}
			cell := cellOf(t, u, ss.id)
			if cells[cell] {
				t.Fatalf("resume %d: cell %q again", i, cell)
			}
			cells[cell] = true
			// Every URL the session has left is refused, whatever the token.
			for _, old := range urls {
				_, err := tryDialRaw(t, old, token, nil)
				expectHTTP(t, err, "404")
			}
			urls = append(urls, u)
			c, err := tryDialRaw(t, u, token, nil)
			if err != nil {
				t.Fatalf("resume %d: the new URL: %v", i, err)
			}
			c.ss = ss
			c.sendStream(int64(i), protocol.PayloadOutput, []byte("hop"))
			c.expect(5*time.Second, "echo through the new cell", func(m protocol.Message) bool {
				if isStream(protocol.PayloadOutput)(m) {
					c.ack(m)
					return true
				}
				return false
			})
		}
		st := s.Stats()
		// Refused: the first URL twice, the second once.
		if st.CellMoves != 2 || st.Resumes != 2 || st.StaleURLRefusals != 3 || st.Reconnects != 2 || st.RefusedUpgrades != 0 {
			t.Errorf("stats %+v", st)
		}
		// An ended session is not moved and gets no token.
		ss.terminate()
		if token, u := resumeAPI(t, s, ss.id); token != "" || u != urls[len(urls)-1] {
			t.Errorf("ended session: token %q, StreamUrl %s (want empty, %s)", token, u, urls[len(urls)-1])
		}
		if st := s.Stats(); st.CellMoves != 2 || st.Resumes != 2 {
			t.Errorf("after the end: stats %+v", st)
		}
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, Options{TargetAddr: echoServer(t)})
		ss := startSession(t, s)
		dialRaw(t, ss, ss.firstToken).handshakeReady()
		token, u := resumeAPI(t, s, ss.id)
		if u != ss.streamURL {
			t.Errorf("StreamUrl changed without MoveCellOnResume: %s, was %s", u, ss.streamURL)
		}
		c := dialRaw(t, ss, token)
		c.sendStream(1, protocol.PayloadOutput, []byte("same"))
		c.expect(5*time.Second, "ack on the original URL", isAckOf(1))
		if st := s.Stats(); st.CellMoves != 0 || st.StaleURLRefusals != 0 || st.Reconnects != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestCellMovesWithByes: a client that follows the StreamUrl of every
// ResumeSession (minClient, §15.1) keeps its session through Byes while
// the session changes cells at each resume, and is never refused.
func TestCellMovesWithByes(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TargetAddr: echoServer(t), MoveCellOnResume: true, ByeEvery: 200 * time.Millisecond})
	ss := startSession(t, s)
	c := connect(t, ss, true)
	for i := int64(1); i <= 3; i++ {
		echoRounds(t, c, 4<<10, 1024, 10*time.Second)
		waitStats(t, s, 10*time.Second, "a resumed Bye", func(st Stats) bool { return st.Byes >= i && st.Reconnects >= i })
	}
	echoRounds(t, c, 4<<10, 1024, 10*time.Second)
	checkSeqs(t, c)
	st := endAndCount(t, s, ss)
	if st.CellMoves < 3 || st.CellMoves != st.Resumes || st.StaleURLRefusals != 0 || st.Reconnects < 3 {
		t.Errorf("stats %+v", st)
	}
	if u := ss.currentURL(); u == ss.streamURL {
		t.Error("the session never left its first cell")
	}
}

// TestMinClientVersion: the gateway closes an OpenDataChannel whose
// ClientVersion is missing, malformed or below the minimum with 1008 and a
// reason a user can read; the session is unharmed (§2, §15.2).
func TestMinClientVersion(t *testing.T) {
	t.Parallel()
	const old = "client version 1.2.677.0 is no longer supported; minimum 1.2.764.0"
	cases := []struct {
		name    string
		opts    Options
		dial    rawDial
		refused string // part of the close reason; "" = accepted
	}{
		{"old", Options{}, rawDial{ClientVersion: "1.2.677.0"}, old},
		{"missing", Options{}, rawDial{NoClientVersion: true}, "no client version given; the minimum supported client version is 1.2.764.0"},
		{"not a version", Options{}, rawDial{ClientVersion: "dev"}, `client version "dev" is not supported; minimum 1.2.764.0`},
		{"minimum", Options{}, rawDial{ClientVersion: "1.2.764.0"}, ""},
		{"short form", Options{}, rawDial{ClientVersion: "1.2.764"}, ""},
		{"from source", Options{}, rawDial{ClientVersion: "1.3.0.0"}, ""},
		{"above", Options{}, rawDial{ClientVersion: "1.2.896.0"}, ""},
		{"numeric, not lexical", Options{}, rawDial{ClientVersion: "1.10.0.0"}, ""},
		{"raised minimum", Options{MinClientVersion: "1.3.0.0"}, rawDial{ClientVersion: "1.2.896.0"}, "client version 1.2.896.0 is no longer supported; minimum 1.3.0.0"},
		{"off: old", Options{AnyClientVersion: true}, rawDial{ClientVersion: "1.2.677.0"}, ""},
		{"off: missing", Options{AnyClientVersion: true}, rawDial{NoClientVersion: true}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.opts.TargetAddr = echoServer(t)
			s := startServer(t, c.opts)
			ss := startSession(t, s)
			d := c.dial
			d.URL, d.Token = ss.streamURL, ss.firstToken
			conn, err := tryDialRawWith(t, d)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			conn.ss = ss
			if c.refused == "" {
				conn.handshake()
				if st := s.Stats(); st.ClientVersionRefusals != 0 {
					t.Errorf("stats %+v", st)
				}
				return
			}
			err = conn.expectEnd(5 * time.Second)
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, c.refused) {
				t.Fatalf("closed with %v, want 1008 %q", err, c.refused)
			}
			st := s.Stats()
			if st.ClientVersionRefusals != 1 || st.Active != 1 || st.UnsignedUpgrades != 1 {
				t.Errorf("stats %+v", st)
			}
			want := d.ClientVersion
			if st.ClientVersions[want] != 1 {
				t.Errorf("ClientVersions %v, want %q counted", st.ClientVersions, want)
			}
			// The session is still there for a supported client.
			good, err := tryDialRawWith(t, rawDial{URL: ss.streamURL, Token: ss.firstToken, ClientVersion: "1.3.0.0"})
			if err != nil {
				t.Fatal(err)
			}
			good.handshake()
		})
	}
}

// TestMinClientVersionOption: a minimum that is not a version is refused
// at Start, and the default is the documented minimum.
func TestMinClientVersionOption(t *testing.T) {
	t.Parallel()
	if _, err := Start(Options{MinClientVersion: "latest"}); err == nil || !strings.Contains(err.Error(), "MinClientVersion") {
		t.Errorf("Start: %v", err)
	}
	s := startServer(t, Options{})
	if DefaultMinClientVersion != "1.2.764.0" {
		t.Errorf("DefaultMinClientVersion %q, want the documented 1.2.764.0", DefaultMinClientVersion)
	}
	if got := s.Options().MinClientVersion; got != DefaultMinClientVersion {
		t.Errorf("MinClientVersion %q", got)
	}
}

// TestCloseOnOpen: the gateway accepts the upgrade and the OpenDataChannel
// and closes at once with the code chosen, before the agent sends anything,
// every time or for the first N opens.
func TestCloseOnOpen(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		code int
		text string
	}{
		{websocket.CloseNormalClosure, "Bye"},
		{websocket.CloseGoingAway, ""},
		{websocket.CloseInternalServerErr, "internal error"},
		{websocket.CloseNoStatusReceived, ""}, // a close frame without a status
		{websocket.CloseAbnormalClosure, ""},  // no close frame at all
	} {
		t.Run(strconv.Itoa(c.code), func(t *testing.T) {
			t.Parallel()
			s := startServer(t, Options{TargetAddr: echoServer(t), CloseOnOpen: CloseOnOpenOptions{Code: c.code, Text: c.text}})
			ss := startSession(t, s)
			for i := range 3 {
				token := ss.firstToken
				if i > 0 {
					token = ss.resume()
				}
				conn := dialRaw(t, ss, token)
				m, err := conn.next(5 * time.Second)
				if err == nil {
					t.Fatalf("open %d: got %s %s before the close", i, m.Type, m.PayloadType)
				}
				var ce *websocket.CloseError
				// For 1006 the text is the client's own ("unexpected EOF").
				if !errors.As(err, &ce) || ce.Code != c.code || (ce.Text != c.text && c.code != websocket.CloseAbnormalClosure) {
					t.Fatalf("open %d: %v, want close %d %q", i, err, c.code, c.text)
				}
			}
			st := s.Stats()
			if st.ClosedOnOpen != 3 || st.Reconnects != 0 || st.Active != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
	t.Run("first two opens", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, Options{TargetAddr: echoServer(t), CloseOnOpen: CloseOnOpenOptions{Code: websocket.CloseGoingAway, Opens: 2}})
		ss := startSession(t, s)
		// A refused token is not an accepted open and does not count.
		if err := dialRaw(t, ss, "AAEAAnot-the-token").expectEnd(5 * time.Second); err == nil {
			t.Fatal("bad token accepted")
		}
		for range 2 {
			var ce *websocket.CloseError
			if err := dialRaw(t, ss, ss.firstToken).expectEnd(5 * time.Second); !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
				t.Fatalf("closed with %v", err)
			}
		}
		dialRaw(t, ss, ss.firstToken).handshakeReady()
		if st := s.Stats(); st.ClosedOnOpen != 2 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		t.Parallel()
		for _, o := range []CloseOnOpenOptions{{Code: 999}, {Code: 5000}, {Code: 1000, Text: strings.Repeat("x", 124)}, {Code: 1000, Opens: -1}} {
			if _, err := Start(Options{CloseOnOpen: o}); err == nil {
				t.Errorf("Start accepted CloseOnOpen %+v", o)
			}
		}
	})
}
