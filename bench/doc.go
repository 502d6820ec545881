// Package bench holds the side-by-side benchmark of ssm-proxy: in one run,
// on the ssmtest emulator with a real sshd on loopback, it measures ssh
// through ssm-proxy, through a plain `ProxyCommand socat` (the floor: no
// SSM at all) and, when the interop module builds it, through the official
// session-manager-plugin, and writes the figures to BENCHMARKS.md with a
// plot.
//
// Everything lives in the benchmark BenchmarkSideBySide
// (sidebyside_test.go), so that `go test ./...` never runs it. The one
// command is
//
//	bash bench/run.sh           # full run, about 10 minutes
//	bash bench/run.sh --quick   # smaller sizes, fewer runs, about 2 minutes
//
// which also runs the codec and session micro-benchmarks of ./protocol and
// ./proxy and includes them in the report. cmd/rusage-exec wraps each
// ProxyCommand to read the proxy's CPU time and peak RSS from wait4;
// internal/nullclient is the least a client can do, run in-process and as
// a ProxyCommand (cmd/nullproxy) for the emulator's limits and the pacing
// ceiling.
package bench
