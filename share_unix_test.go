//go:build unix

package main

// Tests of share_unix.go's own helpers; the shared session itself runs
// in e2e/share_test.go through real ssh.

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestRemoveOwnPIDFile: an idle process ending after its successor started
// must leave the successor's pid file alone, and remove its own.
func TestRemoveOwnPIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock.pid")
	other := strconv.Itoa(os.Getpid()+1) + "\n"
	if err := os.WriteFile(path, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	removeOwnPIDFile(path)
	if b, err := os.ReadFile(path); err != nil || string(b) != other {
		t.Fatalf("a successor's pid file: got %q, %v; want it kept as %q", b, err, other)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	removeOwnPIDFile(path)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("own pid file: stat = %v, want it removed", err)
	}
	removeOwnPIDFile(path) // gone already: nothing to do, no panic
}
