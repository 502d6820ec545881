package pushkey

// Tests of Find (find.go), which key is pushed for a host: ssh_config's
// IdentityFile (expanded as ssh expands it), then the agent's first key
// Instance Connect accepts, then the default files; an unusable IdentityFile
// as an error; IdentityAgent over SSH_AUTH_SOCK; the user and system
// ssh_config read in ssh's order. The error lines and hints for each failure
// are the root package's pushkey_test.go.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// findEnv is a home directory with ~/.ssh, an ssh_config and maybe an
// agent, for Find.
type findEnv struct {
	t      *testing.T
	home   string
	config string // ~/.ssh/config
	agent  *testenv.SSHAgent
}

func newFindEnv(t *testing.T) *findEnv {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &findEnv{t: t, home: home, config: filepath.Join(home, ".ssh", "config")}
}

// key writes a .pub of a new ed25519 key under ~/.ssh and returns its line.
func (e *findEnv) key(name string) string {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	return writePublic(e.t, filepath.Join(e.home, ".ssh", name), pub)
}

func (e *findEnv) sshConfig(text string) {
	if err := os.WriteFile(e.config, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *findEnv) cfg(host string) Config {
	c := Config{
		Host: host, User: "ec2-user", Home: e.home, LocalUser: "alice",
		SSH:    LoadSSHConfig([]string{e.config, filepath.Join(e.home, "system_config")}, e.home, nil),
		Getenv: func(k string) string { return map[string]string{"KEYS": filepath.Join(e.home, "keys")}[k] },
	}
	if e.agent != nil {
		c.AgentSocket = e.agent.Socket
	}
	return c
}

func (e *findEnv) find(host string) (*Key, error) {
	return Find(agentContext(e.t), e.cfg(host))
}

func TestFindOrder(t *testing.T) {
	e := newFindEnv(t)
	def := e.key("id_ed25519.pub")
	rsaDef := func() string {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		return writePublic(t, filepath.Join(e.home, ".ssh", "id_rsa.pub"), &k.PublicKey)
	}()
	configured := e.key("work.pub")
	_, agentKey, _ := ed25519.GenerateKey(rand.Reader)
	e.agent = testenv.StartSSHAgent(t, agentKey)
	agentPub, _ := ssh.NewPublicKey(agentKey.Public())
	e.sshConfig("Host i-*\n    IdentityFile ~/.ssh/missing\n    IdentityFile ~/.ssh/work\nHost only-*\n    IdentitiesOnly yes\n")

	check := func(host, want, source string) {
		t.Helper()
		k, err := e.find(host)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if k.AuthorizedKey() != want || !strings.Contains(k.Source, source) {
			t.Errorf("%s: key %q from %q, want %q from …%s…", host, k.AuthorizedKey(), k.Source, want, source)
		}
	}
	// 1. ssh_config's IdentityFile for the host (a missing one is skipped,
	// as ssh skips it); the .pub beside the private key path.
	check("i-0123456789abcdef0", configured, "IdentityFile "+filepath.Join(e.home, ".ssh", "work.pub")+" (ssh_config)")
	// 2. The agent's first key for a host without IdentityFile.
	check("web-1", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(agentPub))), "ssh-agent key key0")
	// With IdentitiesOnly yes ssh offers no agent-only key: the default file.
	check("only-1", def, filepath.Join(e.home, ".ssh", "id_ed25519.pub"))
	// 3. ~/.ssh/id_ed25519.pub without an agent, then id_rsa.pub.
	e.agent = nil
	check("web-1", def, filepath.Join(e.home, ".ssh", "id_ed25519.pub"))
	os.Remove(filepath.Join(e.home, ".ssh", "id_ed25519.pub"))
	check("web-1", rsaDef, "id_rsa.pub")
	os.Remove(filepath.Join(e.home, ".ssh", "id_rsa.pub"))

	_, err := e.find("web-1")
	var nk *NoKeyError
	if !errors.As(err, &nk) {
		t.Fatalf("nothing left: %v", err)
	}
	for _, want := range []string{"no ssh-agent", "id_ed25519.pub (not found)", "id_rsa.pub (not found)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("NoKeyError %q lacks %q", err, want)
		}
	}
}

// TestFindAgentSkipsUnaccepted: the agent's first key Instance Connect
// accepts is taken; an agent with none falls through to the files.
func TestFindAgentSkipsUnaccepted(t *testing.T) {
	e := newFindEnv(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	e.agent = testenv.StartSSHAgent(t, ec, ed)
	k, err := e.find("web-1")
	if err != nil || k.Type() != ssh.KeyAlgoED25519 || k.Source != "ssh-agent key key1" {
		t.Fatalf("key %v, %v", k, err)
	}
	e.agent = testenv.StartSSHAgent(t, ec)
	def := e.key("id_ed25519.pub")
	if k, err := e.find("web-1"); err != nil || k.AuthorizedKey() != def {
		t.Fatalf("agent with only ecdsa: key %v, %v", k, err)
	}
}

// TestFindIdentityFileUnusable: an IdentityFile that exists but cannot be
// pushed is an error naming it, not a silent switch to another key.
func TestFindIdentityFileUnusable(t *testing.T) {
	e := newFindEnv(t)
	e.key("id_ed25519.pub")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writePublic(t, filepath.Join(e.home, ".ssh", "id_ecdsa.pub"), &ec.PublicKey)
	e.sshConfig("Host *\n    IdentityFile ~/.ssh/id_ecdsa\n")
	_, err := e.find("i-0123456789abcdef0")
	var ife *IdentityFileError
	var ue *UnsupportedKeyError
	if !errors.As(err, &ife) || !errors.As(err, &ue) || ife.Host != "i-0123456789abcdef0" {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "id_ecdsa.pub: ecdsa-sha2-nistp256") {
		t.Errorf("err = %q", err)
	}
}

// TestFindExpandsIdentityFile: ~, ${VAR} and the %-tokens ssh expands in
// IdentityFile; IdentityFile none is no file.
func TestFindExpandsIdentityFile(t *testing.T) {
	e := newFindEnv(t)
	os.MkdirAll(filepath.Join(e.home, "keys"), 0o700)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	want := writePublic(t, filepath.Join(e.home, "keys", "i-0123456789abcdef0-ec2-user-alice.pub"), pub)
	e.sshConfig("Host i-*\n    IdentityFile none\n    IdentityFile %d/keys/bad%C\n    IdentityFile ${KEYS}/%h-%r-%u\n")
	k, err := e.find("i-0123456789abcdef0")
	if err != nil || k.AuthorizedKey() != want {
		t.Fatalf("key %v, %v", k, err)
	}
	c := e.cfg("h")
	for in, out := range map[string]string{
		"~/x":      e.home + "/x",
		"%d/%%/%n": e.home + "/%/h",
		"/k/%i":    fmt.Sprintf("/k/%d", os.Getuid()),
	} {
		if got, err := c.expand(in); err != nil || got != out {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, out)
		}
	}
	if _, err := c.expand("%p"); err == nil {
		t.Errorf("token %%p expanded")
	}
}

// TestAgentSocketFor: IdentityAgent in ssh_config overrides SSH_AUTH_SOCK
// as it does for ssh.
func TestAgentSocketFor(t *testing.T) {
	e := newFindEnv(t)
	e.sshConfig("Host none-*\n    IdentityAgent none\nHost env-*\n    IdentityAgent SSH_AUTH_SOCK\nHost var-*\n    IdentityAgent $KEYS\nHost path-*\n    IdentityAgent ~/agent.sock\n")
	c := func(host string) Config {
		c := e.cfg(host)
		c.AgentSocket = "/run/env.sock"
		return c
	}
	for host, want := range map[string]string{
		"plain": "/run/env.sock", "env-1": "/run/env.sock",
		"var-1": filepath.Join(e.home, "keys"), "path-1": filepath.Join(e.home, "agent.sock"),
	} {
		if got, err := c(host).AgentSocketFor(); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", host, got, err, want)
		}
	}
	if _, err := c("none-1").AgentSocketFor(); !errors.Is(err, ErrAgentDisabled) {
		t.Errorf("IdentityAgent none: %v", err)
	}
	// Find does not use a disabled agent.
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	e.agent = testenv.StartSSHAgent(t, ed)
	_, err := Find(agentContext(t), Config{Host: "none-1", Home: e.home, SSH: e.cfg("").SSH, AgentSocket: e.agent.Socket})
	if !strings.Contains(fmt.Sprint(err), "IdentityAgent none") {
		t.Errorf("err = %v", err)
	}
}

func TestSSHConfigUserAndSystem(t *testing.T) {
	e := newFindEnv(t)
	e.sshConfig("Host i-*\n    User ubuntu\n    IdentityFile ~/a\n")
	os.WriteFile(filepath.Join(e.home, "system_config"), []byte("Host *\n    User nobody\n    IdentityFile ~/b\n"), 0o644)
	sc := e.cfg("").SSH
	if got := sc.Get("i-0123456789abcdef0", "User"); got != "ubuntu" {
		t.Errorf("User = %q: the user's file comes first", got)
	}
	if got := sc.Get("web-1", "User"); got != "nobody" {
		t.Errorf("User = %q from the system file", got)
	}
	if got := sc.GetAll("i-0123456789abcdef0", "IdentityFile"); strings.Join(got, " ") != "~/a ~/b" {
		t.Errorf("IdentityFile = %q: both files accumulate", got)
	}
	var nilConfig *SSHConfig
	if nilConfig.Get("x", "User") != "" || nilConfig.GetAll("x", "IdentityFile") != nil {
		t.Error("nil SSHConfig has values")
	}
}

// TestSSHConfigMatchAndInclude: a Match that kevinburke/ssh_config cannot
// evaluate (it refuses the whole file, and the file including it) leaves
// out only its own block; Includes are read relative to ~/.ssh, in glob
// order, and the including block is in force again after them.
func TestSSHConfigMatchAndInclude(t *testing.T) {
	e := newFindEnv(t)
	confd := filepath.Join(e.home, ".ssh", "config.d")
	if err := os.MkdirAll(confd, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(confd, "10-web"), []byte("Match exec \"true\"\n    User from-exec\nHost web-*\n    User web\n"), 0o600)
	os.WriteFile(filepath.Join(confd, "20-db"), []byte("Host db-*\n    User db\n"), 0o600)
	os.WriteFile(filepath.Join(e.home, ".ssh", "opts"), []byte("IdentityFile ~/.ssh/included\n"), 0o600)
	e.sshConfig(`Host i-*
    User ubuntu
    IdentityFile ~/.ssh/work
    Include opts
    IdentitiesOnly yes
Match localuser alice
    User from-localuser
Match user root
    IdentityFile ~/.ssh/from-user
Match originalhost i-*
    User from-originalhost
Match final all
    User from-final
Match host i-* exec "false"
    User from-host-exec
Include config.d/*
Match all
    ForwardAgent no
Match host m-*
    User matched
`)
	sc := e.cfg("").SSH
	for host, want := range map[string]string{"i-0123456789abcdef0": "ubuntu", "web-1": "web", "db-1": "db", "m-1": "matched", "other": ""} {
		if got := sc.Get(host, "User"); got != want {
			t.Errorf("User for %s = %q, want %q", host, got, want)
		}
	}
	if got := sc.GetAll("i-0123456789abcdef0", "IdentityFile"); strings.Join(got, " ") != "~/.ssh/work ~/.ssh/included" {
		t.Errorf("IdentityFile = %q: want the block's and its Include's", got)
	}
	if got := sc.Get("i-0123456789abcdef0", "IdentitiesOnly"); got != "yes" {
		t.Errorf("IdentitiesOnly = %q: the line after the Include belongs to Host i-*", got)
	}
	if got := sc.Get("web-1", "ForwardAgent"); got != "no" {
		t.Errorf("ForwardAgent = %q: Match all after the Include applies", got)
	}
}
