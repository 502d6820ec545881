package bench

// What the benchmarks beyond BenchmarkSideBySide share: the binaries they
// run, built once per `go test` process (or once per bench/run.sh, which
// passes -tools), the throw-away TLS set-up of the wide-area runs, the
// official client's port-forwarding start, and small statistics.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/bench/internal/wan"
	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

var (
	flagTools = flag.String("tools", "", "directory the benchmarks build their binaries into and reuse them from (default: a temporary one)")
	flagRev   = flag.String("rev", "", "the commit the binaries are built from, for the report (bench/run.sh passes it)")
)

// toolset is the binaries the benchmarks run. Plugin and Shim are empty
// when the official client could not be built (OfficialErr says why) or
// was not wanted (-official=false).
type toolset struct {
	Proxy, Rusage, NullProxy string
	Plugin, Shim             string
	OfficialErr              error
}

var (
	toolsOnce sync.Once
	toolsSet  *toolset
	toolsErr  error
	toolsTemp string // removed by TestMain
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if toolsTemp != "" {
		os.RemoveAll(toolsTemp)
	}
	os.Exit(code)
}

// tools builds (or finds, in -tools) every binary, once per process.
func tools(b *testing.B) *toolset {
	b.Helper()
	toolsOnce.Do(func() { toolsSet, toolsErr = buildTools() })
	if toolsErr != nil {
		b.Fatal(toolsErr)
	}
	return toolsSet
}

func buildTools() (*toolset, error) {
	dir := *flagTools
	if dir == "" {
		d, err := os.MkdirTemp("", "ssm-proxy-bench-tools")
		if err != nil {
			return nil, err
		}
		dir, toolsTemp = d, d
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	build := func(moduleDir string, env []string, name, pkg string) (string, error) {
		out := filepath.Join(dir, name)
		if _, err := os.Stat(out); err == nil {
			return out, nil
		}
		// Build beside the final name and rename, so that a reader never
		// sees a half-written binary.
		tmp := out + ".tmp"
		if _, err := tryGoBuild(moduleDir, env, tmp, pkg); err != nil {
			return "", err
		}
		return out, os.Rename(tmp, out)
	}
	t := &toolset{}
	for _, x := range []struct {
		dst       *string
		name, pkg string
	}{{&t.Proxy, "ssm-proxy", "."}, {&t.Rusage, "rusage-exec", "./bench/cmd/rusage-exec"}, {&t.NullProxy, "nullproxy", "./bench/cmd/nullproxy"}} {
		if *x.dst, err = build(root, nil, x.name, x.pkg); err != nil {
			return nil, err
		}
	}
	if !*flagOfficial {
		t.OfficialErr = errors.New("not built (-official=false, bench/run.sh --no-official)")
		return t, nil
	}
	interop := filepath.Join(root, "interop")
	env := []string{"GOWORK=off"}
	plugin, err1 := build(interop, env, "session-manager-plugin", "github.com/aws/session-manager-plugin/src/sessionmanagerplugin-main")
	shim, err2 := build(interop, env, "startsession-shim", "./cmd/startsession-shim")
	if err := errors.Join(err1, err2); err != nil {
		t.OfficialErr = fmt.Errorf("the official client could not be built here: %s", firstLine(err.Error()))
		return t, nil
	}
	t.Plugin, t.Shim = plugin, shim
	return t, nil
}

// messagesHost is the host the wide-area emulator names in the StreamUrls
// it gives ssm-proxy, as the real service names its messages endpoint
// (§1.2); ssm-proxy reaches it through its messages-endpoint override,
// AWS_ENDPOINT_URL_SSMMESSAGES, pointed at the link. The official plugin,
// which dials the StreamUrl as it is, gets an emulator whose StreamUrls
// name the link itself.
const messagesHost = "ssmmessages." + ssmtest.DefaultRegion + ".amazonaws.com"

// newTLS makes a CA and a server certificate for loopback and
// messagesHost, and writes the CA to a file under dir.
func newTLS(b *testing.B, dir string) (opts ssmtest.Options, caFile string) {
	b.Helper()
	cfg, caPEM, err := ssmtest.NewTLSConfig(messagesHost)
	if err != nil {
		b.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		b.Fatal(err)
	}
	return ssmtest.Options{TLS: cfg}, caFile
}

// systemBundles are where Debian and Fedora keep the system's trusted
// roots, the first files crypto/x509 looks for on Linux.
var systemBundles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}

// tlsEnv is what makes every client trust caFile as a user's machine
// trusts a service: the system's roots with caFile added, through Go's
// SSL_CERT_FILE, and no AWS_CA_BUNDLE. So each client loads the system's
// roots, as it does outside the bench (with AWS_CA_BUNDLE naming the CA
// alone the SDK would verify against that one certificate, which no real
// set-up does).
func tlsEnv(b *testing.B, caFile string) []string {
	b.Helper()
	trust, err := os.ReadFile(caFile)
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range systemBundles {
		if sys, err := os.ReadFile(f); err == nil {
			trust = append(append(sys, '\n'), trust...)
			break
		}
	}
	name := strings.TrimSuffix(caFile, ".pem") + "-trust.pem"
	if err := os.WriteFile(name, trust, 0o644); err != nil {
		b.Fatal(err)
	}
	return []string{"SSL_CERT_FILE=" + name}
}

// loadAvg is the 1-minute load average now ("" if unknown).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

// runHeader is the first lines of every generated section: when, how big,
// the machine's load at the start and at the end.
func runHeader(w func(string, ...any), started time.Time, quick bool, loadStart, command string) {
	mode := "full run"
	if quick {
		mode = "quick run (`--quick`, indicative only)"
	}
	built := ""
	if *flagRev != "" {
		built = " of ssm-proxy built from " + *flagRev
	}
	w("%s, %s%s, took %s, %d CPUs (GOMAXPROCS %d); load average %s at the start, %s at the end. Produced by `%s`.",
		started.UTC().Format("2006-01-02 15:04 MST"), mode, built, time.Since(started).Round(time.Second),
		runtime.NumCPU(), runtime.GOMAXPROCS(0), loadStart, loadAvg(), command)
	w("")
}

// waitIdle waits for emu to have no session left.
func waitIdle(b *testing.B, emu *ssmtest.Server) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := emu.WaitIdle(ctx); err != nil {
		b.Fatalf("emulator not idle: %v (stats %+v)", err, emu.Stats())
	}
}

// durations' medians and friends, in the unit the caller chooses.
func medianDur(v []time.Duration) time.Duration {
	var f []float64
	for _, d := range v {
		f = append(f, float64(d))
	}
	return time.Duration(median(f))
}

// wanEmulator is an emulator serving TLS behind two latency links, one for
// the SSM API and one for the data channel, and the environment of a
// client that reaches it through them.
type wanEmulator struct {
	emu      *ssmtest.Server
	api, msg *wan.Link
	env      []string
}

// startWANEmulator starts o (its TLS, AdvertiseAddr and StreamURLHost
// filled in) behind links of rtt. ownStreamHost: the StreamUrls name the
// data-channel link, for a client that dials them as they are (the
// official plugin); else they name messagesHost, which the client reaches
// through AWS_ENDPOINT_URL_SSMMESSAGES pointed at the link (ssm-proxy).
func startWANEmulator(b *testing.B, o ssmtest.Options, tlsOpts ssmtest.Options, caFile string, ownStreamHost bool, rtt time.Duration) *wanEmulator {
	b.Helper()
	newLink := func(name string) *wan.Link {
		l, err := wan.Listen(name, "", rtt)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		return l
	}
	w := &wanEmulator{api: newLink("api"), msg: newLink("messages")}
	o.TLS = tlsOpts.TLS
	o.AdvertiseAddr = w.api.Addr()
	o.StreamURLHost = messagesHost
	if ownStreamHost {
		o.StreamURLHost = w.msg.Addr()
	}
	emu, err := ssmtest.Start(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { emu.Close() })
	w.emu = emu
	w.api.SetUpstream(emu.Addr())
	w.msg.SetUpstream(emu.Addr())
	w.env = append(ssmtest.ClientEnv(b, emu.Endpoint()), tlsEnv(b, caFile)...)
	if !ownStreamHost {
		w.env = append(w.env, "AWS_ENDPOINT_URL_SSMMESSAGES=https://"+w.msg.Addr())
	}
	return w
}

// cpuClock reads the machine's busy CPU time (all cores, from /proc/stat:
// user, nice, system, irq, softirq) and this process's own (getrusage):
// the CPU a run cost the machine, and how much of it the in-process
// emulator took. ok is false where /proc/stat cannot be read.
func cpuClock() (machine, self time.Duration, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, self, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, self, false
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, self, false
		}
		ticks += n
	}
	// USER_HZ is 100 on every Linux this runs on.
	return time.Duration(ticks) * 10 * time.Millisecond, self, true
}
