package bench

// BenchmarkFleet: 50 `ssh host true` started at once against an emulator
// that throttles StartSession and ResumeSession as SSM's API rate limits
// do (ThrottlingException beyond a token bucket), and the memory of an
// idle session: the RSS of each ProxyCommand process and of ssh's own.

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

var (
	flagFleet      = flag.Int("fleet", 50, "sessions started at once")
	flagFleetRate  = flag.Float64("fleet-rate", 5, "StartSession/ResumeSession calls per second the emulator allows")
	flagFleetBurst = flag.Int("fleet-burst", 5, "the emulator's token bucket size")
)

// fleetRound is one round of sessions started at once.
type fleetRound struct {
	Path      string
	Done      []time.Duration // each successful ssh's end, from the start
	Failed    []string        // the last stderr line of each failed one
	Throttled int64           // ThrottlingException answers in the round
	Started   int64           // sessions the emulator started
}

// rssSample is one process's memory, KiB.
type rssSample struct {
	RSS, Anon, File, HWM int64
}

type fleetResults struct {
	started time.Time
	load    string
	n       int
	rounds  []fleetRound
	mem     map[string][]rssSample // by process: "ssm-proxy", "ssh (…)", …
	memKeys []string
	notes   []string
}

// BenchmarkFleet runs the fleet and memory measurements once (use
// -benchtime 1x; bash bench/run.sh --fleet-only).
func BenchmarkFleet(b *testing.B) {
	if b.N > 1 {
		b.Skip("run with -benchtime 1x")
	}
	testenv.Require(b, "ssh", "sshd", "socat")
	tl := tools(b)
	r := &fleetResults{started: time.Now(), load: loadAvg(), n: *flagFleet, mem: map[string][]rssSample{}}
	dir := b.TempDir()
	logs, err := os.Create(filepath.Join(dir, "ssh.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	sshd := testenv.StartSSHD(b)

	rounds := 3
	if *flagQuick {
		rounds = 1
	}
	socat := fmt.Sprintf("%s - TCP:%s,nodelay", testenv.Bin(b, "socat"), sshd.Addr)
	floorClient := sshd.Client(b, socat)
	proxyClient := sshd.Client(b, tl.Proxy+" %h %p")
	for i := range rounds {
		emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: sshd.Addr, ThrottleRate: *flagFleetRate, ThrottleBurst: *flagFleetBurst})
		if err != nil {
			b.Fatal(err)
		}
		env := ssmtest.ClientEnv(b, emu.Endpoint())
		// The floor first in even rounds, second in odd ones.
		order := []string{wanFloor, wanProxy}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			if p == wanFloor {
				r.rounds = append(r.rounds, fleetOnce(b, wanFloor, floorClient, os.Environ(), r.n, nil, logs))
			} else {
				r.rounds = append(r.rounds, fleetOnce(b, wanProxy, proxyClient, env, r.n, emu, logs))
			}
			x := r.rounds[len(r.rounds)-1]
			b.Logf("%s: %d of %d in, last at %v, %d throttled", p, len(x.Done), r.n, slices.Max(append(x.Done, 0)).Round(time.Millisecond), x.Throttled)
		}
		emu.Close()
	}

	// Memory of an idle session.
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: sshd.Addr})
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	env := ssmtest.ClientEnv(b, emu.Endpoint())
	type memPath struct {
		name   string
		client *testenv.Client
		env    []string
		ssm    bool
	}
	mp := []memPath{{wanFloor, floorClient, os.Environ(), false}, {wanProxy, proxyClient, env, true}}
	if tl.Plugin != "" {
		home := filepath.Join(dir, "home")
		if err := os.Mkdir(home, 0o700); err != nil {
			b.Fatal(err)
		}
		mp = append(mp, memPath{wanOfficial, sshd.Client(b, fmt.Sprintf("env HOME=%s %s -child -plugin %s %%h %%p", home, tl.Shim, tl.Plugin)), env, true})
	} else {
		r.notes = append(r.notes, "The official client is not in the memory table: "+tl.OfficialErr.Error()+".")
	}
	for i := range 3 {
		for j := range mp {
			p := mp[(i+j)%len(mp)]
			for k, v := range idleRSS(b, p.name, p.client, p.env, logs) {
				if _, ok := r.mem[k]; !ok {
					r.memKeys = append(r.memKeys, k)
				}
				r.mem[k] = append(r.mem[k], v)
			}
			if p.ssm {
				waitIdle(b, emu)
			}
		}
	}

	report := r.markdown()
	b.Log("\n" + report)
	if *flagOut != "" {
		if err := replaceNamedSection(*flagOut, "fleet", report); err != nil {
			b.Fatal(err)
		}
	}
}

// fleetOnce starts n `ssh host true` at once and waits for them all.
func fleetOnce(b *testing.B, path string, c *testenv.Client, env []string, n int, emu *ssmtest.Server, logs *os.File) fleetRound {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var before ssmtest.Stats
	if emu != nil {
		before = emu.Stats()
	}
	round := fleetRound{Path: path}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	t0 := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := c.SSH(ctx, c.Host, "true")
			cmd.Env = env
			var stderr strings.Builder
			cmd.Stderr = &stderr
			<-start
			err := cmd.Run()
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				round.Failed = append(round.Failed, fmt.Sprintf("%v: %s", err, reason(stderr.String())))
				fmt.Fprintf(logs, "%s: %v\n%s\n", path, err, stderr.String())
				return
			}
			round.Done = append(round.Done, d)
		}()
	}
	t0 = time.Now()
	close(start)
	wg.Wait()
	slices.Sort(round.Done)
	if emu != nil {
		waitIdle(b, emu)
		st := emu.Stats()
		round.Throttled = st.Throttled - before.Throttled
		round.Started = st.SessionsStarted - before.SessionsStarted
	}
	return round
}

// reason is the ProxyCommand's error line in stderr (ssh's last line if
// it has none), the account and request IDs cut off.
func reason(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if strings.Contains(l, ": error:") {
			if i := strings.Index(l, ", RequestID"); i > 0 {
				l = l[:i]
			}
			return l
		}
	}
	return lines[len(lines)-1]
}

// idleRSS starts an ssh session that stays idle, and once it is up and
// has idled for a second reads the memory of ssh, of its ProxyCommand and
// of the ProxyCommand's children; then ends the session.
func idleRSS(b *testing.B, path string, c *testenv.Client, env []string, logs *os.File) map[string]rssSample {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.SSH(ctx, c.Host, "echo ready; exec sleep 600")
	cmd.Env = env
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM) // our ssh, by its PID; it hangs up on its ProxyCommand
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("%s: idle session: read %q, %v", path, line, err)
	}
	// Idle: no byte moves for a second (keep-alives aside), a measured
	// state rather than a synchronisation.
	time.Sleep(time.Second)
	got := map[string]rssSample{}
	sshPID := cmd.Process.Pid
	got["ssh (the client, for scale)"] = readRSS(b, sshPID)
	kids := children(sshPID)
	if len(kids) != 1 {
		b.Fatalf("%s: ssh has %d children, want its ProxyCommand", path, len(kids))
	}
	name := path
	if path == wanFloor {
		name = "socat (the floor's ProxyCommand)"
	}
	if path == wanOfficial {
		name = "official: startsession-shim (the AWS CLI's place)"
	}
	got[name] = readRSS(b, kids[0])
	for _, k := range children(kids[0]) {
		got["official: session-manager-plugin"] = readRSS(b, k)
	}
	return got
}

// children lists pid's child processes.
func children(pid int) []int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// readRSS reads a process's resident memory from /proc/PID/status.
func readRSS(b *testing.B, pid int) rssSample {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	var s rssSample
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSS = n
		case "RssAnon":
			s.Anon = n
		case "RssFile":
			s.File = n
		case "VmHWM":
			s.HWM = n
		}
	}
	return s
}

func (r *fleetResults) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## %d sessions at once, and memory", r.n)
	w("")
	runHeader(w, r.started, *flagQuick, r.load, "bash bench/run.sh --fleet-only"+quickFlag())
	w("%d `ssh host true` started at the same instant, on loopback, against an emulator that allows %g StartSession (and, separately, ResumeSession) calls per second in bursts of %d and answers the rest with ThrottlingException \"Rate exceeded\" (HTTP 400), as SSM's API rate limits do; each ssh runs its own ssm-proxy, which retries with the SDK's backoff and jitter. The floor is the same %d through socat, no SSM. \"In\" counts the ssh runs that exited 0; the time to the last is from the common start. The official client is not run here: the shim stands in for the AWS CLI without the CLI's own retries, so its figures would say nothing about the CLI.", r.n, *flagFleetRate, *flagFleetBurst, r.n)
	w("")
	w("| round | path | in | gave up | first in, ms | median, ms | last in, ms | ThrottlingException answers | sessions started |")
	w("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	for i, x := range r.rounds {
		var first, mid, last time.Duration
		if len(x.Done) > 0 {
			first, mid, last = x.Done[0], medianDur(x.Done), x.Done[len(x.Done)-1]
		}
		thr, st := "—", "—"
		if x.Path != wanFloor {
			thr, st = strconv.FormatInt(x.Throttled, 10), strconv.FormatInt(x.Started, 10)
		}
		w("| %d | %s | %d | %d | %s | %s | %s | %s | %s |", i/2+1, x.Path, len(x.Done), len(x.Failed), f(ms(first), 0), f(ms(mid), 0), f(ms(last), 0), thr, st)
	}
	w("")
	var failures []string
	for _, x := range r.rounds {
		for _, e := range x.Failed {
			failures = append(failures, x.Path+": "+e)
		}
	}
	w("### Targets")
	w("")
	w("| target | measured | |")
	w("|---|---|---|")
	in, total := 0, 0
	var lasts []time.Duration
	for _, x := range r.rounds {
		if x.Path == wanProxy {
			in += len(x.Done)
			total += len(x.Done) + len(x.Failed)
			if len(x.Done) > 0 {
				lasts = append(lasts, x.Done[len(x.Done)-1])
			}
		}
	}
	w("| all %d connect through throttling, none gives up | %d of %d over the rounds; last in after %s (median of the rounds) | %s |", r.n, in, total, f(ms(medianDur(lasts)), 0)+" ms", mark(in == total && total > 0))
	w("")
	if len(failures) > 0 {
		slices.Sort(failures)
		failures = slices.Compact(failures)
		w("What the ones that gave up said (distinct lines):")
		w("")
		w("```text")
		for _, l := range failures[:min(len(failures), 8)] {
			w("%s", l)
		}
		w("```")
		w("")
	}

	w("### Memory of an idle session")
	w("")
	w("`ssh host 'echo ready; exec sleep 600'`, read from `/proc/PID/status` one second after `ready` arrived: VmRSS (resident), of it RssAnon (heap, stacks) and RssFile (the binary's pages and libraries), and VmHWM (the peak so far). Median of 3 sessions per path, KiB.")
	w("")
	w("| process | VmRSS | RssAnon | RssFile | VmHWM |")
	w("|---|---:|---:|---:|---:|")
	keys := slices.Clone(r.memKeys)
	slices.SortStableFunc(keys, func(a, b string) int { return strings.Compare(memOrder(a), memOrder(b)) })
	for _, k := range keys {
		v := r.mem[k]
		g := func(field func(rssSample) int64) string {
			var x []float64
			for _, s := range v {
				x = append(x, float64(field(s)))
			}
			return fmt.Sprintf("%.0f", median(x))
		}
		w("| %s | %s | %s | %s | %s |", k, g(func(s rssSample) int64 { return s.RSS }), g(func(s rssSample) int64 { return s.Anon }),
			g(func(s rssSample) int64 { return s.File }), g(func(s rssSample) int64 { return s.HWM }))
	}
	w("")
	for _, n := range r.notes {
		w("Note: %s", n)
		w("")
	}
	return b.String()
}

// memOrder sorts the memory rows: the proxies, then ssh.
func memOrder(k string) string {
	switch {
	case k == wanProxy:
		return "0"
	case strings.HasPrefix(k, "official"):
		return "1" + k
	case strings.HasPrefix(k, "socat"):
		return "2"
	}
	return "3" + k
}
