// Command startsession-shim does what `aws ssm start-session` does for an
// ssh ProxyCommand (docs/protocol.md §1.6), for tests against the local
// emulator: it calls SSM StartSession itself (aws-sdk-go-v2, document
// AWS-StartSSHSession, portNumber=[port]) and then replaces itself with the
// official session-manager-plugin, passing the response and request the way
// the CLI does:
//
//	session-manager-plugin <response JSON> <region> StartSession <profile ""> <request JSON> <endpoint URL>
//
// Usage (as a ProxyCommand):
//
//	startsession-shim -plugin /path/session-manager-plugin [-region R] [-endpoint URL] [-env-response] [-child] [-pidfile F] [-v] %h %p
//
// Credentials and region come from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION), and the environment is passed on to
// the plugin unchanged. The endpoint defaults to $AWS_ENDPOINT_URL_SSM and
// must be a loopback URL: this tool is never meant to reach real AWS.
//
// With -env-response the response JSON goes to the plugin in
// AWS_SSM_START_SESSION_RESPONSE and argv[1] names that variable, as CLIs do
// for plugins newer than 1.2.497.0.
//
// By default the shim replaces itself with the plugin (syscall.Exec), so the
// plugin is the ProxyCommand process and gets the SIGHUP that ssh sends its
// ProxyCommand when it exits. The AWS CLI instead runs the plugin as a child
// process, with SIGINT, SIGQUIT and SIGTSTP ignored, and waits for it; ssh's
// SIGHUP then ends only the CLI and the plugin reads ssh's last bytes and EOF
// on its own. -child does the same. -pidfile appends the plugin's PID to a
// file in both modes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// responseEnv is the variable the CLI hands the response over in (§1.6).
const responseEnv = "AWS_SSM_START_SESSION_RESPONSE"

// startResponse is the JSON the CLI passes as argv[1]: exactly these keys.
type startResponse struct {
	SessionId  string
	TokenValue string
	StreamUrl  string
}

// startRequest is the JSON of the StartSession request parameters (argv[5]).
type startRequest struct {
	Target       string
	DocumentName string
	Parameters   map[string][]string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "startsession-shim:", err)
		os.Exit(255)
	}
}

func run() error {
	plugin := flag.String("plugin", "", "path of the session-manager-plugin binary")
	region := flag.String("region", "", "region (default $AWS_REGION, else us-east-1)")
	endpoint := flag.String("endpoint", os.Getenv("AWS_ENDPOINT_URL_SSM"), "SSM endpoint URL (loopback only)")
	document := flag.String("document", "AWS-StartSSHSession", "session document")
	envResponse := flag.Bool("env-response", false, "pass the response in $"+responseEnv+" instead of argv[1]")
	child := flag.Bool("child", false, "run the plugin as a child process, as the AWS CLI does, instead of exec")
	pidFile := flag.String("pidfile", "", "append the plugin's PID to this file")
	verbose := flag.Bool("v", false, "print the SessionId to stderr")
	flag.Parse()
	if flag.NArg() != 2 || *plugin == "" {
		return errors.New("usage: startsession-shim -plugin PATH [-region R] [-endpoint URL] [-env-response] [-child] [-pidfile F] [-v] TARGET PORT")
	}
	target, port := flag.Arg(0), flag.Arg(1)
	if *region == "" {
		*region = os.Getenv("AWS_REGION")
	}
	if *region == "" {
		*region = "us-east-1"
	}
	if err := checkLoopback(*endpoint); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(*region), config.WithRetryMaxAttempts(1))
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	client := ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.BaseEndpoint = aws.String(*endpoint) })
	req := startRequest{Target: target, DocumentName: *document, Parameters: map[string][]string{"portNumber": {port}}}
	out, err := client.StartSession(ctx, &ssm.StartSessionInput{
		Target:       aws.String(req.Target),
		DocumentName: aws.String(req.DocumentName),
		Parameters:   req.Parameters,
	})
	if err != nil {
		return fmt.Errorf("StartSession: %w", err)
	}
	if *verbose {
		fmt.Fprintf(os.Stderr, "startsession-shim: SessionId %s\n", aws.ToString(out.SessionId))
	}
	resp, err := json.Marshal(startResponse{
		SessionId:  aws.ToString(out.SessionId),
		TokenValue: aws.ToString(out.TokenValue),
		StreamUrl:  aws.ToString(out.StreamUrl),
	})
	if err != nil {
		return err
	}
	params, err := json.Marshal(req)
	if err != nil {
		return err
	}

	env := os.Environ()
	arg1 := string(resp)
	if *envResponse {
		env = append(env, responseEnv+"="+string(resp))
		arg1 = responseEnv
	}
	argv := []string{"session-manager-plugin", arg1, *region, "StartSession", "", string(params), *endpoint}
	if *child {
		return runChild(*plugin, argv, env, *pidFile)
	}
	if err := writePID(*pidFile, os.Getpid()); err != nil {
		return err
	}
	// The plugin gets this process's stdin/stdout (ssh's ProxyCommand pipes),
	// its PID and its signals.
	if err := syscall.Exec(*plugin, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", *plugin, err)
	}
	return nil // not reached
}

// runChild runs the plugin the way the AWS CLI does (docs/protocol.md §1.6): as a
// child sharing stdin, stdout and stderr, with SIGINT, SIGQUIT and SIGTSTP
// ignored in this process (the child inherits that, and the plugin turns
// them back on where it handles them). It exits with the plugin's status.
func runChild(plugin string, argv, env []string, pidFile string) error {
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTSTP)
	cmd := &exec.Cmd{Path: plugin, Args: argv, Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", plugin, err)
	}
	if err := writePID(pidFile, cmd.Process.Pid); err != nil {
		return err
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		os.Exit(ee.ExitCode())
	}
	return err
}

// writePID appends pid to path, if path is set.
func writePID(path string, pid int) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(strconv.Itoa(pid) + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkLoopback refuses any endpoint that is not http(s) on a loopback IP.
func checkLoopback(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || endpoint == "" {
		return fmt.Errorf("endpoint %q: need a loopback URL (-endpoint or AWS_ENDPOINT_URL_SSM)", endpoint)
	}
	ip := net.ParseIP(u.Hostname())
	if (u.Scheme != "http" && u.Scheme != "https") || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("endpoint %q is not a loopback http(s) URL; this shim never talks to real AWS", endpoint)
	}
	return nil
}
