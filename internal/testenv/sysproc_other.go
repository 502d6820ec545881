//go:build unix && !linux

package testenv

import "syscall"

// sysProcAttr returns the SysProcAttr for long-running servers we start.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
