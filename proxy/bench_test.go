package proxy_test

// In-process benchmarks of a whole session: the proxy against the ssmtest
// emulator, whose agent dials a TCP sink or source on loopback. They
// measure what the event loop, the websocket and the codec cost per byte,
// without ssh or process start-up (bench/ does the side-by-side runs
// through real OpenSSH).
//
// The emulator runs in the same process, so allocs/op and B/op count its
// allocations too; profile with -memprofile and focus on proxy/protocol to
// separate them:
//
//	go test ./proxy -run '^$' -bench Session/download -benchmem -memprofile mem.out
//	go tool pprof -sample_index=alloc_objects -focus 'proxy|protocol' -top mem.out

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// benchTarget is the emulator instance every benchmark session goes to.
const benchTarget = "i-0123456789abcdef0"

// benchChunk is the unit of a throughput op: one MiB of stream bytes, that
// is 1024 messages of the agent's 1 KiB.
const benchChunk = 1 << 20

// benchEnv is a TCP target, an emulator whose sessions dial it, and an
// API client for the emulator.
type benchEnv struct {
	ln  net.Listener
	emu *ssmtest.Server
	api *ssm.Client
}

func newBenchEnv(b *testing.B, opts ssmtest.Options) *benchEnv {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	opts.TargetAddr = ln.Addr().String()
	emu, err := ssmtest.Start(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { emu.Close() })
	return &benchEnv{ln: ln, emu: emu, api: ssmtest.APIClient(emu.Endpoint())}
}

// start starts a session and runs it on a goroutine; the returned channel
// yields Run's result. Cancelling ctx ends it.
func (e *benchEnv) start(b *testing.B, ctx context.Context, stdin io.Reader, stdout io.Writer, opts proxy.Options) <-chan error {
	b.Helper()
	opts.StreamHosts = []string{"127.0.0.1"} // the emulator, as AWS_ENDPOINT_URL_SSM names it
	sess, err := proxy.Start(ctx, e.api, ssmtest.Credentials(), ssmtest.DefaultRegion, proxy.StartInput{
		Target:     benchTarget,
		Document:   "AWS-StartSSHSession",
		Parameters: map[string][]string{"portNumber": {"22"}},
	}, opts)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run(ctx, stdin, stdout) }()
	return done
}

// accept waits for the agent's connection to the target.
func (e *benchEnv) accept(b *testing.B) net.Conn {
	b.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := e.ln.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			b.Fatal(r.err)
		}
		b.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(30 * time.Second):
		b.Fatal("the agent did not connect to the target within 30s")
	}
	return nil
}

// waitRun waits for a session's Run to return after its transfer; a
// cancelled context is the expected way out.
func waitRun(b *testing.B, done <-chan error) {
	b.Helper()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			b.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		b.Fatal("Run did not return within 30s")
	}
}

// countWriter counts what the session writes to stdout and closes done once
// want bytes have arrived. Only the session's stdout goroutine writes.
type countWriter struct {
	n, want int64
	done    chan struct{}
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n >= w.want && w.done != nil {
		close(w.done)
		w.done = nil
	}
	return len(p), nil
}

// sourceReader yields n bytes of a fixed pattern, then io.EOF.
type sourceReader struct {
	n   int64
	pat []byte
}

func (r *sourceReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(int64(len(p)), r.n)], r.pat)
	r.n -= int64(k)
	return k, nil
}

var pattern = func() []byte {
	p := make([]byte, 64<<10)
	for i := range p {
		p[i] = byte(i*131 + i>>8)
	}
	return p
}()

// BenchmarkSession measures one session's throughput with the agent's
// 1 KiB messages, unpaced: download (target → stdout) and upload (stdin →
// target). One op is one MiB; session set-up is not timed.
func BenchmarkSession(b *testing.B) {
	b.Run("download", benchDownload)
	b.Run("upload", benchUpload)
}

func benchDownload(b *testing.B) {
	env := newBenchEnv(b, ssmtest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	total := int64(b.N) * benchChunk
	got := make(chan struct{})
	out := &countWriter{want: total, done: got}
	stdin, stdinW := io.Pipe() // never written: the session stays open
	defer stdinW.Close()
	done := env.start(b, ctx, stdin, out, proxy.Options{})
	conn := env.accept(b)

	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		io.Copy(conn, &sourceReader{n: total, pat: pattern})
	}()
	select {
	case <-got:
	case <-time.After(5 * time.Minute):
		b.Fatalf("downloaded %d of %d bytes in 5 min", out.n, total)
	}
	b.StopTimer()
	cancel()
	waitRun(b, done)
}

func benchUpload(b *testing.B) {
	env := newBenchEnv(b, ssmtest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	total := int64(b.N) * benchChunk
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	done := env.start(b, ctx, stdin, io.Discard, proxy.Options{})
	conn := env.accept(b)
	got := make(chan int64, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var n int64
		for n < total {
			k, err := conn.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		got <- n
	}()

	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		io.Copy(stdinW, &sourceReader{n: total, pat: pattern})
	}()
	select {
	case n := <-got:
		if n < total {
			b.Fatalf("target got %d of %d bytes", n, total)
		}
	case <-time.After(5 * time.Minute):
		b.Fatal("upload did not finish in 5 min")
	}
	b.StopTimer()
	cancel()
	waitRun(b, done)
}

// BenchmarkResume measures how long data stops flowing when the websocket
// goes away during a download (the target streams without pause). For each
// loss it records, from the loop noticing the loss ("link_lost"):
//
//   - resumed: the new websocket is attached (ResumeSession + upgrade);
//   - data: the first in-order byte is delivered on it
//     ("first_data_after_resume");
//   - caught-up: stdout has every byte the agent had sent before the loss,
//     i.e. what was in flight has been recovered. The agent resends only
//     its oldest unacknowledged message per 100 ms tick (§5.4), so each
//     message lost with the old websocket costs up to 100 ms here.
//
// One op is one loss; the figures are reported as median and 90th
// percentile in ms. "bye" is the gateway's graceful close 1000 "Bye"; "drop"
// cuts the TCP connection with no close frame. A loss that comes before the
// previous one has caught up is not counted.
func BenchmarkResume(b *testing.B) {
	b.Run("bye", func(b *testing.B) {
		benchResume(b, ssmtest.Options{ByeEvery: time.Second})
	})
	b.Run("drop", func(b *testing.B) {
		benchResume(b, ssmtest.Options{DropEveryBytes: 32 << 20})
	})
}

// atomicCounter counts bytes written to it and pokes wrote after each
// write.
type atomicCounter struct {
	n     atomic.Int64
	wrote chan struct{} // cap 1
}

func (c *atomicCounter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	select {
	case c.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

// sshWindow is how far the windowed source runs ahead of what stdout has
// received: OpenSSH's session channel window (2 MiB), the flow control an
// ssh transfer puts on top of the session. Without it a loss makes the
// agent flood the client's reorder buffer (§5.3, 10 000 messages) faster
// than it resends the gap, which ssh never does.
const sshWindow = 2 << 20

// windowedSource writes to w, never more than sshWindow ahead of
// delivered, until a write fails or stop is closed.
func windowedSource(w io.Writer, delivered *atomicCounter, stop <-chan struct{}) {
	buf := pattern[:32<<10]
	var sent int64
	for {
		for sent-delivered.n.Load() >= sshWindow {
			select {
			case <-delivered.wrote:
			case <-stop:
				return
			}
		}
		n, err := w.Write(buf)
		sent += int64(n)
		if err != nil {
			return
		}
	}
}

func benchResume(b *testing.B, opts ssmtest.Options) {
	env := newBenchEnv(b, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan proxy.Event, 4096)
	popts := proxy.Options{OnEvent: func(ev proxy.Event) {
		select {
		case events <- ev:
		default: // never block the loop; a lost event spoils one sample
		}
	}}
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	out := &atomicCounter{wrote: make(chan struct{}, 1)}
	done := env.start(b, ctx, stdin, out, popts)
	conn := env.accept(b)
	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	go func() { // the target streams until the session ends
		defer wg.Done()
		windowedSource(conn, out, stop)
	}()

	var resumed, data, caught []time.Duration
	var lost, tResumed, tData time.Time
	var mark int64 // agent's BytesDown when the loss was seen
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	b.ResetTimer()
	deadline := time.After(time.Duration(b.N)*20*time.Second + 30*time.Second)
	for len(caught) < b.N {
		select {
		case ev := <-events:
			switch ev.Kind {
			case proxy.EventLinkLost:
				lost, tResumed, tData = ev.Time, time.Time{}, time.Time{}
				mark = env.emu.Stats().BytesDown
			case proxy.EventResumed:
				tResumed = ev.Time
			case proxy.EventFirstDataAfterResume:
				tData = ev.Time
			}
		case now := <-poll.C:
			if lost.IsZero() || tResumed.IsZero() || tData.IsZero() || out.n.Load() < mark {
				continue
			}
			resumed = append(resumed, tResumed.Sub(lost))
			data = append(data, tData.Sub(lost))
			caught = append(caught, now.Sub(lost))
			lost = time.Time{}
		case err := <-done:
			b.Fatalf("session ended after %d resumes: %v", len(caught), err)
		case <-deadline:
			b.Fatalf("only %d of %d resumes caught up", len(caught), b.N)
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(quantile(resumed, 0.5)), "resumed-ms-p50")
	b.ReportMetric(ms(quantile(data, 0.5)), "data-ms-p50")
	b.ReportMetric(ms(quantile(data, 0.9)), "data-ms-p90")
	b.ReportMetric(ms(quantile(caught, 0.5)), "caughtup-ms-p50")
	b.ReportMetric(ms(quantile(caught, 0.9)), "caughtup-ms-p90")
	b.ReportMetric(ms(quantile(data, 1)), "data-ms-max")
	b.ReportMetric(0, "ns/op") // the time between losses is the fault's, not ours
	cancel()
	conn.Close()
	waitRun(b, done)
	close(stop)
	wg.Wait()
}

// quantile returns the q-quantile of d (nearest rank).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
