// Package examples holds no code: its tests check the example files as far
// as they can be checked without AWS. The e2e package runs the ssh_config
// blocks and the Ansible inventory's ssh arguments through real ssh.
package examples

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kevinburke/ssh_config"

	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// TestSSHConfig: the file parses and sends each kind of name where its
// comment says.
func TestSSHConfig(t *testing.T) {
	data, err := os.ReadFile("ssh_config")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ssh_config.DecodeBytes(data)
	if err != nil {
		t.Fatalf("ssh_config does not parse: %v", err)
	}
	cases := []struct{ host, key, want string }{
		{"i-0123456789abcdef0", "ProxyCommand", "ssm-proxy %h %p"},
		{"mi-0123456789abcdef0", "ProxyCommand", "ssm-proxy %h %p"},
		{"i-0123456789abcdef0", "User", "ec2-user"},
		{"i-0123456789abcdef0", "ServerAliveInterval", "60"},
		{"web-1.ssm", "ProxyCommand", "ssm-proxy --strip-suffix .ssm %n %p"},
		{"web-1.ssm", "ServerAliveInterval", "60"},
		{"prod-web-1", "ProxyCommand", "ssm-proxy --profile prod --region eu-west-1 --strip-prefix prod- %n %p"},
		{"db-bastion", "HostName", "tag:Role=bastion"},
		{"db-bastion", "ProxyCommand", "ssm-proxy %h %p"},
		{"db-bastion", "ServerAliveInterval", "30"},
		{"web-keyless", "ProxyCommand", "ssm-proxy --push-key --os-user %r %h %p"},
		{"db-host", "ProxyCommand", "ssm-proxy --to %h:%p tag:Role=bastion"},
		{"github.com", "ProxyCommand", ""},
	}
	for _, c := range cases {
		if got, _ := cfg.Get(c.host, c.key); got != c.want {
			t.Errorf("%s %s = %q, want %q", c.host, c.key, got, c.want)
		}
	}
	for _, h := range cfg.Hosts {
		for _, n := range h.Nodes {
			if kv, ok := n.(*ssh_config.KV); ok && strings.EqualFold(kv.Key, "ProxyCommand") && !strings.Contains(kv.Value, "ssm-proxy ") {
				t.Errorf("line %d: ProxyCommand %q does not run ssm-proxy", kv.Pos().Line, kv.Value)
			}
		}
	}
}

// policy is an IAM policy document; unknown fields are errors.
type policy struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Principal map[string]string `json:",omitempty"`
		Action    stringList
		Resource  stringList `json:",omitempty"`
		Condition map[string]map[string]string
	}
}

// stringList is an IAM field that is a string or a list of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(b, []byte(`"`)) {
		var s string
		err := json.Unmarshal(b, &s)
		*l = []string{s}
		return err
	}
	return json.Unmarshal(b, (*[]string)(l))
}

func readPolicy(t *testing.T, path string) policy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p policy
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if p.Version != "2012-10-17" || len(p.Statement) == 0 {
		t.Fatalf("%s: version %q, %d statements", path, p.Version, len(p.Statement))
	}
	return p
}

// allows reports whether p allows action on a resource matching re.
func (p policy) allows(action string, re *regexp.Regexp) bool {
	for _, s := range p.Statement {
		if s.Effect == "Allow" && slices.Contains(s.Action, action) && slices.ContainsFunc(s.Resource, re.MatchString) {
			return true
		}
	}
	return false
}

func TestIAMPolicies(t *testing.T) {
	for _, path := range []string{"iam/user-policy.json", "iam/user-policy-by-tag.json"} {
		p := readPolicy(t, path)
		for _, c := range []struct {
			action, resource string
		}{
			{"ssm:StartSession", `^arn:aws:ec2:\*:\*:instance/\*$`},
			{"ssm:StartSession", `^arn:aws:ssm:\*::document/AWS-StartSSHSession$`},
			{"ssm:ResumeSession", `^arn:aws:ssm:\*:\*:session/\$\{aws:userid\}-\*$`},
			{"ssm:TerminateSession", `^arn:aws:ssm:\*:\*:session/\$\{aws:userid\}-\*$`},
			{"ssm:DescribeInstanceInformation", `^\*$`},
		} {
			if !p.allows(c.action, regexp.MustCompile(c.resource)) {
				t.Errorf("%s does not allow %s on %s", path, c.action, c.resource)
			}
		}
	}
	pf := readPolicy(t, "iam/port-forwarding-policy.json")
	for _, c := range []struct{ action, resource string }{
		{"ssm:StartSession", `^arn:aws:ec2:\*:\*:instance/\*$`},
		{"ssm:StartSession", `^arn:aws:ssm:\*::document/AWS-StartPortForwardingSession$`},
		{"ssm:StartSession", `^arn:aws:ssm:\*::document/AWS-StartPortForwardingSessionToRemoteHost$`},
		{"ssm:TerminateSession", `^arn:aws:ssm:\*:\*:session/\$\{aws:userid\}-\*$`},
		{"ssmmessages:OpenDataChannel", `^arn:aws:ssm:\*:\*:session/\$\{aws:userid\}-\*$`},
	} {
		if !pf.allows(c.action, regexp.MustCompile(c.resource)) {
			t.Errorf("port-forwarding-policy.json does not allow %s on %s", c.action, c.resource)
		}
	}
	if pf.allows("ssm:StartSession", regexp.MustCompile(`AWS-StartSSHSession`)) {
		t.Error("port-forwarding-policy.json allows SSH sessions too")
	}
	trust := readPolicy(t, "iam/instance-trust-policy.json")
	if s := trust.Statement[0]; s.Principal["Service"] != "ec2.amazonaws.com" || !slices.Contains(s.Action, "sts:AssumeRole") {
		t.Errorf("trust policy statement %+v", s)
	}
}

func TestTerraform(t *testing.T) {
	data, err := os.ReadFile("terraform/main.tf")
	if err != nil {
		t.Fatal(err)
	}
	src := string(data)
	depth := 0
	for i, line := range strings.Split(src, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		depth += strings.Count(line, "{") - strings.Count(line, "}")
		if depth < 0 {
			t.Fatalf("line %d: unbalanced }", i+1)
		}
	}
	if depth != 0 {
		t.Errorf("%d unclosed {", depth)
	}
	for _, want := range []string{
		`toset(["ssm", "ssmmessages", "ec2messages"])`,
		`service_name        = "com.amazonaws.${var.region}.${each.key}"`,
		`private_dns_enabled = true`,
		`vpc_endpoint_type   = "Interface"`,
		`arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore`,
		`from_port       = 443`,
		`../iam/instance-trust-policy.json`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("main.tf lacks %s", want)
		}
	}
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Log("terraform not installed: fmt not checked")
		return
	}
	cmd := exec.Command(tf, "fmt", "-check", "-diff", "-recursive", "terraform")
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+os.DevNull, "CHECKPOINT_DISABLE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check: %v\n%s", err, out)
	}
}

// TestAnsible: the inventory's hosts are ids or have an ssm-proxy name,
// and its ssh arguments make ssm-proxy the ProxyCommand.
func TestAnsible(t *testing.T) {
	inv, err := testenv.ReadAnsibleInventory("ansible/inventory.ini")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Hosts) == 0 {
		t.Fatal("no hosts")
	}
	for _, h := range inv.Hosts {
		if !regexp.MustCompile(`^(i-[0-9a-f]{17}|mi-[0-9a-f]{17}|[\w.-]+\.ssm)$`).MatchString(h.Target) {
			t.Errorf("[%s] %s: target %q is neither an id nor NAME.ssm", h.Group, h.Name, h.Target)
		}
	}
	if i := slices.Index(inv.SSHArgs, "ProxyCommand=ssm-proxy --strip-suffix .ssm %n %p"); i < 1 || inv.SSHArgs[i-1] != "-o" {
		t.Errorf("ansible_ssh_common_args split as %q", inv.SSHArgs)
	}
	cfg, err := testenv.ReadINI("ansible/ansible.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Section("defaults")) == 0 || len(cfg.Section("ssh_connection")) == 0 {
		t.Errorf("ansible.cfg sections %v", cfg)
	}
}

// TestREADMELinks: every file the README names exists.
func TestREADMELinks(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	links := regexp.MustCompile(`\]\(([^)#]+)\)`).FindAllStringSubmatch(string(data), -1)
	if len(links) < 5 {
		t.Fatalf("only %d links", len(links))
	}
	for _, m := range links {
		if _, err := os.Stat(filepath.FromSlash(m[1])); err != nil {
			t.Errorf("README links %s: %v", m[1], err)
		}
	}
}
