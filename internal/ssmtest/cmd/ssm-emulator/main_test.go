package main

// The ssm-emulator command: -h naming every flag and inventory field, usage
// errors, serving in-process until its context ends, TLS with -tls-ca-out,
// each knob's flag setting its Options field, and the built binary stopped
// by SIGTERM. What each knob does is the ssmtest package's tests; no other
// test level runs the command (scripts/demo.sh does).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

const testInventory = "../../testdata/inventory.json"

// TestHelp: -h prints the usage once, on stdout, and it names every flag
// and every inventory field.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{arg}, &stdout, &stderr); code != exitOK || stderr.Len() != 0 {
			t.Fatalf("%s: exit %d, stderr %q", arg, code, stderr.String())
		}
		if got := stdout.String(); got != usage || strings.Count(got, "Usage: ssm-emulator") != 1 {
			t.Fatalf("%s printed:\n%s", arg, got)
		}
	}
	// Every flag the command defines is documented.
	newFlagSet(&config{}).VisitAll(func(f *flag.Flag) {
		if !regexp.MustCompile(`(?m)^  (-\S+, )?-` + f.Name + `[ ,\n]`).MatchString(usage) {
			t.Errorf("usage does not document -%s", f.Name)
		}
	})
	// And every field of the inventory file.
	typ := reflect.TypeOf(ssmtest.Instance{})
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if !strings.Contains(usage, "\n  "+name+" ") {
			t.Errorf("usage does not document the inventory field %s", name)
		}
	}
}

func TestUsage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"-nope"}, exitUsage, "flag provided but not defined: -nope"},
		{"argument", []string{"extra"}, exitUsage, `unexpected argument "extra"`},
		{"bad duration", []string{"-latency", "soon"}, exitUsage, "invalid value"},
		{"probability", []string{"-ack-loss", "1.5"}, exitUsage, "-ack-loss 1.5: want a probability"},
		{"negative duration", []string{"-bye-every", "-1s"}, exitUsage, "-bye-every -1s"},
		{"page size", []string{"-page-size", "0"}, exitUsage, "-page-size 0"},
		{"pause pair", []string{"-pause-every", "1s"}, exitUsage, "go together"},
		{"close code", []string{"-close-on-open", "999"}, exitUsage, "-close-on-open 999"},
		{"close text alone", []string{"-close-on-open-text", "Bye"}, exitUsage, "need -close-on-open"},
		{"hang", []string{"-hang", "StartSession,SendCommand"}, exitUsage, `-hang "SendCommand"`},
		{"negative bytes", []string{"-huge-frame-bytes", "-1"}, exitUsage, "-huge-frame-bytes -1"},
		{"negative rate", []string{"-throttle-rate", "-1"}, exitUsage, "-throttle-rate -1"},
		{"forward host", []string{"-forward-host", "db.internal"}, exitUsage, `-forward-host "db.internal": want NAME=IP`},
		{"forward host ip", []string{"-forward-host", "db=not-an-ip"}, exitUsage, `-forward-host "db=not-an-ip"`},
		{"tls pair", []string{"-tls-cert", "c.pem"}, exitUsage, "go together"},
		{"bad tls files", []string{"-tls-cert", "none.pem", "-tls-key", "none.pem"}, exitError, "-tls-cert/-tls-key"},
		{"bad minimum", []string{"-min-client-version", "latest"}, exitError, "MinClientVersion"},
		{"bad inventory", []string{"-inventory", filepath.Join(t.TempDir(), "none.json")}, exitError, "read inventory"},
		{"listen fails", []string{"-listen", "256.0.0.1:0"}, exitError, "listen"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), c.args, &stdout, &stderr)
			if code != c.code || stdout.Len() != 0 || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("exit %d (want %d), stdout %q, stderr:\n%s\nwant %q", code, c.code, stdout.String(), stderr.String(), c.want)
			}
			// A usage error is one line and a pointer to -h, not the
			// whole usage.
			if c.code == exitUsage && (strings.Count(stderr.String(), "\n") != 2 || !strings.Contains(stderr.String(), "ssm-emulator: hint: ssm-emulator -h")) {
				t.Errorf("usage error is not one line and a hint:\n%s", stderr.String())
			}
		})
	}
}

// describe lists every instance id of the emulator at endpoint through the
// SDK with the fixed credentials, following NextToken.
func describe(t *testing.T, endpoint string, filters ...types.InstanceInformationStringFilter) []string {
	t.Helper()
	client := ssmtest.APIClient(endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	p := ssm.NewDescribeInstanceInformationPaginator(client, &ssm.DescribeInstanceInformationInput{Filters: filters})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("describe: %v", err)
		}
		for _, info := range out.InstanceInformationList {
			ids = append(ids, aws.ToString(info.InstanceId))
		}
	}
	return ids
}

// readEndpoint reads the first stdout line and returns the endpoint in it.
func readEndpoint(t *testing.T, r io.Reader) string {
	t.Helper()
	return readEndpointScheme(t, r, "http")
}

// readEndpointScheme is readEndpoint for an http or https endpoint.
func readEndpointScheme(t *testing.T, r io.Reader, scheme string) string {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		endpoint, ok := strings.CutPrefix(strings.TrimSuffix(s, "\n"), "endpoint ")
		if !ok || !strings.HasPrefix(endpoint, scheme+"://127.0.0.1:") {
			t.Fatalf("first stdout line = %q", s)
		}
		return endpoint
	case <-time.After(30 * time.Second):
		t.Fatal("no endpoint line within 30s")
	}
	return ""
}

// lastStats decodes the last line of stderr as Stats.
func lastStats(t *testing.T, stderr string) ssmtest.Stats {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	var st ssmtest.Stats
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &st); err != nil || st.Endings == nil {
		t.Fatalf("last stderr line is not Stats (%v):\n%s", err, stderr)
	}
	return st
}

// lineWriter collects what run writes to stderr and tells waiters each
// time a line is complete.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan struct{} // cap 1
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan struct{}, 1)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Contains(p, []byte("\n")) {
		select {
		case w.lines <- struct{}{}:
		default:
		}
	}
	return w.buf.Write(p)
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits up to d until the text written contains want n times.
func (w *lineWriter) waitFor(t *testing.T, d time.Duration, want string, n int) {
	t.Helper()
	deadline := time.After(d)
	for strings.Count(w.String(), want) < n {
		select {
		case <-w.lines:
		case <-deadline:
			t.Fatalf("stderr has %q fewer than %d times:\n%s", want, n, w.String())
		}
	}
}

// TestRun serves in-process until the context ends.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	stderr := newLineWriter()
	code := make(chan int, 1)
	args := []string{"-inventory", testInventory, "-page-size", "1", "-stats-every", "10ms", "-v", "-seed", "7"}
	go func() { code <- run(ctx, args, outW, stderr) }()
	endpoint := readEndpoint(t, outR)

	ids := describe(t, endpoint, types.InstanceInformationStringFilter{Key: aws.String("tag:Env"), Values: []string{"prod"}})
	if got := strings.Join(ids, " "); got != "i-0123456789abcdef0 i-0fedcba9876543210" {
		t.Errorf("prod instances = %s", got)
	}
	stderr.waitFor(t, 10*time.Second, `"SessionsStarted":`, 2) // periodic stats
	cancel()
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("exit %d", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	out := stderr.String()
	for _, want := range []string{"export AWS_ENDPOINT_URL_SSM=" + endpoint + "\n", "export AWS_ENDPOINT_URL_STS=" + endpoint + "\n",
		"export AWS_ACCESS_KEY_ID=AKIDEXAMPLE\n", "export AWS_REGION=us-east-1\n", "ssm-emulator: api: DescribeInstanceInformation"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"AWS_ENDPOINT_URL_SSMMESSAGES", "AWS_CA_BUNDLE"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("stderr has %s without -stream-url-host or TLS:\n%s", unwanted, out)
		}
	}
	lastStats(t, out)
}

// TestRunTLS: -tls-ca-out serves HTTPS with a CA written to the file, and
// -stream-url-host names the messages host; the hints say how to reach
// and trust both.
func TestRunTLS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	stderr := newLineWriter()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	const host = "ssmmessages.us-east-1.amazonaws.com"
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-tls-ca-out", caFile, "-stream-url-host", host, "-move-cell-on-resume"}, outW, stderr)
	}()
	endpoint := readEndpointScheme(t, outR, "https")
	stderr.waitFor(t, 10*time.Second, "unset AWS_PROFILE", 1)

	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s is not a PEM certificate", caFile)
	}
	client := ssm.New(ssm.Options{
		Region: ssmtest.DefaultRegion, BaseEndpoint: aws.String(endpoint), Credentials: ssmtest.Credentials(), RetryMaxAttempts: 1,
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}},
	})
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	out, err := client.StartSession(rctx, &ssm.StartSessionInput{Target: aws.String("i-0123456789abcdef0"), DocumentName: aws.String("AWS-StartSSHSession")})
	if err != nil {
		t.Fatalf("StartSession over TLS: %v", err)
	}
	first := aws.ToString(out.StreamUrl)
	if !strings.HasPrefix(first, "wss://"+host+"/v1/data-channel/") {
		t.Errorf("StreamUrl %s", first)
	}
	res, err := client.ResumeSession(rctx, &ssm.ResumeSessionInput{SessionId: out.SessionId})
	if err != nil || aws.ToString(res.StreamUrl) == first {
		t.Errorf("ResumeSession under -move-cell-on-resume: %v, StreamUrl %s (was %s)", err, aws.ToString(res.StreamUrl), first)
	}
	cancel()
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("exit %d", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	hints := stderr.String()
	abs, _ := filepath.Abs(caFile)
	for _, want := range []string{"export AWS_ENDPOINT_URL_SSM=" + endpoint + "\n", "export AWS_ENDPOINT_URL_STS=" + endpoint + "\n",
		"export AWS_ENDPOINT_URL_SSMMESSAGES=" + endpoint + "\n", "export AWS_CA_BUNDLE=" + abs + "\n"} {
		if !strings.Contains(hints, want) {
			t.Errorf("stderr lacks %q:\n%s", want, hints)
		}
	}
	if st := lastStats(t, hints); st.CellMoves != 1 || st.SessionsStarted != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestFlagsSetOptions: each knob's flag sets its Options field.
func TestFlagsSetOptions(t *testing.T) {
	cases := []struct {
		args  []string
		check func(o ssmtest.Options) bool
	}{
		{[]string{"-advertise", "127.0.0.1:9"}, func(o ssmtest.Options) bool { return o.AdvertiseAddr == "127.0.0.1:9" }},
		{[]string{"-stream-url-host", "h.example"}, func(o ssmtest.Options) bool { return o.StreamURLHost == "h.example" }},
		{nil, func(o ssmtest.Options) bool { return o.MinClientVersion == "1.2.764.0" && !o.AnyClientVersion }},
		{[]string{"-min-client-version", "1.3.0.0"}, func(o ssmtest.Options) bool { return o.MinClientVersion == "1.3.0.0" }},
		{[]string{"-any-client-version"}, func(o ssmtest.Options) bool { return o.AnyClientVersion }},
		{[]string{"-move-cell-on-resume"}, func(o ssmtest.Options) bool { return o.MoveCellOnResume }},
		{[]string{"-close-on-open", "1011", "-close-on-open-text", "oops", "-close-on-open-count", "3"}, func(o ssmtest.Options) bool {
			return o.CloseOnOpen == ssmtest.CloseOnOpenOptions{Code: 1011, Text: "oops", Opens: 3}
		}},
		{[]string{"-huge-frame-bytes", "67108864"}, func(o ssmtest.Options) bool { return o.HugeFrameBytes == 64<<20 }},
		{[]string{"-malformed-channel-closed"}, func(o ssmtest.Options) bool { return o.MalformedChannelClosed }},
		{[]string{"-hang", "StartSession, GetCallerIdentity"}, func(o ssmtest.Options) bool {
			return reflect.DeepEqual(o.HangOperations, []string{"StartSession", "GetCallerIdentity"})
		}},
		{[]string{"-throttle-rate", "2.5", "-throttle-burst", "4"}, func(o ssmtest.Options) bool { return o.ThrottleRate == 2.5 && o.ThrottleBurst == 4 }},
		{[]string{"-refuse-signatures"}, func(o ssmtest.Options) bool { return o.RefuseSignatures }},
		{[]string{"-blackhole-every-bytes", "100"}, func(o ssmtest.Options) bool { return o.BlackholeEvery == 100 }},
		{[]string{"-forward-host", "db.internal=10.0.0.5,db.internal=10.0.0.6, cache=::1"}, func(o ssmtest.Options) bool {
			return reflect.DeepEqual(o.Forwarding.Hosts, map[string][]string{"db.internal": {"10.0.0.5", "10.0.0.6"}, "cache": {"::1"}})
		}},
		{[]string{"-forward-dial-delay", "2s", "-forward-keepalive", "1s"}, func(o ssmtest.Options) bool {
			return o.Forwarding.DialDelay == 2*time.Second && o.Forwarding.KeepAliveInterval == time.Second
		}},
		{nil, func(o ssmtest.Options) bool { return o.InstanceConnect.KeyLifetime == ssmtest.DefaultKeyLifetime }},
		{[]string{"-eic-key-lifetime", "5s", "-eic-throttle-rate", "3", "-eic-throttle-burst", "2", "-eic-fail-first", "1",
			"-eic-deny-users", "root,admin", "-eic-deny-instances", "i-0123456789abcdef1"}, func(o ssmtest.Options) bool {
			ic := o.InstanceConnect
			return ic.KeyLifetime == 5*time.Second && ic.ThrottleRate == 3 && ic.ThrottleBurst == 2 && ic.FailFirst == 1 &&
				reflect.DeepEqual(ic.DeniedUsers, []string{"root", "admin"}) && reflect.DeepEqual(ic.DeniedInstances, []string{"i-0123456789abcdef1"})
		}},
	}
	for _, c := range cases {
		cfg, err := parseFlags(c.args)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if !c.check(cfg.opts) {
			t.Errorf("%q: options %+v", c.args, cfg.opts)
		}
	}
}

// TestBinary builds the command, runs it, makes one SDK call and stops it
// with SIGTERM by its pid.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "ssm-emulator")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "-inventory", testInventory)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill() // only our own child, by its pid
		}
	})
	endpoint := readEndpoint(t, stdout)

	if ids := describe(t, endpoint); len(ids) != 6 || ids[5] != "mi-0123456789abcdef1" {
		t.Errorf("instances = %v", ids)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		io.Copy(io.Discard, stdout) // the pipe must be drained before Wait
		exited <- cmd.Wait()
	}()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15s after SIGTERM")
	}
	lastStats(t, stderr.String())
	if !strings.Contains(stderr.String(), "export AWS_ENDPOINT_URL_SSM="+endpoint) {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}
