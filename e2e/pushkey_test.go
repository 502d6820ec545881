package e2e

// --push-key through real ssh, scp and rsync against an sshd that plays an
// instance with ec2-instance-connect (keys from the emulator's listing):
// refused without it, in with it, refused once the key expires; the
// ephemeral key through a real ssh-agent; 20 parallel throttled pushes; no
// package on the instance; the example block and IAM files. Key choice and
// each failure's message are the root package's pushkey_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kevinburke/ssh_config"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// pushHarness is an sshd that plays an EC2 instance with the
// ec2-instance-connect package (its keys come from the emulator's Instance
// Connect listing; authorized_keys is empty, so the client's key is in
// none), the emulator routing every session to it, and an environment for
// ssh and ssm-proxy with its own HOME.
type pushHarness struct {
	t    *testing.T
	sshd *testenv.SSHD
	emu  *ssmtest.Server
	env  []string
	home string
}

type pushOptions struct {
	eic   ssmtest.InstanceConnectOptions
	noEIC bool // an instance without the ec2-instance-connect package
}

func newPushHarness(t *testing.T, o pushOptions) *pushHarness {
	t.Helper()
	// The sshd's command needs the emulator's address and the emulator the
	// sshd's: take a free port for the emulator first, and try again if
	// someone else takes it meanwhile.
	for attempt := 1; ; attempt++ {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		so := testenv.SSHDOptions{NoAuthorizedKeys: true}
		if !o.noEIC {
			so.InstanceConnect = &testenv.InstanceConnect{KeysURL: "http://" + addr + ssmtest.InstanceConnectKeysPath, InstanceID: instance}
		}
		sshd := testenv.StartSSHDWith(t, so)
		emu, err := ssmtest.StartAddr(addr, ssmtest.Options{TargetAddr: sshd.Addr, InstanceConnect: o.eic})
		if err != nil {
			sshd.Stop()
			if attempt < 3 {
				continue
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { emu.Close() })
		h := &pushHarness{t: t, sshd: sshd, emu: emu, home: t.TempDir()}
		for _, kv := range ssmtest.ClientEnv(t, emu.Endpoint()) {
			if k, _, _ := strings.Cut(kv, "="); k != "HOME" && k != "SSH_AUTH_SOCK" {
				h.env = append(h.env, kv)
			}
		}
		h.env = append(h.env, "HOME="+h.home, "AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT="+emu.Endpoint())
		return h
	}
}

// client is an ssh client config whose ProxyCommand is ssm-proxy with
// flags. It is also the ~/.ssh/config ssm-proxy reads, as it would be
// without -F.
func (h *pushHarness) client(flags string, extra ...string) *testenv.Client {
	h.t.Helper()
	pc := proxyBin + " " + flags + " %h %p"
	c := h.sshd.ClientWith(h.t, testenv.ClientOptions{ProxyCommand: strings.Join(strings.Fields(pc), " "), Extra: extra})
	cfg, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h.home, ".ssh"), 0o700); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.home, ".ssh", "config"), cfg, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return c
}

// cmd sets cmd's environment to the harness's.
func (h *pushHarness) cmd(cmd *exec.Cmd, env ...string) *exec.Cmd {
	cmd.Env = append(append([]string{}, h.env...), env...)
	return cmd
}

// refused runs cmd and checks that sshd refused the key.
func refused(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err == nil || !strings.Contains(stderr.String(), "Permission denied (publickey)") {
		t.Fatalf("%s: err %v, stdout %q, want Permission denied; stderr:\n%s", strings.Join(cmd.Args, " "), err, out, stderr.String())
	}
	return stderr.String()
}

// TestPushKeyEndToEnd: with a key that is in no authorized_keys, ssh is
// refused without --push-key, gets in with it — ssh, scp and rsync, each
// pushing for itself — and is refused again once the key's (shortened)
// lifetime is over.
func TestPushKeyEndToEnd(t *testing.T) {
	const lifetime = 6 * time.Second
	h := newPushHarness(t, pushOptions{eic: ssmtest.InstanceConnectOptions{KeyLifetime: lifetime}})
	ctx := testCtx(t, 3*time.Minute)
	user := h.sshd.User

	plain := h.client("")
	refused(t, h.cmd(plain.SSH(ctx, instance, "echo in")))
	if st := h.emu.InstanceConnectStats(); st.Pushed != 0 || st.EmptyListings == 0 {
		t.Fatalf("stats %+v: the sshd did not ask the listing, or a key was pushed", st)
	}

	push := h.client("--push-key --os-user %r")
	if out := run(t, h.cmd(push.SSH(ctx, instance, "echo in"))); out != "in\n" {
		t.Fatalf("stdout %q", out)
	}
	keys := h.emu.InstanceConnectKeys(instance, user)
	if f := strings.Fields(pushFileText(t, push.IdentityFile+".pub")); len(keys) != 1 || keys[0] != f[0]+" "+f[1] {
		t.Errorf("keys valid for %s: %q; want the client's %q", user, keys, f[:2])
	}

	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	want := testenv.RandomFile(t, src, 1<<20, 12)
	remote, back := filepath.Join(dir, "remote.bin"), filepath.Join(dir, "back.bin")
	run(t, h.cmd(push.SCP(ctx, "-q", src, instance+":"+remote)))
	run(t, h.cmd(push.SCP(ctx, "-q", instance+":"+remote, back)))
	for _, p := range []string{remote, back} {
		if got := testenv.FileSHA256(t, p); got != want {
			t.Fatalf("%s: sha256 %s, want %s", p, got, want)
		}
	}
	tree, treeDst := filepath.Join(dir, "tree"), filepath.Join(dir, "tree-remote")
	testenv.MakeTree(t, tree, 3)
	run(t, h.cmd(push.Rsync(ctx, "-a", tree+"/", instance+":"+treeDst+"/")))
	if d := testenv.TreeDiff(t, tree, treeDst); d != "" {
		t.Fatalf("rsync tree differs:\n%s", d)
	}
	st := h.emu.InstanceConnectStats()
	if st.Pushed != 4 || st.KeysListed < 4 {
		t.Errorf("stats %+v: want a push and a listed key for each of ssh, scp ×2, rsync", st)
	}

	// Still valid a moment ago; no more once the lifetime is over.
	if err := h.emu.WaitInstanceConnectKeysExpired(ctx, instance, user); err != nil {
		t.Fatal(err)
	}
	empty := h.emu.InstanceConnectStats().EmptyListings
	refused(t, h.cmd(plain.SSH(ctx, instance, "echo in")))
	if h.emu.InstanceConnectStats().EmptyListings == empty {
		t.Error("the refusal after the lifetime did not come from an empty listing")
	}
	h.checkSessions(6)
}

// checkSessions waits for the emulator to be idle and checks the number
// of sessions started.
func (h *pushHarness) checkSessions(want int64) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.emu.WaitIdle(ctx); err != nil {
		h.t.Fatalf("sessions left open: %v", err)
	}
	if st := h.emu.Stats(); st.SessionsStarted != want {
		h.t.Errorf("sessions started %d, want %d", st.SessionsStarted, want)
	}
}

// startSSHAgent runs a real ssh-agent on a socket under t.TempDir(),
// stopped by its PID when the test ends.
func startSSHAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(testenv.Bin(t, "ssh-agent"), "-D", "-a", sock)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // ours, by its PID
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		select {
		case <-done:
			t.Fatal("ssh-agent exited")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not listen")
		}
	}
}

// TestPushKeyEphemeralAgent: --push-key=ephemeral makes a key nobody has
// on disk, pushes it and hands it to the test's ssh-agent, with which ssh
// then logs in; the client's own key is refused.
func TestPushKeyEphemeralAgent(t *testing.T) {
	h := newPushHarness(t, pushOptions{})
	sock := startSSHAgent(t)
	ctx := testCtx(t, 2*time.Minute)
	c := h.client("--push-key=ephemeral --os-user %r", "IdentityAgent "+sock, "IdentitiesOnly no")
	if out := run(t, h.cmd(c.SSH(ctx, instance, "echo in"), "SSH_AUTH_SOCK="+sock)); out != "in\n" {
		t.Fatalf("stdout %q", out)
	}
	list := run(t, h.cmd(exec.CommandContext(ctx, testenv.Bin(t, "ssh-add"), "-L"), "SSH_AUTH_SOCK="+sock))
	keys := h.emu.InstanceConnectKeys(instance, h.sshd.User)
	if len(keys) != 1 || !strings.HasPrefix(list, keys[0]+" ssm-proxy ephemeral key for "+h.sshd.User+"@"+instance) {
		t.Fatalf("agent holds %q; pushed %q", list, keys)
	}
	// Without the agent's key ssh is refused: the ephemeral key did it.
	plain := h.client("", "IdentityAgent none")
	refused(t, h.cmd(plain.SSH(ctx, instance, "echo in")))
	h.checkSessions(2)
}

// TestPushKeyParallelThrottled: 20 connections at once against a
// throttled SendSSHPublicKey all get in, after retries.
func TestPushKeyParallelThrottled(t *testing.T) {
	const n = 20
	h := newPushHarness(t, pushOptions{eic: ssmtest.InstanceConnectOptions{ThrottleRate: 5, ThrottleBurst: 3}})
	c := h.client("--push-key --os-user %r")
	ctx := testCtx(t, 3*time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cmd := h.cmd(c.SSH(ctx, instance, fmt.Sprintf("echo %d", i)))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil || string(out) != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("connection %d: %v, stdout %q, stderr:\n%s", i, err, out, stderr.String())
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := h.emu.InstanceConnectStats()
	if st.Pushed != n || st.Throttled == 0 {
		t.Errorf("stats %+v: want %d pushes, some throttled first", st, n)
	}
	t.Logf("%d pushes, %d throttled calls", st.Pushed, st.Throttled)
	h.checkSessions(n)
}

// TestPushKeyNoPackage: on an instance without the ec2-instance-connect
// package the push succeeds and sshd still refuses the key; with -v,
// ssm-proxy's stderr (which is ssh's) names the package.
func TestPushKeyNoPackage(t *testing.T) {
	h := newPushHarness(t, pushOptions{noEIC: true})
	c := h.client("--push-key --os-user %r -v")
	stderr := refused(t, h.cmd(c.SSH(testCtx(t, time.Minute), instance, "echo in")))
	if !strings.Contains(stderr, "the instance lacks the ec2-instance-connect package") {
		t.Errorf("stderr does not name the package:\n%s", stderr)
	}
	if st := h.emu.InstanceConnectStats(); st.Pushed != 1 || st.Listings != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestPushKeyExampleBlock: the keyless block of examples/ssh_config works
// as written.
func TestPushKeyExampleBlock(t *testing.T) {
	data, err := os.ReadFile("../examples/ssh_config")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ssh_config.DecodeBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	const alias = "web-keyless"
	pc, _ := cfg.Get(alias, "ProxyCommand")
	hostName, _ := cfg.Get(alias, "HostName")
	if pc != "ssm-proxy --push-key --os-user %r %h %p" || hostName != instance {
		t.Fatalf("%s: ProxyCommand %q HostName %q", alias, pc, hostName)
	}
	h := newPushHarness(t, pushOptions{})
	base := h.client("")
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n    HostName %s\n    ProxyCommand %s\n\n", alias, hostName, strings.Replace(pc, "ssm-proxy ", proxyBin+" ", 1))
	b.WriteString(pushFileText(t, base.ConfigPath))
	config := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(config, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := sshWith(t, config, h.env, alias, "echo in"); out != "in\n" {
		t.Fatalf("stdout %q", out)
	}
	if st := h.emu.InstanceConnectStats(); st.Pushed != 1 {
		t.Errorf("stats %+v", st)
	}
}

func pushFileText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPushKeyExampleFiles: the IAM policy allows SendSSHPublicKey on
// instances for a named OS user only, and instance-connect.md shows the
// ssh_config block as it is and links to files that exist.
func TestPushKeyExampleFiles(t *testing.T) {
	var policy struct {
		Version   string
		Statement []struct {
			Effect, Action, Resource string
			Condition                map[string]map[string]string
		}
	}
	if err := json.Unmarshal([]byte(pushFileText(t, "../examples/iam/instance-connect-policy.json")), &policy); err != nil {
		t.Fatal(err)
	}
	if len(policy.Statement) != 1 {
		t.Fatalf("policy %+v", policy)
	}
	s := policy.Statement[0]
	if policy.Version != "2012-10-17" || s.Effect != "Allow" || s.Action != "ec2-instance-connect:SendSSHPublicKey" ||
		s.Resource != "arn:aws:ec2:*:*:instance/*" || s.Condition["StringEquals"]["ec2:osuser"] == "" {
		t.Errorf("policy statement %+v", s)
	}

	doc := pushFileText(t, "../examples/instance-connect.md")
	block := "    Host web-keyless\n        HostName i-0123456789abcdef0\n        User ec2-user\n        ProxyCommand ssm-proxy --push-key --os-user %r %h %p\n"
	unindented := strings.ReplaceAll(strings.TrimPrefix(block, "    "), "\n    ", "\n")
	if !strings.Contains(doc, block) || !strings.Contains(pushFileText(t, "../examples/ssh_config"), unindented) {
		t.Error("instance-connect.md and ssh_config show different keyless blocks")
	}
	for _, m := range regexp.MustCompile(`\]\(([^)#]+)\)`).FindAllStringSubmatch(doc, -1) {
		if _, err := os.Stat(filepath.Join("../examples", m[1])); err != nil {
			t.Errorf("instance-connect.md links %s: %v", m[1], err)
		}
	}
}
