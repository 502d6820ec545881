package fsutil

// Tests of WriteFileAtomic: the new content and mode replace the old file,
// no temporary file is left behind, and a missing directory fails. The files
// its callers write are checked where they are written: internal/awscfg's
// cache, internal/sshconfig, internal/sessionlog's identities and the root
// package's target cache (completion_test.go).

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new" {
		t.Fatalf("read back %q, %v; want \"new\"", b, err)
	}
	if fi, err := os.Stat(path); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600) {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 {
		t.Fatalf("temporary files left behind: %v", left)
	}
	// A directory that does not exist fails and creates nothing.
	if err := WriteFileAtomic(filepath.Join(dir, "no", "f"), nil, 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// TestLock: a second holder waits for the first and times out while it
// holds the lock; once released the lock can be taken again.
func TestLock(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no advisory locks: Lock runs unlocked")
	}
	path := filepath.Join(t.TempDir(), "l.lock")
	ctx := context.Background()
	unlock, err := Lock(ctx, path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(ctx, path, 50*time.Millisecond); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("second Lock while held: %v, want ErrLockTimeout", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Lock(cctx, path, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with a cancelled context: %v", err)
	}
	unlock()
	again, err := Lock(ctx, path, time.Second)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	again()
}
