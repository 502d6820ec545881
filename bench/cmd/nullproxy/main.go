// Command nullproxy is the null client (bench/internal/nullclient) as an
// ssh ProxyCommand: the least a client can do between ssh and the agent.
// The side-by-side benchmark runs paced downloads through it to measure
// the pacing ceiling of the whole ssh chain (agent, sshd, ssh) on this
// machine, in the same rounds as the real clients:
//
//	ProxyCommand nullproxy %h %p
//
// It reads the endpoint and credentials from the environment (ssmtest's
// ClientEnv) and is fit only for the fault-free emulator: it neither
// reorders nor resumes. ssh's SIGHUP, or the agent closing the channel,
// ends it; it terminates the session on the way out.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/bench/internal/nullclient"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: nullproxy TARGET PORT")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// A write after ssh has gone fails with EPIPE instead of killing the
	// process before it ends the session.
	signal.Ignore(syscall.SIGPIPE)
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nullproxy: error:", err)
		os.Exit(1)
	}
	s, err := nullclient.Start(ctx, ssm.NewFromConfig(cfg), os.Args[1], map[string][]string{"portNumber": {os.Args[2]}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "nullproxy: error:", err)
		os.Exit(1)
	}
	done := make(chan error, 1)
	go func() { done <- s.Proxy(os.Stdin, os.Stdout) }()
	select {
	case err = <-done:
	case <-ctx.Done():
	}
	tctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if terr := s.Terminate(tctx); err == nil {
		err = terr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nullproxy: error:", err)
		os.Exit(1)
	}
}
