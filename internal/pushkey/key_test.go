package pushkey

// Tests of reading keys (key.go), made by the real ssh-keygen: a .pub, a
// private key with or without its .pub (encrypted OpenSSH keys included),
// the .pub beside it winning, and as a KeyFileError what cannot be pushed
// (encrypted PEM alone, short RSA, ECDSA, not a key); ephemeral ed25519
// keys. Which key is chosen is find_test.go's; each refusal's hint through
// run the root package's pushkey_test.go.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// keygen runs ssh-keygen to make a key at path and returns its public key
// line ("type base64").
func keygen(t *testing.T, path string, args ...string) string {
	t.Helper()
	args = append([]string{"-q", "-C", "test@pushkey", "-f", path}, args...)
	if out, err := exec.Command(testenv.Bin(t, "ssh-keygen"), args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	b, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	return f[0] + " " + f[1]
}

// writePublic writes pub as a .pub file and returns its line.
func writePublic(t *testing.T, path string, pub any) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	if err := os.WriteFile(path, []byte(line+" comment@host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return line
}

func TestFromFile(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }

	plain := keygen(t, p("plain"), "-t", "ed25519", "-N", "")
	openssh := keygen(t, p("openssh-encrypted"), "-t", "ed25519", "-N", "secret")
	os.Remove(p("openssh-encrypted.pub"))
	keygen(t, p("pem-encrypted"), "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "secret")
	os.Remove(p("pem-encrypted.pub"))
	derived := keygen(t, p("derived"), "-t", "ed25519", "-N", "")
	os.Remove(p("derived.pub"))
	// A .pub beside the private key wins, as for ssh.
	keygen(t, p("beside"), "-t", "ed25519", "-N", "")
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	beside := writePublic(t, p("beside.pub"), ed)
	pubOnly := writePublic(t, p("token.pub"), ed)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	writePublic(t, p("small.pub"), &small.PublicKey)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writePublic(t, p("ecdsa.pub"), &ec.PublicKey)
	os.WriteFile(p("garbage"), []byte("hello\n"), 0o600)
	os.WriteFile(p("garbage.pub"), []byte("hello\n"), 0o600)

	for _, c := range []struct {
		name, path, want, source string
	}{
		{".pub", p("plain.pub"), plain, p("plain.pub")},
		{"private key with its .pub", p("plain"), plain, p("plain.pub")},
		{"private key alone", p("derived"), derived, p("derived")},
		{"encrypted OpenSSH key alone", p("openssh-encrypted"), openssh, p("openssh-encrypted")},
		{".pub beside wins", p("beside"), beside, p("beside.pub")},
		{"private key elsewhere, .pub here", p("token"), pubOnly, p("token.pub")},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, err := FromFile(c.path)
			if err != nil {
				t.Fatal(err)
			}
			if k.AuthorizedKey() != c.want || k.Source != c.source || k.Ephemeral() {
				t.Errorf("key %q from %q, want %q from %q", k.AuthorizedKey(), k.Source, c.want, c.source)
			}
			if !strings.HasPrefix(k.Fingerprint(), "SHA256:") || k.Type() != ssh.KeyAlgoED25519 {
				t.Errorf("fingerprint %q type %q", k.Fingerprint(), k.Type())
			}
		})
	}

	for _, c := range []struct {
		name, path string
		is         error
		unsup      bool
		msg        string
	}{
		{"encrypted PEM key alone", p("pem-encrypted"), ErrEncrypted, false, "cannot be read without the passphrase"},
		{"rsa 1024", p("small.pub"), nil, true, "ssh-rsa key of 1024 bits: EC2 Instance Connect accepts ssh-ed25519 keys and ssh-rsa keys of 2048 bits or more"},
		{"ecdsa", p("ecdsa.pub"), nil, true, "ecdsa-sha2-nistp256: EC2 Instance Connect accepts"},
		{"not a key", p("garbage"), nil, false, "neither an OpenSSH public key nor a private key"},
		{"not a public key", p("garbage.pub"), nil, false, "not an OpenSSH public key"},
		{"missing", p("nothing"), os.ErrNotExist, false, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := FromFile(c.path)
			var kfe *KeyFileError
			if !errors.As(err, &kfe) || !strings.HasPrefix(kfe.Path, c.path) {
				t.Fatalf("err = %v, want a *KeyFileError for %s", err, c.path)
			}
			var ue *UnsupportedKeyError
			if c.is != nil && !errors.Is(err, c.is) || errors.As(err, &ue) != c.unsup {
				t.Errorf("err = %v (%T)", err, kfe.Err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want %q", err, c.msg)
			}
		})
	}
}

func TestAccepted(t *testing.T) {
	big, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&big.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := Accepted(pub); err != nil {
		t.Errorf("rsa 2048: %v", err)
	}
}

func TestNewEphemeral(t *testing.T) {
	a, err := NewEphemeral(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewEphemeral(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Ephemeral() || a.Type() != ssh.KeyAlgoED25519 || Accepted(a.Public) != nil {
		t.Errorf("ephemeral key %s %s", a.Type(), a.Source)
	}
	if a.Fingerprint() == b.Fingerprint() {
		t.Error("two ephemeral keys are the same")
	}
	if len(strings.Fields(a.AuthorizedKey())) != 2 {
		t.Errorf("authorized key %q has a comment", a.AuthorizedKey())
	}
}
