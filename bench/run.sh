#!/usr/bin/env bash
# Runs the benchmarks and writes their sections of BENCHMARKS.md (and
# bench/throughput.svg):
#
#   1. the codec and session micro-benchmarks (./protocol, ./proxy), and
#      BenchmarkSideBySide: ssh through socat (the floor), ssm-proxy and,
#      when the interop module builds it, the official session-manager-
#      plugin, on the ssmtest emulator with a real sshd on loopback;
#   2. BenchmarkWAN: `ssh host true` through latency links with TLS at 20,
#      100 and 250 ms RTT, phases and round trips per path;
#   3. BenchmarkForward: ssm-proxy forward vs ssh -L vs the official
#      plugin's port forwarding;
#   4. BenchmarkFleet: 50 sessions at once against a throttling emulator,
#      and the memory of an idle session;
#   5. BenchmarkAnsible: a playbook over 10 hosts, with and without
#      ControlPersist (Debian's ansible-core; installed here when run as
#      root and missing, else skipped with a note).
#
#   bash bench/run.sh                  # everything, about 30 minutes
#   bash bench/run.sh --quick          # smaller and fewer: about 5 minutes, indicative only
#   bash bench/run.sh --no-official    # without building the official client
#   bash bench/run.sh --wan-only       # only 2 (also --loopback-only, --forward-only,
#                                      #   --fleet-only, --ansible-only; they combine)
#   bash bench/run.sh --wan-only --rtts 100ms --wan-runs 21  # one RTT, more runs
#
# Each benchmark rewrites only its own section (between its markers), so a
# partial run keeps the others. Timings only mean something on an
# otherwise idle machine; every section records the load average. Needs
# ssh, sshd and socat (.ci/install-deps.sh installs them when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
official=true
only=()
extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=true ;;
	--no-official) official=false ;;
	--loopback-only) only+=(loopback) ;;
	--wan-only) only+=(wan) ;;
	--forward-only) only+=(forward) ;;
	--fleet-only) only+=(fleet) ;;
	--ansible-only) only+=(ansible) ;;
	--rtts | --wan-runs | --fleet | --fleet-rate | --fleet-burst)
		[ $# -ge 2 ] || {
			echo "bench/run.sh: $1 needs a value" >&2
			exit 2
		}
		extra+=("-${1#--}" "$2")
		shift
		;;
	-h | --help)
		sed -n '2,31p' "$0"
		exit 0
		;;
	*)
		echo "bench/run.sh: unknown argument $1" >&2
		exit 2
		;;
	esac
	shift
done
[ ${#only[@]} -gt 0 ] || only=(loopback wan forward fleet ansible)
want() {
	local x
	for x in "${only[@]}"; do
		[ "$x" = "$1" ] && return 0
	done
	return 1
}

if [ "$(id -u)" = 0 ] && [ -f .ci/install-deps.sh ]; then
	bash .ci/install-deps.sh
fi
if want ansible && ! command -v ansible-playbook >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		echo "== installing ansible-core (Debian package) for the Ansible benchmark"
		if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ansible-core; then
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ansible-core ||
				echo "bench/run.sh: note: ansible-core could not be installed; the Ansible section will say so" >&2
		fi
	else
		echo "bench/run.sh: note: ansible-playbook is missing and this is not root; the Ansible section will say so" >&2
	fi
fi
export AWS_EC2_METADATA_DISABLED=true

micro=$(mktemp)
tools=$(mktemp -d)
trap 'rm -rf "$micro" "$tools"' EXIT

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . ':!BENCHMARKS.md' ':!bench/throughput.svg' 2>/dev/null || rev="$rev with local changes"
common=(-out "$PWD/BENCHMARKS.md" -tools "$tools" -official="$official" -rev "$rev")
if $quick; then
	common+=(-quick)
fi
bench() { # bench NAME: run BenchmarkNAME once with the common flags
	echo "== $1"
	go test ./bench -run '^$' -bench "^Benchmark$1\$" -benchtime 1x -timeout 60m -v -args "${common[@]}" "${extra[@]}"
}

start=$(date +%s)
if want loopback; then
	if $quick; then
		micro_time=(-benchtime 1s -count 1)
		resume_time=(-benchtime 5x -count 1)
	else
		micro_time=(-benchtime 2s -count 3)
		resume_time=(-benchtime 15x -count 1)
	fi
	micro() { # micro NAME ARGS...: a go test -bench run whose lines go into the report
		local name=$1
		shift
		echo "== micro-benchmarks: $name"
		if ! go test "$@" | tee -a "$micro"; then
			echo "bench/run.sh: note: the $name micro-benchmarks failed (above); the report lacks their lines" >&2
		fi
	}
	micro ./protocol ./protocol -run '^$' -bench . -benchmem "${micro_time[@]}"
	micro "./proxy Session" ./proxy -run '^$' -bench 'Session' -benchmem "${micro_time[@]}"
	micro "./proxy Resume" ./proxy -run '^$' -bench 'Resume' "${resume_time[@]}" -timeout 20m
	common_sbs=("${common[@]}" -svg "$PWD/bench/throughput.svg" -micro "$micro")
	echo "== side by side"
	go test ./bench -run '^$' -bench '^BenchmarkSideBySide$' -benchtime 1x -timeout 40m -v -args "${common_sbs[@]}"
fi
want wan && bench WAN
want forward && bench Forward
want fleet && bench Fleet
want ansible && bench Ansible
echo "== wrote BENCHMARKS.md (and bench/throughput.svg with the loopback run) in $(($(date +%s) - start)) s"
