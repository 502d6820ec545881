package e2e

// The shipped examples as written, through real ssh and sshd: every block of
// examples/ssh_config (by id, Name tag, prefix, tag HostName, --to through a
// bastion), the blocks `ssm-proxy ssh-config` prints, and ssh run as Ansible
// runs it from examples/ansible/inventory.ini. The keyless block is
// pushkey_test.go's; what needs no ssh is examples/examples_test.go's;
// ssh-config --install is the root package's sshconfig_test.go.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// exampleConfig writes an ssh_config made of blocks (with "ssm-proxy" made
// the binary under test and "User ec2-user" dropped) followed by the
// testenv client's settings (key, known hosts, user), and returns its
// path.
func exampleConfig(t *testing.T, sshd *testenv.SSHD, blocks string) string {
	t.Helper()
	client := sshd.ClientWith(t, testenv.ClientOptions{
		HostPatterns: []string{"i-*", "mi-*", "*.ssm", "prod-*", "tag:*", "db-host"},
	})
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(blocks))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "User ec2-user" {
			continue
		}
		line = strings.Replace(line, "ProxyCommand ssm-proxy ", "ProxyCommand "+proxyBin+" ", 1)
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "\nMatch all\nInclude %s\n", client.ConfigPath)
	path := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sshWith runs ssh -F config host command with env and returns stdout.
func sshWith(t *testing.T, config string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(testCtx(t, time.Minute), testenv.Bin(t, "ssh"), append([]string{"-F", config}, args...)...)
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	return run(t, cmd)
}

// TestExampleSSHConfig runs every block of examples/ssh_config through
// real ssh. Each session must reach the instance the block names: only
// those are routed to the sshd, and a decoy named "web-1" (lower case)
// catches a %h that ssh lower-cased.
func TestExampleSSHConfig(t *testing.T) {
	blocks, err := os.ReadFile("../examples/ssh_config")
	if err != nil {
		t.Fatal(err)
	}
	sshd := testenv.StartSSHD(t)
	unreachable := "127.0.0.1:1"
	emu, err := ssmtest.Start(ssmtest.Options{
		Region: "eu-west-1",
		Instances: []ssmtest.Instance{
			{ID: "i-0123456789abcdef0", Name: "Web-1", Addr: sshd.Addr},
			{ID: "i-0123456789abcdef1", Name: "web-1", Addr: unreachable},
			{ID: "i-0aaaaaaaaaaaaaaa2", Name: "db", Tags: map[string]string{"Role": "bastion"}, Addr: sshd.Addr},
			{ID: "i-0bbbbbbbbbbbbbbb3", Name: "other", Tags: map[string]string{"Role": "web"}, Addr: unreachable},
			{ID: "mi-0123456789abcdef0", Name: "onprem-1", Addr: sshd.Addr},
			{ID: "i-0eeeeeeeeeeeeeee5", Name: "web-2", Addr: sshd.Addr},
		},
		// 8: db-host, behind the bastion, resolved by it; the bastion's
		// agent reaches it (the test sshd) on port 22.
		Forwarding: ssmtest.ForwardingOptions{
			Hosts: map[string][]string{"db-host": {"10.0.1.23"}},
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr == "10.0.1.23:22" {
					addr = sshd.Addr
				}
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	cfgFile := filepath.Join(t.TempDir(), "aws_config")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("[profile prod]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = us-west-2\n",
		ssmtest.AccessKeyID, ssmtest.SecretAccessKey)), 0o600)
	env := append(ssmtest.ClientEnv(t, emu.Endpoint()), "AWS_REGION=eu-west-1", "AWS_CONFIG_FILE="+cfgFile)
	config := exampleConfig(t, sshd, string(blocks))

	for _, host := range []string{
		"i-0123456789abcdef0",  // 1: by id
		"mi-0123456789abcdef0", // 1: managed node
		"Web-1.ssm",            // 2: by Name tag, case kept
		"prod-web-2",           // 3: prefix, profile and region pinned
		"prod-i-0eeeeeeeeeeeeeee5",
		"db-bastion", // 4: HostName tag:Role=bastion
		"db-host",    // 8: --to through the bastion
	} {
		t.Run(host, func(t *testing.T) {
			if out := sshWith(t, config, env, host, "echo ok"); out != "ok\n" {
				t.Fatalf("stdout %q", out)
			}
		})
	}
	if st := emu.Stats(); st.SessionsStarted != 7 || st.Active != 0 {
		t.Errorf("sessions started %d, active %d", st.SessionsStarted, st.Active)
	}
}

// TestGeneratedSSHConfig: what `ssm-proxy ssh-config` prints works as is.
func TestGeneratedSSHConfig(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: sshd.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	env := ssmtest.ClientEnv(t, emu.Endpoint())
	cmd := exec.Command(proxyBin, "ssh-config")
	cmd.Env = env
	blocks := run(t, cmd)
	if !strings.Contains(blocks, "ProxyCommand "+proxyBin+" %h %p") {
		t.Fatalf("ssh-config printed:\n%s", blocks)
	}
	config := exampleConfig(t, sshd, blocks)
	for _, host := range []string{instance, "web-1.ssm"} {
		if out := sshWith(t, config, env, host, "echo ok"); out != "ok\n" {
			t.Fatalf("%s: stdout %q", host, out)
		}
	}
}

// TestAnsibleInventory runs ssh the way Ansible does for each host of
// examples/ansible/inventory.ini: ansible_ssh_common_args, then the host.
func TestAnsibleInventory(t *testing.T) {
	inv, err := testenv.ReadAnsibleInventory("../examples/ansible/inventory.ini")
	if err != nil {
		t.Fatal(err)
	}
	var common []string
	for _, a := range inv.SSHArgs {
		common = append(common, strings.ReplaceAll(a, "ssm-proxy ", proxyBin+" "))
	}
	if len(inv.Hosts) == 0 || len(common) == 0 {
		t.Fatalf("hosts %v, args %q", inv.Hosts, common)
	}
	sshd := testenv.StartSSHD(t)
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: sshd.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	client := sshd.ClientWith(t, testenv.ClientOptions{}) // no ProxyCommand: Ansible's -o gives it
	env := ssmtest.ClientEnv(t, emu.Endpoint())
	for _, h := range inv.Hosts {
		args := append(append([]string{}, common...), h.Target, "echo ok")
		if out := sshWith(t, client.ConfigPath, env, args...); out != "ok\n" {
			t.Fatalf("%s: stdout %q", h.Target, out)
		}
	}
	if st := emu.Stats(); st.SessionsStarted != int64(len(inv.Hosts)) || st.Active != 0 {
		t.Errorf("sessions started %d for %d hosts, active %d", st.SessionsStarted, len(inv.Hosts), st.Active)
	}
}
