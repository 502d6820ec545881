package bench

// BenchmarkForward: port forwarding three ways, on loopback against the
// emulator's multiplexed port plugin: `ssm-proxy forward` (one smux stream
// per connection over AWS-StartPortForwardingSession), `ssh -L` through
// ssm-proxy (an ssh channel per connection over AWS-StartSSHSession, to a
// real sshd) and the official plugin's port forwarding (smux too, the
// way `aws ssm start-session --document-name
// AWS-StartPortForwardingSession` runs it: it listens on localPortNumber).
// Per path: one bulk connection each way, and the set-up of a new TCP
// connection on the established forwarding (connect to first echoed
// byte).

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// The port-forwarding paths, in table order.
const (
	fwdForward  = "ssm-proxy forward"
	fwdSSHL     = "ssh -L through ssm-proxy"
	fwdOfficial = "official plugin"
)

// The destination server's commands: the first byte of a connection.
const (
	cmdEcho     = 'e' // echo everything
	cmdDownload = 'd' // then 8 bytes of size: send that many bytes
	cmdUpload   = 'u' // then 8 bytes of size: read that many, answer one byte
)

// fwdServer is the destination: echo, source or sink, as the connection
// asks.
func fwdServer(b *testing.B) string {
	return testenv.ServeTCP(b, func(c net.Conn) {
		r := bufio.NewReader(c)
		op, err := r.ReadByte()
		if err != nil {
			return
		}
		switch op {
		case cmdEcho:
			io.Copy(c, r)
		case cmdDownload, cmdUpload:
			var hdr [8]byte
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return
			}
			n := int64(binary.BigEndian.Uint64(hdr[:]))
			if op == cmdUpload {
				if k, _ := io.CopyN(io.Discard, r, n); k == n {
					c.Write([]byte{1})
				}
				return
			}
			buf := make([]byte, 64<<10)
			for sent := int64(0); sent < n; {
				k, err := c.Write(buf[:min(int64(len(buf)), n-sent)])
				sent += int64(k)
				if err != nil {
					return
				}
			}
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, r)
		}
	})
}

type fwdResults struct {
	started   time.Time
	load      string
	paths     []string
	setup     map[string][]time.Duration
	up, down  map[string][]xfer
	sizeUp    map[string]int64
	sizeDown  map[string]int64
	setupRuns int
	rtt       time.Duration              // of the set-ups at a distance (0: none)
	setupWAN  map[string][]time.Duration // set-ups through links of rtt
	notes     []string
}

var flagForwardRTT = flag.Duration("forward-rtt", 100*time.Millisecond, "RTT of the port-forwarding set-ups at a distance (0: none)")

// forwardAtDistance measures the set-up of new connections on established
// forwardings whose emulators are behind latency links of rtt with TLS,
// as BenchmarkWAN's are; the destination and sshd are next to the agent.
func forwardAtDistance(b *testing.B, r *fwdResults, tl *toolset, sshd *testenv.SSHD, dest string, rtt time.Duration, logs *os.File) {
	b.Helper()
	tlsOpts, caFile := newTLS(b, b.TempDir())
	_, destPort, _ := net.SplitHostPort(dest)
	r.setupWAN = map[string][]time.Duration{}
	type fpath struct {
		name  string
		we    *wanEmulator
		start func(we *wanEmulator) (string, func())
	}
	paths := []fpath{
		{fwdForward, startWANEmulator(b, ssmtest.Options{TargetAddr: dest}, tlsOpts, caFile, false, rtt), func(we *wanEmulator) (string, func()) {
			return startProxyForward(b, tl.Proxy, we.env, destPort, logs)
		}},
		{fwdSSHL, startWANEmulator(b, ssmtest.Options{TargetAddr: sshd.Addr}, tlsOpts, caFile, false, rtt), func(we *wanEmulator) (string, func()) {
			return startSSHL(b, sshd.Client(b, tl.Proxy+" %h %p"), we.env, dest, logs)
		}},
	}
	if tl.Plugin != "" {
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(caFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			b.Fatalf("CA %s: %v", caFile, err)
		}
		paths = append(paths, fpath{fwdOfficial, startWANEmulator(b, ssmtest.Options{TargetAddr: dest}, tlsOpts, caFile, true, rtt), func(we *wanEmulator) (string, func()) {
			api := ssm.New(ssm.Options{
				Region: ssmtest.DefaultRegion, BaseEndpoint: aws.String(we.emu.Endpoint()), Credentials: ssmtest.Credentials(), RetryMaxAttempts: 1,
				HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
			})
			return startOfficialForward(b, tl.Plugin, we.emu, api, we.env, destPort, logs, r.note)
		}})
	}
	for _, p := range paths {
		addr, stop := p.start(p.we)
		for range r.setupRuns {
			r.setupWAN[p.name] = append(r.setupWAN[p.name], fwdSetup(b, p.name, addr))
		}
		b.Logf("%-26s set-up at %v RTT: %.1f ms", p.name, rtt, ms(medianDur(r.setupWAN[p.name])))
		stop()
		waitIdle(b, p.we.emu)
	}
}

// BenchmarkForward measures the three port forwardings (use -benchtime
// 1x; bash bench/run.sh --forward-only).
func BenchmarkForward(b *testing.B) {
	if b.N > 1 {
		b.Skip("run with -benchtime 1x")
	}
	testenv.Require(b, "ssh", "sshd")
	tl := tools(b)
	r := &fwdResults{started: time.Now(), load: loadAvg(), setup: map[string][]time.Duration{},
		up: map[string][]xfer{}, down: map[string][]xfer{}, sizeUp: map[string]int64{}, sizeDown: map[string]int64{}}
	runs, size, offUp, offDown := 3, int64(256<<20), int64(8<<20), int64(64<<20)
	r.setupRuns = 25
	if *flagQuick {
		runs, size, offUp, offDown = 1, 32<<20, 2<<20, 16<<20
		r.setupRuns = 10
	}
	dir := b.TempDir()
	logs, err := os.Create(filepath.Join(dir, "forward.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	dest := fwdServer(b)
	_, destPort, _ := net.SplitHostPort(dest)

	// forward and the official plugin: port-forwarding sessions whose
	// agent dials dest; ssh -L: an SSH session to sshd, which dials dest.
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: dest})
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	sshd := testenv.StartSSHD(b)
	emuSSH, err := ssmtest.Start(ssmtest.Options{TargetAddr: sshd.Addr})
	if err != nil {
		b.Fatal(err)
	}
	defer emuSSH.Close()

	type fpath struct {
		name  string
		start func() (addr string, stop func())
	}
	paths := []fpath{
		{fwdForward, func() (string, func()) {
			return startProxyForward(b, tl.Proxy, ssmtest.ClientEnv(b, emu.Endpoint()), destPort, logs)
		}},
		{fwdSSHL, func() (string, func()) {
			c := sshd.Client(b, tl.Proxy+" %h %p")
			return startSSHL(b, c, ssmtest.ClientEnv(b, emuSSH.Endpoint()), dest, logs)
		}},
	}
	if tl.Plugin != "" {
		paths = append(paths, fpath{fwdOfficial, func() (string, func()) {
			return startOfficialForward(b, tl.Plugin, emu, ssmtest.APIClient(emu.Endpoint()), ssmtest.ClientEnv(b, emu.Endpoint()), destPort, logs, r.note)
		}})
	} else {
		r.notes = append(r.notes, "The official client is not in this table: "+tl.OfficialErr.Error()+".")
	}
	for _, p := range paths {
		r.paths = append(r.paths, p.name)
	}
	for i := range runs {
		for j := range paths {
			p := paths[(i+j)%len(paths)]
			addr, stop := p.start()
			for range r.setupRuns {
				r.setup[p.name] = append(r.setup[p.name], fwdSetup(b, p.name, addr))
			}
			u, d := size, size
			if p.name == fwdOfficial {
				u, d = offUp, offDown
			}
			r.sizeUp[p.name], r.sizeDown[p.name] = u, d
			r.up[p.name] = append(r.up[p.name], fwdUpload(b, p.name, addr, u))
			r.down[p.name] = append(r.down[p.name], fwdDownload(b, p.name, addr, d))
			b.Logf("%-26s set-up %.2f ms, up %.1f MB/s, down %.1f MB/s", p.name,
				ms(medianDur(r.setup[p.name][len(r.setup[p.name])-r.setupRuns:])), r.up[p.name][i].rate()/1e6, r.down[p.name][i].rate()/1e6)
			stop()
			waitIdle(b, emu)
			waitIdle(b, emuSSH)
		}
	}
	if rtt := *flagForwardRTT; rtt > 0 {
		r.rtt = rtt
		forwardAtDistance(b, r, tl, sshd, dest, rtt, logs)
	}
	report := r.markdown()
	b.Log("\n" + report)
	if *flagOut != "" {
		if err := replaceNamedSection(*flagOut, "forward", report); err != nil {
			b.Fatal(err)
		}
	}
}

var forwardReady = regexp.MustCompile(`ssm-proxy: forwarding (\S+) → `)

// startProxyForward runs `ssm-proxy forward i-… 0:PORT` and waits for its
// ready line.
func startProxyForward(b *testing.B, bin string, env []string, port string, logs *os.File) (string, func()) {
	b.Helper()
	cmd := exec.Command(bin, "forward", testenv.ExampleInstanceID, "0:"+port)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(logs, sc.Text())
			if m := forwardReady.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case ready <- m[1]:
				default:
				}
			}
		}
	}()
	stop := func() {
		cmd.Process.Signal(os.Interrupt) // ours, by its PID
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			b.Fatal("ssm-proxy forward did not exit on SIGINT")
		}
	}
	select {
	case addr := <-ready:
		return addr, stop
	case <-time.After(30 * time.Second):
		stop()
		b.Fatal("ssm-proxy forward not ready within 30 s (see its stderr in the log)")
	}
	return "", nil
}

// startSSHL runs `ssh -N -L` through c and waits until its local port
// accepts.
func startSSHL(b *testing.B, c *testenv.Client, env []string, dest string, logs *os.File) (string, func()) {
	b.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(b)))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := c.SSH(ctx, "-N", "-o", "ExitOnForwardFailure=yes", "-L", addr+":"+dest, c.Host)
	cmd.Env = env
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM) // ours, by its PID
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cancel()
			<-exited
		}
		cancel()
	}
	// ssh listens once the session is up; a connection it accepts is
	// closed at once (the destination sees a connection without a command).
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr, stop
		}
		select {
		case err := <-exited:
			b.Fatalf("ssh -L exited before listening: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			b.Fatal("ssh -L not listening within 60 s")
		}
	}
}

var pluginPortOpened = regexp.MustCompile(`Port (\d+) opened for sessionId`)

// startOfficialForward does what `aws ssm start-session --document-name
// AWS-StartPortForwardingSession --parameters
// portNumber=PORT,localPortNumber=0` does (§1.6): StartSession, then the
// plugin with the CLI's argv; it prints the port it listens on.
func startOfficialForward(b *testing.B, plugin string, emu *ssmtest.Server, api *ssm.Client, env []string, port string, logs *os.File, note func(string)) (string, func()) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := struct {
		Target       string
		DocumentName string
		Parameters   map[string][]string
	}{testenv.ExampleInstanceID, "AWS-StartPortForwardingSession", map[string][]string{"portNumber": {port}, "localPortNumber": {"0"}}}
	out, err := api.StartSession(ctx, &ssm.StartSessionInput{
		Target: aws.String(req.Target), DocumentName: aws.String(req.DocumentName), Parameters: req.Parameters,
	})
	if err != nil {
		b.Fatalf("StartSession: %v", err)
	}
	resp, _ := json.Marshal(map[string]string{
		"SessionId": aws.ToString(out.SessionId), "TokenValue": aws.ToString(out.TokenValue), "StreamUrl": aws.ToString(out.StreamUrl),
	})
	params, _ := json.Marshal(req)
	// The plugin's mux socket lives in TMPDIR: keep the path short
	// (sun_path).
	tmp, err := os.MkdirTemp("", "pf")
	if err != nil {
		b.Fatal(err)
	}
	cmd := &exec.Cmd{
		Path:   plugin,
		Args:   []string{"session-manager-plugin", string(resp), ssmtest.DefaultRegion, "StartSession", "", string(params), emu.Endpoint()},
		Env:    append(slices.Clone(env), "HOME="+tmp, "TMPDIR="+tmp),
		Stderr: logs,
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ready := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(logs, sc.Text())
			if m := pluginPortOpened.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case ready <- m[1]:
				default:
				}
			}
		}
		exited <- cmd.Wait()
	}()
	stop := func() {
		cmd.Process.Signal(os.Interrupt) // ours, by its PID: Ctrl-C ends the session (§7.4)
		how := "exited on SIGINT"
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			how = "did not exit within 30 s of SIGINT and was killed"
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(tmp)
		// Ctrl-C should have ended the session with the TerminateSession
		// flag; if it did not, end it as a user would have to, so that the
		// next measurement starts on an idle emulator, and say so.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if emu.WaitIdle(ctx) != nil {
			b.Logf("the official plugin %s; its session %s is still open", how, aws.ToString(out.SessionId))
			note(fmt.Sprintf("At least once the official plugin %s and left its session open; the benchmark ended it with TerminateSession.", how))
			tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer tcancel()
			if _, err := api.TerminateSession(tctx, &ssm.TerminateSessionInput{SessionId: out.SessionId}); err != nil {
				b.Fatalf("TerminateSession %s: %v", aws.ToString(out.SessionId), err)
			}
		}
	}
	select {
	case p := <-ready:
		return net.JoinHostPort("127.0.0.1", p), stop
	case err := <-exited:
		os.RemoveAll(tmp)
		b.Fatalf("the official plugin exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		stop()
		b.Fatal("the official plugin did not listen within 30 s")
	}
	return "", nil
}

// fwdSetup times a new connection through addr from the connect to the
// first echoed byte.
func fwdSetup(b *testing.B, path, addr string) time.Duration {
	b.Helper()
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte{cmdEcho, 'x'}); err != nil {
		b.Fatalf("%s: set-up: %v", path, err)
	}
	var one [1]byte
	if _, err := io.ReadFull(c, one[:]); err != nil || one[0] != 'x' {
		b.Fatalf("%s: set-up: read %q, %v", path, one, err)
	}
	return time.Since(start)
}

// fwdUpload sends n bytes through addr to the sink and times them from the
// first write to the sink's answer.
func fwdUpload(b *testing.B, path, addr string, n int64) xfer {
	b.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	hdr := make([]byte, 9)
	hdr[0] = cmdUpload
	binary.BigEndian.PutUint64(hdr[1:], uint64(n))
	buf := make([]byte, 64<<10)
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		if _, err := c.Write(hdr); err != nil {
			werr <- err
			return
		}
		for sent := int64(0); sent < n; {
			k, err := c.Write(buf[:min(int64(len(buf)), n-sent)])
			sent += int64(k)
			if err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	var one [1]byte
	if _, err := io.ReadFull(c, one[:]); err != nil {
		b.Fatalf("%s: upload: no answer from the sink: %v (write: %v)", path, err, <-werr)
	}
	if err := <-werr; err != nil {
		b.Fatalf("%s: upload: %v", path, err)
	}
	return xfer{Bytes: n, Secs: time.Since(start).Seconds()}
}

// fwdDownload reads n bytes from the source through addr, timed from the
// first byte to the last.
func fwdDownload(b *testing.B, path, addr string, n int64) xfer {
	b.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	hdr := make([]byte, 9)
	hdr[0] = cmdDownload
	binary.BigEndian.PutUint64(hdr[1:], uint64(n))
	if _, err := c.Write(hdr); err != nil {
		b.Fatalf("%s: download: %v", path, err)
	}
	buf := make([]byte, 256<<10)
	var got int64
	var first time.Time
	for got < n {
		k, err := c.Read(buf)
		if k > 0 && first.IsZero() {
			first = time.Now()
		}
		got += int64(k)
		if err != nil {
			if errors.Is(err, io.EOF) && got == n {
				break
			}
			b.Fatalf("%s: download: %d of %d bytes: %v", path, got, n, err)
		}
	}
	return xfer{Bytes: n, Secs: time.Since(first).Seconds()}
}

// note records something the report must say, once.
func (r *fwdResults) note(s string) {
	if !slices.Contains(r.notes, s) {
		r.notes = append(r.notes, s)
	}
}

func (r *fwdResults) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## Port forwarding")
	w("")
	runHeader(w, r.started, *flagQuick, r.load, "bash bench/run.sh --forward-only"+quickFlag())
	w("On loopback, unpaced emulator, one destination server (echo, source or sink). **ssm-proxy forward** `i-… 0:PORT`: AWS-StartPortForwardingSession, one smux stream per connection (§7.4); **ssh -L** through ssm-proxy: AWS-StartSSHSession to a real sshd, which opens the destination for each direct-tcpip channel; **official plugin** %s in its port-forwarding mode, started as the AWS CLI starts it, listening on the port it prints. Set-up: %d new TCP connections per forwarding once it is established, each timed from the connect to the first echoed byte. Throughput: one bulk connection each way, upload timed from the first write to the sink's answer, download from the first byte to the last.", "1.3.0.0", r.setupRuns)
	if r.rtt > 0 {
		w("")
		w("At a distance: the same set-ups with each path's emulator serving TLS behind latency links of %v RTT (as in the wide-area section; the destination and sshd next to the agent, without delay). A new connection over smux costs one round trip when its SYN and first bytes go out together (the agent dials, then echoes); ssh -L waits for sshd's channel-open confirmation before it sends, one more.", r.rtt)
	}
	w("")
	distance := ""
	if r.rtt > 0 {
		distance = fmt.Sprintf(" | set-up at %v RTT, median", r.rtt)
	}
	w("| path | set-up median, ms | set-up p90, ms%s | upload, MB/s | download, MB/s | sizes up / down |", distance)
	if r.rtt > 0 {
		w("|---|---:|---:|---:|---:|---:|---|")
	} else {
		w("|---|---:|---:|---:|---:|---|")
	}
	for _, p := range r.paths {
		var s []float64
		for _, d := range r.setup[p] {
			s = append(s, ms(d))
		}
		far := ""
		if r.rtt > 0 {
			d := medianDur(r.setupWAN[p])
			far = fmt.Sprintf(" | %.0f ms = %.2f RTT", ms(d), rtts(d, r.rtt))
		}
		w("| %s | %s | %s%s | %s | %s | %s / %s |", p, f(median(s), 2), f(quantile(s, .9), 2), far, f(medianRate(r.up[p])/1e6, 2), f(medianRate(r.down[p])/1e6, 2), mib(r.sizeUp[p]), mib(r.sizeDown[p]))
	}
	w("")
	for _, n := range r.notes {
		w("Note: %s", n)
		w("")
	}
	w("<details><summary>Every run</summary>")
	w("")
	w("| path | measurement | runs |")
	w("|---|---|---|")
	for _, p := range r.paths {
		for _, set := range []struct {
			name string
			xs   []xfer
		}{{"upload", r.up[p]}, {"download", r.down[p]}} {
			var s []string
			for _, x := range set.xs {
				s = append(s, fmt.Sprintf("%.2f MB/s (%s in %.2f s)", x.rate()/1e6, mib(x.Bytes), x.Secs))
			}
			w("| %s | %s | %s |", p, set.name, strings.Join(s, ", "))
		}
	}
	w("")
	w("</details>")
	w("")
	return b.String()
}
