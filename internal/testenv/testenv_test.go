package testenv

// Tests of the harness's sshd, clients and data: ssh, scp, rsync and
// concurrent sessions, host keys checked, PostgreSQL, Stop, deterministic
// files and trees, Require's hint and SplitArgs. The same tools with
// ssm-proxy as the ProxyCommand are e2e/'s; the emulator is tested in
// internal/ssmtest.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests prove the harness itself, without any SSM: ssh reaches the test
// sshd through `ProxyCommand socat STDIO TCP:127.0.0.1:<port>`.

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", strings.Join(cmd.Args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func socatClient(t *testing.T, extra ...string) (*SSHD, *Client) {
	t.Helper()
	Require(t, "ssh", "sshd", "socat")
	s := StartSSHD(t)
	return s, s.Client(t, s.SocatProxyCommand(t), extra...)
}

func TestSSHEcho(t *testing.T) {
	t.Parallel()
	_, c := socatClient(t, "SetEnv TESTENV_PROBE=hello")
	ctx := testCtx(t)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"instance", []string{ExampleInstanceID}},
		{"managed-instance", []string{"mi-0123456789abcdef0"}},
		{"ssm-suffix", []string{"i-0123456789abcdef0.ssm"}},
		// Non-22 port: ssh looks up "[host]:port" in known_hosts.
		{"non-default-port", []string{"-p", "2222", ExampleInstanceID}},
		{"direct", []string{DirectHost}},
	} {
		out := run(t, c.SSH(ctx, append(tc.args, "echo", "ok")...))
		if out != "ok\n" {
			t.Errorf("%s: got %q, want %q", tc.name, out, "ok\n")
		}
	}

	// Extra options reach ssh; AcceptEnv lets SetEnv through.
	if out := run(t, c.SSH(ctx, c.Host, `echo "$TESTENV_PROBE"`)); out != "hello\n" {
		t.Errorf("SetEnv: got %q, want %q", out, "hello\n")
	}
	// We log in as the current user.
	if out := strings.TrimSpace(run(t, c.SSH(ctx, c.Host, "id -un"))); out != CurrentUser() {
		t.Errorf("remote user %q, want %q", out, CurrentUser())
	}
}

// TestHostKeyChecked proves StrictHostKeyChecking is effective: with a
// known_hosts entry for a different key, ssh must refuse to connect.
func TestHostKeyChecked(t *testing.T) {
	t.Parallel()
	s, c := socatClient(t)
	ctx := testCtx(t)

	other := filepath.Join(t.TempDir(), "other_key")
	genKey(t, Bin(t, "ssh-keygen"), other, "other")
	line := strings.Replace(s.KnownHostsLine(DefaultHostPatterns), s.HostKeyPublic, readPubKey(t, other+".pub"), 1)
	if err := os.WriteFile(c.KnownHostsPath, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := c.SSH(ctx, c.Host, "echo", "ok").CombinedOutput()
	if err == nil {
		t.Fatalf("ssh with wrong host key succeeded: %s", out)
	}
	if !strings.Contains(string(out), "Host key verification failed") && !strings.Contains(string(out), "HOST IDENTIFICATION HAS CHANGED") {
		t.Errorf("unexpected ssh error: %v: %s", err, out)
	}
}

func TestSCPRoundTrip(t *testing.T) {
	t.Parallel()
	Require(t, "scp")
	_, c := socatClient(t)
	ctx := testCtx(t)
	dir := t.TempDir()

	src := filepath.Join(dir, "src.bin")
	want := RandomFile(t, src, 4<<20, 42)
	remote := filepath.Join(dir, "remote.bin")
	back := filepath.Join(dir, "back.bin")

	run(t, c.SCP(ctx, "-q", src, c.Host+":"+remote))
	if got := FileSHA256(t, remote); got != want {
		t.Fatalf("uploaded sha256 %s, want %s", got, want)
	}
	run(t, c.SCP(ctx, "-q", c.Host+":"+remote, back))
	if got := FileSHA256(t, back); got != want {
		t.Fatalf("downloaded sha256 %s, want %s", got, want)
	}

	// scp -r follows symlinks, hence TreeDigestDeref on the source side.
	tree := filepath.Join(dir, "tree")
	MakeTree(t, tree, 3)
	remoteTree := filepath.Join(dir, "remote-tree")
	run(t, c.SCP(ctx, "-q", "-r", tree, c.Host+":"+remoteTree))
	if TreeDigestDeref(t, tree) != TreeDigest(t, remoteTree) {
		t.Fatalf("scp -r tree differs:\n%s", TreeDiff(t, tree, remoteTree))
	}
	if TreeDigest(t, tree) == TreeDigest(t, remoteTree) {
		t.Errorf("expected scp -r to dereference the symlink")
	}
}

func TestRsyncTree(t *testing.T) {
	t.Parallel()
	Require(t, "rsync")
	_, c := socatClient(t)
	ctx := testCtx(t)
	dir := t.TempDir()

	src := filepath.Join(dir, "src")
	MakeTree(t, src, 7)
	want := TreeDigest(t, src)

	remote := filepath.Join(dir, "remote")
	back := filepath.Join(dir, "back")
	run(t, c.Rsync(ctx, "-a", src+"/", c.Host+":"+remote+"/"))
	if got := TreeDigest(t, remote); got != want {
		t.Fatalf("remote tree differs:\n%s", TreeDiff(t, src, remote))
	}
	run(t, c.Rsync(ctx, "-a", c.Host+":"+remote+"/", back+"/"))
	if got := TreeDigest(t, back); got != want {
		t.Fatalf("round-tripped tree differs:\n%s", TreeDiff(t, src, back))
	}
}

func TestConcurrentSessions(t *testing.T) {
	t.Parallel()
	_, c := socatClient(t)
	ctx := testCtx(t)

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var stdout, stderr bytes.Buffer
			cmd := c.SSH(ctx, c.Host, "echo", fmt.Sprint(i))
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err != nil || stdout.String() != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("session %d: %v: stdout %q, stderr %q", i, err, stdout.String(), stderr.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	ctx := testCtx(t)

	psql := Bin(t, "psql")
	out := run(t, exec.CommandContext(ctx, psql, "-X", "-h", "127.0.0.1", "-p", fmt.Sprint(p.Port), "-U", p.User, "-d", p.Database, "-tAc", "select 40+2"))
	if strings.TrimSpace(out) != "42" {
		t.Fatalf("select 40+2 = %q, want 42", out)
	}
	if out := strings.TrimSpace(run(t, p.PSQL(ctx, "-tAc", "select current_user"))); out != p.User {
		t.Errorf("current_user = %q, want %q", out, p.User)
	}
	if os.Geteuid() == 0 && p.OSUser == "root" {
		t.Errorf("postgres runs as root")
	}
	t.Logf("postgres %s runs as %s (pid %d)", p.Addr(), p.OSUser, p.PID())

	p.Stop()
	p.Stop() // idempotent
	if err := exec.CommandContext(ctx, psql, "-X", "-h", "127.0.0.1", "-p", fmt.Sprint(p.Port), "-U", p.User, "-tAc", "select 1").Run(); err == nil {
		t.Errorf("postgres still answering after Stop")
	}
}

func TestSSHDStop(t *testing.T) {
	t.Parallel()
	s := StartSSHD(t)
	s.Stop()
	s.Stop()
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("sshd still listening on %s after Stop", s.Addr)
	}
}

func TestDeterministicData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := RandomFile(t, filepath.Join(dir, "a"), 100_000, 1)
	b := RandomFile(t, filepath.Join(dir, "sub", "b"), 100_000, 1)
	c := RandomFile(t, filepath.Join(dir, "c"), 100_000, 2)
	if a != b || a == c {
		t.Errorf("RandomFile not deterministic per seed: %s %s %s", a, b, c)
	}
	if got := FileSHA256(t, filepath.Join(dir, "a")); got != a {
		t.Errorf("FileSHA256 = %s, want %s", got, a)
	}
	if e := RandomFile(t, filepath.Join(dir, "empty"), 0, 1); e != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("empty file sha256 = %s", e)
	}

	t1, t2, t3 := filepath.Join(dir, "t1"), filepath.Join(dir, "t2"), filepath.Join(dir, "t3")
	MakeTree(t, t1, 5)
	MakeTree(t, t2, 5)
	MakeTree(t, t3, 6)
	if TreeDigest(t, t1) != TreeDigest(t, t2) {
		t.Errorf("MakeTree not deterministic:\n%s", TreeDiff(t, t1, t2))
	}
	if TreeDigest(t, t1) == TreeDigest(t, t3) {
		t.Errorf("MakeTree ignores seed")
	}

	var files, dirs, links, empty, big int
	for _, l := range TreeListing(t, t1) {
		switch l[0] {
		case 'f':
			files++
			if strings.HasSuffix(l, " 0 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") {
				empty++
			}
			if strings.Contains(l, fmt.Sprintf(" %d ", 1<<20)) {
				big++
			}
		case 'd':
			dirs++
		case 'l':
			links++
		}
	}
	if files < 45 || dirs < 5 || links != 1 || empty < 1 || big < 1 {
		t.Errorf("tree shape: files=%d dirs=%d links=%d empty=%d 1MiB=%d", files, dirs, links, empty, big)
	}
	if _, err := os.Stat(filepath.Join(t1, "a", "link-to-file")); err != nil {
		t.Errorf("symlink dangling: %v", err)
	}

	// Digest covers modes and contents.
	if err := os.Chmod(filepath.Join(t2, ".hidden"), 0o600); err != nil {
		t.Fatal(err)
	}
	if TreeDigest(t, t1) == TreeDigest(t, t2) {
		t.Errorf("TreeDigest ignores modes")
	}
}

// fatalRecorder is a testing.TB whose Fatal* record the message and end the
// calling goroutine, so harness failure paths can be tested.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fatalRecorder) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func TestRequireFailsWithHint(t *testing.T) {
	t.Parallel()
	f := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Require(f, "sh", "definitely-not-installed-testenv-xyz")
	}()
	<-done
	if !strings.Contains(f.msg, "definitely-not-installed-testenv-xyz") || !strings.Contains(f.msg, "apt-get install") {
		t.Errorf("Require message lacks binary name or install hint: %q", f.msg)
	}
	Require(t, "sh") // present: no failure
}

func TestSplitArgs(t *testing.T) {
	got := SplitArgs(`-o ProxyCommand="a b %h" -o  X=1`)
	want := []string{"-o", "ProxyCommand=a b %h", "-o", "X=1"}
	if !slices.Equal(got, want) {
		t.Errorf("%q", got)
	}
}
