package testenv

// Tests of the test sshd's EC2 Instance Connect mode (instanceconnect.go):
// with no authorized_keys the client key gets in exactly while a local
// listing has it, unexpired, for this instance; the AuthorizedKeysCommand
// run as sshd runs it, with its user-name guard. The emulator's listing is
// internal/ssmtest/eic_test.go's; both with --push-key through ssh are
// e2e/pushkey_test.go's.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// keyListing serves an Instance Connect key listing for the test sshd's
// AuthorizedKeysCommand: whatever body is set, or 404 when it is empty.
// It records the queries it gets.
type keyListing struct {
	mu      sync.Mutex
	body    string
	queries []string
}

func (l *keyListing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.queries = append(l.queries, r.URL.RawQuery)
	body := l.body
	l.mu.Unlock()
	if body == "" {
		http.NotFound(w, r)
		return
	}
	fmt.Fprint(w, body)
}

func (l *keyListing) set(body string) {
	l.mu.Lock()
	l.body = body
	l.mu.Unlock()
}

func (l *keyListing) seen() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.queries...)
}

// block is one listing entry, as instance metadata lays it out.
func block(expiry time.Time, instance, key string) string {
	return fmt.Sprintf("#Timestamp=%d\n#Instance=%s\n#Caller=arn:aws:sts::123456789012:assumed-role/Test/test\n#Request=req-1\n%s\nc2lnbmF0dXJl\n\n",
		expiry.Unix(), instance, key)
}

// TestInstanceConnectSSHD: with InstanceConnect and no authorized_keys,
// the client key gets in exactly while the listing has it, unexpired, for
// this instance.
func TestInstanceConnectSSHD(t *testing.T) {
	listing := &keyListing{}
	srv := httptest.NewServer(listing)
	defer srv.Close()
	s := StartSSHDWith(t, SSHDOptions{
		NoAuthorizedKeys: true,
		InstanceConnect:  &InstanceConnect{KeysURL: srv.URL + "/keys", InstanceID: ExampleInstanceID},
	})
	c := s.Client(t, s.SocatProxyCommand(t))
	key := readPubKey(t, s.ClientKeyPath+".pub")
	if b, err := os.ReadFile(s.AuthorizedKeys); err != nil || len(b) != 0 {
		t.Fatalf("authorized_keys %q, %v: want it empty", b, err)
	}
	login := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := c.SSH(ctx, ExampleInstanceID, "echo in").CombinedOutput()
		if err == nil && string(out) != "in\n" {
			return fmt.Errorf("output %q", out)
		}
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}

	if err := login(); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("no key listed: login %v, want Permission denied", err)
	}
	listing.set(block(time.Now().Add(time.Minute), "i-0fffffffffffffff0", key))
	if err := login(); err == nil {
		t.Fatal("key listed for another instance let the client in")
	}
	listing.set(block(time.Now().Add(-time.Second), ExampleInstanceID, key))
	if err := login(); err == nil {
		t.Fatal("expired key let the client in")
	}
	listing.set(block(time.Now().Add(-time.Second), ExampleInstanceID, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOther000") +
		block(time.Now().Add(time.Minute), ExampleInstanceID, key))
	if err := login(); err != nil {
		t.Fatalf("key listed: %v\nsshd log:\n%s", err, s.Log())
	}
	queries := listing.seen()
	if len(queries) < 4 {
		t.Fatalf("the listing was queried %d times, want once per login at least: %q", len(queries), queries)
	}
	for _, q := range queries {
		if q != "instance="+ExampleInstanceID+"&user="+s.User {
			t.Errorf("query %q", q)
		}
	}
}

// TestInstanceConnectCommand runs the command as sshd would, on a listing
// with several blocks, and checks the user-name guard.
func TestInstanceConnectCommand(t *testing.T) {
	listing := &keyListing{}
	srv := httptest.NewServer(listing)
	defer srv.Close()
	ic := &InstanceConnect{KeysURL: srv.URL + "/keys", InstanceID: ExampleInstanceID}
	lines := ic.sshdConfig(t)
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "AuthorizedKeysCommand "+commandBase+"/eic-") || !strings.HasSuffix(lines[0], " %u") ||
		!strings.HasPrefix(lines[1], "AuthorizedKeysCommandUser ") {
		t.Fatalf("sshd_config lines %q", lines)
	}
	script := strings.Fields(lines[0])[1]
	runCmd := func(user string) (string, error) {
		cmd := exec.Command(script, user)
		cmd.Env = []string{} // sshd gives it none
		out, err := cmd.Output()
		return string(out), err
	}
	now := time.Now()
	listing.set(block(now.Add(time.Minute), ExampleInstanceID, "ssh-ed25519 AAAA1 a") +
		block(now.Add(-time.Minute), ExampleInstanceID, "ssh-ed25519 AAAA2 expired") +
		block(now.Add(time.Minute), "i-0fffffffffffffff0", "ssh-ed25519 AAAA3 other") +
		block(now.Add(time.Minute), ExampleInstanceID, "ssh-rsa AAAA4 b"))
	if out, err := runCmd("ec2-user"); err != nil || out != "ssh-ed25519 AAAA1 a\nssh-rsa AAAA4 b\n" {
		t.Errorf("keys %q, %v", out, err)
	}
	listing.set("")
	if out, err := runCmd("ec2-user"); err != nil || out != "" {
		t.Errorf("404: keys %q, %v; want none, exit 0", out, err)
	}
	if _, err := runCmd("../etc"); err == nil {
		t.Error("a user name with a slash was queried")
	}
	if q := listing.seen(); len(q) != 2 {
		t.Errorf("queries %q", q)
	}
	srv.Close()
	if out, err := runCmd("ec2-user"); err != nil || out != "" {
		t.Errorf("listing down: keys %q, %v; want none", out, err)
	}
}
