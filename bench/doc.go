// Package bench holds the benchmarks of ssm-proxy against the floor (no
// SSM at all) and the official session-manager-plugin, run by
//
//	bash bench/run.sh           # everything, about 30 minutes
//	bash bench/run.sh --quick   # smaller and fewer, about 5 minutes
//	bash bench/run.sh --wan-only  # one part (see run.sh --help)
//
// which writes BENCHMARKS.md, one marked section per benchmark, each
// rewritten alone. Everything is a benchmark run once (-benchtime 1x), so
// that `go test ./...` never runs any of it:
//
//   - BenchmarkSideBySide (sidebyside_test.go, report_test.go): on
//     loopback, ssh through socat, ssm-proxy, the official client and the
//     null client: set-up, throughput, CPU, RSS; with the codec and
//     session micro-benchmarks of ./protocol and ./proxy and a plot.
//   - BenchmarkWAN (wan_test.go): `ssh host true` through latency links
//     (internal/wan) with TLS at 20, 100 and 250 ms RTT, cut into phases
//     and round trips from the links' logs; Name tags against ids.
//   - BenchmarkForward (forward_test.go): ssm-proxy forward, ssh -L
//     through ssm-proxy and the official plugin's port forwarding.
//   - BenchmarkFleet (fleet_test.go): 50 sessions at once against an
//     emulator that throttles StartSession; the RSS of an idle session.
//   - BenchmarkAnsible (ansible_test.go): a playbook by Debian's
//     ansible-core over 10 hosts, with and without ControlPersist.
//
// cmd/rusage-exec wraps each ProxyCommand to read the proxy's CPU time and
// peak RSS from wait4; internal/nullclient is the least a client can do,
// run in-process and as a ProxyCommand (cmd/nullproxy) for the emulator's
// limits and the pacing ceiling; internal/wan is the latency link.
package bench
