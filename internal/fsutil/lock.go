package fsutil

import (
	"context"
	"errors"
	"os"
	"time"
)

// ErrLockTimeout reports a lock another process held for longer than the
// wait.
var ErrLockTimeout = errors.New("another process holds the lock")

// Lock takes an exclusive advisory lock on path (created with mode 0600),
// waiting up to wait, or until ctx ends, for another process to release
// it; it polls with a delay doubling from 1 ms to 100 ms. The returned
// function releases it. Where the platform or file system has no such
// locks, Lock returns at once with a no-op release: callers then run
// unlocked, which is what a lock that only avoids duplicate work allows.
func Lock(ctx context.Context, path string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ok, err := tryLock(f)
		switch {
		case err != nil: // no locking here
			f.Close()
			return func() {}, nil
		case ok:
			return func() { f.Close() }, nil // closing releases the lock
		case time.Now().After(deadline):
			f.Close()
			return nil, ErrLockTimeout
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
