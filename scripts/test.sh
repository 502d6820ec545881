#!/usr/bin/env bash
# Runs every test: the main module (unit, emulator, end-to-end through real
# OpenSSH, scp, rsync and psql) and the interop module (the official
# session-manager-plugin against our emulator). Installs the Debian packages
# the tests need first when run as root on a machine that lacks them.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -short     # skip the slowest cases
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-deps.sh
export AWS_EC2_METADATA_DISABLED=true

go test -race -timeout 30m "$@" ./...
(cd interop && go test -race -timeout 20m "$@" ./...)
