package interop

// The official plugin held in this module (2026-04, before 1.2.835.0)
// against an emulator that moves resumed sessions to another cell, as the
// service may (protocol.md §15.1): the plugin ignores the StreamUrl that
// ResumeSession returns and redials the one it started with, which the
// emulator then refuses, as the service's old cell no longer knows the
// session. Without cell moves the same plugin resumes through every Bye.
// This is the proof that the emulator fails an out-of-date client where
// the service would. ssm-proxy following the moves is proxy/'s
// (gateway_test.go, session_test.go) and e2e/resume_test.go's; the
// emulator's side internal/ssmtest/gateway_test.go's.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

// byeEvery is how long each websocket lives before the emulator closes it
// with 1000 "Bye". Each round of the test (echo a line, wait for the Bye
// and the resume) must fit well inside it, because the plugin dies if it
// sends while its websocket is down (protocol.md §5.4).
const byeEvery = 2 * time.Second

// byeRounds is how many Byes the plugin must survive without cell moves.
const byeRounds = 3

// catSession is `ssh host cat` through the official plugin, driven line by
// line.
type catSession struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // ssh's stdout, a line at a time; closed at EOF
	done  chan error  // ssh's exit
}

func startCat(t *testing.T, h *pluginHarness, ctx context.Context) *catSession {
	t.Helper()
	cmd := h.ssh(ctx, e2eTarget, "cat")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &catSession{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan error, 1)}
	go func() {
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(c.lines)
				c.done <- cmd.Wait()
				if stderr.Len() > 0 {
					t.Logf("ssh stderr:\n%s", stderr.String())
				}
				return
			}
			c.lines <- line
		}
	}()
	return c
}

// echo writes line and reports whether cat sent it back within d.
func (c *catSession) echo(line string, d time.Duration) bool {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		c.t.Logf("write %q: %v", line, err)
		return false
	}
	select {
	case got, ok := <-c.lines:
		if !ok {
			return false
		}
		if got != line+"\n" {
			c.t.Fatalf("cat sent %q, want %q", got, line+"\n")
		}
		return true
	case <-time.After(d):
		return false
	}
}

// wait waits up to d for ssh to exit and returns its error.
func (c *catSession) wait(d time.Duration) error {
	c.t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(d):
		c.t.Fatalf("ssh still running %s later", d)
	}
	return nil
}

// waitStats waits on the emulator's counters.
func waitStats(t *testing.T, emu *ssmtest.Server, d time.Duration, what string, cond func(ssmtest.Stats) bool) ssmtest.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	st, err := emu.WaitStats(ctx, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v (stats %+v)", what, err, st)
	}
	return st
}

// checkClientVersion: the plugin reports 1.3.0.0, which the emulator's
// default minimum (the documented 1.2.764.0) lets through.
func checkClientVersion(t *testing.T, st ssmtest.Stats) {
	t.Helper()
	if st.ClientVersions[PluginVersion] == 0 || len(st.ClientVersions) != 1 || st.ClientVersionRefusals != 0 {
		t.Errorf("client versions %v, %d refused; want only %s, accepted under the default minimum %s",
			st.ClientVersions, st.ClientVersionRefusals, PluginVersion, ssmtest.DefaultMinClientVersion)
	}
}

// TestOfficialPluginCellMoves runs the same script twice through the
// official plugin: `ssh host cat`, a line echoed, then for each Bye the
// emulator sends, wait for the plugin's resume and echo another line.
// Without cell moves it survives all byeRounds Byes and ends cleanly. With
// them its first resume redials the original StreamUrl, which the emulator
// refuses (StaleURLRefusals) on every retry; its next send fails, it
// exits, ssh fails, and the session it never terminated stays open.
func TestOfficialPluginCellMoves(t *testing.T) {
	t.Run("same cell", func(t *testing.T) {
		h := newPluginHarness(t, childMode, ssmtest.Options{ByeEvery: byeEvery})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := startCat(t, h, ctx)
		if !c.echo("line 0", 30*time.Second) {
			t.Fatal("no echo before any Bye")
		}
		for i := int64(1); i <= byeRounds; i++ {
			waitStats(t, h.emu, 10*byeEvery, fmt.Sprintf("Bye %d and the plugin's resume", i), func(st ssmtest.Stats) bool {
				return st.Byes >= i && st.Reconnects >= i
			})
			if !c.echo(fmt.Sprintf("line %d", i), byeEvery/2) {
				t.Fatalf("no echo after Bye %d", i)
			}
		}
		c.stdin.Close()
		if err := c.wait(30 * time.Second); err != nil {
			t.Fatalf("ssh: %v", err)
		}
		st := h.checkEnded("cat through Byes", 1)
		if st.Byes < byeRounds || st.Resumes < byeRounds || st.Reconnects < byeRounds || st.CellMoves != 0 || st.StaleURLRefusals != 0 {
			t.Errorf("byes %d resumes %d reconnects %d cell moves %d stale refusals %d; want ≥ %d, ≥ %[6]d, ≥ %[6]d, 0, 0",
				st.Byes, st.Resumes, st.Reconnects, st.CellMoves, st.StaleURLRefusals, byeRounds)
		}
		checkClientVersion(t, st)
	})

	t.Run("cell moves", func(t *testing.T) {
		h := newPluginHarness(t, childMode, ssmtest.Options{ByeEvery: byeEvery, MoveCellOnResume: true})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := startCat(t, h, ctx)
		if !c.echo("line 0", 30*time.Second) {
			t.Fatal("no echo before any Bye")
		}
		// The first Bye: the plugin resumes (the session moves) and dials
		// the URL of the cell the session has left.
		waitStats(t, h.emu, 10*byeEvery, "the plugin's redial of its first StreamUrl", func(st ssmtest.Stats) bool {
			return st.Byes >= 1 && st.StaleURLRefusals >= 1
		})
		if c.echo("line 1", 10*time.Second) {
			t.Fatal("the official plugin carried data after its session moved cells")
		}
		if err := c.wait(30 * time.Second); err == nil {
			t.Error("ssh exited 0 although its ProxyCommand lost the session")
		} else {
			t.Logf("ssh: %v (expected: the plugin lost its session)", err)
		}
		if alive := h.waitPluginsExited(10 * time.Second); len(alive) > 0 {
			t.Errorf("official plugin processes %v still running after their ssh exited", alive)
		}
		st := h.emu.Stats()
		t.Logf("byes %d resumes %d cell moves %d stale-URL refusals %d reconnects %d",
			st.Byes, st.Resumes, st.CellMoves, st.StaleURLRefusals, st.Reconnects)
		// Every resume the plugin made moved the session again, and every
		// redial of the original URL was refused; none reached the session.
		if st.Reconnects != 0 || st.CellMoves < 1 || st.CellMoves != st.Resumes || st.StaleURLRefusals < 1 || st.StaleURLRefusals > st.CellMoves {
			t.Errorf("stats %+v", st)
		}
		checkClientVersion(t, st)
		// The plugin never terminates a session: it is still there,
		// detached, as on AWS until its idle timeout.
		if st.Active != 1 {
			t.Fatalf("active sessions %d, want the abandoned one", st.Active)
		}
		ids := h.sessionIDs()
		if len(ids) != 1 {
			t.Fatalf("session ids from the shim: %q", ids)
		}
		if err := h.terminateSession(ctx, ids[0]); err != nil {
			t.Fatalf("TerminateSession: %v", err)
		}
		h.checkEnded("after TerminateSession", 1)
	})
}
