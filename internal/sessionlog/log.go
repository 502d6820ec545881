// Package sessionlog keeps ssm-proxy's local session log: one JSON line per
// session, in the user's state directory, owner-only, rotated by size.
//
// Session Manager records nothing for SSH and port sessions (only
// CloudTrail's StartSession and TerminateSession events), so this is the
// one place that says who reached which instance when, for how long, how
// many bytes each way and how it ended. A line never holds a token, a
// credential or session payload; error texts are scrubbed with
// textutil.Redact.
//
// Processes append concurrently (Ansible runs many ssh at once): each line
// is one write to a file opened with O_APPEND, under an advisory lock that
// also covers rotation.
package sessionlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/fsutil"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

// Entry is one session's line. The JSON field names are an interface:
// log shippers parse them.
type Entry struct {
	// Time is when the session started (StartSession returned).
	Time time.Time `json:"time"`
	// Duration is how long it lasted, in seconds.
	Duration float64 `json:"duration_s"`
	// IdentityARN is the caller identity, "" when it is not known.
	IdentityARN string `json:"identity_arn"`
	Profile     string `json:"profile,omitempty"`
	Region      string `json:"region"`
	// Target is TARGET as given; TargetID what it resolved to.
	Target    string `json:"target"`
	TargetID  string `json:"target_id"`
	SessionID string `json:"session_id"`
	Document  string `json:"document"`
	BytesUp   int64  `json:"bytes_up"`   // ssh → instance
	BytesDown int64  `json:"bytes_down"` // instance → ssh
	Resumes   int    `json:"resumes"`
	// Ended is how the session ended: closed, signal, idle_timeout,
	// remote_error, connection_lost or error.
	Ended    string `json:"ended"`
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
	// Version is ssm-proxy's.
	Version string `json:"version"`
}

// The defaults of Log.
const (
	DefaultMaxSize = 1 << 20
	DefaultKeep    = 3
)

// Log is a session log file. Its zero MaxSize and Keep mean the defaults.
type Log struct {
	Path string
	// MaxSize: a file that has reached it is rotated before the next
	// line: Path becomes Path.1, Path.1 Path.2, and so on.
	MaxSize int64
	// Keep is how many rotated files are kept.
	Keep int
}

// FileName is the log's name in the state directory.
const FileName = "sessions.jsonl"

// StateDir is ssm-proxy's directory for state that outlives a run:
// $XDG_STATE_HOME/ssm-proxy or ~/.local/state/ssm-proxy on Linux and other
// Unix systems, ~/Library/Logs/ssm-proxy on macOS, and
// %LocalAppData%\ssm-proxy\state on Windows.
func StateDir() (string, error) {
	switch runtime.GOOS {
	case "windows":
		dir, err := os.UserCacheDir() // %LocalAppData%
		if err != nil {
			return "", err
		}
		return filepath.Join(dir, "ssm-proxy", "state"), nil
	case "darwin", "ios":
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		return filepath.Join(home, "Library", "Logs", "ssm-proxy"), nil
	}
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "ssm-proxy"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "state", "ssm-proxy"), nil
}

// DefaultPath is the session log in StateDir.
func DefaultPath() (string, error) {
	dir, err := StateDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, FileName), nil
}

// Append adds e as one line, rotating the file first if it is full. The
// directory is created owner-only (0700) and the file is 0600.
func (l *Log) Append(e Entry) error {
	e.Error = textutil.Redact(textutil.OneLine(e.Error))
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o700); err != nil {
		return fmt.Errorf("session log: %w", err)
	}
	unlock, err := fsutil.Lock(context.Background(), l.Path+".lock", lockTimeout)
	if err != nil {
		return fmt.Errorf("session log: lock: %w", err)
	}
	defer unlock()
	if err := l.rotate(int64(len(line))); err != nil {
		return fmt.Errorf("session log: rotate: %w", err)
	}
	f, err := os.OpenFile(l.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("session log: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm() != 0o600 {
		f.Chmod(0o600) // an older or hand-made file: owner-only from now on
	}
	_, err = f.Write(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("session log: %w", err)
	}
	return nil
}

// rotate shifts the files when Path cannot take n more bytes.
func (l *Log) rotate(n int64) error {
	max, keep := l.MaxSize, l.Keep
	if max <= 0 {
		max = DefaultMaxSize
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	fi, err := os.Stat(l.Path)
	if errors.Is(err, os.ErrNotExist) || err == nil && (fi.Size() == 0 || fi.Size()+n <= max) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Remove(fmt.Sprintf("%s.%d", l.Path, keep)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for i := keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", l.Path, i), fmt.Sprintf("%s.%d", l.Path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return os.Rename(l.Path, l.Path+".1")
}

// lockTimeout bounds the wait for another process's lock: a line is not
// worth hanging the end of a session for.
const lockTimeout = 2 * time.Second
