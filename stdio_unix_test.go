//go:build linux

package main

// Making ssh's blocking stdin and stdout pipes pollable (stdio_unix.go):
// close-on-exec duplicates in the poller that honour deadlines and carry
// bytes and EOF, the pipes blocking again after restore, pipes and sockets
// only, other streams left alone, and a child of this test binary run with
// blocking pipes as ssh runs its ProxyCommand. Bytes through real ssh's
// pipes are e2e/'s.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
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
	for _, p := range []*os.File{pr, pw} {
		rc, _ := p.SyscallConn()
		rc.Control(func(fd uintptr) {
			flags, _, _ := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFD, 0)
			if flags&syscall.FD_CLOEXEC == 0 {
				t.Errorf("%s: duplicate is not close-on-exec", p.Name())
			}
		})
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
	pr.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(pr)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want %d intact", len(got), err, len(want))
	}

	pr.SetReadDeadline(time.Time{})
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

// TestPollableStdio runs a child (this test binary) with blocking pipes as
// its stdin and stdout, as ssh runs its ProxyCommand. The child's
// sessionStdio must put both in the poller, drop to one P unless
// GOMAXPROCS is set, carry the bytes, and leave the pipes blocking again:
// the parent holds the same open file descriptions and checks their mode.
func TestPollableStdio(t *testing.T) {
	for _, c := range []struct {
		env  string // GOMAXPROCS for the child, "" for none
		want string
	}{{"", "1"}, {"2", "2"}} {
		inR, inW := blockingPipe(t)
		outR, outW := blockingPipe(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestStdioChild$")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GOMAXPROCS=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "SSM_PROXY_STDIO_CHILD=1")
		if c.env != "" {
			cmd.Env = append(cmd.Env, "GOMAXPROCS="+c.env)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outW.Close() // inR stays open: it shares the child's stdin description
		br := bufio.NewReader(outR)
		first, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		if want := "poller=true gomaxprocs=" + c.want + "\n"; first != want {
			t.Errorf("GOMAXPROCS=%q: child said %q, want %q", c.env, first, want)
		}
		if !nonblocking(t, inR) {
			t.Error("the child's stdin is not in non-blocking mode")
		}
		want := bytes.Repeat([]byte("ssh bytes "), 100<<10) // 1 MB through the pipes
		go func() {
			inW.Write(want)
			inW.Close()
		}()
		got, err := io.ReadAll(br)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("child echoed %d bytes (%v), want %d intact", len(got), err, len(want))
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
		if nonblocking(t, inR) {
			t.Error("the child left its stdin non-blocking")
		}
	}
}

// TestStdioChild is the child of TestPollableStdio.
func TestStdioChild(t *testing.T) {
	if os.Getenv("SSM_PROXY_STDIO_CHILD") == "" {
		t.Skip("run by TestPollableStdio")
	}
	in, out, restore := sessionStdio(os.Stdin, os.Stdout, slog.New(slog.DiscardHandler))
	fin, fout := in.(*os.File), out.(*os.File)
	fmt.Fprintf(out, "poller=%v gomaxprocs=%d\n", inPoller(fin) && inPoller(fout) && fin != os.Stdin && fout != os.Stdout, runtime.GOMAXPROCS(0))
	if _, err := io.Copy(out, in); err != nil {
		fmt.Fprintln(os.Stderr, "child copy:", err)
		os.Exit(1)
	}
	restore()
	for fd := 0; fd < 2; fd++ {
		flags, _, _ := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
		if flags&syscall.O_NONBLOCK != 0 {
			fmt.Fprintf(os.Stderr, "child: fd %d left non-blocking\n", fd)
			os.Exit(1)
		}
	}
	os.Exit(0)
}
