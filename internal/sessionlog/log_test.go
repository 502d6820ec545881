package sessionlog

// Tests of the session log file (log.go) and the identity cache
// (identity.go): appended lines read back whole with errors scrubbed, modes
// made owner-only, rotation, concurrent writers and rotators losing or
// tearing no line, the XDG state directory, and cached caller identities
// with expiry. What the CLI puts in each line is the root package's
// sessionlog_test.go; forward's lines are e2e/forward_test.go's.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// readEntries decodes every line of path, failing on a line that is not a
// whole entry.
func readEntries(t *testing.T, path string) []Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var es []Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Entry
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		es = append(es, e)
	}
	return es
}

func TestAppend(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "ssm-proxy")
	l := &Log{Path: filepath.Join(dir, FileName)}
	e := Entry{
		Time: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), Duration: 1.5,
		IdentityARN: "arn:aws:sts::123456789012:assumed-role/Test/test", Region: "eu-west-1",
		Target: "web-1", TargetID: "i-0123456789abcdef0", SessionID: "alice-0123", Document: "AWS-StartSSHSession",
		BytesUp: 10, BytesDown: 20, Resumes: 1, Ended: "error", ExitCode: 1,
		Error: "ssm ResumeSession: InvalidSignatureException: x-amz-security-token:FwoGZXIvYXdzsecret\nnext line",
	}
	if err := l.Append(e); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Entry{SessionID: "second"}); err != nil {
		t.Fatal(err)
	}
	es := readEntries(t, l.Path)
	if len(es) != 2 || es[1].SessionID != "second" {
		t.Fatalf("entries %+v", es)
	}
	got := es[0]
	if strings.Contains(got.Error, "FwoGZXIvYXdzsecret") || strings.Contains(got.Error, "\n") || !strings.Contains(got.Error, "[redacted] next line") {
		t.Errorf("error text %q", got.Error)
	}
	got.Error, e.Error = "", ""
	if got != e {
		t.Errorf("entry %+v, want %+v", got, e)
	}
	if runtime.GOOS != "windows" {
		for p, mode := range map[string]os.FileMode{l.Path: 0o600, dir: 0o700} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
				t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, mode)
			}
		}
	}
}

// TestAppendTightensMode: a log someone made world-readable is made
// owner-only on the next line.
func TestAppendTightensMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	path := filepath.Join(t.TempDir(), FileName)
	os.WriteFile(path, nil, 0o644)
	if err := (&Log{Path: path}).Append(Entry{}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
}

func TestRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	l := &Log{Path: path, MaxSize: 1000, Keep: 2}
	for i := range 40 {
		if err := l.Append(Entry{SessionID: fmt.Sprintf("s-%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, p := range []string{path + ".2", path + ".1", path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if fi.Size() > l.MaxSize {
			t.Errorf("%s: %d bytes, over %d", p, fi.Size(), l.MaxSize)
		}
		for _, e := range readEntries(t, p) {
			ids = append(ids, e.SessionID)
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Errorf("%s.3 kept beyond Keep", path)
	}
	// The newest lines, in order, with no gap.
	if len(ids) == 0 || ids[len(ids)-1] != "s-39" {
		t.Fatalf("ids %v", ids)
	}
	for i := 1; i < len(ids); i++ {
		var a, b int
		fmt.Sscanf(ids[i-1], "s-%d", &a)
		fmt.Sscanf(ids[i], "s-%d", &b)
		if b != a+1 {
			t.Fatalf("gap or disorder between %s and %s: %v", ids[i-1], ids[i], ids)
		}
	}
}

// TestAppendConcurrent: writers appending and rotating at once lose no
// line and tear none.
func TestAppendConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	const writers, each = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			l := &Log{Path: path, MaxSize: 4096, Keep: 100}
			for i := range each {
				errs <- l.Append(Entry{SessionID: fmt.Sprintf("w%d-%d", w, i), Target: strings.Repeat("x", 100)})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(path + "*")
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, ".lock") {
			continue
		}
		for _, e := range readEntries(t, f) {
			if seen[e.SessionID] {
				t.Errorf("%s twice", e.SessionID)
			}
			seen[e.SessionID] = true
		}
	}
	if len(seen) != writers*each {
		t.Errorf("%d lines, want %d", len(seen), writers*each)
	}
}

func TestStateDir(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		t.Skip("XDG applies to Linux and other Unix systems")
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_STATE_HOME", "")
	if d, err := StateDir(); err != nil || d != filepath.Join(home, ".local", "state", "ssm-proxy") {
		t.Errorf("StateDir %q %v", d, err)
	}
	t.Setenv("XDG_STATE_HOME", "/x/state")
	if d, _ := StateDir(); d != "/x/state/ssm-proxy" {
		t.Errorf("with XDG_STATE_HOME: %q", d)
	}
	t.Setenv("XDG_STATE_HOME", "relative") // not absolute: ignored, as the spec says
	if d, _ := StateDir(); d != filepath.Join(home, ".local", "state", "ssm-proxy") {
		t.Errorf("relative XDG_STATE_HOME: %q", d)
	}
}

func TestIdentities(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "cache", "identities.json")
	c := &Identities{Path: path, Now: func() time.Time { return now }}
	if _, ok := c.Get("AKID1"); ok {
		t.Error("hit in an empty cache")
	}
	if err := c.Put("AKID1", "arn:aws:iam::1:user/a", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.Put("AKID2", "", now.Add(time.Minute)) // a failure, cached
	if arn, ok := c.Get("AKID1"); !ok || arn != "arn:aws:iam::1:user/a" {
		t.Errorf("Get = %q %v", arn, ok)
	}
	if arn, ok := c.Get("AKID2"); !ok || arn != "" {
		t.Errorf("negative entry: %q %v", arn, ok)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "AKID1") {
		t.Errorf("the access key id is stored in the clear: %s", data)
	}
	if fi, _ := os.Stat(path); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	now = now.Add(2 * time.Minute)
	if _, ok := c.Get("AKID2"); ok {
		t.Error("expired negative entry still answers")
	}
	now = now.Add(time.Hour)
	if _, ok := c.Get("AKID1"); ok {
		t.Error("expired entry still answers")
	}
	c.Put("AKID3", "arn:3", now.Add(time.Hour))
	data, _ = os.ReadFile(path)
	var m map[string]identityEntry
	json.Unmarshal(data, &m)
	if len(m) != 1 {
		t.Errorf("expired entries kept: %s", data)
	}
}
