package sessionlog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/fsutil"
)

// Identities caches caller identity ARNs by access key id, each until the
// credentials it was asked for expire, so that a session log line does not
// cost an STS call per session. An empty ARN is a cached failure. Keys are
// stored hashed; the file is owner-only. Concurrent writers may lose an
// entry (last rename wins), never corrupt the file.
type Identities struct {
	Path string
	Now  func() time.Time // nil: time.Now
}

type identityEntry struct {
	ARN   string    `json:"arn"`
	Until time.Time `json:"until"`
}

func (c *Identities) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func identityKey(accessKeyID string) string {
	sum := sha256.Sum256([]byte(accessKeyID))
	return hex.EncodeToString(sum[:12])
}

func (c *Identities) load() map[string]identityEntry {
	m := map[string]identityEntry{}
	if data, err := os.ReadFile(c.Path); err == nil {
		json.Unmarshal(data, &m)
	}
	return m
}

// Get returns the cached ARN for accessKeyID and whether there is an
// unexpired answer ("" for a cached failure).
func (c *Identities) Get(accessKeyID string) (arn string, ok bool) {
	e, ok := c.load()[identityKey(accessKeyID)]
	if !ok || !c.now().Before(e.Until) {
		return "", false
	}
	return e.ARN, true
}

// Put caches arn for accessKeyID until the given time, dropping expired
// entries.
func (c *Identities) Put(accessKeyID, arn string, until time.Time) error {
	m := c.load()
	now := c.now()
	for k, e := range m {
		if !now.Before(e.Until) {
			delete(m, k)
		}
	}
	m[identityKey(accessKeyID)] = identityEntry{ARN: arn, Until: until.UTC()}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(c.Path, data, 0o600)
}
