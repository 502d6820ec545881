package pushkey

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// SSHConfig is the ssh client configuration ssm-proxy reads to find the key
// and user ssh will use: the user's file, then the system's, as ssh reads
// them. Host patterns are matched against the name given to Get, which for
// a ProxyCommand is TARGET as ssh passed it (%h or %n).
type SSHConfig struct {
	files []*ssh_config.Config
}

// DefaultSSHConfigFiles are the files ssh reads when not given -F.
func DefaultSSHConfigFiles(home string) []string {
	return []string{filepath.Join(home, ".ssh", "config"), "/etc/ssh/ssh_config"}
}

// LoadSSHConfig reads the files that exist, with their Includes
// (flattenSSHConfig: a Match it cannot evaluate leaves out that block, not
// the file); one that still does not parse is skipped with a debug line.
// home is the home directory: a file outside it is a system file, whose
// relative Includes are under /etc/ssh.
func LoadSSHConfig(paths []string, home string, log *slog.Logger) *SSHConfig {
	log = orDiscard(log)
	c := &SSHConfig{}
	for _, p := range paths {
		system := home == "" || !strings.HasPrefix(p, filepath.Clean(home)+string(filepath.Separator))
		data, err := flattenSSHConfig(p, home, system, 0, log)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				log.Debug("ssh_config not read", "path", p, "err", err)
			}
			continue
		}
		cfg, err := ssh_config.DecodeBytes(data)
		if err != nil {
			log.Debug("ssh_config does not parse; ignored", "path", p, "err", err)
			continue
		}
		c.files = append(c.files, cfg)
	}
	return c
}

// Get is the first value of key for host, as ssh takes it, or "".
func (c *SSHConfig) Get(host, key string) string {
	if c == nil {
		return ""
	}
	for _, f := range c.files {
		if v, err := f.Get(host, key); err == nil && v != "" {
			return v
		}
	}
	return ""
}

// GetAll is every value of key for host, in the order ssh reads them
// (IdentityFile accumulates).
func (c *SSHConfig) GetAll(host, key string) []string {
	if c == nil {
		return nil
	}
	var all []string
	for _, f := range c.files {
		if vs, err := f.GetAll(host, key); err == nil {
			all = append(all, vs...)
		}
	}
	return all
}

// Config is what Find needs to know about the connection and the user.
type Config struct {
	// Host is TARGET as ssh passed it, matched against Host patterns.
	Host string
	// User is the remote user (%r in IdentityFile).
	User string
	// Home is the home directory (~ and %d) and LocalUser the local user
	// name (%u).
	Home, LocalUser string
	// SSH is the ssh client configuration; nil reads none.
	SSH *SSHConfig
	// AgentSocket is $SSH_AUTH_SOCK, used unless ssh_config sets
	// IdentityAgent for the host.
	AgentSocket string
	// Getenv expands ${VAR} in ssh_config paths; nil means os.Getenv.
	Getenv func(string) string
	// Logger receives a debug line for each key considered; nil discards.
	Logger *slog.Logger
}

// NoKeyError reports that Find found no key to push; Tried says what was
// looked at and why each was passed over.
type NoKeyError struct {
	Tried []string
}

func (e *NoKeyError) Error() string {
	return "no key to push: " + strings.Join(e.Tried, "; ")
}

// IdentityFileError reports that the IdentityFile(s) ssh_config gives for
// the host exist but none can be pushed. Find does not fall back to other
// keys then: ssh would offer these first, or only these.
type IdentityFileError struct {
	Host string
	Errs []error // one *KeyFileError per file
}

func (e *IdentityFileError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("the IdentityFile ssh_config gives for %s cannot be pushed: %s", e.Host, strings.Join(msgs, "; "))
}

func (e *IdentityFileError) Unwrap() []error { return e.Errs }

// Find picks the key ssh will offer for c.Host, in this order:
//
//  1. the IdentityFile(s) ssh_config gives for the host, the first that
//     exists and Instance Connect accepts (if some exist and none is
//     accepted, an *IdentityFileError);
//  2. the first key the ssh-agent offers that Instance Connect accepts
//     (not with IdentitiesOnly yes, where ssh would not offer it);
//  3. ~/.ssh/id_ed25519.pub, then ~/.ssh/id_rsa.pub.
//
// With nothing found the error is a *NoKeyError.
func Find(ctx context.Context, c Config) (*Key, error) {
	log := orDiscard(c.Logger)
	var tried []string
	var unusable []error
	for _, raw := range c.SSH.GetAll(c.Host, "IdentityFile") {
		if strings.EqualFold(raw, "none") {
			continue
		}
		path, err := c.expand(raw)
		if err != nil {
			log.Debug("IdentityFile skipped", "value", raw, "err", err)
			tried = append(tried, fmt.Sprintf("IdentityFile %s (%v)", raw, err))
			continue
		}
		if !exists(path) && !exists(path+".pub") {
			log.Debug("IdentityFile does not exist", "path", path)
			tried = append(tried, fmt.Sprintf("IdentityFile %s (not found)", path))
			continue
		}
		k, err := FromFile(path)
		if err != nil {
			log.Debug("IdentityFile cannot be pushed", "err", err)
			unusable = append(unusable, err)
			continue
		}
		k.Source = "IdentityFile " + k.Source + " (ssh_config)"
		return k, nil
	}
	if len(unusable) > 0 {
		return nil, &IdentityFileError{Host: c.Host, Errs: unusable}
	}

	socket, err := c.AgentSocketFor()
	switch {
	case err != nil:
		tried = append(tried, err.Error())
	case c.AgentKeysOffered() != nil:
		// ssh offers the agent's keys only for its identity files.
		tried = append(tried, "the ssh-agent (IdentitiesOnly yes: ssh offers none of its keys of its own)")
	default:
		k, why := firstAgentKey(ctx, socket)
		if k != nil {
			return k, nil
		}
		tried = append(tried, why)
	}

	for _, name := range []string{"id_ed25519.pub", "id_rsa.pub"} {
		path := filepath.Join(c.Home, ".ssh", name)
		if !exists(path) {
			tried = append(tried, path+" (not found)")
			continue
		}
		k, err := FromFile(path)
		if err != nil {
			tried = append(tried, err.Error())
			continue
		}
		return k, nil
	}
	log.Debug("no key to push", "tried", tried)
	return nil, &NoKeyError{Tried: tried}
}

// firstAgentKey returns the agent's first key that Instance Connect
// accepts, or nil and why there is none.
func firstAgentKey(ctx context.Context, socket string) (*Key, string) {
	ag, err := DialAgent(ctx, socket)
	if err != nil {
		return nil, err.Error()
	}
	defer ag.Close()
	keys, err := ag.Keys()
	if err != nil {
		return nil, err.Error()
	}
	if len(keys) == 0 {
		return nil, fmt.Sprintf("ssh-agent at %s (no keys)", socket)
	}
	var skipped []string
	for _, k := range keys {
		if err := Accepted(k.Public); err != nil {
			skipped = append(skipped, err.Error())
			continue
		}
		return k, ""
	}
	return nil, fmt.Sprintf("ssh-agent at %s (%s)", socket, strings.Join(skipped, ", "))
}

// ErrAgentDisabled reports that ssh_config sets IdentityAgent none for
// the host: ssh will not use an agent.
var ErrAgentDisabled = errors.New("ssh_config sets IdentityAgent none for this host: ssh uses no ssh-agent")

// ErrIdentitiesOnly reports that ssh_config sets IdentitiesOnly yes for the
// host: ssh offers only the keys of its IdentityFile entries, so a key that
// lives only in the agent is never offered.
var ErrIdentitiesOnly = errors.New("ssh_config sets IdentitiesOnly yes for this host: ssh offers only IdentityFile keys, not an ephemeral key in the agent")

// AgentKeysOffered reports whether ssh will offer c.Host keys that are in
// its agent only (an ephemeral key): an error says why not.
func (c Config) AgentKeysOffered() error {
	if strings.EqualFold(c.SSH.Get(c.Host, "IdentitiesOnly"), "yes") {
		return ErrIdentitiesOnly
	}
	return nil
}

// AgentSocketFor is the agent socket ssh will use for c.Host: ssh_config's
// IdentityAgent (none, SSH_AUTH_SOCK, $VAR or a path) or else
// c.AgentSocket. "" with a nil error means no agent is configured.
func (c Config) AgentSocketFor() (string, error) {
	v := c.SSH.Get(c.Host, "IdentityAgent")
	switch {
	case v == "":
		return c.AgentSocket, nil
	case strings.EqualFold(v, "none"):
		return "", ErrAgentDisabled
	case v == "SSH_AUTH_SOCK":
		return c.AgentSocket, nil
	case strings.HasPrefix(v, "$") && !strings.HasPrefix(v, "${"):
		return c.getenv(v[1:]), nil
	}
	return c.expand(v)
}

func (c Config) getenv(k string) string {
	if c.Getenv != nil {
		return c.Getenv(k)
	}
	return os.Getenv(k)
}

// expand expands what ssh expands in IdentityFile and IdentityAgent: a
// leading ~, ${VAR}, and the tokens %% %d %h %i %n %r %u. Other tokens
// (%C %L %l %p %j %k) are errors.
func (c Config) expand(s string) (string, error) {
	if s == "~" || strings.HasPrefix(s, "~/") {
		s = c.Home + s[1:]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '$' && i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ in %q", s)
			}
			b.WriteString(c.getenv(s[i+2 : i+end]))
			i += end
		case s[i] == '%' && i+1 < len(s):
			i++
			switch s[i] {
			case '%':
				b.WriteByte('%')
			case 'd':
				b.WriteString(c.Home)
			case 'h', 'n':
				b.WriteString(c.Host)
			case 'i':
				b.WriteString(strconv.Itoa(os.Getuid()))
			case 'r':
				b.WriteString(c.User)
			case 'u':
				b.WriteString(c.LocalUser)
			default:
				return "", fmt.Errorf("token %%%c is not supported here", s[i])
			}
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
