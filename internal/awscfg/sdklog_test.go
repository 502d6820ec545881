package awscfg

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestSDKLogsGoThroughOurs: a line the SDK logs itself — IMDS answering
// the token request with 404, so that the SDK falls back to IMDSv1 and
// warns — reaches our logger (debug, "aws sdk:"), not the SDK's default
// logger on stderr, which is ssh's terminal.
func TestSDKLogsGoThroughOurs(t *testing.T) {
	isolate(t, "")
	var tokenAsked atomic.Bool
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
			tokenAsked.Store(true)
		}
		http.NotFound(w, r)
	}))
	defer imds.Close()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	t.Setenv("AWS_REGION", "us-east-1")

	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, _, err := Load(testCtx(t), Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Credentials.Retrieve(testCtx(t)); err == nil {
		t.Fatal("credentials from an IMDS that answers 404 to everything")
	}
	if !tokenAsked.Load() {
		t.Fatal("the SDK never asked the IMDS stand-in for a token: the fault did not fire")
	}
	if !strings.Contains(buf.String(), "aws sdk: falling back to IMDSv1") {
		t.Errorf("the SDK's IMDSv1 warning did not reach our logger; it logged:\n%s", buf.String())
	}
}
