package awscfg

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

// ErrNoTerminal reports that an MFA code is needed but the process has no
// controlling terminal to ask on (e.g. ssh started from a script, an IDE or
// a cron job). stdin and stdout are never used: they carry ssh's bytes.
var ErrNoTerminal = errors.New("an MFA code is needed but there is no terminal to ask for it")

// mfaCode is what STS accepts as a TOTP code.
var mfaCode = textutil.LazyRegexp(`^[0-9]{6}$`)

// maxAttempts bounds how often a malformed code is asked for again.
const maxAttempts = 3

// TerminalPrompt asks for the MFA code of serial on the controlling
// terminal: /dev/tty on Unix, CONIN$/CONOUT$ on Windows.
func TerminalPrompt(serial string) (string, error) {
	tty, err := openTTY()
	if err != nil {
		return "", fmt.Errorf("%w (%v)", ErrNoTerminal, err)
	}
	defer tty.Close()
	return Ask(tty, tty, serial)
}

// Ask writes the MFA prompt for serial to w and reads a six-digit code
// from r, asking again up to maxAttempts times for a malformed one.
func Ask(r io.Reader, w io.Writer, serial string) (string, error) {
	br := bufio.NewReader(r)
	for range maxAttempts {
		fmt.Fprintf(w, "ssm-proxy: MFA code for %s: ", serial)
		line, err := br.ReadString('\n')
		code := strings.TrimSpace(line)
		if mfaCode().MatchString(code) {
			return code, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("no MFA code entered")
			}
			return "", fmt.Errorf("read MFA code: %w", err)
		}
		fmt.Fprintln(w, "ssm-proxy: an MFA code is 6 digits")
	}
	return "", errors.New("read MFA code: no valid code entered")
}
