package e2e

// Resume through real ssh and sshd: 8 MiB each way under each emulator fault
// and all at once, every resume moved to a new cell, each fault checked to
// fire; the service's idle timeout (exit 4) and ssh's ServerAliveInterval
// preventing it; an opt-in 64 MiB soak. The knobs in-process are
// proxy/session_test.go's, frame by frame proxy/gateway_test.go's;
// credentials at resume credentials_test.go's.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// fastDetect makes a black-holed websocket count as lost within seconds
// instead of the default 40 s.
var fastDetect = []string{"--ping-interval", "500ms", "--dead-peer-timeout", "2s"}

// roundTrip sends size random bytes up with `ssh host 'cat > f'` and reads
// them back with `ssh host 'cat f'`, comparing sha256 both ways.
func roundTrip(t *testing.T, h *harness, size int64) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	want := testenv.RandomFile(t, src, size, size)
	remote := filepath.Join(dir, "remote.bin")
	ctx := testCtx(t, 4*time.Minute)

	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	up := h.ssh(ctx, instance, "cat > "+remote)
	up.Stdin = f
	t0 := time.Now()
	run(t, up)
	tUp := time.Since(t0)
	if got := testenv.FileSHA256(t, remote); got != want {
		t.Fatalf("upload: sha256 %s, want %s", got, want)
	}

	back := filepath.Join(dir, "back.bin")
	out, err := os.Create(back)
	if err != nil {
		t.Fatal(err)
	}
	down := h.ssh(ctx, instance, "cat "+remote)
	down.Stdout = out
	t0 = time.Now()
	run(t, down)
	out.Close()
	if got := testenv.FileSHA256(t, back); got != want {
		t.Fatalf("download: sha256 %s, want %s", got, want)
	}
	t.Logf("%d MiB up %s, down %s", size>>20, tUp.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

// TestResumeUnderFaults carries 8 MiB each way through real ssh while the
// emulator breaks things, one knob at a time and all at once (§8), with the
// service moving every resumed session to a new cell (§15.1). Each case
// checks that its fault fired. proxy/session_test.go covers each knob
// in-process; this is the whole chain, ssh and sshd included.
func TestResumeUnderFaults(t *testing.T) {
	const size = 8 << 20
	cases := []struct {
		name string
		emu  ssmtest.Options
		// fired reports whether the knob did what it is for.
		fired func(st ssmtest.Stats) bool
	}{
		{"drops", ssmtest.Options{DropEveryBytes: 3 << 20}, func(st ssmtest.Stats) bool { return st.Drops > 0 }},
		{"bye", ssmtest.Options{ByeEvery: 250 * time.Millisecond}, func(st ssmtest.Stats) bool { return st.Byes > 0 }},
		{"ack loss", ssmtest.Options{AckLoss: 0.05}, func(st ssmtest.Stats) bool { return st.AcksLost > 0 && st.Retransmissions > 0 }},
		{"duplicates", ssmtest.Options{Duplicate: 0.05}, func(st ssmtest.Stats) bool { return st.FramesDuplicated > 0 && st.DuplicatesReceived > 0 }},
		{"reorder", ssmtest.Options{Reorder: 0.05}, func(st ssmtest.Stats) bool { return st.FramesReordered > 0 }},
		{"latency", ssmtest.Options{Latency: 30 * time.Millisecond}, func(st ssmtest.Stats) bool { return st.FramesDelayed > 0 }},
		{"pause", ssmtest.Options{PauseEvery: 300 * time.Millisecond, PauseFor: 100 * time.Millisecond}, func(st ssmtest.Stats) bool { return st.Pauses > 0 }},
		{"blackhole", ssmtest.Options{BlackholeEvery: 5 << 20}, func(st ssmtest.Stats) bool { return st.Blackholes > 0 }},
		// All at once, with the real agent's pacing: an unpaced agent at
		// loopback speed loses a whole latency's worth of frames per drop,
		// which the agent then resends one per 100 ms tick (§5.4). The
		// websocket is recycled every 1.5 s, each time into a new cell.
		// No black hole here: it and the drop are both thresholds of bytes
		// per websocket, so the lower always fires first and the other
		// never (it has its own case above).
		{"everything", ssmtest.Options{
			Pacing:         true,
			DropEveryBytes: 5 << 20, ByeEvery: 1500 * time.Millisecond,
			AckLoss: 0.05, Duplicate: 0.05, Reorder: 0.05, Latency: 20 * time.Millisecond,
			PauseEvery: 700 * time.Millisecond, PauseFor: 100 * time.Millisecond,
		}, func(st ssmtest.Stats) bool {
			return st.Drops > 0 && st.Byes > 1 && st.AcksLost > 0 && st.FramesDuplicated > 0 &&
				st.FramesReordered > 0 && st.FramesDelayed > 0 && st.Pauses > 0
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			if testing.Short() && c.name != "everything" {
				t.Skip("-short: only the case with every fault at once")
			}
			c.emu.Seed = 42
			c.emu.MoveCellOnResume = true
			h := newHarness(t, harnessOptions{emu: c.emu, proxyFlags: fastDetect})
			roundTrip(t, h, size)
			st := h.checkEnded(2)
			breaks := st.Byes + st.Drops + st.Blackholes
			t.Logf("byes %d drops %d blackholes %d resumes %d cell moves %d retransmissions %d acks lost %d duplicated %d reordered %d pauses %d",
				st.Byes, st.Drops, st.Blackholes, st.Resumes, st.CellMoves, st.Retransmissions, st.AcksLost, st.FramesDuplicated, st.FramesReordered, st.Pauses)
			if !c.fired(st) {
				t.Fatalf("the knob did not fire: the test proves nothing (%+v)", st)
			}
			// One resume per broken websocket, except a break that hit a
			// session just as it ended (at most one per connection), each
			// into the new cell and never back to an old one.
			if st.Resumes > breaks || st.Resumes < breaks-2 || st.Reconnects != st.Resumes {
				t.Errorf("resumes %d, reconnects %d; want one per broken websocket (%d)", st.Resumes, st.Reconnects, breaks)
			}
			if st.CellMoves != st.Resumes || st.StaleURLRefusals != 0 {
				t.Errorf("cell moves %d for %d resumes, %d upgrades of a left cell", st.CellMoves, st.Resumes, st.StaleURLRefusals)
			}
		})
	}
}

// TestIdleTimeout: without keep-alives the service ends an idle session
// with its real text (§8.3) and ssm-proxy says so and exits 4; with ssh's
// ServerAliveInterval the same idle period passes.
func TestIdleTimeout(t *testing.T) {
	emu := ssmtest.Options{IdleTimeout: 1500 * time.Millisecond}
	t.Run("times_out", func(t *testing.T) {
		h := newHarness(t, harnessOptions{emu: emu})
		c := h.ssh(testCtx(t, time.Minute), instance, "sleep 4; echo done")
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		var ee *exec.ExitError
		if err == nil || !errors.As(err, &ee) {
			t.Fatalf("ssh succeeded (%v); the idle timeout did not fire", err)
		}
		if strings.Contains(stdout.String(), "done") {
			t.Fatalf("command finished despite the idle timeout")
		}
		if !strings.Contains(stderr.String(), "timed out due to inactivity") || !strings.Contains(stderr.String(), "ServerAliveInterval") {
			t.Errorf("stderr does not explain the idle timeout:\n%s", stderr.String())
		}
		if st := h.checkEnded(1); st.Endings[ssmtest.EndIdleTimeout] != 1 {
			t.Errorf("endings %v", st.Endings)
		}
	})
	t.Run("server_alive_interval", func(t *testing.T) {
		h := newHarness(t, harnessOptions{emu: emu, sshExtra: []string{"ServerAliveInterval 1"}})
		if out := run(t, h.ssh(testCtx(t, time.Minute), instance, "sleep 4; echo done")); out != "done\n" {
			t.Fatalf("stdout %q", out)
		}
		if st := h.checkEnded(1); st.Endings[ssmtest.EndIdleTimeout] != 0 {
			t.Errorf("idle timeout fired despite ServerAliveInterval: %v", st.Endings)
		}
	})
}

// TestLongResume is the opt-in long run the README names: 64 MiB each way
// with a broken websocket every 1 MiB. SSM_PROXY_LONG=1 enables it.
func TestLongResume(t *testing.T) {
	if os.Getenv("SSM_PROXY_LONG") == "" {
		t.Skip("set SSM_PROXY_LONG=1 to run the 64 MiB resume soak")
	}
	h := newHarness(t, harnessOptions{emu: ssmtest.Options{DropEveryBytes: 1 << 20, Seed: 7}, proxyFlags: fastDetect})
	roundTrip(t, h, 64<<20)
	st := h.checkEnded(2)
	if st.Drops < 100 || st.Resumes != st.Drops {
		t.Errorf("drops %d resumes %d", st.Drops, st.Resumes)
	}
}
