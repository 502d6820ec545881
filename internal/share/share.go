//go:build unix

// Package share finds and guards the Unix sockets of shared sessions
// (ssm-proxy --share): one socket per target, port and AWS identity, in a
// directory only its owner can enter, and a lock that lets one process at a
// time start the session behind a socket.
package share

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Dir returns the directory of the sockets, creating it (mode 0700) if
// needed: $XDG_RUNTIME_DIR/ssm-proxy, else ssm-proxy in the user's cache
// directory. It refuses a directory that is not the user's own or that
// others may enter, since whoever can connect to a socket uses its session.
func Dir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		var err error
		if base, err = os.UserCacheDir(); err != nil {
			return "", fmt.Errorf("--share: no directory for its sockets: %w", err)
		}
	}
	dir := filepath.Join(base, "ssm-proxy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("--share: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("--share: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("--share: %s must be yours and closed to others (chmod 700 %s)", dir, dir)
	}
	return dir, nil
}

// Socket returns the socket path in dir for a session described by parts
// (target, port, profile, region, endpoints, credentials' key id…): the
// same parts give the same path, any difference another. Only a digest of
// parts is in the name.
func Socket(dir string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return filepath.Join(dir, "s-"+hex.EncodeToString(h[:8])+".sock")
}

// Lock takes the lock of socket (an exclusive flock on socket+".lock"),
// waiting with backoff until ctx is done; unlock releases it.
func Lock(ctx context.Context, socket string) (unlock func(), err error) {
	f, err := os.OpenFile(socket+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--share: %w", err)
	}
	delay := 5 * time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("--share: lock %s: %w", f.Name(), err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("--share: another ssm-proxy is still starting the shared session (%s): %w", socket, context.Cause(ctx))
		case <-t.C:
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}
