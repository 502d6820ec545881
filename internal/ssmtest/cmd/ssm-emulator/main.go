// Command ssm-emulator runs the ssmtest Session Manager emulator as a
// process, for trying ssm-proxy, the official plugin or the AWS CLI against
// it by hand.
//
//	go run ./internal/ssmtest/cmd/ssm-emulator -target-addr 127.0.0.1:22
//
// The first line on stdout is "endpoint http://127.0.0.1:PORT"; everything
// else goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

const usage = `Usage: ssm-emulator [flags]

Runs a local AWS Session Manager emulator: the SSM API (StartSession,
ResumeSession, TerminateSession, DescribeInstanceInformation), the message
gateway's data channel and the agent's port plugin, on one port.

The first line on stdout is "endpoint http://HOST:PORT". Shell settings for
clients follow on stderr. It serves until SIGINT or SIGTERM, then prints its
counters as one JSON line on stderr. Requests must be signed with the fixed
test credentials it prints.

Service:
  -listen ADDR              listen address (default 127.0.0.1:0, a free port)
  -inventory FILE           instances: a JSON array, or {"Instances": [...]}
                            (default: the built-in test inventory)
  -target-addr HOST:PORT    every session dials this instead of localhost:PORT
  -region REGION            region requests must be signed for (default us-east-1)
  -page-size N              DescribeInstanceInformation page size (default 2)
  -require-signed-upgrade   refuse websocket upgrades without a SigV4 signature

Agent:
  -agent-version V          AgentVersion in HandshakeRequest (default: the instance's)
  -handshake-timeout D      how long to wait for HandshakeResponse (default 15s)
  -pacing                   1024-byte reads and 1 ms per message, as the real agent

Faults:
  -bye-every D              close each websocket with 1000 "Bye" after D
  -drop-every-bytes N       cut the connection each time N stream bytes crossed it
  -blackhole-every-bytes N  after N stream bytes, stop reading and writing
  -ack-loss P               probability (0..1) that an ack is lost
  -duplicate P              probability that a stream frame is sent twice
  -reorder P                probability that a stream frame is sent after the next
  -pause-every D            send pause_publication every D ...
  -pause-for D              ... and start_publication D later
  -idle-timeout D           end sessions with no client data for D
  -latency D                delay every frame by D
  -seed N                   seed of the fault randomness (default 1)

Output:
  -stats-every D            also print the counters every D
  -v                        log requests and sessions

Exit status: 0 after a signal, 1 if it cannot start, 2 for bad usage.
`

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the parsed command line.
type config struct {
	listen     string
	inventory  string
	statsEvery time.Duration
	verbose    bool
	opts       ssmtest.Options
}

// usageError is a bad command line, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// run is the whole command; it returns the exit status. It serves until
// ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	stderr = &syncWriter{w: stderr}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "ssm-emulator: error: %s\n", ue.msg)
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "ssm-emulator: error: %v\n", err)
		return exitUsage
	}
	if err := serve(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "ssm-emulator: error: %v\n", err)
		return exitError
	}
	return exitOK
}

// parseFlags parses args into a config.
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	o := &cfg.opts
	fs := flag.NewFlagSet("ssm-emulator", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by run, with the usage
	fs.Usage = func() { fmt.Fprint(stderr, usage) }

	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:0", "")
	fs.StringVar(&cfg.inventory, "inventory", "", "")
	fs.StringVar(&o.TargetAddr, "target-addr", "", "")
	fs.StringVar(&o.Region, "region", ssmtest.DefaultRegion, "")
	fs.IntVar(&o.PageSize, "page-size", 2, "")
	fs.BoolVar(&o.RequireSignedUpgrade, "require-signed-upgrade", false, "")
	fs.StringVar(&o.AgentVersion, "agent-version", "", "")
	fs.DurationVar(&o.HandshakeTimeout, "handshake-timeout", 15*time.Second, "")
	fs.BoolVar(&o.Pacing, "pacing", false, "")
	fs.DurationVar(&o.ByeEvery, "bye-every", 0, "")
	fs.Int64Var(&o.DropEveryBytes, "drop-every-bytes", 0, "")
	fs.Int64Var(&o.BlackholeEvery, "blackhole-every-bytes", 0, "")
	fs.Float64Var(&o.AckLoss, "ack-loss", 0, "")
	fs.Float64Var(&o.Duplicate, "duplicate", 0, "")
	fs.Float64Var(&o.Reorder, "reorder", 0, "")
	fs.DurationVar(&o.PauseEvery, "pause-every", 0, "")
	fs.DurationVar(&o.PauseFor, "pause-for", 0, "")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 0, "")
	fs.DurationVar(&o.Latency, "latency", 0, "")
	fs.Int64Var(&o.Seed, "seed", 1, "")
	fs.DurationVar(&cfg.statsEvery, "stats-every", 0, "")
	fs.BoolVar(&cfg.verbose, "v", false, "")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return nil, err
		}
		return nil, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return cfg, cfg.check()
}

// check refuses values Options cannot mean.
func (cfg *config) check() error {
	o := &cfg.opts
	for name, p := range map[string]float64{"-ack-loss": o.AckLoss, "-duplicate": o.Duplicate, "-reorder": o.Reorder} {
		if p < 0 || p > 1 {
			return &usageError{fmt.Sprintf("%s %v: want a probability between 0 and 1", name, p)}
		}
	}
	for name, d := range map[string]time.Duration{"-handshake-timeout": o.HandshakeTimeout, "-bye-every": o.ByeEvery,
		"-pause-every": o.PauseEvery, "-pause-for": o.PauseFor, "-idle-timeout": o.IdleTimeout, "-latency": o.Latency,
		"-stats-every": cfg.statsEvery} {
		if d < 0 {
			return &usageError{fmt.Sprintf("%s %v: want a duration of 0 or more", name, d)}
		}
	}
	switch {
	case o.DropEveryBytes < 0 || o.BlackholeEvery < 0:
		return &usageError{"-drop-every-bytes and -blackhole-every-bytes want 0 or more"}
	case o.PageSize < 1:
		return &usageError{fmt.Sprintf("-page-size %d: want 1 or more", o.PageSize)}
	case (o.PauseEvery > 0) != (o.PauseFor > 0):
		return &usageError{"-pause-every and -pause-for go together"}
	case o.Region == "":
		return &usageError{"-region must not be empty"}
	}
	return nil
}

// serve runs the emulator until ctx is done.
func serve(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	if cfg.inventory != "" {
		insts, err := ssmtest.LoadInstances(cfg.inventory)
		if err != nil {
			return err
		}
		cfg.opts.Instances = insts
	}
	if cfg.verbose {
		cfg.opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(stderr, "ssm-emulator: "+format+"\n", args...)
		}
	}
	srv, err := ssmtest.StartAddr(cfg.listen, cfg.opts)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "endpoint %s\n", srv.Endpoint()); err != nil {
		srv.Close()
		return fmt.Errorf("write endpoint: %w", err)
	}
	printHints(stderr, srv)

	var wg sync.WaitGroup
	done := make(chan struct{})
	if cfg.statsEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			printStatsEvery(stderr, srv, cfg.statsEvery, done)
		}()
	}
	<-ctx.Done()
	close(done)
	wg.Wait()
	err = srv.Close()
	printStats(stderr, srv.Stats())
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// printHints tells the user how to point clients at srv.
func printHints(w io.Writer, srv *ssmtest.Server) {
	o := srv.Options()
	fmt.Fprintf(w, "# ssm-emulator: %d instances; point clients at it with:\n", len(o.Instances))
	fmt.Fprintf(w, "export AWS_ENDPOINT_URL_SSM=%s\n", srv.Endpoint())
	fmt.Fprintf(w, "export AWS_ACCESS_KEY_ID=%s\n", ssmtest.AccessKeyID)
	fmt.Fprintf(w, "export AWS_SECRET_ACCESS_KEY=%s\n", ssmtest.SecretAccessKey)
	fmt.Fprintf(w, "export AWS_REGION=%s\n", o.Region)
	fmt.Fprintln(w, "export AWS_EC2_METADATA_DISABLED=true")
	fmt.Fprintln(w, "unset AWS_PROFILE AWS_SESSION_TOKEN")
}

// printStatsEvery prints the counters every interval until done closes.
func printStatsEvery(w io.Writer, srv *ssmtest.Server, every time.Duration, done <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			printStats(w, srv.Stats())
		}
	}
}

// printStats writes st as one JSON line.
func printStats(w io.Writer, st ssmtest.Stats) {
	b, err := json.Marshal(st)
	if err != nil {
		fmt.Fprintf(w, "ssm-emulator: error: encode stats: %v\n", err)
		return
	}
	fmt.Fprintf(w, "%s\n", b)
}

// syncWriter serialises writes from the emulator's goroutines, the stats
// ticker and run, so that lines never interleave.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
