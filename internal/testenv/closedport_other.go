//go:build !unix

package testenv

import (
	"net"
	"testing"
)

// ClosedPort returns a loopback address nothing listens on. Here the port
// was only free a moment ago: the tests that need a port nobody can take
// run on Unix, where it stays bound until cleanup.
func ClosedPort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
