//go:build unix

package main

import (
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// catchSIGPIPE makes a write to a closed stdout an EPIPE error, which the
// session handles (it ends and is terminated), instead of Go's default for
// descriptor 1: death by SIGPIPE with the session left open. The signal is
// caught, not ignored, so that children do not inherit an ignored SIGPIPE.
// Once per process: forward starts a session per connection.
var catchSIGPIPE = sync.OnceFunc(func() { signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE) })

// pollableStdio hands ssh's pipes to Go's network poller. ssh gives its
// ProxyCommand a pipe (or socket) on each of stdin and stdout, in blocking
// mode, so every read(2) and write(2) on them would hold an OS thread and,
// while it blocks, a scheduler P. Switched to non-blocking and reopened, the
// two files are waited on with epoll/kqueue like the websocket, no thread
// ever sits in a system call; the caller can then run the session on a
// single P (see connect).
//
// Only descriptors 0 and 1 are changed, and only when both are pipes or
// sockets: never a terminal or a file, whose open file description a shell
// may share. The returned function closes the duplicates and puts the
// blocking mode back; call it before exiting.
func pollableStdio(in io.Reader, out io.Writer) (io.Reader, io.Writer, func()) {
	fin, ok1 := in.(*os.File)
	fout, ok2 := out.(*os.File)
	if !ok1 || !ok2 || fdOf(fin) != 0 || fdOf(fout) != 1 || !isPipeOrSocket(fin) || !isPipeOrSocket(fout) {
		return in, out, func() {}
	}
	pin, restoreIn, ok1 := pollable(fin)
	pout, restoreOut, ok2 := pollable(fout)
	if !ok1 || !ok2 {
		restoreIn()
		restoreOut()
		return in, out, func() {}
	}
	return pin, pout, func() {
		restoreIn()
		restoreOut()
	}
}

// fdOf is f's descriptor, or -1. Unlike f.Fd it leaves a file in the poller
// there, in non-blocking mode.
func fdOf(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(d uintptr) { fd = int(d) })
	}
	return fd
}

func isPipeOrSocket(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&(os.ModeNamedPipe|os.ModeSocket) != 0
}

// inPoller reports whether f is waited on by the poller: only such files
// honour deadlines.
func inPoller(f *os.File) bool { return f.SetReadDeadline(time.Time{}) == nil }

// pollable returns a file in the poller for f's descriptor and a function
// that undoes what pollable did. A file already in the poller (its
// descriptor was non-blocking when the process started) is returned as it
// is. Otherwise the result is a close-on-exec duplicate in non-blocking
// mode, which os.NewFile registers with the poller; the mode belongs to the
// open file description, so f's descriptor shares it until restore. ok is
// false if f is left as it was.
func pollable(f *os.File) (_ *os.File, restore func(), ok bool) {
	if inPoller(f) {
		return f, func() {}, true
	}
	fd := fdOf(f)
	// A duplicate, so that the new *os.File owns (and may close) its own
	// descriptor; close-on-exec, so that no child inherits it.
	syscall.ForkLock.RLock()
	dup, err := syscall.Dup(fd)
	if err == nil {
		syscall.CloseOnExec(dup)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return f, func() {}, false
	}
	if err := syscall.SetNonblock(dup, true); err != nil {
		syscall.Close(dup)
		return f, func() {}, false
	}
	p := os.NewFile(uintptr(dup), f.Name())
	restore = func() {
		// Close first: it waits for reads and writes in progress, which
		// must not turn into blocking ones half way.
		p.Close()
		syscall.SetNonblock(fd, false)
	}
	if !inPoller(p) {
		restore()
		return f, func() {}, false
	}
	return p, restore, true
}
