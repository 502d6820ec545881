#!/usr/bin/env bash
# Builds the release archives of ssm-proxy, reproducibly: the same source,
# Go toolchain and VERSION give byte-identical archives and SHA256SUMS.
#
#   bash scripts/release.sh [-o DIR] [VERSION]    # archives and SHA256SUMS in DIR (default dist)
#   bash scripts/release.sh --check [VERSION]     # build twice, the second time with an empty
#                                                 # build cache, and compare the SHA256SUMS
#
# VERSION defaults to `git describe --tags --always --dirty`. The binaries are
# static (CGO_ENABLED=0), built with -trimpath, without VCS stamping or a build
# id, and with -X main.Version=VERSION. Each archive holds one directory,
# ssm-proxy-VERSION-OS-ARCH/, with the binary, LICENSE and README.md: tar.gz for
# Linux and macOS, zip for Windows. Entries are sorted, owned by 0:0, with
# fixed modes and the time SOURCE_DATE_EPOCH (default: the last commit's).
#
# Environment: TARGETS (default "linux/amd64 linux/arm64 darwin/amd64
# darwin/arm64 windows/amd64 windows/arm64"), SOURCE_DATE_EPOCH.
# Needs go, GNU tar, gzip, zip and sha256sum.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "release.sh: $*" >&2; exit 1; }

out=dist
check=false
while [ $# -gt 0 ]; do
	case $1 in
	-o) [ $# -ge 2 ] || die "-o needs a directory"; out=$2; shift 2 ;;
	--check) check=true; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown flag $1 (see --help)" ;;
	*) break ;;
	esac
done
[ $# -le 1 ] || die "want at most one VERSION, got $*"
version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
case $version in
*[!A-Za-z0-9._+-]*) die "VERSION $version: only letters, digits and . _ + - please" ;;
esac
targets=${TARGETS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

for tool in go tar gzip zip sha256sum; do
	command -v "$tool" >/dev/null || die "$tool not found"
done
tar --version 2>/dev/null | grep -q 'GNU tar' || die "needs GNU tar (--sort=name, --mtime)"

if $check; then
	a=$(mktemp -d) b=$(mktemp -d) cache=$(mktemp -d)
	trap 'chmod -R u+w "$cache"; rm -rf "$a" "$b" "$cache"' EXIT
	SOURCE_DATE_EPOCH=$epoch bash "$0" -o "$a" "$version" >/dev/null
	GOCACHE=$cache SOURCE_DATE_EPOCH=$epoch bash "$0" -o "$b" "$version" >/dev/null
	if ! cmp -s "$a/SHA256SUMS" "$b/SHA256SUMS"; then
		diff "$a/SHA256SUMS" "$b/SHA256SUMS" >&2 || true
		die "two builds of $version differ"
	fi
	cat "$a/SHA256SUMS"
	echo "release.sh: two builds of $version (one from an empty build cache) are identical"
	exit 0
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export CGO_ENABLED=0 TZ=UTC LC_ALL=C
archives=()
for t in $targets; do
	os=${t%/*} arch=${t#*/}
	name=ssm-proxy-$version-$os-$arch
	dir=$work/$name
	mkdir -p "$dir"
	exe=ssm-proxy
	[ "$os" = windows ] && exe=ssm-proxy.exe
	GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false \
		-ldflags "-s -w -buildid= -X main.Version=$version" -o "$dir/$exe" .
	cp LICENSE README.md "$dir/"
	chmod 0755 "$dir" "$dir/$exe"
	chmod 0644 "$dir/LICENSE" "$dir/README.md"
	find "$dir" -exec touch -h -d "@$epoch" {} +
	if [ "$os" = "$(go env GOHOSTOS)" ] && [ "$arch" = "$(go env GOHOSTARCH)" ]; then
		got=$("$dir/$exe" --version)
		[ "$got" = "ssm-proxy $version" ] || die "$name reports \"$got\""
	fi
	if [ "$os" = windows ]; then
		rm -f "$out/$name.zip"
		(cd "$work" && find "$name" -type f | sort | zip -q -X -D "$out/$name.zip" -@)
		archives+=("$name.zip")
	else
		tar -C "$work" --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
			--format=ustar -cf - "$name" | gzip -9 -n >"$out/$name.tar.gz"
		archives+=("$name.tar.gz")
	fi
	echo "built $name"
done
(cd "$out" && sha256sum "${archives[@]}" >SHA256SUMS)
echo "wrote $out/SHA256SUMS"
