package e2e

// Everyday use through the built binary as ssh's ProxyCommand: a command,
// signed upgrades required, 64 MiB by scp, a tree by rsync, an ssh -L tunnel
// to PostgreSQL, 20 concurrent sessions, the agent's real pacing, and -v
// with a clean stdout and no secret value through resumes. Faults are
// resume_test.go's and hardening_test.go's; the same paths in-process
// proxy/session_test.go's; throughput figures bench/'s.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

func TestSSHCommand(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	out := run(t, h.ssh(testCtx(t, time.Minute), instance, "echo ok"))
	if out != "ok\n" {
		t.Fatalf("stdout = %q, want %q", out, "ok\n")
	}
	st := h.checkEnded(1)
	if st.SignedUpgrades != 1 || st.UnsignedUpgrades != 0 {
		t.Errorf("upgrades signed=%d unsigned=%d, want 1/0", st.SignedUpgrades, st.UnsignedUpgrades)
	}
}

// TestSSHRequireSigned: the emulator refuses unsigned websocket upgrades
// (§2); ssm-proxy signs them.
func TestSSHRequireSigned(t *testing.T) {
	h := newHarness(t, harnessOptions{emu: ssmtest.Options{RequireSignedUpgrade: true}})
	if out := run(t, h.ssh(testCtx(t, time.Minute), instance, "echo signed")); out != "signed\n" {
		t.Fatalf("stdout = %q", out)
	}
	if st := h.checkEnded(1); st.RefusedUpgrades != 0 {
		t.Errorf("refused upgrades = %d", st.RefusedUpgrades)
	}
}

// TestSCP64MiB copies 64 MiB up and back down with scp and compares sha256.
func TestSCP64MiB(t *testing.T) {
	size := int64(64 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	h := newHarness(t, harnessOptions{})
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	want := testenv.RandomFile(t, src, size, 1)
	remote := filepath.Join(dir, "remote.bin")
	back := filepath.Join(dir, "back.bin")
	ctx := testCtx(t, 5*time.Minute)

	t0 := time.Now()
	run(t, h.scp(ctx, "-q", src, instance+":"+remote))
	up := time.Since(t0)
	if got := testenv.FileSHA256(t, remote); got != want {
		t.Fatalf("uploaded sha256 %s, want %s", got, want)
	}
	t0 = time.Now()
	run(t, h.scp(ctx, "-q", instance+":"+remote, back))
	down := time.Since(t0)
	if got := testenv.FileSHA256(t, back); got != want {
		t.Fatalf("downloaded sha256 %s, want %s", got, want)
	}
	t.Logf("%d MiB: up %s, down %s", size>>20, up.Round(time.Millisecond), down.Round(time.Millisecond))
	h.checkEnded(2)
}

func TestRsyncTree(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	testenv.MakeTree(t, src, 7)
	dst := filepath.Join(dir, "dst")
	back := filepath.Join(dir, "back")
	ctx := testCtx(t, 3*time.Minute)
	run(t, h.rsync(ctx, "-a", src+"/", instance+":"+dst+"/"))
	if d := testenv.TreeDiff(t, src, dst); d != "" {
		t.Fatalf("uploaded tree differs:\n%s", d)
	}
	run(t, h.rsync(ctx, "-a", instance+":"+dst+"/", back+"/"))
	if a, b := testenv.TreeDigest(t, src), testenv.TreeDigest(t, back); a != b {
		t.Fatalf("round-tripped tree differs:\n%s", testenv.TreeDiff(t, src, back))
	}
	h.checkEnded(2)
}

// TestTunnelPostgres is the seed scenario: `ssh -NL` through a bastion to a
// database, then psql through the tunnel.
func TestTunnelPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	h := newHarness(t, harnessOptions{})
	local := testenv.FreePort(t)
	ctx := testCtx(t, 2*time.Minute)
	tunnel := h.ssh(ctx, "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:%s", local, pg.Addr()), instance)
	var stderr strings.Builder
	tunnel.Stderr = &stderr
	if err := tunnel.Start(); err != nil {
		t.Fatal(err)
	}
	tunnelDone := make(chan error, 1)
	go func() { tunnelDone <- tunnel.Wait() }()
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", local), 30*time.Second)

	psql := func(sql string) string {
		c := pg.PSQL(ctx, "-h", "127.0.0.1", "-p", strconv.Itoa(local), "-tAc", sql)
		return strings.TrimSpace(run(t, c))
	}
	if got := psql("select 40+2"); got != "42" {
		t.Fatalf("select 40+2 = %q", got)
	}
	// A result large enough to span many Session Manager messages.
	q := "select md5(string_agg(md5(i::text), '' order by i)) from generate_series(1, 20000) i"
	direct := strings.TrimSpace(run(t, pg.PSQL(ctx, "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-tAc", q)))
	if got := psql(q); got != direct || len(got) != 32 {
		t.Fatalf("through the tunnel %q, direct %q", got, direct)
	}
	rows := psql("select count(*) from (select repeat('x', 1000) from generate_series(1, 5000)) s")
	if rows != "5000" {
		t.Fatalf("count = %q", rows)
	}

	tunnel.Process.Signal(os.Interrupt) // ssh is ours: end it by its PID
	select {
	case <-tunnelDone:
	case <-time.After(20 * time.Second):
		t.Fatal("ssh -N did not exit after SIGINT")
	}
	h.checkEnded(1)
}

// TestConcurrentConnections runs 20 ssh sessions at once, each echoing its
// own random data back.
func TestConcurrentConnections(t *testing.T) {
	n := 20
	if testing.Short() {
		n = 5
	}
	h := newHarness(t, harnessOptions{})
	dir := t.TempDir()
	ctx := testCtx(t, 3*time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		src := filepath.Join(dir, fmt.Sprintf("in%d", i))
		want := testenv.RandomFile(t, src, 256<<10+int64(i)*1000, int64(100+i))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			f, err := os.Open(src)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			c := h.ssh(ctx, instance, "sha256sum")
			c.Stdin = f
			out, err := c.Output()
			if err != nil {
				errs <- fmt.Errorf("connection %d: %v", i, err)
				return
			}
			if got := strings.Fields(string(out)); len(got) == 0 || got[0] != want {
				errs <- fmt.Errorf("connection %d: remote sha256 %q, want %s", i, out, want)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h.checkEnded(int64(n))
}

// TestPacedTransfer: with the real agent's pacing (1 KiB + 1 ms, §5.6) a
// smaller transfer still arrives intact both ways.
func TestPacedTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the paced transfer takes a while by design")
	}
	h := newHarness(t, harnessOptions{emu: ssmtest.Options{Pacing: true}})
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	want := testenv.RandomFile(t, src, 2<<20, 3)
	remote := filepath.Join(dir, "remote.bin")
	back := filepath.Join(dir, "back.bin")
	ctx := testCtx(t, 3*time.Minute)
	run(t, h.scp(ctx, "-q", src, instance+":"+remote))
	run(t, h.scp(ctx, "-q", instance+":"+remote, back))
	for _, p := range []string{remote, back} {
		if got := testenv.FileSHA256(t, p); got != want {
			t.Fatalf("%s: sha256 %s, want %s", p, got, want)
		}
	}
	h.checkEnded(2)
}

// TestNothingButSessionBytes: with -v all diagnostics go to stderr; ssh
// would fail on anything else on the ProxyCommand's stdout, and the remote
// output must be exactly what the command printed.
func TestVerboseKeepsStdoutClean(t *testing.T) {
	const sessionToken = "IQoJb3JpZ2luX2VjE-e2e-session-token-value"
	h := newHarness(t, harnessOptions{proxyFlags: []string{"-v"}, emu: ssmtest.Options{ByeEvery: 400 * time.Millisecond}})
	h.env = append(h.env, "AWS_SESSION_TOKEN="+sessionToken)
	ctx := testCtx(t, time.Minute)
	// The remote command outlives a few Byes, so that -v also shows
	// every resume phase: ResumeSession, new tokens, signed upgrades.
	c := h.ssh(ctx, instance, "sleep 1.5; printf 'a\\nb'")
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if string(out) != "a\nb" {
		t.Fatalf("stdout = %q", out)
	}
	for _, phase := range []string{"session started", "handshake complete", "websocket lost", "resumed"} {
		if !strings.Contains(stderr.String(), phase) {
			t.Errorf("-v printed nothing about %q:\n%s", phase, stderr.String())
		}
	}
	st := h.checkEnded(1)
	if st.Resumes < 2 {
		t.Fatalf("%d resumes: the test did not cover the resume phase", st.Resumes)
	}
	secrets := append(h.emu.Secrets(), ssmtest.SecretAccessKey, sessionToken)
	if len(secrets) < 2+2*int(st.Resumes) {
		t.Fatalf("only %d secrets recorded", len(secrets))
	}
	for _, secret := range secrets {
		if strings.Contains(stderr.String(), secret) {
			t.Errorf("stderr contains a secret value %.12s…", secret)
		}
	}
}
