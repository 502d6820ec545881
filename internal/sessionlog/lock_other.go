//go:build !unix

package sessionlog

// lock is a no-op where flock is missing: appends stay whole lines (one
// write each), and a rotation racing another process may lose that
// process's line.
func lock(string) (func(), error) { return func() {}, nil }
