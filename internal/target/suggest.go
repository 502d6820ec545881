package target

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// Near is a managed node that almost matches a lookup that found nothing.
type Near struct {
	Instance Instance
	// Why says what almost matches, as "tag Name=Web-1" or "host name
	// web-1.corp.example".
	Why string
	// Target is what to give ssm-proxy to reach it.
	Target string
}

// Bounds on what a miss may cost in API calls and time: the lookups of
// other cases of the tag, and a listing of the first pages of nodes for
// similar host names.
const (
	maxSuggestCalls = 8
	maxSuggestPages = 4
	suggestTimeout  = 3 * time.Second
	maxSuggestions  = 5
)

// Suggest looks for nodes that almost match q, which matched none: tag
// keys and values are case-sensitive, so it tries the tag in other cases
// (lower, upper, capitalised — the API filters on exact values and returns
// no tags, so other mixtures of case cannot be found) — each key variant
// one call, all value variants at once — and, for a plain name, nodes
// whose host name (ComputerName) or managed-node name is similar. It makes at most
// maxSuggestCalls calls within suggestTimeout, and returns what it found
// by then; API errors end it quietly (it only adds to another error).
func Suggest(ctx context.Context, api API, q Query) []Near {
	if q.ID != "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, suggestTimeout)
	defer cancel()
	s := &suggester{api: api, calls: maxSuggestCalls}
	s.otherCases(ctx, q)
	if q.TagKey == "Name" {
		s.similarHosts(ctx, q.TagValue)
	}
	if len(s.near) > maxSuggestions {
		s.near = s.near[:maxSuggestions]
	}
	return s.near
}

type suggester struct {
	api   API
	calls int // left
	near  []Near
}

// describe makes one bounded DescribeInstanceInformation call.
func (s *suggester) describe(ctx context.Context, in *ssm.DescribeInstanceInformationInput) (*ssm.DescribeInstanceInformationOutput, bool) {
	if s.calls <= 0 || ctx.Err() != nil {
		return nil, false
	}
	s.calls--
	out, err := s.api.DescribeInstanceInformation(ctx, in)
	return out, err == nil
}

// add records inst unless it is there already.
func (s *suggester) add(inst Instance, why, target string) {
	if slices.ContainsFunc(s.near, func(n Near) bool { return n.Instance.ID == inst.ID }) {
		return
	}
	s.near = append(s.near, Near{Instance: inst, Why: why, Target: target})
}

// otherCases looks the tag up with its key and value in other cases.
func (s *suggester) otherCases(ctx context.Context, q Query) {
	values := caseVariants(q.TagValue)
	for _, key := range caseVariants(q.TagKey) {
		vals := values
		if key == q.TagKey {
			vals = slices.DeleteFunc(slices.Clone(values), func(v string) bool { return v == q.TagValue })
		}
		if len(vals) == 0 {
			continue
		}
		found, ok := s.lookup(ctx, key, vals)
		if !ok || len(found) == 0 {
			continue
		}
		if len(vals) == 1 {
			for _, inst := range found {
				s.add(inst, "tag "+key+"="+vals[0], targetFor(key, vals[0]))
			}
			continue
		}
		// Which value? One call each, as long as calls are left.
		for _, v := range vals {
			one, ok := s.lookup(ctx, key, []string{v})
			if !ok {
				break
			}
			for _, inst := range one {
				s.add(inst, "tag "+key+"="+v, targetFor(key, v))
			}
		}
	}
}

// lookup returns the first page of nodes with tag key set to one of
// values.
func (s *suggester) lookup(ctx context.Context, key string, values []string) ([]Instance, bool) {
	out, ok := s.describe(ctx, &ssm.DescribeInstanceInformationInput{
		MaxResults: aws.Int32(maxResults),
		Filters:    []types.InstanceInformationStringFilter{{Key: aws.String("tag:" + key), Values: values}},
	})
	if !ok {
		return nil, false
	}
	var found []Instance
	for _, ii := range out.InstanceInformationList {
		found = append(found, fromAPI(ii))
	}
	return found, true
}

// similarHosts lists the first pages of nodes and keeps those whose host
// name or managed-node name is close to name.
func (s *suggester) similarHosts(ctx context.Context, name string) {
	type scored struct {
		inst     Instance
		why      string
		distance int
	}
	var best []scored
	in := &ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(maxResults)}
	for page := 0; page < maxSuggestPages; page++ {
		out, ok := s.describe(ctx, in)
		if !ok {
			break
		}
		for _, ii := range out.InstanceInformationList {
			inst := fromAPI(ii)
			var pick *scored
			for _, c := range []struct{ what, value string }{
				{"host name", shortHost(inst.ComputerName)},
				{"host name", inst.ComputerName},
				{"managed-node name", inst.Name},
			} {
				if d, ok := similar(name, c.value); ok && (pick == nil || d < pick.distance) {
					pick = &scored{inst, c.what + " " + c.value, d}
				}
			}
			if pick != nil {
				best = append(best, *pick)
			}
		}
		if out.NextToken == nil {
			break
		}
		in.NextToken = out.NextToken
	}
	slices.SortStableFunc(best, func(a, b scored) int { return a.distance - b.distance })
	for _, b := range best {
		s.add(b.inst, b.why, b.inst.ID)
	}
}

// caseVariants is s, lower-cased, upper-cased and capitalised, without
// repeats.
func caseVariants(s string) []string {
	var out []string
	for _, v := range []string{s, strings.ToLower(s), strings.ToUpper(s), capitalise(s)} {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func capitalise(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + strings.ToLower(s[n:])
}

// targetFor is the TARGET that looks tag key=value up.
func targetFor(key, value string) string {
	if key == "Name" {
		return Query{TagKey: key, TagValue: value}.String()
	}
	return fmt.Sprintf("tag:%s=%s", key, value)
}

// shortHost is a host name's first label.
func shortHost(h string) string {
	first, _, _ := strings.Cut(h, ".")
	return first
}

// similar reports whether a name is close to want, ignoring case: equal,
// one containing the other (four characters at least), or within an edit
// distance of a quarter of want's length (at least 1). The distance ranks
// suggestions.
func similar(want, name string) (int, bool) {
	if name == "" {
		return 0, false
	}
	a, b := strings.ToLower(want), strings.ToLower(name)
	if a == b {
		return 0, true
	}
	if len(a) >= 4 && len(b) >= 4 && (strings.Contains(a, b) || strings.Contains(b, a)) {
		return 1, true
	}
	d := EditDistance(a, b)
	return d, d <= max(1, len([]rune(a))/4)
}

// editDistance is the Levenshtein distance between a and b.
func EditDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
