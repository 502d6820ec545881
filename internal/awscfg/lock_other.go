//go:build !unix

package awscfg

import "os"

// tryLock does not lock where flock is unavailable: concurrent processes
// may then each ask for an MFA code once.
func tryLock(*os.File) (bool, error) { return true, nil }
