//go:build unix

package main

import (
	"io"
	"os"
	"runtime"
	"syscall"
)

// pollableStdio hands ssh's pipes to Go's network poller. ssh gives its
// ProxyCommand a pipe (or socket) on each of stdin and stdout, in blocking
// mode, so every read(2) and write(2) on them would hold an OS thread and,
// while it blocks, a scheduler P. Switched to non-blocking and reopened, the
// two files are waited on with epoll/kqueue like the websocket, no thread
// ever sits in a system call, and the session runs on a single P. Measured
// through ssh on the emulator (BENCHMARKS.md) against two Ps handing every
// message between threads: 10 % (upload) to 22 % (download) less CPU per
// byte, no less throughput, the same keystroke round trip.
//
// Only the process's own stdin and stdout are changed, and only when both
// are pipes or sockets: never a terminal or a file, whose open file
// description a shell may share. The returned function puts the blocking
// mode back; call it before exiting.
func pollableStdio(in io.Reader, out io.Writer) (io.Reader, io.Writer, func()) {
	if in != io.Reader(os.Stdin) || out != io.Writer(os.Stdout) || !isPipeOrSocket(os.Stdin) || !isPipeOrSocket(os.Stdout) {
		return in, out, func() {}
	}
	pin, restoreIn, ok1 := pollable(os.Stdin)
	pout, restoreOut, ok2 := pollable(os.Stdout)
	if !ok1 || !ok2 {
		restoreIn()
		restoreOut()
		return in, out, func() {}
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	return pin, pout, func() {
		restoreIn()
		restoreOut()
	}
}

func isPipeOrSocket(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&(os.ModeNamedPipe|os.ModeSocket) != 0
}

// pollable returns a duplicate of f's descriptor in non-blocking mode,
// which os.NewFile registers with the poller, and a function that restores
// blocking mode and closes the duplicate. The mode belongs to the open file
// description, so f sees it too. ok is false if f was left as it was.
func pollable(f *os.File) (_ *os.File, restore func(), ok bool) {
	// A duplicate, so that the new *os.File owns (and may close) its own
	// descriptor, close-on-exec, so that no child (a credential_process)
	// keeps ssh's pipe open.
	syscall.ForkLock.RLock()
	fd, err := syscall.Dup(int(f.Fd()))
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return f, func() {}, false
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return f, func() {}, false
	}
	p := os.NewFile(uintptr(fd), f.Name())
	return p, func() {
		syscall.SetNonblock(fd, false)
		p.Close()
	}, true
}
