package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SharedPIDs returns the PIDs in the pid files of the shared processes
// (ssm-proxy --share) whose sockets are in dir. A pid file removed as its
// process exits is skipped.
func SharedPIDs(dir string) []int {
	files, _ := filepath.Glob(filepath.Join(dir, "*.sock.pid"))
	var pids []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// IsSharedProcess tells whether pid is a live shared process serving a
// socket in dir (`ssm-proxy __share DIR/s-….sock …`), not another process
// that took a stale pid file's PID: the check before signalling it.
func IsSharedProcess(pid int, dir string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(data), "\x00")
	return len(args) >= 3 && args[1] == "__share" && filepath.Dir(args[2]) == dir
}

// ProcessGone tells whether pid has exited: no such process, or a zombie
// (a shared process is not ours to reap: its parent, the ProxyCommand that
// started it, has exited).
func ProcessGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, after, _ := strings.Cut(string(data), ") ")
	return strings.HasPrefix(after, "Z") || strings.HasPrefix(after, "X")
}
