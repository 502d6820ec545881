package target

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Query
		err  string
	}{
		{"i-0123456789abcdef0", Query{ID: "i-0123456789abcdef0"}, ""},
		{"i-01234567", Query{ID: "i-01234567"}, ""},
		{"mi-0123456789abcdef0", Query{ID: "mi-0123456789abcdef0"}, ""},
		{"ecs:cluster_task_runtime", Query{ID: "ecs:cluster_task_runtime"}, ""},
		{"web-1", Query{TagKey: "Name", TagValue: "web-1"}, ""},
		{"i-am-a-name", Query{TagKey: "Name", TagValue: "i-am-a-name"}, ""},
		{"i-0123456789ABCDEF0", Query{TagKey: "Name", TagValue: "i-0123456789ABCDEF0"}, ""},
		{"tag:Role=bastion", Query{TagKey: "Role", TagValue: "bastion"}, ""},
		{"tag:k=a=b", Query{TagKey: "k", TagValue: "a=b"}, ""},
		{"tag:Role", Query{}, "want tag:Key=Value"},
		{"tag:=x", Query{}, "want tag:Key=Value"},
		{"tag:Role=", Query{}, "want tag:Key=Value"},
		{"", Query{}, "empty target"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := Parse(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Parse(%q) error %v, want %q", c.in, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			}
			if got.String() != c.in {
				t.Errorf("String() = %q, want %q", got.String(), c.in)
			}
		})
	}
}

// emulatorAPI is an SSM client for a fresh emulator with insts.
func emulatorAPI(t *testing.T, insts []ssmtest.Instance) *ssm.Client {
	t.Helper()
	emu, err := ssmtest.Start(ssmtest.Options{Instances: insts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	return ssmtest.APIClient(emu.Endpoint())
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestResolve(t *testing.T) {
	api := emulatorAPI(t, nil)
	ctx := testCtx(t)
	for _, c := range []struct{ target, want string }{
		{"web-1", "i-0123456789abcdef0"},
		{"db-bastion", "i-0aaaaaaaaaaaaaaa2"},
		{"tag:Role=bastion", "i-0aaaaaaaaaaaaaaa2"},
		{"onprem-1", "mi-0123456789abcdef0"},
		{"i-0ccccccccccccccc4", "i-0ccccccccccccccc4"}, // ids are not looked up
	} {
		got, err := Resolve(ctx, api, c.target)
		if err != nil || got != c.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", c.target, got, err, c.want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	api := emulatorAPI(t, nil)
	ctx := testCtx(t)

	_, err := Resolve(ctx, api, "no-such-name")
	var nf *NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), `no managed node is named "no-such-name"`) {
		t.Errorf("unknown name: %v", err)
	}
	_, err = Resolve(ctx, api, "tag:Team=none")
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "no managed node has the tag Team=none") {
		t.Errorf("unknown tag: %v", err)
	}

	_, err = Resolve(ctx, api, "tag:Role=web")
	var amb *AmbiguousError
	if !errors.As(err, &amb) || len(amb.Matches) != 2 {
		t.Fatalf("two web servers: %v", err)
	}
	for _, id := range []string{"i-0123456789abcdef0", "i-0123456789abcdef1"} {
		if !strings.Contains(err.Error(), id) {
			t.Errorf("ambiguity error does not list %s: %v", id, err)
		}
	}

	_, err = Resolve(ctx, api, "stopped-1")
	var off *NotOnlineError
	if !errors.As(err, &off) {
		t.Fatalf("offline node: %v", err)
	}
	for _, w := range []string{"stopped-1 (i-0ccccccccccccccc4)", "PingStatus ConnectionLost", "last ping 20", "ago"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("offline error lacks %q: %v", w, err)
		}
	}
}

// TestLookupPages: matches spread over many pages are all collected.
func TestLookupPages(t *testing.T) {
	var insts []ssmtest.Instance
	for i := range 11 {
		insts = append(insts, ssmtest.Instance{ID: fmt.Sprintf("i-%017x", i+1), Name: "dup"})
	}
	insts = append(insts, ssmtest.Instance{ID: "i-0ffffffffffffffff", Name: "other"})
	api := emulatorAPI(t, insts)
	found, err := Lookup(testCtx(t), api, Query{TagKey: "Name", TagValue: "dup"})
	if err != nil || len(found) != 11 {
		t.Fatalf("found %d, %v; want 11", len(found), err)
	}
	if found[0].AgentVersion == "" || found[0].PingStatus != PingOnline || found[0].LastPing.IsZero() {
		t.Errorf("instance fields missing: %+v", found[0])
	}
	_, err = Resolve(testCtx(t), api, "dup")
	var amb *AmbiguousError
	if !errors.As(err, &amb) || len(amb.Matches) != 11 {
		t.Errorf("Resolve(dup) = %v", err)
	}
}

func TestLookupUnknownID(t *testing.T) {
	api := emulatorAPI(t, nil)
	found, err := Lookup(testCtx(t), api, Query{ID: "i-00000000000000000"})
	if err != nil || len(found) != 0 {
		t.Fatalf("unknown id: %v, %v", found, err)
	}
	found, err = Lookup(testCtx(t), api, Query{ID: "i-0bbbbbbbbbbbbbbb3"})
	if err != nil || len(found) != 1 || found[0].AgentVersion != "2.3.612.0" {
		t.Fatalf("old agent: %+v, %v", found, err)
	}
}

func TestLastPing(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	if got := LastPing(time.Time{}, now); got != "never pinged" {
		t.Errorf("zero: %q", got)
	}
	if got, want := LastPing(now.Add(-90*time.Minute), now), "last ping 2026-01-02 13:34:05 UTC (1h30m0s ago)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
