#!/usr/bin/env bash
# Runs a real ssh session through ssm-proxy against the built-in Session
# Manager emulator and a throw-away sshd on 127.0.0.1. No AWS account needed.
#
#   bash scripts/demo.sh ['remote command']
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
	bash .ci/install-deps.sh
fi
[ "$(id -u)" -ne 0 ] || mkdir -p /run/sshd

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

echo "demo: building ssm-proxy and the emulator" >&2
go build -o "$work/ssm-proxy" .
go build -o "$work/ssm-emulator" ./internal/ssmtest/cmd/ssm-emulator

# A private sshd on a free loopback port, accepting one generated key.
# A port nothing answers on (bash's /dev/tcp: no other tool needed).
port=
for _ in $(seq 100); do
	p=$((20000 + RANDOM % 40000))
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		port=$p
		break
	fi
done
[ -n "$port" ] || { echo "demo: no free port on 127.0.0.1" >&2; exit 1; }
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/user_key"
cp "$work/user_key.pub" "$work/authorized_keys"
cat >"$work/sshd_config" <<CFG
ListenAddress 127.0.0.1
Port $port
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
PasswordAuthentication no
LogLevel ERROR
CFG
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
pids+=($!)

# The emulator: SSM API + data channel + agent, routing sessions to our sshd.
"$work/ssm-emulator" -target-addr "127.0.0.1:$port" >"$work/emu.out" 2>"$work/emu.log" &
pids+=($!)
for _ in $(seq 100); do
	endpoint=$(sed -n 's/^endpoint //p' "$work/emu.out" | head -n1)
	[ -n "$endpoint" ] && break
	sleep 0.1
done
[ -n "${endpoint:-}" ] || { echo "demo: emulator did not start" >&2; cat "$work/emu.log" >&2; exit 1; }

echo "i-*,mi-* $(cut -d' ' -f1,2 "$work/host_key.pub")" >"$work/known_hosts"
cat >"$work/ssh_config" <<CFG
Host i-* mi-*
    ProxyCommand $work/ssm-proxy %h %p
    User $(id -un)
    IdentityFile $work/user_key
    IdentitiesOnly yes
    UserKnownHostsFile $work/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
CFG

export AWS_ACCESS_KEY_ID=AKIDEXAMPLE
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
export AWS_REGION=us-east-1 AWS_ENDPOINT_URL_SSM="$endpoint" AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN

cmd=${1:-'echo "hello from $(hostname) over Session Manager"; uname -sr'}
echo "demo: ssh -F ssh_config i-0123456789abcdef0 '$cmd'" >&2
ssh -F "$work/ssh_config" i-0123456789abcdef0 "$cmd"
echo "demo: ok" >&2
