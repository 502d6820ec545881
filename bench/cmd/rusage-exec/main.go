//go:build unix

// Command rusage-exec runs a command as its child and, when the child has
// exited, appends the child's resource usage to a file. The benchmarks put
// it in front of an ssh ProxyCommand to measure the proxy's own CPU time
// and peak RSS:
//
//	ProxyCommand rusage-exec -o /tmp/usage -label ssm-proxy -- ssm-proxy %h %p
//
// The line appended is
//
//	LABEL PID USER_SECONDS SYS_SECONDS MAXRSS_KIB WALL_SECONDS EXIT
//
// from wait4's rusage (which also covers descendants the child waited for).
// ssh sends SIGHUP to its ProxyCommand when it exits; rusage-exec catches
// SIGHUP, SIGINT and SIGTERM and passes them on to the child, so the child
// sees what it would see as the ProxyCommand itself and rusage-exec lives on
// to record it. Signals that were ignored when rusage-exec started stay
// ignored, for it and the child. The exit status is the child's, or 128+N
// if signal N ended it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

const usage = `Usage: rusage-exec -o FILE [-label LABEL] -- COMMAND [ARG...]

Runs COMMAND with this process's standard streams, forwards SIGHUP, SIGINT
and SIGTERM to it, and when it exits appends
"LABEL PID USER_S SYS_S MAXRSS_KIB WALL_S EXIT" to FILE.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("rusage-exec", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	out := fs.String("o", "", "")
	label := fs.String("label", "cmd", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *out == "" || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "rusage-exec: error: need -o FILE and a command")
		fs.Usage()
		return 2
	}

	var forward []os.Signal
	for _, s := range []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
		if !signal.Ignored(s) {
			forward = append(forward, s)
		}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, forward...)

	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "rusage-exec: error: %v\n", err)
		return 127
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
wait:
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s) // our own child, by its pid
		case err = <-waited:
			break wait
		}
	}
	wall := time.Since(start)
	st := cmd.ProcessState
	if st == nil {
		fmt.Fprintf(os.Stderr, "rusage-exec: error: %v\n", err)
		return 1
	}
	code := st.ExitCode()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	ru, _ := st.SysUsage().(*syscall.Rusage)
	if ru == nil {
		ru = &syscall.Rusage{}
	}
	line := fmt.Sprintf("%s %d %.6f %.6f %d %.6f %d\n", *label, cmd.Process.Pid,
		tvSeconds(ru.Utime), tvSeconds(ru.Stime), ru.Maxrss, wall.Seconds(), code)
	if err := appendLine(*out, line); err != nil {
		fmt.Fprintf(os.Stderr, "rusage-exec: error: %v\n", err)
	}
	return code
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// appendLine appends line with one write, so that concurrent writers'
// lines do not interleave (O_APPEND).
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
