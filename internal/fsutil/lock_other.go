//go:build !unix

package fsutil

import "os"

// tryLock does not lock where flock is unavailable: callers run unlocked
// (concurrent ssm-proxy processes may then each ask for an MFA code once).
func tryLock(*os.File) (bool, error) { return true, nil }
