package testenv

import (
	"fmt"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// InstanceConnect makes a test sshd take keys from an EC2 Instance Connect
// key listing, the way the ec2-instance-connect package makes sshd on an
// instance take them from instance metadata:
//
//	AuthorizedKeysCommand /run/ssm-proxy-testenv/eic-…/eic_authorized_keys %u
//	AuthorizedKeysCommandUser nobody
//
// The command fetches the listing for the instance and the user logging in
// with curl, keeps the blocks whose #Instance is this instance and whose
// #Timestamp (the expiry) is still ahead, and prints their keys, as
// eic_curl_authorized_keys and eic_parse_authorized_keys do on an instance,
// less the check of the service's signature. A listing that answers 404
// (no key) or not at all gives no keys.
type InstanceConnect struct {
	// KeysURL is the listing, which the command queries with
	// ?instance=ID&user=USER: ssmtest's Endpoint()+InstanceConnectKeysPath.
	KeysURL string
	// InstanceID is the instance this sshd plays.
	InstanceID string
}

// commandBase is where AuthorizedKeysCommand scripts are written. sshd
// runs the command only if it and every directory above it are owned by
// root and writable by nobody else, so not under /tmp.
const commandBase = "/run/ssm-proxy-testenv"

var instanceIDPattern = regexp.MustCompile(`^i-[0-9a-f]{8,32}$`)

// sshdConfig writes the AuthorizedKeysCommand and returns the sshd_config
// lines that use it.
func (ic *InstanceConnect) sshdConfig(tb testing.TB) []string {
	tb.Helper()
	u, err := url.Parse(ic.KeysURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || strings.ContainsAny(ic.KeysURL, `'"\$`+"`") {
		tb.Fatalf("testenv: InstanceConnect.KeysURL %q: want http://HOST:PORT/PATH", ic.KeysURL)
	}
	if !instanceIDPattern.MatchString(ic.InstanceID) {
		tb.Fatalf("testenv: InstanceConnect.InstanceID %q is not an instance id", ic.InstanceID)
	}
	if os.Geteuid() != 0 {
		tb.Fatalf("testenv: an sshd AuthorizedKeysCommand must be owned by root on a root-owned path; run the tests as root (%s)", installHint)
	}
	dir := commandDir(tb)
	script := filepath.Join(dir, "eic_authorized_keys")
	if err := os.WriteFile(script, []byte(ic.script(tb)), 0o755); err != nil {
		tb.Fatalf("testenv: write AuthorizedKeysCommand: %v", err)
	}
	if err := os.Chmod(script, 0o755); err != nil { // whatever the umask
		tb.Fatalf("testenv: %v", err)
	}
	return []string{
		"AuthorizedKeysCommand " + script + " %u",
		"AuthorizedKeysCommandUser " + commandUser(),
	}
}

// script is the AuthorizedKeysCommand, a POSIX shell script with absolute
// paths: sshd runs it with an empty environment.
func (ic *InstanceConnect) script(tb testing.TB) string {
	curl, awk, date := Bin(tb, "curl"), Bin(tb, "awk"), Bin(tb, "date")
	return fmt.Sprintf(`#!/bin/sh
# AuthorizedKeysCommand written by internal/testenv: prints the EC2 Instance
# Connect keys valid now for user $1 on %[1]s, as the ec2-instance-connect
# package does from instance metadata (signatures not checked).
case "$1" in
''|*[!A-Za-z0-9._-]*) exit 1 ;; # a user name that could change the URL
esac
keys=$(%[2]s -s -f -m 2 '%[3]s?instance=%[1]s&user='"$1") || exit 0
now=$(%[4]s +%%s)
printf '%%s\n' "$keys" | %[5]s -v instance='%[1]s' -v now="$now" '
/^#Timestamp=/ { ts = substr($0, 12) + 0; next }
/^#Instance=/ { id = substr($0, 11); next }
/^#/ { next }
/^$/ { ts = 0; id = ""; next }
{ if (id == instance && ts > now) print; ts = 0; id = "" }'
`, ic.InstanceID, curl, ic.KeysURL, date, awk)
}

// commandDir makes a fresh directory for one sshd's command under
// commandBase, removed when the test ends, after checking that sshd will
// accept the path.
func commandDir(tb testing.TB) string {
	tb.Helper()
	if err := os.MkdirAll(commandBase, 0o755); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	for p := commandBase; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			tb.Fatalf("testenv: %v", err)
		}
		if uid, ok := ownerUID(fi); !ok || uid != 0 || fi.Mode().Perm()&0o022 != 0 {
			tb.Fatalf("testenv: %s must be owned by root and writable by root only, for sshd to run an AuthorizedKeysCommand under it (mode %v)", p, fi.Mode())
		}
		if p == "/" {
			break
		}
	}
	dir, err := os.MkdirTemp(commandBase, "eic-")
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // so that commandUser can run it
		tb.Fatalf("testenv: %v", err)
	}
	return dir
}

// commandUser is who runs the command: nobody, as an unprivileged stand-in
// for the package's ec2-instance-connect user, else the current user.
func commandUser() string {
	if _, err := user.Lookup("nobody"); err == nil {
		return "nobody"
	}
	return CurrentUser()
}
