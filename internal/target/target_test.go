package target

// Tests of targets (target.go, suggest.go), against the emulator's API: the
// syntax of ids, names and tags, resolving and its errors, matches over many
// pages, the last-ping text, near-miss suggestions within a bound on calls
// (also when the API fails or hangs), and the -v lines. What a user sees for
// each target error through run is the root package's targets_test.go; list
// and completion of names are list_test.go's and completion_test.go's.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
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
		{"eks_c:prod-cluster_0123456789abcdef0", Query{ID: "eks_c:prod-cluster_0123456789abcdef0"}, ""},
		{"eks_c:my_cluster_2_0123456789abcdef0", Query{ID: "eks_c:my_cluster_2_0123456789abcdef0"}, ""},
		{"eks_c:prod-cluster", Query{}, "want eks_c:CLUSTER_ID"},
		{"eks_c:-bad_0123456789abcdef0", Query{}, "want eks_c:CLUSTER_ID"},
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

// countingAPI counts the calls made through it.
type countingAPI struct {
	API
	calls atomic.Int32
}

func (c *countingAPI) DescribeInstanceInformation(ctx context.Context, in *ssm.DescribeInstanceInformationInput, optFns ...func(*ssm.Options)) (*ssm.DescribeInstanceInformationOutput, error) {
	c.calls.Add(1)
	return c.API.DescribeInstanceInformation(ctx, in, optFns...)
}

// TestSuggest: a name or tag that matches nothing comes back with the
// nodes it almost matches, within the bound on calls.
func TestSuggest(t *testing.T) {
	// First, as the emulator's pages are small and Suggest reads only the
	// first few.
	insts := append([]ssmtest.Instance{
		{ID: "i-0eeeeeeeeeeeeeee6", Name: "Bastion-eu", IPAddress: "10.0.1.7"},
		{ID: "mi-0eeeeeeeeeeeeeee7", Name: "build-host", PlatformType: "Linux"},
	}, ssmtest.DefaultInstances()...)
	cases := []struct {
		target string
		want   []Near // Instance.ID, Why and Target only
	}{
		{"Web-1", []Near{{Instance: Instance{ID: "i-0123456789abcdef0"}, Why: "tag Name=web-1", Target: "web-1"}}},
		{"bastion-EU", []Near{{Instance: Instance{ID: "i-0eeeeeeeeeeeeeee6"}, Why: "tag Name=Bastion-eu", Target: "Bastion-eu"}}},
		{"tag:role=web", []Near{
			{Instance: Instance{ID: "i-0123456789abcdef0"}, Why: "tag Role=web", Target: "tag:Role=web"},
			{Instance: Instance{ID: "i-0123456789abcdef1"}, Why: "tag Role=web", Target: "tag:Role=web"}}},
		{"tag:Role=Bastion", []Near{{Instance: Instance{ID: "i-0aaaaaaaaaaaaaaa2"}, Why: "tag Role=bastion", Target: "tag:Role=bastion"}}},
		{"build-hots", []Near{{Instance: Instance{ID: "mi-0eeeeeeeeeeeeeee7"}, Why: "host name build-host", Target: "mi-0eeeeeeeeeeeeeee7"}}},
		{"ip-10-0-1-7", []Near{{Instance: Instance{ID: "i-0eeeeeeeeeeeeeee6"}, Why: "host name ip-10-0-1-7", Target: "i-0eeeeeeeeeeeeeee6"}}},
		{"tag:Team=none", nil},
		{"zzz", nil},
	}
	for _, c := range cases {
		t.Run(c.target, func(t *testing.T) {
			api := &countingAPI{API: emulatorAPI(t, insts)}
			_, err := Resolve(testCtx(t), api, c.target)
			var nf *NotFoundError
			if !errors.As(err, &nf) {
				t.Fatalf("err = %v, want a NotFoundError", err)
			}
			var got []Near
			for _, n := range nf.Near {
				got = append(got, Near{Instance: Instance{ID: n.Instance.ID}, Why: n.Why, Target: n.Target})
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("Near = %+v\nwant %+v", got, c.want)
			}
			if n := api.calls.Load(); n > 1+maxSuggestCalls {
				t.Errorf("%d calls, want at most %d", n, 1+maxSuggestCalls)
			}
		})
	}
}

// TestSuggestBounded: an API that fails or hangs costs the suggestions,
// not the lookup's error, and no more than the bound.
func TestSuggestBounded(t *testing.T) {
	api := &countingAPI{API: failingAPI{}}
	if near := Suggest(testCtx(t), api, Query{TagKey: "Name", TagValue: "web"}); len(near) != 0 {
		t.Errorf("near %v from a failing API", near)
	}
	if n := api.calls.Load(); n == 0 || n > maxSuggestCalls {
		t.Errorf("%d calls", n)
	}
}

type failingAPI struct{}

func (failingAPI) DescribeInstanceInformation(context.Context, *ssm.DescribeInstanceInformationInput, ...func(*ssm.Options)) (*ssm.DescribeInstanceInformationOutput, error) {
	return nil, errors.New("denied")
}

// TestResolverLogs: -v shows what a name resolved to and how long it took.
func TestResolverLogs(t *testing.T) {
	var buf bytes.Buffer
	r := Resolver{API: emulatorAPI(t, nil), Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if id, err := r.Resolve(testCtx(t), "web-1"); err != nil || id != "i-0123456789abcdef0" {
		t.Fatalf("Resolve = %q, %v", id, err)
	}
	for _, w := range []string{`msg="target lookup"`, "target=web-1", "id=i-0123456789abcdef0", "took="} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, buf.String())
		}
	}
	buf.Reset()
	if _, err := r.Resolve(testCtx(t), "i-0123456789abcdef0"); err != nil || buf.Len() != 0 {
		t.Errorf("an id: %v, logged %q", err, buf.String())
	}
}

// idPattern is the SSM API's InstanceId pattern that IsID writes out.
var idPattern = regexp.MustCompile(`^(i-[0-9a-f]{8}|i-[0-9a-f]{17}|mi-[0-9a-f]{17}|eks_c:[0-9A-Za-z][0-9A-Za-z_-]{0,99}_\w{17})$`)

// TestIsID: IsID agrees with the pattern on the edges of every form and on
// many strings made of the characters that matter.
func TestIsID(t *testing.T) {
	name := func(n int) string { return "c" + strings.Repeat("-", n-1) }
	word17 := "0123456789abcdef_"
	cases := map[string]bool{
		"i-01234567":                        true,
		"i-0123456789abcdef0":               true,
		"i-0123456":                         false,
		"i-012345678":                       false,
		"i-0123456789ABCDEF0":               false,
		"mi-0123456789abcdef0":              true,
		"mi-01234567":                       false,
		"eks_c:" + name(1) + "_" + word17:   true,
		"eks_c:" + name(100) + "_" + word17: true,
		"eks_c:" + name(101) + "_" + word17: false,
		"eks_c:_" + word17:                  false,
		"eks_c:-x_" + word17:                false,
		"eks_c:a_b_" + word17:               true,
		"eks_c:a-" + word17:                 false,
		"eks_c:a_" + word17[:16] + "-":      false,
		"":                                  false,
		"i-":                                false,
		"eks_c:":                            false,
		"web-1":                             false,
	}
	for s, want := range cases {
		if got := IsID(s); got != want || idPattern.MatchString(s) != want {
			t.Errorf("IsID(%q) = %v, pattern %v, want %v", s, got, idPattern.MatchString(s), want)
		}
	}
	// Valid ids of every form, then up to two random edits each.
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(set string, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = set[r.IntN(len(set))]
		}
		return string(b)
	}
	const hex, alnum = "0123456789abcdef", "0123456789abcdefxyzABCXYZ"
	alphabet := hex + "gA_-Z.:"
	matched := 0
	for range 100000 {
		var s string
		switch r.IntN(4) {
		case 0:
			s = "i-" + pick(hex, 8)
		case 1:
			s = "i-" + pick(hex, 17)
		case 2:
			s = "mi-" + pick(hex, 17)
		default:
			s = "eks_c:" + pick(alnum, 1) + pick(alnum+"_-", r.IntN(102)) + "_" + pick(alnum+"_", 17)
		}
		for range r.IntN(3) {
			b := []byte(s)
			k := r.IntN(len(b))
			switch r.IntN(3) {
			case 0:
				b[k] = alphabet[r.IntN(len(alphabet))]
			case 1:
				b = slices.Insert(b, k, alphabet[r.IntN(len(alphabet))])
			default:
				b = slices.Delete(b, k, k+1)
			}
			s = string(b)
		}
		want := idPattern.MatchString(s)
		if IsID(s) != want {
			t.Fatalf("IsID(%q) = %v, the pattern says %v", s, !want, want)
		}
		if want {
			matched++
		}
	}
	if matched < 10000 || matched > 90000 {
		t.Fatalf("%d of 100000 generated strings were ids: the comparison proves little", matched)
	}
}
