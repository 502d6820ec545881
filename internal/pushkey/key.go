// Package pushkey makes an SSH public key valid on an EC2 instance for 60
// seconds with EC2 Instance Connect's SendSSHPublicKey, so that ssh logs in
// with a key that is in no authorized_keys file.
//
// It picks the key ssh will offer (Find: the ssh_config IdentityFile for
// the host, else the ssh-agent's first key, else ~/.ssh/id_ed25519.pub or
// id_rsa.pub), reads key files (FromFile: a .pub, or a private key whose
// public half is derived), makes ephemeral keys and puts them in the
// ssh-agent (NewEphemeral, Agent), and pushes a key with bounded, jittered
// retries while the API is throttled (Send). It prints nothing: failures
// are typed errors, progress goes to the Logger at debug level, and no
// private key material ever leaves the process except into the agent.
package pushkey

import (
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Lifetime is how long Instance Connect keeps a pushed key valid, and how
// long an ephemeral key stays in the agent.
const Lifetime = 60 * time.Second

// MinRSABits is the smallest RSA key Instance Connect accepts.
const MinRSABits = 2048

// Key is a public key to push. Only its public half is ever sent or
// logged.
type Key struct {
	Public ssh.PublicKey
	// Source says where the key came from, in the words of the user's
	// setup: a file, "ssh-agent …", "ephemeral".
	Source string
	// private is the private half of an ephemeral key, for the agent.
	private ed25519.PrivateKey
}

// Fingerprint is the key's SHA256 fingerprint, as ssh-keygen -l prints it.
func (k *Key) Fingerprint() string { return ssh.FingerprintSHA256(k.Public) }

// Type is the key's algorithm name, e.g. ssh-ed25519.
func (k *Key) Type() string { return k.Public.Type() }

// AuthorizedKey is the key in authorized_keys format, without a comment:
// what SendSSHPublicKey sends.
func (k *Key) AuthorizedKey() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.Public)))
}

// Ephemeral reports whether the key was made by NewEphemeral.
func (k *Key) Ephemeral() bool { return k.private != nil }

// NewEphemeral generates an ed25519 key in memory. Its private half goes
// nowhere but Agent.AddEphemeral.
func NewEphemeral(rand io.Reader) (*Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &Key{Public: sp, Source: "ephemeral (generated in memory)", private: priv}, nil
}

// UnsupportedKeyError reports a key type Instance Connect does not accept.
type UnsupportedKeyError struct {
	Type string
	Bits int // RSA only
}

func (e *UnsupportedKeyError) Error() string {
	what := e.Type
	if e.Bits > 0 {
		what = fmt.Sprintf("%s key of %d bits", e.Type, e.Bits)
	}
	return fmt.Sprintf("%s: EC2 Instance Connect accepts ssh-ed25519 keys and ssh-rsa keys of %d bits or more", what, MinRSABits)
}

// Accepted reports, as an *UnsupportedKeyError, whether Instance Connect
// refuses pub: it accepts ssh-ed25519, and ssh-rsa of MinRSABits or more.
func Accepted(pub ssh.PublicKey) error {
	switch pub.Type() {
	case ssh.KeyAlgoED25519:
		return nil
	case ssh.KeyAlgoRSA:
		bits := 0
		if ck, ok := pub.(ssh.CryptoPublicKey); ok {
			if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok {
				bits = rk.N.BitLen()
			}
		}
		if bits >= MinRSABits {
			return nil
		}
		return &UnsupportedKeyError{Type: pub.Type(), Bits: bits}
	}
	return &UnsupportedKeyError{Type: pub.Type()}
}

// ErrEncrypted reports an encrypted private key whose public half cannot
// be read without the passphrase (PEM-encrypted keys), with no .pub file
// beside it.
var ErrEncrypted = errors.New("the private key is encrypted, its public half cannot be read without the passphrase, and there is no .pub file beside it")

// KeyFileError reports a key file that cannot be pushed.
type KeyFileError struct {
	Path string
	// Err is ErrEncrypted, an *UnsupportedKeyError, or why the file could
	// not be read or parsed.
	Err error
}

func (e *KeyFileError) Error() string { return fmt.Sprintf("key file %s: %v", e.Path, e.Err) }

func (e *KeyFileError) Unwrap() error { return e.Err }

// FromFile reads the public key to push from path: an authorized_keys
// style public key (a .pub file), or a private key, whose public half is
// then taken from path.pub if that exists, as ssh does, or else derived
// from the key. A private key path that does not exist but has its .pub
// (the private half kept in an agent or a token) is that .pub. OpenSSH-format private keys carry their public half in
// the clear, so that works for encrypted ones too; a PEM-encrypted key
// without its .pub is ErrEncrypted. The key must be one Instance Connect
// accepts. Errors are *KeyFileError.
func FromFile(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !strings.HasSuffix(path, ".pub") {
		if _, perr := os.Stat(path + ".pub"); perr == nil {
			return FromFile(path + ".pub")
		}
	}
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	check := func(pub ssh.PublicKey, source string) (*Key, error) {
		if err := Accepted(pub); err != nil {
			return nil, &KeyFileError{Path: source, Err: err}
		}
		return &Key{Public: pub, Source: source}, nil
	}
	if pub, _, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
		return check(pub, path)
	}
	if strings.HasSuffix(path, ".pub") {
		return nil, &KeyFileError{Path: path, Err: errors.New("not an OpenSSH public key (want a line like \"ssh-ed25519 AAAA… comment\")")}
	}
	if pubData, err := os.ReadFile(path + ".pub"); err == nil {
		if pub, _, _, _, err := ssh.ParseAuthorizedKey(pubData); err == nil {
			return check(pub, path+".pub")
		}
	}
	signer, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	switch {
	case err == nil:
		return check(signer.PublicKey(), path)
	case errors.As(err, &pm) && pm.PublicKey != nil:
		return check(pm.PublicKey, path)
	case errors.As(err, &pm):
		return nil, &KeyFileError{Path: path, Err: ErrEncrypted}
	}
	return nil, &KeyFileError{Path: path, Err: fmt.Errorf("neither an OpenSSH public key nor a private key: %w", err)}
}
