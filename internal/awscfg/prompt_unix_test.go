//go:build unix

package awscfg

// TerminalPrompt in a process with no controlling terminal (a child in a new
// session, as under a script or an IDE): ErrNoTerminal, and stdin is not
// read. Reading the code from a real terminal is e2e/mfa_linux_test.go's;
// the input loop on given streams awscfg_test.go's (TestAsk).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestTerminalPromptWithoutTerminal runs TerminalPrompt in a new session,
// which has no controlling terminal, as when ssh is started by a script or
// an IDE: it must fail with ErrNoTerminal rather than read stdin.
func TestTerminalPromptWithoutTerminal(t *testing.T) {
	if os.Getenv("AWSCFG_TEST_NO_TTY") == "1" {
		code, err := TerminalPrompt("arn:aws:iam::123456789012:mfa/alice")
		if errors.Is(err, ErrNoTerminal) {
			fmt.Println("no terminal:", err)
			os.Exit(0)
		}
		fmt.Printf("got %q, %v\n", code, err)
		os.Exit(1)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTerminalPromptWithoutTerminal$")
	cmd.Env = append(os.Environ(), "AWSCFG_TEST_NO_TTY=1")
	cmd.Stdin = strings.NewReader("123456\n") // must not be read
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "no terminal") {
		t.Fatalf("%v:\n%s", err, out)
	}
}
