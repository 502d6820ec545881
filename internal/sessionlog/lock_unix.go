//go:build unix

package sessionlog

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockTimeout bounds the wait for another process's lock: a line is not
// worth hanging the end of a session for.
const lockTimeout = 2 * time.Second

// lock takes an exclusive advisory lock on path (created 0600), waiting up
// to lockTimeout for another process to release it, and returns the
// function that releases it.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil || !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			break
		}
		if time.Now().After(deadline) {
			err = errors.New("another process holds the lock")
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
