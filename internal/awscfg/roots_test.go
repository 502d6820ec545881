package awscfg

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// TestWarmRoots: the system's roots are loaded ahead of the first handshake
// exactly when a handshake will verify against them — TLS to an endpoint
// and no CA bundle — and the load is really started then.
func TestWarmRoots(t *testing.T) {
	dir := isolate(t, "")
	t.Setenv("AWS_REGION", "us-east-1")
	cert, err := selfSigned("example.test")
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded := make(chan struct{}, 1)
	defer func(f func()) { loadSystemRoots = f }(loadSystemRoots)
	loadSystemRoots = func() { loaded <- struct{}{} }

	for _, c := range []struct {
		name      string
		caBundle  string
		endpoints []string
		want      bool
	}{
		{"default endpoints", "", []string{"", ""}, true},
		{"https API endpoint", "", []string{"https://ssm.example.test", "ws://127.0.0.1:1"}, true},
		{"wss messages endpoint", "", []string{"http://127.0.0.1:1", "wss://ssmmessages.us-east-1.amazonaws.com"}, true},
		{"plain http and ws", "", []string{"http://127.0.0.1:1", "ws://127.0.0.1:1"}, false},
		{"CA bundle", bundle, []string{"", "wss://ssmmessages.us-east-1.amazonaws.com"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("AWS_CA_BUNDLE", c.caBundle)
			cfg, _, err := Load(testCtx(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := WarmRoots(cfg, c.endpoints...); got != c.want {
				t.Fatalf("WarmRoots(%q) = %v, want %v", c.endpoints, got, c.want)
			}
			if c.want {
				<-loaded // the load was started; a missing one hangs until the test's deadline
			}
			select {
			case <-loaded:
				t.Fatal("the system's roots were loaded more than once, or without being asked")
			default:
			}
		})
	}
}
