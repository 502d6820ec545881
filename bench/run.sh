#!/usr/bin/env bash
# Runs the benchmarks and writes BENCHMARKS.md (the generated section) and
# bench/throughput.svg:
#
#   1. the codec and session micro-benchmarks (./protocol, ./proxy), and
#   2. BenchmarkSideBySide: ssh through socat (the floor), ssm-proxy and,
#      when the interop module builds it, the official session-manager-
#      plugin, on the ssmtest emulator with a real sshd on loopback.
#
#   bash bench/run.sh            # full run, about 10 minutes
#   bash bench/run.sh --quick    # smaller sizes, fewer runs, about 2 minutes
#   bash bench/run.sh --no-official   # skip building the official client
#
# Timings only mean something on an otherwise idle machine; the report
# records the load average at the start. Needs ssh, sshd and socat
# (.ci/install-deps.sh installs them when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
official=true
for arg in "$@"; do
	case "$arg" in
	--quick) quick=true ;;
	--no-official) official=false ;;
	-h | --help)
		sed -n '2,15p' "$0"
		exit 0
		;;
	*)
		echo "bench/run.sh: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

if [ "$(id -u)" = 0 ] && [ -f .ci/install-deps.sh ]; then
	bash .ci/install-deps.sh
fi
export AWS_EC2_METADATA_DISABLED=true

micro=$(mktemp)
trap 'rm -f "$micro"' EXIT

if $quick; then
	micro_time=(-benchtime 1s -count 1)
	resume_time=(-benchtime 5x -count 1)
else
	micro_time=(-benchtime 2s -count 3)
	resume_time=(-benchtime 15x -count 1)
fi

echo "== micro-benchmarks: ./protocol"
go test ./protocol -run '^$' -bench . -benchmem "${micro_time[@]}" | tee -a "$micro"
echo "== micro-benchmarks: ./proxy"
go test ./proxy -run '^$' -bench 'Session' -benchmem "${micro_time[@]}" | tee -a "$micro"
go test ./proxy -run '^$' -bench 'Resume' "${resume_time[@]}" -timeout 20m | tee -a "$micro"

echo "== side by side"
args=(-out "$PWD/BENCHMARKS.md" -svg "$PWD/bench/throughput.svg" -micro "$micro" -official="$official")
if $quick; then
	args+=(-quick)
fi
go test ./bench -run '^$' -bench SideBySide -benchtime 1x -timeout 40m -v -args "${args[@]}"
echo "== wrote BENCHMARKS.md and bench/throughput.svg"
