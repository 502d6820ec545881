package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// loopOnlyRand is a Session's random source that fails the test when read:
// the source belongs to the loop's goroutine (message IDs), and a dial runs
// on a resume's goroutine, concurrently with it.
type loopOnlyRand struct{ t *testing.T }

func (r loopOnlyRand) Read(p []byte) (int, error) {
	r.t.Error("a dial read the loop's random source")
	return len(p), nil
}

// TestDialLeavesLoopState: dialLink, which runs on the resume goroutine
// while the loop sequences input, takes nothing from the loop's random
// source — once it did, and the two raced on the generator's state.
func TestDialLeavesLoopState(t *testing.T) {
	opened := make(chan string, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_, p, _ := ws.ReadMessage()
		opened <- string(p)
	}))
	t.Cleanup(srv.Close)
	s := &Session{region: "us-east-1", log: slog.New(slog.DiscardHandler), rand: loopOnlyRand{t}}
	s.opts.StreamHosts = []string{"127.0.0.1"}
	s.opts.setDefaults()
	s.dialer = s.opts.Dialer
	events := make(chan frameEvent, 4)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/data-channel/s-1"
	l, err := s.dialLink(context.Background(), time.Now().Add(10*time.Second), url, "token", 1, events)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	select {
	case p := <-opened:
		if !strings.Contains(p, `"RequestId"`) {
			t.Errorf("OpenDataChannel %q lacks a RequestId", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OpenDataChannel within 10 s")
	}
}
