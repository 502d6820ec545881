package forward

// Tests of the forwarder's accept loop (forwarder.go) against a listener
// that fails on cue; the forwarder with real tunnels runs in
// e2e/forward_test.go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
)

// scriptedListener answers Accept from errs in turn, then with conn.
type scriptedListener struct {
	errs  []error
	calls int
	conn  net.Conn
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.calls++
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.conn, nil
}
func (l *scriptedListener) Close() error { return nil }
func (l *scriptedListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
}

func TestAccept(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: fmt.Errorf("accept4: %w", syscall.EMFILE)}

	t.Run("out of descriptors is retried", func(t *testing.T) {
		var logs bytes.Buffer
		ln := &scriptedListener{errs: []error{emfile, syscall.ECONNABORTED}, conn: c1}
		c, err := accept(context.Background(), ln, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil || c != c1 {
			t.Fatalf("accept = %v, %v; want the connection after the failures", c, err)
		}
		if ln.calls != 3 || strings.Count(logs.String(), "accept failed; retrying") != 2 {
			t.Fatalf("%d Accept calls, log %q: want 3 calls and 2 warnings", ln.calls, logs.String())
		}
	})
	t.Run("a closed listener ends it", func(t *testing.T) {
		ln := &scriptedListener{errs: []error{net.ErrClosed}, conn: c1}
		if _, err := accept(context.Background(), ln, slog.New(slog.DiscardHandler)); !errors.Is(err, net.ErrClosed) || ln.calls != 1 {
			t.Fatalf("accept = %v after %d calls; want net.ErrClosed after 1", err, ln.calls)
		}
	})
	t.Run("a done context stops the retries", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ln := &scriptedListener{errs: []error{emfile, emfile}, conn: c1}
		if _, err := accept(ctx, ln, slog.New(slog.DiscardHandler)); !errors.Is(err, syscall.EMFILE) || ln.calls != 1 {
			t.Fatalf("accept = %v after %d calls; want the EMFILE at once", err, ln.calls)
		}
	})
}
