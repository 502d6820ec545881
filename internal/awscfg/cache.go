package awscfg

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ssm-proxy/ssm-proxy/internal/fsutil"
)

// minValidity is how long cached credentials must still be valid to be
// used: enough for a StartSession and the websocket upgrade, and to not
// hand out credentials that expire while the SDK signs with them.
const minValidity = 5 * time.Minute

// cacheSource is aws.Credentials.Source for credentials read from disk.
const cacheSource = "ssm-proxy disk cache"

// diskCache keeps assumed-role credentials in a file, readable by the
// owner only, so that each ssh connection (a new ssm-proxy process) reuses
// them until shortly before they expire instead of calling STS and asking
// for an MFA code again. Processes that miss the cache at once queue on a
// lock file, so a burst of connections (ansible forks, scp -r) prompts
// once.
type diskCache struct {
	inner aws.CredentialsProvider
	path  string
	log   *slog.Logger
}

var _ aws.CredentialsProvider = (*diskCache)(nil)

// Invalidate forgets the in-memory credentials of the provider it caches;
// the file stays, and is used again while it is valid.
func (d *diskCache) Invalidate() {
	if i, ok := d.inner.(invalidator); ok {
		i.Invalidate()
	}
}

// cachedCredentials is the file format.
type cachedCredentials struct {
	AccessKeyID     string    `json:"AccessKeyId"`
	SecretAccessKey string    `json:"SecretAccessKey"`
	SessionToken    string    `json:"SessionToken"`
	Expiration      time.Time `json:"Expiration"`
}

func (d *diskCache) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if c, ok := d.load(); ok {
		return c, nil
	}
	if err := os.MkdirAll(filepath.Dir(d.path), 0o700); err != nil {
		d.log.Debug("credential cache unavailable", "err", err)
		return d.inner.Retrieve(ctx)
	}
	unlock, err := lockFile(ctx, d.path+".lock")
	if err != nil {
		return aws.Credentials{}, err
	}
	defer unlock()
	if c, ok := d.load(); ok { // another process filled it while we waited
		return c, nil
	}
	c, err := d.inner.Retrieve(ctx)
	if err != nil {
		return c, err
	}
	if c.CanExpire {
		if err := d.store(c); err != nil {
			d.log.Warn("could not cache the assumed-role credentials", "path", d.path, "err", err)
		}
	}
	return c, nil
}

// load returns the cached credentials if they are valid for minValidity
// and the file is private to its owner.
func (d *diskCache) load() (aws.Credentials, bool) {
	f, err := os.Open(d.path)
	if err != nil {
		return aws.Credentials{}, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !private(fi) {
		d.log.Debug("ignoring credential cache file: not private", "path", d.path)
		return aws.Credentials{}, false
	}
	var cc cachedCredentials
	if err := json.NewDecoder(f).Decode(&cc); err != nil || cc.AccessKeyID == "" {
		return aws.Credentials{}, false
	}
	if time.Until(cc.Expiration) < minValidity {
		return aws.Credentials{}, false
	}
	d.log.Debug("using cached assumed-role credentials", "expires", cc.Expiration)
	return aws.Credentials{
		AccessKeyID:     cc.AccessKeyID,
		SecretAccessKey: cc.SecretAccessKey,
		SessionToken:    cc.SessionToken,
		Source:          cacheSource,
		CanExpire:       true,
		Expires:         cc.Expiration,
	}, true
}

// store writes c atomically with mode 0600 in a 0700 directory.
func (d *diskCache) store(c aws.Credentials) error {
	dir := filepath.Dir(d.path)
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(cachedCredentials{c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Expires.UTC()})
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(d.path, b, 0o600)
}

// private reports a regular file that neither group nor others can access.
// Windows has no such mode bits; the user profile directory is private.
func private(fi fs.FileInfo) bool {
	return fi.Mode().IsRegular() && (runtime.GOOS == "windows" || fi.Mode().Perm()&0o077 == 0)
}

// errLockTimeout reports a lock held for longer than lockWait.
var errLockTimeout = errors.New("timed out waiting for another ssm-proxy to obtain credentials")

// lockWait bounds the wait for another process's MFA prompt.
const lockWait = 5 * time.Minute

// lockFile takes the cache's lock (fsutil.Lock) within lockWait; a cache
// that cannot be opened or locked is used unlocked.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	unlock, err = fsutil.Lock(ctx, path, lockWait)
	switch {
	case errors.Is(err, fsutil.ErrLockTimeout):
		return nil, errLockTimeout
	case err != nil && ctx.Err() != nil:
		return nil, err
	case err != nil:
		return func() {}, nil // e.g. a read-only cache: go on unlocked
	}
	return unlock, nil
}
