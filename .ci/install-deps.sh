#!/usr/bin/env bash
# Installs the system packages the end-to-end tests need (see internal/testenv):
# a real OpenSSH server and client, rsync, socat, PostgreSQL and curl (the
# test sshd's AuthorizedKeysCommand fetches EC2 Instance Connect keys), and zip
# for the Windows release archives.
#
# Usage (as root on Debian 12 / bookworm):  .ci/install-deps.sh [--force]
# apt is skipped when every required binary is already present, unless --force.
# Package installation never starts system services (no sshd on :22, no
# PostgreSQL "main" cluster on :5432); the tests start their own on 127.0.0.1.
set -euo pipefail

PKGS=(openssh-server openssh-client rsync socat postgresql curl zip)

force=0
case "${1:-}" in
--force) force=1 ;;
"") ;;
*)
	echo "usage: $0 [--force]" >&2
	exit 2
	;;
esac

missing=()
check() {
	# check <binary> [<binary>...]: record binaries that are not installed.
	local b
	for b in "$@"; do
		if [[ $b == /* ]]; then
			[[ -x $b ]] || missing+=("$b")
		else
			command -v "$b" >/dev/null 2>&1 || missing+=("$b")
		fi
	done
}
check_all() {
	missing=()
	check /usr/sbin/sshd ssh scp ssh-keygen ssh-agent rsync socat psql curl zip
	# Debian keeps the server binaries off $PATH.
	if ! command -v initdb >/dev/null 2>&1 &&
		! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
		missing+=(initdb)
	fi
	if ! command -v postgres >/dev/null 2>&1 &&
		! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
		missing+=(postgres)
	fi
}

check_all
if ((${#missing[@]} == 0 && force == 0)); then
	echo "install-deps: all test dependencies present, skipping apt"
else
	if ((${#missing[@]})); then
		echo "install-deps: missing: ${missing[*]}"
	fi
	if [[ $(id -u) -ne 0 ]]; then
		echo "install-deps: must run as root to install: ${PKGS[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive

	# Do not start services from maintainer scripts (containers have no
	# init; on VMs we do not want sshd/postgres listening on public ports).
	# Respect an existing policy-rc.d (Docker images ship one).
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	# Do not let the postgresql package create (and start) a "main" cluster.
	mkdir -p /etc/postgresql-common/createcluster.d
	if [[ ! -e /etc/postgresql-common/createcluster.d/50-testenv-no-main.conf ]]; then
		echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/50-testenv-no-main.conf
	fi

	apt-get -o Acquire::Retries=3 update -qq
	apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${PKGS[@]}"

	check_all
	if ((${#missing[@]})); then
		echo "install-deps: still missing after apt-get install: ${missing[*]}" >&2
		exit 1
	fi
fi

if [[ $(id -u) -eq 0 ]]; then
	# sshd's privilege separation directory (normally made by its init script).
	mkdir -p /run/sshd
	chmod 755 /run/sshd

	# With UsePAM no (as the tests configure sshd), OpenSSH refuses even
	# public-key logins to accounts whose password field starts with "!".
	if [[ $(getent shadow root | cut -d: -f2) == '!'* ]]; then
		echo "install-deps: WARNING: root's password is locked ('!' in /etc/shadow);" \
			"sshd with UsePAM no will refuse root logins. Fix: usermod -p '*' root" >&2
	fi
fi

echo "install-deps: ok"
