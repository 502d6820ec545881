//go:build linux

package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// blockingPipe is a pipe in blocking mode, as ssh gives its ProxyCommand
// (os.Pipe's are non-blocking and already in the poller).
func blockingPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w = os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func nonblocking(t *testing.T, f *os.File) bool {
	t.Helper()
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFL, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	return flags&syscall.O_NONBLOCK != 0
}

func TestPollablePipe(t *testing.T) {
	r, w := blockingPipe(t)
	pr, restoreR, ok1 := pollable(r)
	pw, restoreW, ok2 := pollable(w)
	if !ok1 || !ok2 {
		t.Fatal("pollable refused a pipe")
	}
	if !nonblocking(t, r) || !nonblocking(t, w) {
		t.Fatal("pipe not switched to non-blocking mode")
	}

	// Only a file in the poller honours deadlines: a read of an empty
	// pipe returns at the deadline instead of blocking a thread forever.
	if err := pr.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatalf("SetReadDeadline: %v (not in the poller)", err)
	}
	if _, err := pr.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of an empty pipe: %v, want a deadline error", err)
	}
	pr.SetReadDeadline(time.Time{})

	// Bytes and EOF pass as through the original files; a write larger
	// than the pipe waits for the reader instead of failing with EAGAIN.
	want := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	go func() {
		pw.Write(want)
		restoreW() // closes the duplicate; w stays open
		w.Close()
	}()
	got, err := io.ReadAll(pr)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want %d intact", len(got), err, len(want))
	}

	restoreR()
	if nonblocking(t, r) {
		t.Fatal("restore left the pipe non-blocking")
	}
	if _, err := pr.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("read after restore: %v, want the duplicate closed", err)
	}
}

func TestIsPipeOrSocket(t *testing.T) {
	r, w := blockingPipe(t)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	s0, s1 := os.NewFile(uintptr(fds[0]), "s0"), os.NewFile(uintptr(fds[1]), "s1")
	defer s0.Close()
	defer s1.Close()
	reg, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, c := range []struct {
		f    *os.File
		want bool
	}{{r, true}, {w, true}, {s0, true}, {reg, false}, {null, false}} {
		if got := isPipeOrSocket(c.f); got != c.want {
			t.Errorf("isPipeOrSocket(%s) = %v, want %v", c.f.Name(), got, c.want)
		}
	}
}

// Streams other than the process's own stdin and stdout (tests, embedders)
// are never touched.
func TestPollableStdioLeavesOtherStreams(t *testing.T) {
	r, w := blockingPipe(t)
	in, out, restore := pollableStdio(r, w)
	defer restore()
	if in != io.Reader(r) || out != io.Writer(w) || nonblocking(t, r) || nonblocking(t, w) {
		t.Fatal("pollableStdio changed streams that are not os.Stdin and os.Stdout")
	}
}
