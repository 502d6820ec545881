package testenv

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newRand returns a deterministic, fast random source for (seed, stream).
func newRand(seed int64, stream uint64) *rand.ChaCha8 {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], uint64(seed))
	binary.LittleEndian.PutUint64(key[8:], stream)
	copy(key[16:], "ssm-proxy/testenv")
	return rand.NewChaCha8(key)
}

// RandomFile writes size deterministic pseudo-random bytes (a function of
// seed) to path, creating parent directories, and returns their sha256 hex.
func RandomFile(tb testing.TB, path string, size int64, seed int64) string {
	tb.Helper()
	sum, err := writeRandom(path, size, newRand(seed, 0), 0o644)
	if err != nil {
		tb.Fatalf("testenv: RandomFile %s: %v", path, err)
	}
	return sum
}

func writeRandom(path string, size int64, r io.Reader, perm os.FileMode) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), io.LimitReader(r, size), make([]byte, 1<<20)); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FileSHA256 returns the sha256 hex digest of a file's contents.
func FileSHA256(tb testing.TB, path string) string {
	tb.Helper()
	sum, err := fileSHA256(path)
	if err != nil {
		tb.Fatalf("testenv: FileSHA256: %v", err)
	}
	return sum
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TreeListing describes a directory tree, one line per entry below root in
// lexical order: type (d, f, l, other), permission bits, slash-separated
// relative path, and for files size + sha256, for symlinks the target.
// Owners and times are not included. The root directory itself is not
// included. Compare listings to see what differs when TreeDigest does not.
func TreeListing(tb testing.TB, root string) []string {
	tb.Helper()
	lines, err := treeListing(root, false)
	if err != nil {
		tb.Fatalf("testenv: TreeListing %s: %v", root, err)
	}
	return lines
}

// TreeDigestDeref is TreeDigest with symlinks replaced by what they point to
// (as `scp -r` copies them): TreeDigestDeref(src) == TreeDigest(scpCopy).
// Symlinks to directories are listed as directories but not descended into.
func TreeDigestDeref(tb testing.TB, root string) string {
	tb.Helper()
	lines, err := treeListing(root, true)
	if err != nil {
		tb.Fatalf("testenv: TreeDigestDeref %s: %v", root, err)
	}
	return digestLines(lines)
}

func digestLines(lines []string) string {
	h := sha256.New()
	for _, l := range lines {
		io.WriteString(h, l)
		io.WriteString(h, "\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}

func treeListing(root string, follow bool) ([]string, error) {
	var lines []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info() // Lstat semantics: symlinks are not followed
		if err != nil {
			return err
		}
		if follow && info.Mode()&fs.ModeSymlink != 0 {
			if info, err = os.Stat(path); err != nil {
				return err
			}
		}
		mode := info.Mode()
		perm := uint32(mode.Perm())
		if mode&fs.ModeSetuid != 0 {
			perm |= 0o4000
		}
		if mode&fs.ModeSetgid != 0 {
			perm |= 0o2000
		}
		if mode&fs.ModeSticky != 0 {
			perm |= 0o1000
		}
		switch {
		case mode.IsDir():
			lines = append(lines, fmt.Sprintf("d %04o %q", perm, rel))
		case mode.IsRegular():
			sum, err := fileSHA256(path)
			if err != nil {
				return err
			}
			lines = append(lines, fmt.Sprintf("f %04o %q %d %s", perm, rel, info.Size(), sum))
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			lines = append(lines, fmt.Sprintf("l %q -> %q", rel, target))
		default:
			lines = append(lines, fmt.Sprintf("? %v %q", mode.Type(), rel))
		}
		return nil
	})
	return lines, err
}

// TreeDigest returns a stable sha256 hex digest of a directory tree: relative
// paths, entry types, permission bits, file contents and symlink targets (not
// owners or times, not the root's own mode). Symlinks are not followed, so a
// tree copied with `scp -r` (which follows symlinks) differs from its source
// by design (compare with TreeDigestDeref); rsync -a and tar preserve it.
func TreeDigest(tb testing.TB, root string) string {
	tb.Helper()
	return digestLines(TreeListing(tb, root))
}

// TreeDiff returns a human readable diff of two trees' listings ("" if equal).
func TreeDiff(tb testing.TB, a, b string) string {
	tb.Helper()
	la, lb := TreeListing(tb, a), TreeListing(tb, b)
	inA := make(map[string]bool, len(la))
	inB := make(map[string]bool, len(lb))
	for _, l := range la {
		inA[l] = true
	}
	for _, l := range lb {
		inB[l] = true
	}
	var out strings.Builder
	for _, l := range la {
		if !inB[l] {
			fmt.Fprintf(&out, "- %s\n", l)
		}
	}
	for _, l := range lb {
		if !inA[l] {
			fmt.Fprintf(&out, "+ %s\n", l)
		}
	}
	return out.String()
}

// MakeTree creates a deterministic (per seed) tree under root: nested
// directories (one empty, one mode 0750), 50 files with varied sizes (empty,
// 1 byte, exactly 1 MiB, 1 MiB+odd, a few KiB to 64 KiB), varied modes (0644,
// 0600, 0755), awkward names (space, leading dot, UTF-8) and one relative
// symlink. Total size is about 3.5 MiB.
func MakeTree(tb testing.TB, root string, seed int64) {
	tb.Helper()
	if err := makeTree(root, seed); err != nil {
		tb.Fatalf("testenv: MakeTree %s: %v", root, err)
	}
}

func makeTree(root string, seed int64) error {
	dirs := []struct {
		path string
		perm os.FileMode
	}{
		{".", 0o755},
		{"a", 0o755},
		{"a/b", 0o755},
		{"a/b/c", 0o755},
		{"a/b/c/deep", 0o755},
		{"d", 0o750},
		{"d/e", 0o755},
		{"empty", 0o755},
		{"with space", 0o755},
	}
	for _, d := range dirs {
		p := filepath.Join(root, filepath.FromSlash(d.path))
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
	}
	fileDirs := []string{".", "a", "a/b", "a/b/c", "a/b/c/deep", "d", "d/e", "with space"}
	special := map[int]string{
		3:  "with space/file name.txt",
		7:  ".hidden",
		11: "d/ünïcödé-名前.txt",
		13: "a/-leading-dash",
	}
	r := rand.New(newRand(seed, 1<<32))
	const nfiles = 50
	for i := 0; i < nfiles; i++ {
		var size int64
		switch i {
		case 0:
			size = 0
		case 1:
			size = 1
		case 2:
			size = 1 << 20
		case 5:
			size = 1<<20 + 12345
		case 9:
			size = 0
		default:
			if i%4 == 0 {
				size = int64(r.IntN(512)) // small files
			} else {
				size = 1024 + int64(r.IntN(64<<10))
			}
		}
		perm := os.FileMode(0o644)
		switch {
		case i%7 == 0:
			perm = 0o755
		case i%5 == 0:
			perm = 0o600
		}
		name, ok := special[i]
		if !ok {
			dir := fileDirs[i%len(fileDirs)]
			name = fmt.Sprintf("%s/file-%03d.bin", dir, i)
		}
		p := filepath.Join(root, filepath.FromSlash(name))
		if _, err := writeRandom(p, size, newRand(seed, uint64(i)+1), perm); err != nil {
			return err
		}
		if err := os.Chmod(p, perm); err != nil { // umask-independent
			return err
		}
	}
	if err := os.Symlink("b/file-010.bin", filepath.Join(root, "a", "link-to-file")); err != nil {
		return err
	}
	for _, d := range dirs {
		if err := os.Chmod(filepath.Join(root, filepath.FromSlash(d.path)), d.perm); err != nil {
			return err
		}
	}
	return nil
}
