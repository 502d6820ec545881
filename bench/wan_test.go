package bench

// BenchmarkWAN: `ssh host true` at a distance. The emulator serves TLS
// (a throw-away CA) behind latency links (internal/wan): one for the SSM
// API, one for the data channel, each charging the TCP handshake, TLS and
// every byte its one-way delay; the floor, socat to sshd, goes through the
// same kind of link. The agent's leg to sshd is a link without delay,
// whose log says when the agent dialled, that is when the data channel
// was ready for ssh's bytes. From the links' logs each run is cut into
// phases (start-up, API, data channel, ssh) and its round trips counted.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/bench/internal/wan"
	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

var (
	flagRTTs    = flag.String("rtts", "20ms,100ms,250ms", "round-trip times of the wide-area runs")
	flagWANRuns = flag.Int("wan-runs", 0, "`ssh host true` per path and RTT (default 11, 3 with -quick)")
	flagTrace   = flag.Bool("wan-trace", false, "log every flight of every run's connections")
)

// The wide-area paths, in table order.
const (
	wanFloor    = "floor"
	wanProxy    = "ssm-proxy"
	wanProxyTag = "ssm-proxy, Name tag"
	wanOfficial = "official"
	wanShared   = "ssm-proxy --share, warm"
)

// wanPath is one way of carrying `ssh host true` through the links.
type wanPath struct {
	name   string
	host   string // what ssh is given
	client *testenv.Client
	env    []string
	emu    *ssmtest.Server // nil for the floor
	// api and msg carry the SSM API and the data channel; tap is the
	// agent's leg to sshd (no delay). The floor has only floor.
	api, msg, tap, floor *wan.Link
	// shared, for ssm-proxy --share: the directory of its socket; its
	// runs go through a shared session opened before them.
	shared string
}

// wanRun is one `ssh host true` cut into phases from the links' logs.
type wanRun struct {
	Total time.Duration
	// Phases, in order; they add up to Total. For the floor only Startup
	// (to the TCP connect) and SSH.
	Startup, API, Channel, SSH time.Duration
	// Opened is when the data channel's TCP connect came, relative to
	// the StartSession answer: about 0 when the client waits for the
	// answer, negative when it opens the connection while StartSession
	// is in flight.
	Opened             time.Duration
	APIConns, APITurns int // before the agent dialled
	MsgConns, MsgTurns int // MsgTurns: before the agent dialled
	SSHTurns           int // ssh's own, client → sshd
}

type wanResults struct {
	started time.Time
	load    string
	rtts    []time.Duration
	runs    int
	paths   []string
	byRTT   map[time.Duration]map[string][]wanRun
	notes   []string
}

func parseRTTs(b *testing.B, s string) []time.Duration {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d < 0 {
			b.Fatalf("-rtts: %q is not a duration", f)
		}
		out = append(out, d)
	}
	return out
}

// BenchmarkWAN measures set-up at a distance (run with -benchtime 1x; see
// bench/run.sh --wan-only).
func BenchmarkWAN(b *testing.B) {
	if b.N > 1 {
		b.Skip("run with -benchtime 1x")
	}
	testenv.Require(b, "ssh", "sshd", "socat")
	tl := tools(b)
	r := &wanResults{started: time.Now(), load: loadAvg(), rtts: parseRTTs(b, *flagRTTs), byRTT: map[time.Duration]map[string][]wanRun{}}
	r.runs = *flagWANRuns
	if r.runs <= 0 {
		r.runs = 11
		if *flagQuick {
			r.runs = 3
		}
	}
	dir := b.TempDir()
	logs, err := os.Create(filepath.Join(dir, "ssh.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	sshd := testenv.StartSSHD(b)
	tlsOpts, caFile := newTLS(b, dir)

	newLink := func(name, upstream string) *wan.Link {
		l, err := wan.Listen(name, upstream, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		return l
	}
	// ssmPath makes an emulator behind an API link and a data-channel
	// link. ownStreamHost: the StreamUrls name the data-channel link
	// (for a client that dials them as they are), else messagesHost,
	// reached through AWS_ENDPOINT_URL_SSMMESSAGES.
	ssmPath := func(name, host string, ownStreamHost bool, patterns []string, proxyCommand func(p *wanPath) string) *wanPath {
		p := &wanPath{name: name, host: host}
		p.tap = newLink("agent→sshd", sshd.Addr)
		we := startWANEmulator(b, ssmtest.Options{TargetAddr: p.tap.Addr()}, tlsOpts, caFile, ownStreamHost, 0)
		p.emu, p.api, p.msg, p.env = we.emu, we.api, we.msg, we.env
		p.client = sshd.ClientWith(b, testenv.ClientOptions{ProxyCommand: proxyCommand(p), HostPatterns: patterns})
		return p
	}

	var paths []*wanPath
	floor := &wanPath{name: wanFloor, host: testenv.ExampleInstanceID, env: os.Environ()}
	floor.floor = newLink("floor", sshd.Addr)
	floor.client = sshd.Client(b, fmt.Sprintf("%s - TCP:%s,nodelay", testenv.Bin(b, "socat"), floor.floor.Addr()))
	paths = append(paths, floor)
	proxyCmd := func(*wanPath) string { return tl.Proxy + " %h %p" }
	paths = append(paths, ssmPath(wanProxy, testenv.ExampleInstanceID, false, nil, proxyCmd))
	paths = append(paths, ssmPath(wanProxyTag, "web-1", false, []string{"i-*", "web-*"}, proxyCmd))
	shared := ssmPath(wanShared, testenv.ExampleInstanceID, false, nil, func(*wanPath) string { return tl.Proxy + " --share 10m --fdpass %h %p" })
	// As ssh-config --share writes it: ssh is handed the socket.
	shared.client = sshd.ClientWith(b, testenv.ClientOptions{ProxyCommand: tl.Proxy + " --share 10m --fdpass %h %p", Extra: []string{"ProxyUseFdpass yes"}})
	shared.shared = filepath.Join(dir, "run")
	if err := os.Mkdir(shared.shared, 0o700); err != nil {
		b.Fatal(err)
	}
	shared.env = append(shared.env, "XDG_RUNTIME_DIR="+shared.shared)
	b.Cleanup(func() { stopShared(b, filepath.Join(shared.shared, "ssm-proxy")) })
	paths = append(paths, shared)
	if tl.Plugin != "" {
		home := filepath.Join(dir, "home")
		if err := os.Mkdir(home, 0o700); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, ssmPath(wanOfficial, testenv.ExampleInstanceID, true, nil, func(*wanPath) string {
			return fmt.Sprintf("env HOME=%s %s -child -plugin %s %%h %%p", home, tl.Shim, tl.Plugin)
		}))
	} else {
		r.notes = append(r.notes, "The official client is not in these tables: "+tl.OfficialErr.Error()+".")
	}
	for _, p := range paths {
		r.paths = append(r.paths, p.name)
	}

	for _, rtt := range r.rtts {
		for _, p := range paths {
			for _, l := range []*wan.Link{p.api, p.msg, p.floor} {
				if l != nil {
					l.SetRTT(rtt)
				}
			}
		}
		r.byRTT[rtt] = map[string][]wanRun{}
		// A link's delay is fixed per connection: a shared session of
		// this RTT, opened off the clock.
		stopShared(b, filepath.Join(shared.shared, "ssm-proxy"))
		warmWANShared(b, shared, logs)
		b.Logf("RTT %v: %d × ssh host true per path", rtt, r.runs)
		for i := range r.runs {
			for j := range paths {
				p := paths[(i+j)%len(paths)]
				run := wanOnce(b, p, logs)
				r.byRTT[rtt][p.name] = append(r.byRTT[rtt][p.name], run)
				b.Logf("%-20s %6.0f ms  (%.1f RTT)", p.name, ms(run.Total), rtts(run.Total, rtt))
			}
		}
	}
	report := r.markdown()
	b.Log("\n" + report)
	if *flagOut != "" {
		if err := replaceNamedSection(*flagOut, "wan", report); err != nil {
			b.Fatal(err)
		}
	}
}

// wanOnce runs one `ssh host true` on p and reads the links' logs.
func wanOnce(b *testing.B, p *wanPath, logs *os.File) wanRun {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := p.client.SSH(ctx, p.host, "true")
	cmd.Env = p.env
	cmd.Stderr = logs
	t0 := time.Now()
	err := cmd.Run()
	end := time.Now()
	if err != nil {
		logs.Sync()
		log, _ := os.ReadFile(logs.Name())
		b.Fatalf("%s: ssh %s true: %v\nssh/ProxyCommand stderr (tail):\n%s", p.name, p.host, err, tail(string(log), 2000))
	}
	run := wanRun{Total: end.Sub(t0)}
	if p.shared != "" {
		api, msg, tap := p.api.Since(t0), p.msg.Since(t0), p.tap.Since(t0)
		for _, l := range []*wan.Link{p.api, p.msg, p.tap} {
			l.Reset()
		}
		if len(api) != 0 || len(msg) != 0 || len(tap) == 0 {
			b.Fatalf("%s: links saw %d API, %d data-channel and %d agent connections; want only the agent's", p.name, len(api), len(msg), len(tap))
		}
		run.Startup = tap[0].Accepted.Sub(t0) // to the agent's dial: the stream's SYN has crossed
		run.SSH = end.Sub(tap[0].Accepted)
		run.SSHTurns = tap[0].Turns()
		return run
	}
	if p.emu == nil {
		c := p.floor.Since(t0)
		if *flagTrace {
			traceConns(b, p.name, t0, p.floor.RTT(), map[string][]wan.Conn{"floor": c})
		}
		if len(c) == 0 {
			b.Fatalf("%s: the floor's link saw no connection", p.name)
		}
		run.Startup = c[0].Accepted.Sub(t0)
		run.SSH = end.Sub(c[0].Accepted)
		run.SSHTurns = c[0].Turns()
		p.floor.Reset()
		return run
	}
	waitIdle(b, p.emu) // the session's TerminateSession, off the clock
	api, msg, tap := p.api.Since(t0), p.msg.Since(t0), p.tap.Since(t0)
	if *flagTrace {
		traceConns(b, p.name, t0, p.api.RTT(), map[string][]wan.Conn{"api": api, "messages": msg, "agent": tap})
	}
	for _, l := range []*wan.Link{p.api, p.msg, p.tap} {
		l.Reset()
	}
	if len(api) == 0 || len(msg) == 0 || len(tap) == 0 {
		b.Fatalf("%s: links saw %d API, %d data-channel and %d agent connections", p.name, len(api), len(msg), len(tap))
	}
	open, ready := msg[0].Accepted, tap[0].Accepted
	// The StartSession answer: the last answer on the API connections
	// before the agent dialled (a Name tag's DescribeInstanceInformation
	// comes before it; nothing else is called on the way).
	var answer time.Time
	for _, c := range api {
		if c.Accepted.Before(ready) {
			run.APIConns++
			run.APITurns += c.TurnsBefore(ready)
			if t := c.LastDeliveredBefore(ready); t.After(answer) {
				answer = t
			}
		}
	}
	if answer.IsZero() {
		b.Fatalf("%s: no API answer before the agent dialled", p.name)
	}
	start := api[0].Accepted // the first connection the client opens
	if open.Before(start) {
		start = open
	}
	run.MsgConns = len(msg)
	run.MsgTurns = msg[0].TurnsBefore(ready)
	run.SSHTurns = tap[0].Turns()
	run.Startup = start.Sub(t0)
	run.API = answer.Sub(start)
	run.Opened = open.Sub(answer)
	run.Channel = ready.Sub(answer)
	run.SSH = end.Sub(ready)
	return run
}

// warmWANShared opens p's shared session with one `ssh host true` off the
// clock, and checks that it stays.
func warmWANShared(b *testing.B, p *wanPath, logs *os.File) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := p.client.SSH(ctx, p.host, "true")
	cmd.Env = p.env
	cmd.Stderr = logs
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: warm-up: %v", p.name, err)
	}
	if st := p.emu.Stats(); st.Active != 1 {
		b.Fatalf("%s: %d sessions active after the warm-up, want the shared one", p.name, st.Active)
	}
	for _, l := range []*wan.Link{p.api, p.msg, p.tap} {
		l.Reset()
	}
}

// traceConns logs the flights of a run's connections, times in RTTs
// since t0.
func traceConns(b *testing.B, path string, t0 time.Time, rtt time.Duration, conns map[string][]wan.Conn) {
	var lines []string
	for name, cs := range conns {
		for i, c := range cs {
			lines = append(lines, fmt.Sprintf("%6.2f %s#%d connect", rtts(c.Accepted.Sub(t0), rtt), name, i))
			for _, fl := range c.Flights {
				lines = append(lines, fmt.Sprintf("%6.2f %s#%d %-4s %6d B (delivered %.2f)", rtts(fl.Sent.Sub(t0), rtt), name, i, fl.Dir, fl.Bytes, rtts(fl.Delivered.Sub(t0), rtt)))
			}
		}
	}
	slices.Sort(lines)
	b.Logf("%s trace (RTT %v):\n%s", path, rtt, strings.Join(lines, "\n"))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// rtts is d in round trips of rtt (0 for a zero rtt).
func rtts(d, rtt time.Duration) float64 {
	if rtt <= 0 {
		return 0
	}
	return float64(d) / float64(rtt)
}

// med is the median of field over runs.
func med(runs []wanRun, field func(wanRun) time.Duration) time.Duration {
	var v []time.Duration
	for _, r := range runs {
		v = append(v, field(r))
	}
	return medianDur(v)
}

func medInt(runs []wanRun, field func(wanRun) int) float64 {
	var v []float64
	for _, r := range runs {
		v = append(v, float64(field(r)))
	}
	return median(v)
}

func (r *wanResults) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## Set-up at a distance")
	w("")
	runHeader(w, r.started, *flagQuick, r.load, "bash bench/run.sh --wan-only"+quickFlag())
	w("`ssh host true` through latency links (`bench/internal/wan`, in-process: the kernel has no netem) that charge the TCP handshake (the upstream connection opens 1.5 RTT after the connect), TLS and every byte their one-way delay, each direction. The emulator serves HTTPS and wss with a throw-away CA, which clients trust as a user's machine trusts the service: through `SSL_CERT_FILE`, the system's roots with the CA added, and no `AWS_CA_BUNDLE`, so that every client loads the system's roots as it does outside the bench. It sits behind two links, one for the SSM API (`AdvertiseAddr`) and one for the data channel: ssm-proxy is given StreamUrls naming %s, as the real service names its messages endpoint, and reaches it through `AWS_ENDPOINT_URL_SSMMESSAGES` pointed at the link; the official plugin dials the StreamUrl as it is, so its emulator names the link itself. The floor is `ProxyCommand socat - TCP:link,nodelay` through a link of the same RTT to the same sshd. The official client runs as the AWS CLI runs it, through `interop/cmd/startsession-shim -child` (Go, so its figures exclude the CLI's ≈0.4 s Python start-up). Credentials come from the environment, as in every run here: no STS call. Median of %d runs per path and RTT, paths in rotating order.", "`"+messagesHost+"`", r.runs)
	w("")
	has := func(p string) bool { return slices.Contains(r.paths, p) }
	cols := []string{"floor, ms", "ssm-proxy, ms", "ssm-proxy − floor", "Name tag − id", "--share, warm − floor"}
	if has(wanOfficial) {
		cols = []string{"floor, ms", "ssm-proxy, ms", "official, ms", "ssm-proxy − floor", "official − floor", "Name tag − id", "--share, warm − floor"}
	}
	w("| RTT | %s |", strings.Join(cols, " | "))
	w("|---:|%s", strings.Repeat("---:|", len(cols)))
	total := func(x wanRun) time.Duration { return x.Total }
	for _, rtt := range r.rtts {
		m := r.byRTT[rtt]
		fl, px, tg, of := med(m[wanFloor], total), med(m[wanProxy], total), med(m[wanProxyTag], total), med(m[wanOfficial], total)
		diff := func(a, b time.Duration) string {
			return fmt.Sprintf("%+.0f ms = %+.1f RTT", ms(a-b), rtts(a-b, rtt))
		}
		cells := []string{f(ms(fl), 0), f(ms(px), 0)}
		if has(wanOfficial) {
			cells = append(cells, f(ms(of), 0))
		}
		cells = append(cells, diff(px, fl))
		if has(wanOfficial) {
			cells = append(cells, diff(of, fl))
		}
		cells = append(cells, diff(tg, px), diff(med(m[wanShared], total), fl))
		w("| %s | %s |", rtt, strings.Join(cells, " | "))
	}
	w("")

	w("### Where the round trips go")
	w("")
	w("Each run cut into phases from the links' logs, medians in RTTs (start-up in ms: it is process start-up and CPU, not distance); the phases add up to the total: **start-up** from ssh's start to the client's first connection (the floor: to its TCP connect); **API** from there to the StartSession answer, the last answer on the API connections before the agent dialled (TCP, TLS and every call: StartSession, and DescribeInstanceInformation first for a Name tag); **data channel** from that answer to the agent's dial to sshd, which it makes once the handshake is complete (what is left of TCP and TLS, the upgrade, OpenDataChannel → HandshakeRequest, HandshakeResponse); **ssh** from then to ssh's exit (the floor: from its TCP connect, so its TCP handshake is here). **Opened** is when the data channel's TCP connect came, relative to the StartSession answer: 0 when the client waits for the answer, negative when it connects while StartSession is in flight. Turns are the times a client sent after hearing from the other end (flights up), on the API connections and on the data channel before the agent dialled, and ssh's own on the agent's (or the floor's) connection to sshd.")
	w("")
	w("| RTT | path | total | start-up, ms | API | data channel | ssh | opened | API conns / turns | data-channel conns / turns | ssh turns |")
	w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, rtt := range r.rtts {
		for _, p := range r.paths {
			runs := r.byRTT[rtt][p]
			if len(runs) == 0 {
				continue
			}
			rt := func(field func(wanRun) time.Duration) string { return fmt.Sprintf("%.1f", rtts(med(runs, field), rtt)) }
			startup := fmt.Sprintf("%.0f", ms(med(runs, func(x wanRun) time.Duration { return x.Startup })))
			if p == wanShared {
				w("| %s | %s | %s | %s | — | — | %s | — | 0 / 0 | 0 / 0 | %.0f |", rtt, p, rt(total), startup,
					rt(func(x wanRun) time.Duration { return x.SSH }), medInt(runs, func(x wanRun) int { return x.SSHTurns }))
				continue
			}
			if p == wanFloor {
				w("| %s | %s | %s | %s | — | — | %s | — | — | — | %.0f |", rtt, p, rt(total), startup,
					rt(func(x wanRun) time.Duration { return x.SSH }), medInt(runs, func(x wanRun) int { return x.SSHTurns }))
				continue
			}
			w("| %s | %s | %s | %s | %s | %s | %s | %s | %.0f / %.0f | %.0f / %.0f | %.0f |", rtt, p, rt(total), startup,
				rt(func(x wanRun) time.Duration { return x.API }), rt(func(x wanRun) time.Duration { return x.Channel }),
				rt(func(x wanRun) time.Duration { return x.SSH }), rt(func(x wanRun) time.Duration { return x.Opened }),
				medInt(runs, func(x wanRun) int { return x.APIConns }), medInt(runs, func(x wanRun) int { return x.APITurns }),
				medInt(runs, func(x wanRun) int { return x.MsgConns }), medInt(runs, func(x wanRun) int { return x.MsgTurns }),
				medInt(runs, func(x wanRun) int { return x.SSHTurns }))
		}
	}
	w("")
	w("**%s** is `ssm-proxy --share 10m --fdpass` (with `ProxyUseFdpass yes`, as `ssm-proxy ssh-config --share` writes it) with its shared session already open (one warm-up `ssh host true` per RTT, off the clock): a connection opens no API or data-channel connection of its own, only an smux stream of that session, so its start-up runs to the agent's dial to sshd (the stream's SYN has crossed the link with ssh's first bytes), and the rest is ssh's own.", wanShared)
	w("")
	w("How to read it: a fresh TLS 1.3 connection costs 1 RTT of TCP handshake plus 1 of TLS before its first request, so the API phase is 3 RTT for one call (2 turns: ClientHello, then Finished with the request) and 4 with a Name tag's DescribeInstanceInformation first. A data channel opened after the answer costs 4.5 RTT to the agent's dial: TCP, TLS, the upgrade, OpenDataChannel → HandshakeRequest, and half a round trip for HandshakeResponse; one opened while StartSession is in flight (opened ≈ −2 RTT or earlier) has its TCP and TLS done by then and costs 2.5. ssh over the data channel pays one round trip more than over TCP: sshd sends its KEXINIT only after the client's banner, which can leave only after HandshakeComplete (the agent drops data that comes before its dial, §5.3).")
	w("")

	w("### Targets")
	w("")
	w("| target | measured | |")
	w("|---|---|---|")
	for _, rtt := range r.rtts {
		if rtt != 100*time.Millisecond {
			continue
		}
		m := r.byRTT[rtt]
		fl, px, tg := med(m[wanFloor], total), med(m[wanProxy], total), med(m[wanProxyTag], total)
		d := rtts(px-fl, rtt)
		w("| set-up at 100 ms RTT: ssm-proxy ≤ floor + 5 RTT | %.0f ms vs floor %.0f ms: + %.1f RTT | %s |", ms(px), ms(fl), d, mark(d <= 5))
		e := rtts(tg-px, rtt)
		w("| Name tag: at most one RTT over an id (100 ms) | %+.1f RTT | %s |", e, mark(e <= 1))
	}
	w("")
	for _, n := range r.notes {
		w("Note: %s", n)
		w("")
	}
	w("<details><summary>Every run (ms)</summary>")
	w("")
	w("| RTT | path | runs |")
	w("|---:|---|---|")
	for _, rtt := range r.rtts {
		for _, p := range r.paths {
			var s []string
			for _, x := range r.byRTT[rtt][p] {
				s = append(s, fmt.Sprintf("%.0f", ms(x.Total)))
			}
			if len(s) > 0 {
				w("| %s | %s | %s |", rtt, p, strings.Join(s, ", "))
			}
		}
	}
	w("")
	w("</details>")
	w("")
	return b.String()
}

// quickFlag is " --quick" in a quick run, for the commands the report
// names.
func quickFlag() string {
	if *flagQuick {
		return " --quick"
	}
	return ""
}
