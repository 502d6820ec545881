package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

const testInventory = "../../testdata/inventory.json"

func TestUsage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"-h"}, exitOK, "Usage: ssm-emulator"},
		{"unknown flag", []string{"-nope"}, exitUsage, "flag provided but not defined: -nope"},
		{"argument", []string{"extra"}, exitUsage, `unexpected argument "extra"`},
		{"bad duration", []string{"-latency", "soon"}, exitUsage, "invalid value"},
		{"probability", []string{"-ack-loss", "1.5"}, exitUsage, "-ack-loss 1.5: want a probability"},
		{"negative duration", []string{"-bye-every", "-1s"}, exitUsage, "-bye-every -1s"},
		{"page size", []string{"-page-size", "0"}, exitUsage, "-page-size 0"},
		{"pause pair", []string{"-pause-every", "1s"}, exitUsage, "go together"},
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
			if c.code == exitUsage && !strings.Contains(stderr.String(), "Usage: ssm-emulator") {
				t.Errorf("usage error without usage:\n%s", stderr.String())
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
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		endpoint, ok := strings.CutPrefix(strings.TrimSuffix(s, "\n"), "endpoint ")
		if !ok || !strings.HasPrefix(endpoint, "http://127.0.0.1:") {
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

// TestRun serves in-process until the context ends.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	args := []string{"-inventory", testInventory, "-page-size", "1", "-stats-every", "10ms", "-v", "-seed", "7"}
	go func() { code <- run(ctx, args, outW, &stderr) }()
	endpoint := readEndpoint(t, outR)

	ids := describe(t, endpoint, types.InstanceInformationStringFilter{Key: aws.String("tag:Env"), Values: []string{"prod"}})
	if got := strings.Join(ids, " "); got != "i-0123456789abcdef0 i-0fedcba9876543210" {
		t.Errorf("prod instances = %s", got)
	}
	time.Sleep(50 * time.Millisecond) // a few stats lines
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
	for _, want := range []string{"export AWS_ENDPOINT_URL_SSM=" + endpoint + "\n", "export AWS_ACCESS_KEY_ID=AKIDEXAMPLE\n",
		"export AWS_REGION=us-east-1\n", "ssm-emulator: api: DescribeInstanceInformation"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, `"SessionsStarted":`) < 2 {
		t.Errorf("no periodic stats:\n%s", out)
	}
	lastStats(t, out)
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
