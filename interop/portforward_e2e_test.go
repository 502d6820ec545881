package interop

// The OFFICIAL session-manager-plugin in its port-forwarding mode against
// the emulator's multiplexed port plugin (internal/ssmtest/mux.go): the
// plugin is the smux client, the emulator's agent the smux server
// (protocol.md §7.4), so this is the independent check that the two sides
// speak the same smux. The test does what `aws ssm start-session
// --document-name AWS-StartPortForwardingSession --parameters
// portNumber=P,localPortNumber=0` does (§1.6): StartSession, then run the
// plugin with the CLI's argv, and reads the port it listens on from its
// stdout ("Port N opened for sessionId …"). ssm-proxy's own forward over
// the same agent is e2e/forward_test.go's; the agent's smux frame by frame
// internal/ssmtest/mux_test.go's.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// portOpened is the line the plugin prints once it listens (§7.4).
var portOpened = regexp.MustCompile(`Port (\d+) opened for sessionId (\S+)\.`)

// connectToPortFailed is what the plugin prints on ConnectToPortError (§4.3).
const connectToPortFailed = "Connection to destination port failed, check SSM Agent logs."

// forwarder is one official plugin process forwarding a local port through
// the emulator.
type forwarder struct {
	t      *testing.T
	cmd    *exec.Cmd
	port   string // where the plugin listens on localhost
	id     string // SessionId
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	exited chan struct{} // closed when the plugin has exited
	err    error         // its exit status, once exited
}

// startForwarder starts an AWS-StartPortForwardingSession session to
// portNumber on the emulator's first instance and runs the plugin on it as
// the AWS CLI would, waiting until it listens.
func startForwarder(t *testing.T, plugin string, emu *ssmtest.Server, portNumber string) *forwarder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := struct {
		Target       string
		DocumentName string
		Parameters   map[string][]string
	}{
		Target:       e2eTarget,
		DocumentName: "AWS-StartPortForwardingSession",
		Parameters:   map[string][]string{"portNumber": {portNumber}, "localPortNumber": {"0"}},
	}
	out, err := ssmtest.APIClient(emu.Endpoint()).StartSession(ctx, &ssm.StartSessionInput{
		Target: aws.String(req.Target), DocumentName: aws.String(req.DocumentName), Parameters: req.Parameters,
	})
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	resp, _ := json.Marshal(map[string]string{
		"SessionId": aws.ToString(out.SessionId), "TokenValue": aws.ToString(out.TokenValue), "StreamUrl": aws.ToString(out.StreamUrl),
	})
	params, _ := json.Marshal(req)

	// The plugin puts its mux socket in TMPDIR; keep the path short
	// (sun_path, §7.4).
	tmp, err := os.MkdirTemp("", "pf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	f := &forwarder{t: t, id: aws.ToString(out.SessionId), exited: make(chan struct{})}
	f.cmd = &exec.Cmd{
		Path:   plugin,
		Args:   []string{"session-manager-plugin", string(resp), ssmtest.DefaultRegion, "StartSession", "", string(params), emu.Endpoint()},
		Env:    append(ssmtest.ClientEnv(t, emu.Endpoint()), "HOME="+tmp, "TMPDIR="+tmp),
		Stderr: &lockedWriter{mu: &f.mu, w: &f.stderr},
	}
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			f.mu.Lock()
			f.stdout.WriteString(line + "\n")
			f.mu.Unlock()
			if m := portOpened.FindStringSubmatch(line); m != nil {
				select {
				case listening <- m[1]:
				default:
				}
			}
		}
		f.err = f.cmd.Wait()
		close(f.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-f.exited:
		default:
			t.Logf("killing the plugin (pid %d)", f.cmd.Process.Pid)
			f.cmd.Process.Kill()
			<-f.exited
		}
		if t.Failed() {
			t.Logf("plugin stdout:\n%s\nplugin stderr:\n%s", f.output(), f.errors())
			t.Logf("emulator stats %+v\nforwarding %+v", emu.Stats(), emu.ForwardingStats())
		}
	})
	select {
	case f.port = <-listening:
	case <-f.exited:
		t.Fatalf("plugin exited before listening: %v\nstdout:\n%s\nstderr:\n%s", f.err, f.output(), f.errors())
	case <-time.After(30 * time.Second):
		t.Fatalf("the plugin did not listen within 30 s\nstdout:\n%s", f.output())
	}
	return f
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (f *forwarder) output() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stdout.String()
}

func (f *forwarder) errors() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stderr.String()
}

// dial connects to the plugin's local port.
func (f *forwarder) dial() (net.Conn, error) {
	return net.DialTimeout("tcp", net.JoinHostPort("localhost", f.port), 10*time.Second)
}

// interrupt is Ctrl-C: the plugin sends Flag TerminateSession and exits 0
// (§7.3, §7.4).
func (f *forwarder) interrupt() {
	f.t.Helper()
	if err := f.cmd.Process.Signal(os.Interrupt); err != nil {
		f.t.Fatal(err)
	}
	select {
	case <-f.exited:
	case <-time.After(10 * time.Second):
		f.t.Fatal("the plugin did not exit on SIGINT")
	}
	if f.err != nil {
		f.t.Errorf("plugin exit: %v", f.err)
	}
}

// hashingEcho echoes every connection and reports the sha256 of what each
// connection received once it ends.
func hashingEcho(t *testing.T) (port string, sums <-chan [32]byte) {
	ch := make(chan [32]byte, 64)
	addr := testenv.ServeTCP(t, func(c net.Conn) {
		h := sha256.New()
		io.Copy(c, io.TeeReader(c, h))
		ch <- sum(h)
	})
	_, port, _ = net.SplitHostPort(addr)
	return port, ch
}

func sum(h hash.Hash) [32]byte {
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// echoConn writes data on c while reading the echo back, checks its sha256
// and closes c.
func echoConn(c net.Conn, data []byte) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		return errors.New("echo sha256 differs")
	}
	return nil
}

// waitForwarding waits until cond holds for the emulator's forwarding
// counters.
func waitForwarding(t *testing.T, emu *ssmtest.Server, what string, cond func(ssmtest.ForwardingStats) bool) ssmtest.ForwardingStats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := emu.ForwardingStats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOfficialPluginPortForwarding: 20 concurrent TCP connections through
// the official plugin's local port and the emulator's smux server to an
// echo server, sha256-checked both ways; then Ctrl-C ends the session with
// the TerminateSession flag.
func TestOfficialPluginPortForwarding(t *testing.T) {
	plugin, _ := buildOfficialTools(t)
	const conns, size = 20, 64 << 10
	cases := []struct {
		name string
		opts ssmtest.Options
	}{
		{"plain", ssmtest.Options{RequireSignedUpgrade: true}},
		{"paced", ssmtest.Options{RequireSignedUpgrade: true, Pacing: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			port, sums := hashingEcho(t)
			emu, err := ssmtest.Start(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { emu.Close() })
			f := startForwarder(t, plugin, emu, port)

			sent := make(map[[32]byte]bool)
			errs := make(chan error, conns)
			start := time.Now()
			for i := range conns {
				data := make([]byte, size)
				rand.New(rand.NewSource(int64(i + 1))).Read(data)
				sent[sha256.Sum256(data)] = true
				go func() {
					c, err := f.dial()
					if err != nil {
						errs <- err
						return
					}
					if err := echoConn(c, data); err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
						return
					}
					errs <- nil
				}()
			}
			for range conns {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			d := time.Since(start)
			if t.Failed() {
				t.FailNow()
			}
			for i := range conns {
				select {
				case s := <-sums:
					if !sent[s] {
						t.Errorf("the echo server received bytes no connection sent (connection %d)", i)
					}
					delete(sent, s)
				case <-time.After(30 * time.Second):
					t.Fatalf("%d of %d destination connections ended", i, conns)
				}
			}
			fs := waitForwarding(t, emu, "a FIN for every stream", func(st ssmtest.ForwardingStats) bool { return st.FINsSent == conns })
			t.Logf("%d connections × %d KiB echoed in %s; forwarding %+v", conns, size>>10, d.Round(time.Millisecond), fs)
			if fs.MuxSessions != 1 || fs.StreamsConnected != conns || fs.DialFailures != 0 ||
				fs.BytesUp != conns*size || fs.BytesDown != conns*size || fs.KeepAlivesReceived != 0 || fs.KeepAlivesSent != 0 {
				t.Errorf("forwarding stats %+v; want one mux session, %d streams, %d bytes each way, no keep-alive", fs, conns, conns*size)
			}
			if st := emu.Stats(); st.Active != 1 || st.SignedUpgrades == 0 {
				t.Fatalf("emulator stats %+v: want the session up, signed", st)
			}

			f.interrupt()
			ctx, cancel := context.WithTimeout(context.Background(), idleTimeout)
			defer cancel()
			if err := emu.WaitIdle(ctx); err != nil {
				t.Fatal(err)
			}
			if st := emu.Stats(); st.Endings[ssmtest.EndTerminateFlag] != 1 {
				t.Errorf("endings %v, want one %s", st.Endings, ssmtest.EndTerminateFlag)
			}
		})
	}
}

// TestOfficialPluginConnectToPortError: a destination that refuses closes
// that one local connection, and the plugin prints its ConnectToPortError
// text (§4.3); the session stays up.
func TestOfficialPluginConnectToPortError(t *testing.T) {
	plugin, _ := buildOfficialTools(t)
	emu, err := ssmtest.Start(ssmtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	_, port, _ := net.SplitHostPort(testenv.ClosedPort(t))
	f := startForwarder(t, plugin, emu, port)

	for i := range 2 {
		c, err := f.dial()
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		c.Write([]byte("hello"))
		// A reset is a close too: the plugin may close the connection
		// before it has read our "hello", and then the kernel resets it.
		if n, err := c.Read(make([]byte, 16)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("connection %d: read %d, %v; want EOF or a reset", i, n, err)
		}
		c.Close()
		// Wait for the stream's FIN too, not only the dial failure: the
		// plugin numbers its messages without a lock, so a TerminateSession
		// flag sent while the FIN is on its way can take the FIN's sequence
		// number and be dropped as a duplicate (NOTES.md).
		waitForwarding(t, emu, "the dial failure and the stream's FIN", func(st ssmtest.ForwardingStats) bool {
			return st.DialFailures == int64(i+1) && st.FINsReceived == int64(i+1)
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(f.output(), connectToPortFailed) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("plugin stdout lacks two %q:\n%s", connectToPortFailed, f.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := emu.Stats(); st.Active != 1 {
		t.Fatalf("session ended: %v", st.Endings)
	}
	f.interrupt()
	ctx, cancel := context.WithTimeout(context.Background(), idleTimeout)
	defer cancel()
	if err := emu.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if st := emu.Stats(); st.Endings[ssmtest.EndTerminateFlag] != 1 {
		t.Errorf("endings %v, want one %s", st.Endings, ssmtest.EndTerminateFlag)
	}
}
