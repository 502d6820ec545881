//go:build linux

package testenv

import "syscall"

// sysProcAttr returns the SysProcAttr for long-running servers we start.
// Pdeathsig makes sure sshd/postgres do not outlive a test binary that is
// killed (e.g. by go test -timeout) before its Cleanup functions run. Go sets
// the parent-death signal after switching credentials, so it survives cred.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
}
