package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

var (
	flagQuick    = flag.Bool("quick", false, "smaller sizes and fewer runs (about 2 minutes)")
	flagOut      = flag.String("out", "", "Markdown file whose generated section is replaced with the report")
	flagSVG      = flag.String("svg", "", "write the throughput plot (SVG) here")
	flagMicro    = flag.String("micro", "", "file with `go test -bench` output of ./protocol and ./proxy to include")
	flagOfficial = flag.Bool("official", true, "build and measure the official session-manager-plugin (interop module)")
)

// Path names, in table order.
const (
	pathSocat    = "socat"
	pathProxy    = "ssm-proxy"
	pathOfficial = "official"
	pathNull     = "null" // the null client in-process, in the plot only
	// pathNullProxy is the null client as ssh's ProxyCommand
	// (cmd/nullproxy), in paced downloads only: the pacing ceiling.
	pathNullProxy = "nullproxy"
)

// config is the size of a run.
type config struct {
	Quick         bool
	SetupRuns     int   // `ssh host true` per path
	Runs          int   // unpaced transfers per direction, socat and ssm-proxy
	OfficialRuns  int   // unpaced transfers per direction, official client
	PacedRuns     int   // paced downloads per SSM path
	Size          int64 // unpaced transfer size, socat and ssm-proxy
	OfficialDown  int64 // unpaced download size, official client
	OfficialUp    int64 // upload size, official client (it sleeps 1 ms per KiB)
	PacedSize     int64 // paced download size
	NullRuns      int   // null-client runs per direction
	CeilingSample time.Duration
}

func newConfig(quick bool) config {
	if quick {
		return config{Quick: true, SetupRuns: 5, Runs: 2, OfficialRuns: 1, PacedRuns: 1,
			Size: 32 << 20, OfficialDown: 32 << 20, OfficialUp: 2 << 20, PacedSize: 2 << 20,
			NullRuns: 1, CeilingSample: time.Second}
	}
	return config{SetupRuns: 15, Runs: 5, OfficialRuns: 3, PacedRuns: 3,
		Size: 256 << 20, OfficialDown: 256 << 20, OfficialUp: 16 << 20, PacedSize: 16 << 20,
		NullRuns: 3, CeilingSample: 3 * time.Second}
}

// usage is one ProxyCommand process's line from rusage-exec.
type usage struct {
	User, Sys float64 // seconds
	MaxRSSKiB int64
	Wall      float64
	Exit      int
}

func (u usage) cpu() float64 { return u.User + u.Sys }

// xfer is one timed transfer.
type xfer struct {
	Bytes int64
	Secs  float64 // first byte to last
	Usage usage   // the proxy process of that ssh run
}

func (x xfer) rate() float64 { return float64(x.Bytes) / x.Secs }

// setupRun is one `ssh host true`.
type setupRun struct {
	Secs  float64
	Usage usage
}

// results is everything one run measured.
type results struct {
	Config      config
	Machine     []string
	Started     time.Time
	Took        time.Duration
	Paths       []string
	Setup       map[string][]setupRun
	Up, Down    map[string][]xfer
	Paced       map[string][]xfer
	Ceiling     float64 // bytes/s: paced downloads through the null ProxyCommand
	LoopCeil    float64 // bytes/s of a bare 1 KiB read + 1 ms sleep loop
	NominalCeil float64 // 1024 B per 1 ms
	// Null holds the in-process null client's rates (bytes/s) by
	// direction: what the emulator itself can carry here, without ssh
	// ("up", "down", "paced").
	Null  map[string][]float64
	Micro []string
	Notes []string
}

// BenchmarkSideBySide runs the whole side-by-side benchmark once (use
// -benchtime 1x) and writes the report; see bench/run.sh.
func BenchmarkSideBySide(b *testing.B) {
	if b.N > 1 {
		b.Skip("run with -benchtime 1x")
	}
	testenv.Require(b, "ssh", "sshd", "socat")
	cfg := newConfig(*flagQuick)
	r := &results{
		Config: cfg, Started: time.Now(), Machine: machine(),
		Setup: map[string][]setupRun{}, Up: map[string][]xfer{}, Down: map[string][]xfer{}, Paced: map[string][]xfer{},
		Null:        map[string][]float64{},
		NominalCeil: 1024 / 1e-3,
	}
	h := newHarness(b, r)

	b.Logf("emulator limits: the null client")
	r.LoopCeil = pacingCeiling(b, cfg.CeilingSample)
	for range cfg.NullRuns {
		r.Null["down"] = append(r.Null["down"], nullDownload(b, ssmtest.Options{}, cfg.Size))
		r.Null["up"] = append(r.Null["up"], nullUpload(b, cfg.Size))
	}
	b.Logf("null client: down %.1f, up %.1f MB/s; bare paced loop %.3f MB/s",
		median(r.Null["down"])/1e6, median(r.Null["up"])/1e6, r.LoopCeil/1e6)

	b.Logf("set-up: %d × ssh host true per path", cfg.SetupRuns)
	for i := range cfg.SetupRuns {
		for _, p := range h.order(i) {
			if !p.pacedOnly {
				r.Setup[p.name] = append(r.Setup[p.name], h.setup(p))
			}
		}
	}

	b.Logf("unpaced transfers")
	for i := range max(cfg.Runs, cfg.OfficialRuns) {
		for _, p := range h.order(i) {
			runs, up, down := cfg.Runs, cfg.Size, cfg.Size
			if p.name == pathOfficial {
				runs, up, down = cfg.OfficialRuns, cfg.OfficialUp, cfg.OfficialDown
			}
			if i >= runs || p.pacedOnly {
				continue
			}
			r.Up[p.name] = append(r.Up[p.name], h.upload(p, h.unpaced, up))
			r.Down[p.name] = append(r.Down[p.name], h.download(p, h.unpaced, down))
		}
	}

	// Paced downloads, and in the same rounds the pacing ceiling: the null
	// client through the same ssh chain (a path of its own) and, for
	// comparison, in-process without ssh.
	b.Logf("paced downloads")
	for i := range cfg.PacedRuns {
		r.Null["paced"] = append(r.Null["paced"], nullDownload(b, ssmtest.Options{Pacing: true}, cfg.PacedSize/2))
		for _, p := range h.order(i) {
			if p.name == pathSocat {
				continue // no SSM, no pacing
			}
			r.Paced[p.name] = append(r.Paced[p.name], h.download(p, h.paced, cfg.PacedSize))
		}
	}
	r.Ceiling = medianRate(r.Paced[pathNullProxy])
	b.Logf("pacing ceiling: %.3f MB/s through ssh, %.3f MB/s in-process", r.Ceiling/1e6, median(r.Null["paced"])/1e6)

	if *flagMicro != "" {
		r.Micro = readMicro(b, *flagMicro)
	}
	r.Took = time.Since(r.Started)
	report := r.markdown()
	b.Log("\n" + report)
	if *flagOut != "" {
		if err := replaceSection(*flagOut, report); err != nil {
			b.Fatal(err)
		}
	}
	if *flagSVG != "" {
		if err := os.WriteFile(*flagSVG, []byte(r.svg()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if m := median(setupSecs(r.Setup[pathProxy])); m > 0 {
		b.ReportMetric(m*1e3, "ssm-proxy-setup-ms")
	}
	if m := medianRate(r.Up[pathProxy]); m > 0 {
		b.ReportMetric(m/1e6, "ssm-proxy-up-MB/s")
	}
	if m := medianRate(r.Down[pathProxy]); m > 0 {
		b.ReportMetric(m/1e6, "ssm-proxy-down-MB/s")
	}
}

// path is one way of carrying ssh: a ProxyCommand and its usage file.
type path struct {
	name      string
	client    *testenv.Client
	usage     string // rusage-exec output
	ssm       bool   // goes through the emulator
	pacedOnly bool   // measured in paced downloads only
}

// emulator is one emulator instance and the ssh environment pointing at it.
type emulator struct {
	srv *ssmtest.Server
	env []string
}

type harness struct {
	b       *testing.B
	r       *results
	dir     string
	sshd    *testenv.SSHD
	paths   []*path
	unpaced *emulator
	paced   *emulator
	data    string // the file transferred
	logs    *os.File
}

func newHarness(b *testing.B, r *results) *harness {
	b.Helper()
	dir := b.TempDir()
	h := &harness{b: b, r: r, dir: dir}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Logf("building ssm-proxy, rusage-exec, nullproxy and (unless -official=false) the official client")
	tl := tools(b)
	proxyBin, rusage, nullProxy := tl.Proxy, tl.Rusage, tl.NullProxy
	plugin, shim := tl.Plugin, tl.Shim
	if *flagOfficial && plugin == "" {
		b.Logf("official client not measured: %v", tl.OfficialErr)
		r.Notes = append(r.Notes, tl.OfficialErr.Error())
	}

	h.sshd = testenv.StartSSHD(b)
	h.unpaced = h.startEmulator(ssmtest.Options{TargetAddr: h.sshd.Addr})
	h.paced = h.startEmulator(ssmtest.Options{TargetAddr: h.sshd.Addr, Pacing: true})
	var err error
	h.logs, err = os.Create(filepath.Join(dir, "ssh.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.logs.Close() })

	socat := testenv.Bin(b, "socat")
	h.addPath(pathSocat, false, func(u string) string {
		// nodelay, as ssh sets on its own connections and Go on the
		// agent's: without it Nagle's algorithm meets sshd's delayed ack
		// and a third of the set-ups take 40 ms longer.
		return fmt.Sprintf("%s -o %s -label socat -- %s - TCP:%s,nodelay", rusage, u, socat, h.sshd.Addr)
	})
	h.addPath(pathProxy, true, func(u string) string {
		return fmt.Sprintf("%s -o %s -label ssm-proxy -- %s %%h %%p", rusage, u, proxyBin)
	})
	if plugin != "" {
		home := filepath.Join(dir, "home")
		if err := os.Mkdir(home, 0o700); err != nil {
			b.Fatal(err)
		}
		h.addPath(pathOfficial, true, func(u string) string {
			// The shim does the AWS CLI's StartSession and runs the plugin
			// as its child, as the CLI does; the wrapper script puts
			// rusage-exec between them, so the usage is the plugin's own.
			wrapper := filepath.Join(bin, "plugin-rusage.sh")
			script := fmt.Sprintf("#!/bin/sh\nexec %s -o %s -label official -- %s \"$@\"\n", rusage, u, plugin)
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				b.Fatal(err)
			}
			return fmt.Sprintf("env HOME=%s %s -child -plugin %s %%h %%p", home, shim, wrapper)
		})
	}
	h.addPath(pathNullProxy, true, func(u string) string {
		return fmt.Sprintf("%s -o %s -label nullproxy -- %s %%h %%p", rusage, u, nullProxy)
	}).pacedOnly = true
	for _, p := range h.paths {
		r.Paths = append(r.Paths, p.name)
	}

	b.Logf("writing %d MiB of test data", max(r.Config.Size, r.Config.OfficialDown)>>20)
	h.data = filepath.Join(dir, "data")
	writeRandom(b, h.data, max(r.Config.Size, r.Config.OfficialDown, r.Config.PacedSize, r.Config.OfficialUp))
	return h
}

func (h *harness) startEmulator(o ssmtest.Options) *emulator {
	srv, err := ssmtest.Start(o)
	if err != nil {
		h.b.Fatal(err)
	}
	h.b.Cleanup(func() { srv.Close() })
	return &emulator{srv: srv, env: ssmtest.ClientEnv(h.b, srv.Endpoint())}
}

func (h *harness) addPath(name string, ssm bool, proxyCommand func(usageFile string) string) *path {
	u := filepath.Join(h.dir, name+".usage")
	p := &path{name: name, ssm: ssm, usage: u, client: h.sshd.Client(h.b, proxyCommand(u))}
	h.paths = append(h.paths, p)
	return p
}

// order returns the paths in the order of run i: rotated, so that no path
// always runs first or last on a noisy machine.
func (h *harness) order(i int) []*path {
	n := len(h.paths)
	out := make([]*path, n)
	for j := range n {
		out[j] = h.paths[(i+j)%n]
	}
	return out
}

// ssh returns an ssh command for p's host through emu (nil: no SSM).
func (h *harness) ssh(ctx context.Context, p *path, emu *emulator, args ...string) *exec.Cmd {
	cmd := p.client.SSH(ctx, append([]string{p.client.Host}, args...)...)
	if emu == nil {
		emu = h.unpaced
	}
	cmd.Env = emu.env
	cmd.Stderr = h.logs // a file: Wait does not wait for the ProxyCommand
	return cmd
}

// setup times one `ssh host true`.
func (h *harness) setup(p *path) setupRun {
	h.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := h.usageLines(p)
	cmd := h.ssh(ctx, p, nil, "true")
	start := time.Now()
	if err := cmd.Run(); err != nil {
		h.fail(p, "ssh host true", err)
	}
	secs := time.Since(start).Seconds()
	return setupRun{Secs: secs, Usage: h.finish(p, h.unpaced, n)}
}

// upload sends size bytes of the data file to the remote `wc -c` and times
// it from the moment ssh starts reading its stdin to the remote end of
// input (the remote clock is this machine's).
func (h *harness) upload(p *path, emu *emulator, size int64) xfer {
	h.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	n := h.usageLines(p)
	cmd := h.ssh(ctx, p, emu, `wc -c; date +%s%N`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		h.b.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	f, err := os.Open(h.data)
	if err != nil {
		h.b.Fatal(err)
	}
	defer f.Close()
	if err := cmd.Start(); err != nil {
		h.b.Fatal(err)
	}
	// The pipe holds 64 KiB: once the second 64 KiB write returns, ssh has
	// started reading.
	var start time.Time
	buf := make([]byte, 64<<10)
	var sent int64
	for sent < size {
		k, _ := io.ReadFull(f, buf[:min(int64(len(buf)), size-sent)])
		if k == 0 {
			h.b.Fatalf("data file shorter than %d", size)
		}
		if _, err := stdin.Write(buf[:k]); err != nil {
			break // reported by Wait
		}
		sent += int64(k)
		if start.IsZero() && sent > int64(len(buf)) {
			start = time.Now()
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		h.fail(p, "upload", err)
	}
	fields := strings.Fields(out.String())
	if len(fields) != 2 || fields[0] != strconv.FormatInt(size, 10) {
		h.b.Fatalf("%s: upload: remote said %q, want %d bytes and a time", p.name, out.String(), size)
	}
	endNs, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		h.b.Fatalf("%s: upload: remote time %q", p.name, fields[1])
	}
	secs := time.Unix(0, endNs).Sub(start).Seconds()
	x := xfer{Bytes: size, Secs: secs, Usage: h.finish(p, emu, n)}
	h.b.Logf("%-9s up   %4d MiB %8.2f MB/s  cpu %.2fs  rss %d KiB", p.name, size>>20, x.rate()/1e6, x.Usage.cpu(), x.Usage.MaxRSSKiB)
	return x
}

// download reads size bytes of the data file through ssh and times it
// from the first byte to the last.
func (h *harness) download(p *path, emu *emulator, size int64) xfer {
	h.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	n := h.usageLines(p)
	cmd := h.ssh(ctx, p, emu, fmt.Sprintf("head -c %d %s", size, h.data))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		h.b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		h.b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	var got int64
	var first, last time.Time
	for {
		k, err := stdout.Read(buf)
		if k > 0 {
			if first.IsZero() {
				first = time.Now()
			}
			got += int64(k)
			last = time.Now()
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		h.fail(p, "download", err)
	}
	if got != size {
		h.b.Fatalf("%s: download: got %d bytes, want %d", p.name, got, size)
	}
	x := xfer{Bytes: size, Secs: last.Sub(first).Seconds(), Usage: h.finish(p, emu, n)}
	h.b.Logf("%-9s down %4d MiB %8.2f MB/s  cpu %.2fs  rss %d KiB (paced %v)", p.name, size>>20, x.rate()/1e6, x.Usage.cpu(), x.Usage.MaxRSSKiB, emu == h.paced)
	return x
}

func (h *harness) fail(p *path, what string, err error) {
	h.b.Helper()
	h.logs.Sync()
	log, _ := os.ReadFile(h.logs.Name())
	h.b.Fatalf("%s: %s: %v\nssh/ProxyCommand stderr (tail):\n%s", p.name, what, err, tail(string(log), 2000))
}

// usageLines is how many lines p's usage file has.
func (h *harness) usageLines(p *path) int {
	b, _ := os.ReadFile(p.usage)
	return bytes.Count(b, []byte("\n"))
}

// finish waits for the ProxyCommand of the ssh run that started when p's
// usage file had n lines to record its usage, and for the emulator to have
// no session left, and returns the usage.
func (h *harness) finish(p *path, emu *emulator, n int) usage {
	h.b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(p.usage)
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(b) > 0 && len(lines) > n {
			u, err := parseUsage(lines[n])
			if err != nil {
				h.b.Fatalf("%s: %v", p.name, err)
			}
			if p.ssm {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := emu.srv.WaitIdle(ctx)
				cancel()
				if err != nil {
					h.b.Fatalf("%s: %v", p.name, err)
				}
			}
			return u
		}
		if time.Now().After(deadline) {
			h.b.Fatalf("%s: the ProxyCommand did not exit within 30s of ssh", p.name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// parseUsage parses "LABEL PID USER SYS MAXRSS WALL EXIT".
func parseUsage(line string) (usage, error) {
	f := strings.Fields(line)
	if len(f) != 7 {
		return usage{}, fmt.Errorf("bad usage line %q", line)
	}
	var u usage
	var err error
	parse := func(s string) float64 {
		v, e := strconv.ParseFloat(s, 64)
		err = errors.Join(err, e)
		return v
	}
	u.User, u.Sys = parse(f[2]), parse(f[3])
	u.MaxRSSKiB = int64(parse(f[4]))
	u.Wall = parse(f[5])
	u.Exit = int(parse(f[6]))
	if err != nil {
		return usage{}, fmt.Errorf("bad usage line %q: %w", line, err)
	}
	return u, nil
}

// pacingCeiling measures the bare loop of the paced agent on this machine:
// a 1024-byte read from a TCP connection that always has data, then
// time.Sleep(time.Millisecond), as ssmtest's readTarget does under Pacing
// (§5.6), without the emulator's per-message work: the upper bound of
// every paced rate on this machine.
func pacingCeiling(b *testing.B, d time.Duration) float64 {
	b.Helper()
	src := testenv.ServeTCP(b, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	c, err := net.Dial("tcp", src)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1024)
	var n int64
	start := time.Now()
	for time.Since(start) < d {
		k, err := c.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		n += int64(k)
		time.Sleep(time.Millisecond)
	}
	return float64(n) / time.Since(start).Seconds()
}

// releaseFlags build a binary the way scripts/release.sh does: static,
// trimmed and stripped, so that the bench times the binary users run.
var releaseFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// tryGoBuild builds pkg in dir into out, as a release is built.
func tryGoBuild(dir string, env []string, out, pkg string) (string, error) {
	args := append(append([]string{"build"}, releaseFlags...), "-o", out, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return out, nil
}

// writeRandom writes n incompressible bytes to name.
func writeRandom(b *testing.B, name string, n int64) {
	b.Helper()
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(w, r, n); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		b.Fatal(err)
	}
}

// machine describes where the run happened.
func machine() []string {
	var m []string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m = append(m, fmt.Sprintf("CPU: %s × %d (GOMAXPROCS %d)", strings.TrimSpace(v), runtime.NumCPU(), runtime.GOMAXPROCS(0)))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if l, _, ok := strings.Cut(string(b), "\n"); ok {
			m = append(m, "Memory: "+strings.Join(strings.Fields(strings.TrimPrefix(l, "MemTotal:")), " "))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m = append(m, fmt.Sprintf("OS: %s/%s, Linux %s", runtime.GOOS, runtime.GOARCH, strings.TrimSpace(string(b))))
	}
	m = append(m, "Go: "+runtime.Version())
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m = append(m, "OpenSSH: "+strings.TrimSpace(string(out)))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m = append(m, "Load average at start: "+strings.Join(strings.Fields(string(b))[:3], " "))
	}
	return m
}

// readMicro returns the benchmark result lines of a go test -bench output.
func readMicro(b *testing.B, name string) []string {
	data, err := os.ReadFile(name)
	if err != nil {
		b.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg:") {
			lines = append(lines, l)
		}
	}
	return lines
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
