package main

// `ssm-proxy list` through run, against the emulator behind a front that
// counts calls and serves DescribeInstanceProperties (which the emulator
// lacks): the table, JSON, filters, names missing without the permission,
// empty and failing lists, and the API calls each takes. Target lookup is
// internal/target's; the target cache list writes is completion_test.go's.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

// apiFront stands in front of an emulator's API: it counts calls by
// operation, and with names it answers DescribeInstanceProperties, which
// the emulator does not serve, from them. Every other request goes to the
// emulator unchanged (its signature checks included).
type apiFront struct {
	URL   string
	mu    sync.Mutex
	calls map[string]int
}

func newAPIFront(t *testing.T, emu *ssmtest.Server, denyNames bool) *apiFront {
	t.Helper()
	u, err := url.Parse(emu.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	f := &apiFront{calls: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM.")
		if op == "" {
			form, _ := url.ParseQuery(string(body))
			op = form.Get("Action")
		}
		f.mu.Lock()
		f.calls[op]++
		f.mu.Unlock()
		if op == "DescribeInstanceProperties" && denyNames {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-ErrorType", "AccessDeniedException")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"__type":"AccessDeniedException","message":"not authorized to perform: ssm:DescribeInstanceProperties"}`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *apiFront) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// listEnv starts an emulator behind a front and points the environment at
// the front.
func listEnv(t *testing.T, o ssmtest.Options, denyNames bool) *apiFront {
	t.Helper()
	emu, err := ssmtest.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	front := newAPIFront(t, emu, denyNames)
	setAWSEnv(t, front.URL)
	return front
}

func TestListTable(t *testing.T) {
	front := listEnv(t, ssmtest.Options{}, false)
	code, stdout, stderr := runCLI(t, "", "list")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d stderr:\n%s", code, stderr)
	}
	want := `ID                    NAME        PING            AGENT       PLATFORM      SSH
i-0aaaaaaaaaaaaaaa2   db-bastion  Online          3.3.1142.0  Amazon_Linux  yes
i-0bbbbbbbbbbbbbbb3   old-agent   Online          2.3.612.0   Amazon_Linux  no
mi-0123456789abcdef0  onprem-1    Online          3.3.1142.0  Amazon_Linux  yes
i-0ddddddddddddddd5   secret-1    Online          3.3.1142.0  Amazon_Linux  yes
i-0ccccccccccccccc4   stopped-1   ConnectionLost  3.3.1142.0  Amazon_Linux  yes
i-0123456789abcdef0   web-1       Online          3.3.1142.0  Amazon_Linux  yes
i-0123456789abcdef1   web-2       Online          3.3.1142.0  Amazon_Linux  yes
`
	if stdout != want {
		t.Errorf("table:\n%s\nwant:\n%s", stdout, want)
	}
	// The emulator pages by 2: seven nodes took four pages.
	if n := front.count("DescribeInstanceInformation"); n != 4 {
		t.Errorf("%d DescribeInstanceInformation calls, want 4", n)
	}
	// The names: one batch of the seven ids, paged by 2 as well.
	if n := front.count("DescribeInstanceProperties"); n != 4 {
		t.Errorf("%d DescribeInstanceProperties calls, want 4", n)
	}
}

func TestListJSON(t *testing.T) {
	listEnv(t, ssmtest.Options{}, false)
	code, stdout, stderr := runCLI(t, "", "list", "--json", "--filter", "tag:Env=prod")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d stderr:\n%s", code, stderr)
	}
	var nodes []map[string]any
	if err := json.Unmarshal([]byte(stdout), &nodes); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n["name"].(string))
		for _, k := range []string{"id", "name", "ping_status", "last_ping", "agent_version", "platform", "resource_type", "ssh"} {
			if _, ok := n[k]; !ok {
				t.Errorf("%v lacks %q", n, k)
			}
		}
		if n["ssh"] != true || n["resource_type"] != "EC2Instance" {
			t.Errorf("node %v", n)
		}
	}
	if strings.Join(names, " ") != "db-bastion web-1 web-2" {
		t.Errorf("names %v", names)
	}

	_, stdout, _ = runCLI(t, "", "list", "--json", "--filter", "old-agent")
	var old []node
	if err := json.Unmarshal([]byte(stdout), &old); err != nil || len(old) != 1 || old[0].SSH == nil || *old[0].SSH || old[0].Name != "old-agent" {
		t.Errorf("old agent: %s (%v)", stdout, err)
	}
}

// TestListFilterByName: a name filter needs no name lookup.
func TestListFilterByName(t *testing.T) {
	front := listEnv(t, ssmtest.Options{}, false)
	code, stdout, stderr := runCLI(t, "", "list", "--filter", "web-2")
	if rows := strings.Split(strings.TrimSpace(stdout), "\n"); code != exitOK || len(rows) != 2 || !strings.HasPrefix(strings.Join(strings.Fields(rows[1]), " "), "i-0123456789abcdef1 web-2 Online") {
		t.Fatalf("exit %d stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if n := front.count("DescribeInstanceProperties"); n != 0 {
		t.Errorf("%d name lookups", n)
	}
	code, stdout, _ = runCLI(t, "", "list", "--filter", "i-0ccccccccccccccc4")
	if code != exitOK || !strings.Contains(stdout, "ConnectionLost") {
		t.Errorf("by id: exit %d\n%s", code, stdout)
	}
}

// TestListWithoutNames: without ssm:DescribeInstanceProperties (the
// front refuses it) the list is complete, names "-".
func TestListWithoutNames(t *testing.T) {
	front := listEnv(t, ssmtest.Options{}, true)
	code, stdout, stderr := runCLI(t, "", "list", "-v")
	if code != exitOK || strings.Count(stdout, "\n") != 8 || !strings.Contains(stderr, "ssm-proxy: names unavailable: they need ssm:DescribeInstanceProperties") {
		t.Fatalf("exit %d stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
		if f := strings.Fields(l); len(f) != 6 || f[1] != "-" {
			t.Errorf("row %q", l)
		}
	}
	if front.count("DescribeInstanceProperties") != 1 {
		t.Errorf("the name lookup was not tried")
	}
}

func TestListEmptyAndErrors(t *testing.T) {
	listEnv(t, ssmtest.Options{Instances: []ssmtest.Instance{}}, false)
	code, stdout, stderr := runCLI(t, "", "list")
	if code != exitOK || stdout != "" || !strings.Contains(stderr, "ssm-proxy: no managed nodes in "+ssmtest.DefaultRegion) {
		t.Errorf("empty: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "", "list", "--json")
	if code != exitOK || stdout != "[]\n" {
		t.Errorf("empty JSON: exit %d %q", code, stdout)
	}

	setEnv(t, map[string]string{"AWS_REGION": ""})
	code, stdout, stderr = runCLI(t, "", "list")
	if code != exitError || stdout != "" {
		t.Errorf("no region: exit %d stdout %q", code, stdout)
	}
	checkOneError(t, stderr, "no AWS region", "--region")
	if strings.Contains(stderr, "listed region") {
		t.Errorf("no region: a placeholder for the region in the hints:\n%s", stderr)
	}

	setEnv(t, map[string]string{"AWS_REGION": ssmtest.DefaultRegion, "AWS_SECRET_ACCESS_KEY": "wrong"})
	code, _, stderr = runCLI(t, "", "list")
	if code != exitError {
		t.Errorf("wrong secret: exit %d", code)
	}
	checkOneError(t, stderr, "InvalidSignatureException", "credentials from")

	// Nothing configured: the hint says so, not that the credentials came
	// from instance metadata (the SDK's last resort, turned off here).
	setEnv(t, map[string]string{"AWS_REGION": ssmtest.DefaultRegion, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
	code, stdout, stderr = runCLI(t, "", "list")
	if code != exitError || stdout != "" {
		t.Errorf("no credentials: exit %d stdout %q", code, stdout)
	}
	checkOneError(t, stderr, "no credentials configured")
	if strings.Contains(stderr, "credentials from") {
		t.Errorf("no credentials: a hint names a source of credentials:\n%s", stderr)
	}
}
