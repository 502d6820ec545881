package e2e

// Each documented exit status of the built binary (0 to 4, 129, 143), run
// without ssh from the situation that produces it, with only session bytes
// on stdout and no session left open; 5 is network_test.go's
// (TestSSMMessagesEndpoint). The error and hint behind each status are the
// root package's tests through run (main_test.go, targets_test.go).

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

// TestExitCodes: each documented exit status of the binary, from the
// situation that produces it (5 is TestSSMMessagesEndpoint's). stdout
// carries nothing but session bytes in every case.
func TestExitCodes(t *testing.T) {
	cases := []struct {
		name   string
		emu    ssmtest.Options
		args   []string
		signal syscall.Signal // sent once the session is up
		code   int
		stderr string
	}{
		{"0 session ended", ssmtest.Options{TargetAddr: bannerTarget(t)}, []string{instance, "22"}, 0, 0, ""},
		{"1 error", ssmtest.Options{}, []string{"web-9", "22"}, 0, 1, `ssm-proxy: error: no managed node is named "web-9"`},
		{"2 usage", ssmtest.Options{}, []string{instance, "ssh"}, 0, 2, `ssm-proxy: error: invalid PORT "ssh"`},
		{"3 remote error", ssmtest.Options{TargetAddr: "127.0.0.1:1"}, []string{instance, "22"}, 0, 3, "Unable to connect to specified port"},
		{"4 idle timeout", ssmtest.Options{TargetAddr: holdTarget(t), IdleTimeout: 500 * time.Millisecond}, []string{instance, "22"}, 0, 4, "inactivity"},
		{"129 SIGHUP", ssmtest.Options{TargetAddr: holdTarget(t)}, []string{instance, "22"}, syscall.SIGHUP, 129, ""},
		{"143 SIGTERM", ssmtest.Options{TargetAddr: holdTarget(t)}, []string{instance, "22"}, syscall.SIGTERM, 143, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu, err := ssmtest.Start(c.emu)
			if err != nil {
				t.Fatal(err)
			}
			defer emu.Close()
			cmd := exec.CommandContext(testCtx(t, time.Minute), proxyBin, c.args...)
			cmd.Env = noProxyEnv(t, emu.Endpoint())
			var stdout, stderr syncBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			stdin, _ := cmd.StdinPipe() // open, as ssh keeps it
			defer stdin.Close()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if c.signal != 0 {
				deadline := time.Now().Add(20 * time.Second)
				for !strings.Contains(stdout.String(), "SSH-2.0-") {
					if time.Now().After(deadline) {
						t.Fatalf("session not up; stderr:\n%s", stderr.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
				cmd.Process.Signal(c.signal) // our child, by its PID
			}
			err = cmd.Wait()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			if out := stdout.String(); out != "" && out != "SSH-2.0-e2e\r\n" {
				t.Errorf("stdout %q", out)
			}
			if c.stderr != "" && !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, stderr.String())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := emu.WaitIdle(ctx); err != nil {
				t.Errorf("session left open: %v", err)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer that one goroutine writes (exec's copier)
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
