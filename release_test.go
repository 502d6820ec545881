package main

// The release build (scripts/release.sh), run twice for a Linux and a
// Windows target: identical checksums, archive entries with fixed times and
// owners, a static binary. It runs no session: what the binary does is
// e2e/'s. Skipped with -short.

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReleaseReproducible runs scripts/release.sh twice for a Linux and a
// Windows target and demands identical SHA256SUMS, archives holding the
// expected entries with fixed times and owners, and a static binary.
// (`release.sh --check` builds everything twice, the second time from an
// empty build cache; CI runs it.)
func TestReleaseReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ssm-proxy for two targets, twice")
	}
	for _, tool := range []string{"bash", "tar", "gzip", "zip", "sha256sum", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	const version = "v1.2.3-test"
	const epoch = "1767225600" // 2026-01-01T00:00:00Z
	release := func(out string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "scripts/release.sh", "-o", out, version)
		cmd.Env = append(os.Environ(), "TARGETS=linux/amd64 windows/amd64", "SOURCE_DATE_EPOCH="+epoch)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("release.sh: %v\n%s", err, b)
		}
	}
	a, b := t.TempDir(), t.TempDir()
	release(a)
	release(b)
	sumsA, sumsB := readFile(t, filepath.Join(a, "SHA256SUMS")), readFile(t, filepath.Join(b, "SHA256SUMS"))
	if sumsA != sumsB {
		t.Fatalf("two runs differ:\n%s\n%s", sumsA, sumsB)
	}
	for _, name := range []string{"ssm-proxy-" + version + "-linux-amd64.tar.gz", "ssm-proxy-" + version + "-windows-amd64.zip"} {
		if !strings.Contains(sumsA, "  "+name+"\n") {
			t.Errorf("SHA256SUMS lacks %s:\n%s", name, sumsA)
		}
	}
	mtime := time.Unix(1767225600, 0)

	// The tar.gz: sorted entries, 0:0, the epoch, a static binary.
	data, err := os.ReadFile(filepath.Join(a, "ssm-proxy-"+version+"-linux-amd64.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header has time %v name %q", zr.ModTime, zr.Name)
	}
	tr := tar.NewReader(zr)
	dir := "ssm-proxy-" + version + "-linux-amd64/"
	var names []string
	var binary []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(mtime) {
			t.Errorf("%s: owner %d:%d time %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		if h.Name == dir+"ssm-proxy" {
			if h.Mode&0o777 != 0o755 {
				t.Errorf("binary mode %o", h.Mode)
			}
			binary, _ = io.ReadAll(tr)
		}
	}
	if want := []string{dir, dir + "LICENSE", dir + "README.md", dir + "ssm-proxy"}; !slices.Equal(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the Linux binary is dynamically linked (%v)", p.Type)
		}
	}
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		bin := filepath.Join(t.TempDir(), "ssm-proxy")
		os.WriteFile(bin, binary, 0o755)
		if out, err := exec.Command(bin, "version").Output(); err != nil || string(out) != "ssm-proxy "+version+"\n" {
			t.Errorf("version: %q %v", out, err)
		}
	}

	// The zip: the same entries, without directory entries.
	zf, err := zip.OpenReader(filepath.Join(a, "ssm-proxy-"+version+"-windows-amd64.zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zf.Close()
	names = names[:0]
	wdir := "ssm-proxy-" + version + "-windows-amd64/"
	for _, f := range zf.File {
		names = append(names, f.Name)
		if !f.Modified.UTC().Equal(mtime) && !f.Modified.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.Local)) {
			t.Errorf("%s: time %v", f.Name, f.Modified)
		}
	}
	if want := []string{wdir + "LICENSE", wdir + "README.md", wdir + "ssm-proxy.exe"}; !slices.Equal(names, want) {
		t.Errorf("zip entries %v, want %v", names, want)
	}
}
