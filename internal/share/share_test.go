//go:build unix

package share

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSocket(t *testing.T) {
	a := Socket("/d", "i-1", "22", "AWS_PROFILE=x")
	if a != Socket("/d", "i-1", "22", "AWS_PROFILE=x") {
		t.Fatal("same parts, different sockets")
	}
	for _, other := range [][]string{{"i-1", "23", "AWS_PROFILE=x"}, {"i-1", "22", "AWS_PROFILE=y"}, {"i-12", "2", "AWS_PROFILE=x"}} {
		if Socket("/d", other...) == a {
			t.Errorf("%q: same socket as another session's", other)
		}
	}
	if !strings.HasPrefix(a, "/d/s-") || len(filepath.Base(a)) > 30 {
		t.Errorf("socket %q: want a short name in /d", a)
	}
}

func TestDir(t *testing.T) {
	run := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", run)
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 || dir != filepath.Join(run, "ssm-proxy") {
		t.Fatalf("dir %s: %v %v, want mode 0700 in %s", dir, fi.Mode(), err, run)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Dir(); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("a directory others may enter: %v, want refused", err)
	}
}

func TestLock(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	unlock, err := Lock(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, sock); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v, want the deadline", err)
	}
	unlock()
	unlock2, err := Lock(context.Background(), sock)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
