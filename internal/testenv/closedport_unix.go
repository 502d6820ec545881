//go:build unix

package testenv

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// ClosedPort returns a loopback address nothing listens on, for as long as
// the test runs. A listener closed at once would hand its port back to the
// kernel, which may give it to the next listener on port 0 (a forwarder the
// test starts, say) or, as a dial's source port, connect a dial to it to
// itself. So the port stays bound, without listen(2), until cleanup: the
// kernel refuses connections to it and gives it to nobody else.
func ClosedPort(tb testing.TB) string {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("testenv: ClosedPort: socket: %v", err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatalf("testenv: ClosedPort: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatalf("testenv: ClosedPort: getsockname: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
