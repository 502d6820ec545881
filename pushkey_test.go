package main

// --push-key through run against the emulator's EC2 Instance Connect: each
// key source and OS user as SendSSHPublicKey received them, the ephemeral
// key handed to an in-process agent, throttling, each failure's error, hint
// and exit status, and doctor --push-key. Key choice and retries are
// internal/pushkey's; sshd accepting the pushed key, through real ssh, scp
// and rsync, is e2e/pushkey_test.go's.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/target"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

const pushInstance = "i-0123456789abcdef0"

// pushEnv starts an emulator whose sessions reach a banner server and
// points the environment at it, EC2 Instance Connect included, with no
// ssh-agent and an empty HOME (setAWSEnv).
func pushEnv(t *testing.T, o ssmtest.InstanceConnectOptions) *ssmtest.Server {
	t.Helper()
	emu := startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, false), InstanceConnect: o})
	t.Setenv("AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT", emu.Endpoint())
	t.Setenv("SSH_AUTH_SOCK", "")
	os.Unsetenv("SSH_AUTH_SOCK")
	return emu
}

// homeFile writes a file under $HOME.
func homeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(os.Getenv("HOME"), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// homeKey writes a new ed25519 public key under $HOME and returns its
// authorized_keys line (no comment).
func homeKey(t *testing.T, name string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	homeFile(t, name, line+" me@laptop\n")
	return line
}

// fingerprint is the SHA256 fingerprint of an authorized_keys line.
func fingerprint(t *testing.T, line string) string {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(k)
}

// checkPushed checks that exactly keys are valid for user on the instance
// and that one session was started.
func checkPushed(t *testing.T, emu *ssmtest.Server, user string, keys ...string) {
	t.Helper()
	if got := emu.InstanceConnectKeys(pushInstance, user); strings.Join(got, "\n") != strings.Join(keys, "\n") {
		t.Errorf("keys valid for %s: %q, want %q", user, got, keys)
	}
	if st := emu.Stats(); st.SessionsStarted != 1 {
		t.Errorf("sessions started %d, want 1", st.SessionsStarted)
	}
}

// TestPushKeySources: each way of naming the key, and the OS user, end up
// in what SendSSHPublicKey made valid before the session started.
func TestPushKeySources(t *testing.T) {
	t.Run("default key", func(t *testing.T) {
		emu := pushEnv(t, ssmtest.InstanceConnectOptions{})
		key := homeKey(t, ".ssh/id_ed25519.pub")
		code, stdout, stderr := runCLI(t, "", "--push-key", "--os-user", "ec2-user", "-v", pushInstance, "22")
		if code != exitOK || stdout != sshBanner {
			t.Fatalf("exit %d stdout %q stderr:\n%s", code, stdout, stderr)
		}
		checkPushed(t, emu, "ec2-user", key)
		// -v says which key went where, by fingerprint, and what to check
		// when ssh is refused anyway.
		for _, want := range []string{"pushed key", fingerprint(t, key), "id_ed25519.pub", "os_user=ec2-user", "ec2-instance-connect package"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	})
	t.Run("quiet without -v", func(t *testing.T) {
		pushEnv(t, ssmtest.InstanceConnectOptions{})
		homeKey(t, ".ssh/id_ed25519.pub")
		code, _, stderr := runCLI(t, "", "--push-key", "--os-user", "ec2-user", pushInstance, "22")
		if code != exitOK || stderr != "" {
			t.Fatalf("exit %d stderr:\n%s", code, stderr)
		}
	})
	t.Run("private key file", func(t *testing.T) {
		emu := pushEnv(t, ssmtest.InstanceConnectOptions{})
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		homeFile(t, "keys/work", string(pem.EncodeToMemory(block)))
		pub, _ := ssh.NewPublicKey(priv.Public())
		want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
		code, _, stderr := runCLI(t, "", "--push-key=~/keys/work", "--os-user", "ubuntu", "-v", pushInstance, "22")
		if code != exitOK {
			t.Fatalf("exit %d stderr:\n%s", code, stderr)
		}
		checkPushed(t, emu, "ubuntu", want)
		if strings.Contains(stderr, "PRIVATE KEY") || strings.Contains(stderr, want[12:40]) {
			t.Errorf("stderr shows key material:\n%s", stderr)
		}
	})
	t.Run("ssh_config IdentityFile and User for TARGET as ssh passed it", func(t *testing.T) {
		emu := pushEnv(t, ssmtest.InstanceConnectOptions{})
		homeKey(t, ".ssh/id_ed25519.pub")
		key := homeKey(t, ".ssh/eic.pub")
		homeFile(t, ".ssh/config", "Host *.eic\n    User admin\n    IdentityFile ~/.ssh/eic\n")
		code, _, stderr := runCLI(t, "", "--push-key", "--strip-suffix", ".eic", "-v", "web-1.eic", "22")
		if code != exitOK {
			t.Fatalf("exit %d stderr:\n%s", code, stderr)
		}
		checkPushed(t, emu, "admin", key)
		if !strings.Contains(stderr, "ssh_config User") {
			t.Errorf("-v does not say where the user came from:\n%s", stderr)
		}
	})
	t.Run("local user without --os-user or User", func(t *testing.T) {
		emu := pushEnv(t, ssmtest.InstanceConnectOptions{})
		key := homeKey(t, ".ssh/id_ed25519.pub")
		if code, _, stderr := runCLI(t, "", "--push-key", pushInstance, "22"); code != exitOK {
			t.Fatalf("exit %d stderr:\n%s", code, stderr)
		}
		checkPushed(t, emu, localUser(), key)
	})
	t.Run("ssh-agent key", func(t *testing.T) {
		emu := pushEnv(t, ssmtest.InstanceConnectOptions{})
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		ag := testenv.StartSSHAgent(t, priv)
		t.Setenv("SSH_AUTH_SOCK", ag.Socket)
		homeKey(t, ".ssh/id_ed25519.pub") // the agent comes first
		pub, _ := ssh.NewPublicKey(priv.Public())
		if code, _, stderr := runCLI(t, "", "--push-key", "--os-user", "ec2-user", pushInstance, "22"); code != exitOK {
			t.Fatalf("exit %d stderr:\n%s", code, stderr)
		}
		checkPushed(t, emu, "ec2-user", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))))
		if len(ag.Added()) != 0 {
			t.Error("a key was added to the agent")
		}
	})
}

// TestPushKeyEphemeral: the key is made in memory, pushed, and added to
// the running agent for the 60 seconds it is valid; nothing touches the
// disk.
func TestPushKeyEphemeral(t *testing.T) {
	emu := pushEnv(t, ssmtest.InstanceConnectOptions{})
	ag := testenv.StartSSHAgent(t)
	t.Setenv("SSH_AUTH_SOCK", ag.Socket)
	home := os.Getenv("HOME")
	before := homeFiles(t, home)
	code, stdout, stderr := runCLI(t, "", "--push-key=ephemeral", "--os-user", "ec2-user", "-v", pushInstance, "22")
	if code != exitOK || stdout != sshBanner {
		t.Fatalf("exit %d stdout %q stderr:\n%s", code, stdout, stderr)
	}
	added := ag.Added()
	if len(added) != 1 || added[0].LifetimeSecs != 60 || !strings.Contains(added[0].Comment, "ec2-user@"+pushInstance) {
		t.Fatalf("agent got %+v, want one key for 60 s", added)
	}
	priv, ok := added[0].PrivateKey.(*ed25519.PrivateKey) // as agent.ServeAgent decodes it
	if !ok {
		t.Fatalf("agent got a %T", added[0].PrivateKey)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	checkPushed(t, emu, "ec2-user", line)
	if !strings.Contains(stderr, ssh.FingerprintSHA256(pub)) || !strings.Contains(stderr, "ephemeral") {
		t.Errorf("-v does not name the ephemeral key:\n%s", stderr)
	}
	if after := homeFiles(t, home); after != before {
		t.Errorf("HOME had %q, has %q: the ephemeral key must not touch the disk", before, after)
	}
}

// homeFiles lists the files under dir.
func homeFiles(t *testing.T, dir string) string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		files = append(files, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(files, " ")
}

// TestPushKeyThrottled: a throttled push is retried until it gets
// through; one throttled for good ends with the rate-limit error.
func TestPushKeyThrottled(t *testing.T) {
	emu := pushEnv(t, ssmtest.InstanceConnectOptions{ThrottleRate: 1, ThrottleBurst: 1})
	homeKey(t, ".ssh/id_ed25519.pub")
	code, _, stderr := runCLI(t, "", "--push-key", "--os-user", "ec2-user", pushInstance, "22")
	if code != exitOK {
		t.Fatalf("exit %d stderr:\n%s", code, stderr)
	}
	st := emu.InstanceConnectStats()
	if st.Pushed != 1 || st.Throttled != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The bucket is empty now: the next push is throttled at first.
	code, _, stderr = runCLI(t, "", "--push-key", "--os-user", "ec2-user", pushInstance, "22")
	if code != exitOK {
		t.Fatalf("exit %d stderr:\n%s", code, stderr)
	}
	if st := emu.InstanceConnectStats(); st.Pushed != 2 || st.Throttled == 0 {
		t.Errorf("stats %+v: the second push was not throttled and retried", st)
	}
}

// TestPushKeyThrottledForGood: a push throttled until ssm-proxy's context
// ends says it was rate-limited, and starts no session.
func TestPushKeyThrottledForGood(t *testing.T) {
	emu := pushEnv(t, ssmtest.InstanceConnectOptions{ThrottleRate: 1e-9, ThrottleBurst: 1})
	homeKey(t, ".ssh/id_ed25519.pub")
	if code, _, stderr := runCLI(t, "", "--push-key", "--os-user", "ec2-user", pushInstance, "22"); code != exitOK {
		t.Fatalf("first push (the bucket's token): exit %d\n%s", code, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	r, w := io.Pipe()
	defer w.Close()
	c := &cli{stdin: r, stdout: &out, stderr: &errb}
	code := c.run(ctx, []string{"--push-key", "--os-user", "ec2-user", pushInstance, "22"})
	if code == exitOK || out.Len() != 0 {
		t.Fatalf("exit %d stdout %q", code, out.String())
	}
	checkOneError(t, errb.String(), "push key for ec2-user to "+pushInstance+": still throttled after", "EC2 Instance Connect SendSSHPublicKey: ThrottlingException")
	if st := emu.InstanceConnectStats(); st.Throttled < 2 || emu.Stats().SessionsStarted != 1 {
		t.Errorf("stats %+v, sessions %d", st, emu.Stats().SessionsStarted)
	}
}

// pushFailure is one way --push-key fails.
type pushFailure struct {
	name  string
	emu   ssmtest.InstanceConnectOptions
	setup func(t *testing.T)
	args  []string // before TARGET PORT
	tgt   string
	code  int    // the exit status exitCode gives the error
	want  string // in the error line
	hint  string // in one of the hints
}

func pushFailures() []pushFailure {
	key := func(t *testing.T) { homeKey(t, ".ssh/id_ed25519.pub") }
	return []pushFailure{
		{"not permitted", ssmtest.InstanceConnectOptions{DeniedUsers: []string{"root"}}, key, []string{"--os-user", "root"}, pushInstance, exitError,
			"push key for root to " + pushInstance + ": EC2 Instance Connect SendSSHPublicKey: AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/Test/test is not authorized to perform: ec2-instance-connect:SendSSHPublicKey",
			`ec2-instance-connect:SendSSHPublicKey on arn:aws:ec2:us-east-1:ACCOUNT:instance/` + pushInstance + `, with a condition ec2:osuser that allows "root" (examples/iam/instance-connect-policy.json)`},
		{"not permitted, user not given", ssmtest.InstanceConnectOptions{DeniedUsers: []string{localUser()}}, key, nil, pushInstance, exitError,
			"AccessDeniedException", "is the local user name (no --os-user, no User in ssh_config): pass the user ssh logs in as with --os-user %r"},
		{"instance not found", ssmtest.InstanceConnectOptions{}, key, []string{"--os-user", "ec2-user"}, "i-0999999999999999f", exitError,
			"EC2InstanceNotFoundException: The specified instance was not found.", "EC2 knows no instance i-0999999999999999f in us-east-1"},
		{"instance stopped", ssmtest.InstanceConnectOptions{InstanceStates: map[string]string{pushInstance: ssmtest.StateStopped}}, key, []string{"--os-user", "ec2-user"}, pushInstance, exitError,
			"EC2InstanceStateInvalidException", "aws ec2 start-instances --instance-ids " + pushInstance},
		{"instance pending", ssmtest.InstanceConnectOptions{InstanceStates: map[string]string{pushInstance: ssmtest.StatePending}}, key, []string{"--os-user", "ec2-user"}, pushInstance, exitError,
			"EC2InstanceUnavailableException", "retry in a few minutes"},
		{"managed node", ssmtest.InstanceConnectOptions{}, key, []string{"--os-user", "ec2-user"}, "mi-0123456789abcdef0", exitUsage,
			"--push-key: mi-0123456789abcdef0 is a managed node (hybrid activation), not an EC2 instance: EC2 Instance Connect pushes keys to EC2 instances only", "connect without --push-key"},
		{"managed node by name", ssmtest.InstanceConnectOptions{}, key, []string{"--os-user", "ec2-user"}, "onprem-1", exitUsage,
			"mi-0123456789abcdef0 is a managed node", "connect without --push-key"},
		{"bad OS user", ssmtest.InstanceConnectOptions{}, key, []string{"--os-user", "ec2 user"}, pushInstance, exitError,
			"ValidationException: 1 validation error detected: Value 'ec2 user' at 'instanceOSUser'", `"ec2 user" (the --os-user) is not a valid OS user name`},
		{"no key at all", ssmtest.InstanceConnectOptions{}, nil, []string{"--os-user", "ec2-user"}, pushInstance, exitError,
			"no key to push: no ssh-agent: SSH_AUTH_SOCK is not set; ", "ssh-keygen -t ed25519"},
		{"ephemeral without agent", ssmtest.InstanceConnectOptions{}, nil, []string{"--push-key=ephemeral", "--os-user", "ec2-user"}, pushInstance, exitError,
			"no ssh-agent: SSH_AUTH_SOCK is not set", "start one (eval \"$(ssh-agent)\")"},
		{"agent socket dead", ssmtest.InstanceConnectOptions{}, func(t *testing.T) { t.Setenv("SSH_AUTH_SOCK", filepath.Join(t.TempDir(), "gone.sock")) },
			[]string{"--push-key=ephemeral", "--os-user", "ec2-user"}, pushInstance, exitError, "ssh-agent at ", "does not answer"},
		{"ephemeral but IdentityAgent none", ssmtest.InstanceConnectOptions{}, func(t *testing.T) {
			t.Setenv("SSH_AUTH_SOCK", testenv.StartSSHAgent(t).Socket)
			homeFile(t, ".ssh/config", "Host i-*\n    IdentityAgent none\n")
		}, []string{"--push-key=ephemeral", "--os-user", "ec2-user"}, pushInstance, exitError, "IdentityAgent none", "remove IdentityAgent none for " + pushInstance},
		{"ephemeral but IdentitiesOnly", ssmtest.InstanceConnectOptions{}, func(t *testing.T) {
			t.Setenv("SSH_AUTH_SOCK", testenv.StartSSHAgent(t).Socket)
			homeFile(t, ".ssh/config", "Host i-*\n    IdentitiesOnly yes\n")
		}, []string{"--push-key=ephemeral", "--os-user", "ec2-user"}, pushInstance, exitError, "IdentitiesOnly yes", "remove IdentitiesOnly yes for " + pushInstance},
		{"agent crowded", ssmtest.InstanceConnectOptions{}, func(t *testing.T) {
			var keys []any
			for range sshdMaxAuthTries {
				_, k, _ := ed25519.GenerateKey(rand.Reader)
				keys = append(keys, k)
			}
			t.Setenv("SSH_AUTH_SOCK", testenv.StartSSHAgent(t, keys...).Socket)
		}, []string{"--push-key=ephemeral", "--os-user", "ec2-user"}, pushInstance, exitError, "already holds 6 keys", "sshd gives up after 6 attempts (MaxAuthTries): use bare --push-key"},
		{"agent refuses the key", ssmtest.InstanceConnectOptions{}, func(t *testing.T) {
			ag := testenv.StartSSHAgent(t)
			ag.Lock([]byte("locked"))
			t.Setenv("SSH_AUTH_SOCK", ag.Socket)
		}, []string{"--push-key=ephemeral", "--os-user", "ec2-user"}, pushInstance, exitError, "add key: agent: failure", "refused the key (a locked agent"},
		{"EKS node", ssmtest.InstanceConnectOptions{}, key, []string{"--os-user", "ec2-user"}, "eks_c:cluster-1_0123456789abcdef0", exitUsage,
			"not an EC2 instance", "connect without --push-key"},
		{"key file missing", ssmtest.InstanceConnectOptions{}, nil, []string{"--push-key=/nonexistent/key", "--os-user", "ec2-user"}, pushInstance, exitError,
			"key file /nonexistent/key: open /nonexistent/key: no such file or directory", "--push-key=PATH wants a public key (.pub) or a private key file"},
		{"encrypted key without .pub", ssmtest.InstanceConnectOptions{}, func(t *testing.T) {
			p := filepath.Join(os.Getenv("HOME"), "legacy")
			out, err := exec.Command(testenv.Bin(t, "ssh-keygen"), "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "secret", "-f", p).CombinedOutput()
			if err != nil {
				t.Fatalf("ssh-keygen: %v\n%s", err, out)
			}
			os.Remove(p + ".pub")
		}, []string{"--push-key=~/legacy", "--os-user", "ec2-user"}, pushInstance, exitError,
			"the private key is encrypted, its public half cannot be read without the passphrase, and there is no .pub file beside it", "ssh-keygen -y -f "},
		{"RSA too short", ssmtest.InstanceConnectOptions{}, func(t *testing.T) {
			k, _ := rsa.GenerateKey(rand.Reader, 1024)
			pub, _ := ssh.NewPublicKey(&k.PublicKey)
			homeFile(t, ".ssh/id_rsa.pub", string(ssh.MarshalAuthorizedKey(pub)))
		}, []string{"--push-key=~/.ssh/id_rsa.pub", "--os-user", "ec2-user"}, pushInstance, exitError,
			"ssh-rsa key of 1024 bits: EC2 Instance Connect accepts ssh-ed25519 keys and ssh-rsa keys of 2048 bits or more", "ssh-keygen -t ed25519"},
		{"IdentityFile unusable", ssmtest.InstanceConnectOptions{}, func(t *testing.T) {
			k, _ := rsa.GenerateKey(rand.Reader, 1024)
			pub, _ := ssh.NewPublicKey(&k.PublicKey)
			homeFile(t, ".ssh/old.pub", string(ssh.MarshalAuthorizedKey(pub)))
			homeKey(t, ".ssh/id_ed25519.pub")
			homeFile(t, ".ssh/config", "Host i-*\n    IdentityFile ~/.ssh/old\n")
		}, []string{"--os-user", "ec2-user"}, pushInstance, exitError,
			"the IdentityFile ssh_config gives for " + pushInstance + " cannot be pushed", "ssh offers this IdentityFile for " + pushInstance},
	}
}

// TestPushKeyEphemeralAgentFirst: the ephemeral key goes into the agent
// before the push, so an agent that refuses it costs no push; a push that
// fails takes the key out of the agent again.
func TestPushKeyEphemeralAgentFirst(t *testing.T) {
	emu := pushEnv(t, ssmtest.InstanceConnectOptions{DeniedUsers: []string{"root"}})
	ag := testenv.StartSSHAgent(t)
	t.Setenv("SSH_AUTH_SOCK", ag.Socket)
	ag.Lock([]byte("locked"))
	if code, _, stderr := runCLI(t, "", "--push-key=ephemeral", "--os-user", "ec2-user", pushInstance, "22"); code != exitError || !strings.Contains(stderr, "refused the key") {
		t.Fatalf("locked agent: exit %d\n%s", code, stderr)
	}
	if keys := emu.InstanceConnectKeys(pushInstance, "ec2-user"); len(keys) != 0 {
		t.Errorf("pushed %q for an agent that refused the key", keys)
	}
	ag.Unlock([]byte("locked"))
	if code, _, stderr := runCLI(t, "", "--push-key=ephemeral", "--os-user", "root", pushInstance, "22"); code != exitError || !strings.Contains(stderr, "AccessDeniedException") {
		t.Fatalf("denied push: exit %d\n%s", code, stderr)
	}
	if n := len(ag.Added()); n != 2 {
		t.Fatalf("the agent was asked to add %d keys, want 2 (refused locked, then one before the push)", n)
	}
	if keys, err := ag.List(); err != nil || len(keys) != 0 {
		t.Errorf("the agent holds %d keys after a refused push (%v), want none", len(keys), err)
	}
}

// TestPushKeyErrors: each failure is one error line, nothing on stdout,
// no session; and its typed error carries the hint and the exit status
// that main.go's exitCode and hints.go's hints give it.
func TestPushKeyErrors(t *testing.T) {
	for _, f := range pushFailures() {
		t.Run(f.name, func(t *testing.T) {
			emu := pushEnv(t, f.emu)
			if f.setup != nil {
				f.setup(t)
			}
			args := append(append([]string{}, f.args...), f.tgt, "22")
			if !strings.HasPrefix(strings.Join(f.args, " "), "--push-key") {
				args = append([]string{"--push-key"}, args...)
			}
			code, stdout, stderr := runCLI(t, "", args...)
			if code == exitOK || stdout != "" {
				t.Errorf("exit %d, stdout %q", code, stdout)
			}
			checkOneError(t, stderr, f.want)
			if n := emu.Stats().SessionsStarted; n != 0 {
				t.Errorf("%d sessions started", n)
			}

			err := pushKeyDirect(t, args)
			var pke *pushKeyError
			if !errors.As(err, &pke) {
				t.Fatalf("err = %v (%T), want *pushKeyError", err, err)
			}
			if pke.code != f.code {
				t.Errorf("exit status %d, want %d", pke.code, f.code)
			}
			if !strings.Contains(strings.Join(pke.hints, "\n"), f.hint) {
				t.Errorf("hints %q lack %q", pke.hints, f.hint)
			}
		})
	}
}

// pushKeyDirect runs the proxy command's steps up to and including the
// push, as connect does, and returns the push's error.
func pushKeyDirect(t *testing.T, args []string) error {
	t.Helper()
	var o options
	c := &cli{stdout: io.Discard, stderr: io.Discard}
	fs := c.newFlagSet("test")
	o.flags(fs)
	fs.StringVar(&o.stripSuffix, "strip-suffix", "", "")
	o.pushKeyFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	u := &used{target: fs.Arg(0)}
	cfg, err := c.loadAWS(ctx, o, u, log)
	if err != nil {
		t.Fatal(err)
	}
	if u.id, err = target.Resolve(ctx, ssmtest.APIClient(os.Getenv("AWS_ENDPOINT_URL_SSM")), u.target); err != nil {
		t.Fatal(err)
	}
	return c.pushKey(ctx, o, u, cfg, log)
}

// TestPushKeyCredentialErrorsPassThrough: refused credentials keep their
// own error and hints.
func TestPushKeyCredentialErrorsPassThrough(t *testing.T) {
	pushEnv(t, ssmtest.InstanceConnectOptions{})
	homeKey(t, ".ssh/id_ed25519.pub")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	code, _, stderr := runCLI(t, "", "--push-key", "--os-user", "ec2-user", pushInstance, "22")
	if code != exitError {
		t.Fatalf("exit %d", code)
	}
	checkOneError(t, stderr, "InvalidSignatureException", "ssm-proxy: hint: the credentials from the environment")
	var pke *pushKeyError
	if err := pushKeyDirect(t, []string{"--push-key", "--os-user", "ec2-user", pushInstance, "22"}); err == nil || errors.As(err, &pke) {
		t.Errorf("err = %v, want the API error itself", err)
	}
}

// TestDoctorPushKey: with --push-key, doctor pushes a throw-away key (not
// the user's) and says which key ssm-proxy would push; a refusal is a ✗
// with the hint.
func TestDoctorPushKey(t *testing.T) {
	doctorPush := func(t *testing.T, o options) (bool, string) {
		t.Helper()
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cfg, _, err := awscfg.Load(ctx, awscfg.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d := &doctorRun{cli: &cli{stdout: &out, stderr: io.Discard}, o: o, used: &used{target: pushInstance, id: pushInstance},
			log: slog.New(slog.DiscardHandler), cfg: cfg, inst: target.Instance{ID: pushInstance, PingStatus: target.PingOnline}}
		return d.checkPushKey(ctx), out.String()
	}
	emu := pushEnv(t, ssmtest.InstanceConnectOptions{DeniedUsers: []string{"root"}})
	key := homeKey(t, ".ssh/id_ed25519.pub")

	if ok, out := doctorPush(t, options{}); !ok || out != "" {
		t.Errorf("without --push-key: %v %q", ok, out)
	}
	ok, out := doctorPush(t, options{pushKey: pushKeyFlag{set: true}, osUser: "ec2-user"})
	want := "✓ push-key: permitted for ec2-user (--os-user) on " + pushInstance + "; would push ssh-ed25519 " + fingerprint(t, key)
	if !ok || !strings.HasPrefix(out, want) || !strings.Contains(out, "ec2-instance-connect package") {
		t.Errorf("got %v:\n%s\nwant %s…", ok, out, want)
	}
	if keys := emu.InstanceConnectKeys(pushInstance, "ec2-user"); len(keys) != 1 || keys[0] == key {
		t.Errorf("doctor pushed %q; want one throw-away key, not the user's", keys)
	}
	ok, out = doctorPush(t, options{pushKey: pushKeyFlag{set: true}, osUser: "root"})
	if ok || !strings.HasPrefix(out, "✗ push-key: push a throw-away key for root to "+pushInstance+": EC2 Instance Connect SendSSHPublicKey: AccessDeniedException") ||
		!strings.Contains(out, "    hint: your identity needs ec2-instance-connect:SendSSHPublicKey") {
		t.Errorf("denied: %v\n%s", ok, out)
	}
	ok, out = doctorPush(t, options{pushKey: pushKeyFlag{set: true, value: ephemeralKey}, osUser: "ec2-user"})
	if ok || !strings.Contains(out, "✗ push-key: no ssh-agent") {
		t.Errorf("ephemeral without agent: %v\n%s", ok, out)
	}
}

// TestDoctorPushKeyFromProxyCommand: a keyless ProxyCommand is checked as
// keyless — doctor adopts its --push-key, and --os-user %r as the user ssh
// would log in as — so a refused push is a ✗, not eleven ✓ and exit 0.
func TestDoctorPushKeyFromProxyCommand(t *testing.T) {
	pushEnv(t, ssmtest.InstanceConnectOptions{DeniedUsers: []string{"alice"}})
	homeKey(t, ".ssh/id_ed25519.pub")
	config := "Host web-keyless\n    HostName " + pushInstance + "\n    User %s\n    ProxyCommand ssm-proxy --push-key --os-user %%r %%h %%p\n"
	code, stdout, stderr := runDoctor(t, &cli{}, fmt.Sprintf(config, "alice"), "web-keyless")
	if code != exitError || !strings.Contains(stdout, "checking target "+pushInstance+", port 22, os-user alice, pushing a key (--push-key)") ||
		!strings.Contains(stdout, "✗ push-key: push a throw-away key for alice to "+pushInstance) {
		t.Errorf("denied user: exit %d\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runDoctor(t, &cli{}, fmt.Sprintf(config, "ec2-user"), "web-keyless")
	if code != exitOK || !strings.Contains(stdout, "✓ push-key: permitted for ec2-user (--os-user)") {
		t.Errorf("permitted user: exit %d\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
