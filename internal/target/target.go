// Package target turns what the user typed as TARGET into a Session Manager
// target id.
//
// Instance ids (i-…), managed-node ids (mi-…, and eks_c:… for the nodes of
// the EKS Connector) and ECS targets (ecs:…) are used as they are. Anything
// else is looked up with ssm:DescribeInstanceInformation: "tag:Key=Value"
// by that tag, any other word by the Name tag. The API cannot return tags,
// but it can filter on them, which is all a lookup needs. A lookup that
// finds nothing looks for near matches (suggest.go).
package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// API is the part of the SSM API a lookup uses. *ssm.Client implements it.
type API interface {
	DescribeInstanceInformation(ctx context.Context, in *ssm.DescribeInstanceInformationInput, optFns ...func(*ssm.Options)) (*ssm.DescribeInstanceInformationOutput, error)
}

var _ API = (*ssm.Client)(nil)

// PingOnline is the PingStatus of a node whose agent is connected.
const PingOnline = "Online"

// Instance is one managed node as DescribeInstanceInformation reports it.
type Instance struct {
	ID           string
	PingStatus   string // Online, ConnectionLost, Inactive
	LastPing     time.Time
	AgentVersion string
	Platform     string // e.g. "Amazon Linux"
	ResourceType string // EC2Instance, ManagedInstance
	ComputerName string
	IPAddress    string
	// Name is a managed node's activation name (DefaultInstanceName); the
	// API reports no tags, so it is not the Name tag.
	Name string
}

// String names the instance the way a user can recognise it.
func (i Instance) String() string {
	var extra []string
	for _, s := range []string{i.ComputerName, i.IPAddress} {
		if s != "" {
			extra = append(extra, s)
		}
	}
	if i.PingStatus != "" {
		extra = append(extra, i.PingStatus)
	}
	if len(extra) == 0 {
		return i.ID
	}
	return i.ID + " (" + strings.Join(extra, ", ") + ")"
}

// Query is a parsed TARGET.
type Query struct {
	// ID is set for a target used as it is.
	ID string
	// TagKey and TagValue are the tag to look for otherwise (Name for a
	// plain word).
	TagKey, TagValue string
}

// String is the target as the user wrote it.
func (q Query) String() string {
	switch {
	case q.ID != "":
		return q.ID
	case q.TagKey == "Name":
		return q.TagValue
	}
	return "tag:" + q.TagKey + "=" + q.TagValue
}

// IsID reports whether s is an instance or managed-node id: an EC2
// instance id (i- and 8 or 17 hex digits), a managed-node id (mi- and 17
// hex digits) or the id of an EKS Connector node, eks_c:CLUSTER_ID (the SSM
// API's InstanceId pattern: a cluster name of up to 100 letters, digits,
// '-' and '_' starting with a letter or digit, '_', and 17 word
// characters). It is that pattern written out rather than a regexp, which
// every process would compile at start-up (0.17 ms and 87 KB); the tests
// hold the regexp.
func IsID(s string) bool {
	if rest, ok := strings.CutPrefix(s, "i-"); ok {
		return (len(rest) == 8 || len(rest) == 17) && all(rest, isLowerHex)
	}
	if rest, ok := strings.CutPrefix(s, "mi-"); ok {
		return len(rest) == 17 && all(rest, isLowerHex)
	}
	rest, ok := strings.CutPrefix(s, "eks_c:")
	// The suffix, '_' and 17 word characters, has a fixed length, so the
	// cluster name is what comes before it: 1 to 100 characters.
	const suffix = 1 + 17
	if !ok || len(rest) < 1+suffix || len(rest) > 100+suffix {
		return false
	}
	name, id := rest[:len(rest)-suffix], rest[len(rest)-suffix:]
	return isAlnum(name[0]) && all(name, func(c byte) bool { return isWord(c) || c == '-' }) &&
		id[0] == '_' && all(id[1:], isWord)
}

func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isWord(c byte) bool { return isAlnum(c) || c == '_' }

// Parse parses TARGET: an id, ecs:…, tag:Key=Value, or a Name tag value.
func Parse(s string) (Query, error) {
	switch {
	case s == "":
		return Query{}, errors.New("empty target")
	case IsID(s), strings.HasPrefix(s, "ecs:"):
		return Query{ID: s}, nil
	case strings.HasPrefix(s, "eks_c:"):
		return Query{}, fmt.Errorf("invalid target %q: want eks_c:CLUSTER_ID, as Systems Manager lists the node", s)
	}
	if kv, ok := strings.CutPrefix(s, "tag:"); ok {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || v == "" {
			return Query{}, fmt.Errorf("invalid target %q: want tag:Key=Value", s)
		}
		return Query{TagKey: k, TagValue: v}, nil
	}
	return Query{TagKey: "Name", TagValue: s}, nil
}

// maxResults is the page size asked for; the API's maximum.
const maxResults = 50

// Lookup returns every managed node q matches, following NextToken. For an
// id it asks about that id, and an id unknown to Systems Manager in this
// account and region is no match.
func Lookup(ctx context.Context, api API, q Query) ([]Instance, error) {
	in := &ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(maxResults)}
	switch {
	case strings.HasPrefix(q.ID, "ecs:"):
		return nil, fmt.Errorf("%s: ECS tasks are not listed by DescribeInstanceInformation", q.ID)
	case q.ID != "":
		in.Filters = []types.InstanceInformationStringFilter{{Key: aws.String("InstanceIds"), Values: []string{q.ID}}}
	default:
		in.Filters = []types.InstanceInformationStringFilter{{Key: aws.String("tag:" + q.TagKey), Values: []string{q.TagValue}}}
	}
	var found []Instance
	p := ssm.NewDescribeInstanceInformationPaginator(api, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			if q.ID != "" && isInvalidInstanceID(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("look up %s: %w", q, err)
		}
		for _, ii := range out.InstanceInformationList {
			found = append(found, fromAPI(ii))
		}
	}
	return found, nil
}

func isInvalidInstanceID(err error) bool {
	var e *types.InvalidInstanceId
	return errors.As(err, &e)
}

func fromAPI(ii types.InstanceInformation) Instance {
	return Instance{
		ID:           aws.ToString(ii.InstanceId),
		PingStatus:   string(ii.PingStatus),
		LastPing:     aws.ToTime(ii.LastPingDateTime),
		AgentVersion: aws.ToString(ii.AgentVersion),
		Platform:     aws.ToString(ii.PlatformName),
		ResourceType: string(ii.ResourceType),
		ComputerName: aws.ToString(ii.ComputerName),
		IPAddress:    aws.ToString(ii.IPAddress),
		Name:         aws.ToString(ii.Name),
	}
}

// ListAll returns every managed node DescribeInstanceInformation lists,
// following its pages. Name is the API's (a managed node's activation
// name); EC2 Name tags need DescribeInstanceProperties.
func ListAll(ctx context.Context, api API) ([]Instance, error) {
	var all []Instance
	p := ssm.NewDescribeInstanceInformationPaginator(api, &ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(50)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list managed nodes: %w", err)
		}
		for _, ii := range out.InstanceInformationList {
			all = append(all, fromAPI(ii))
		}
	}
	return all, nil
}

// Resolve returns the target id to start a session with, as
// Resolver.Resolve does without logging.
func Resolve(ctx context.Context, api API, target string) (string, error) {
	return Resolver{API: api}.Resolve(ctx, target)
}

// Resolver turns targets into ids with one API client.
type Resolver struct {
	API API
	// Logger receives one debug line per lookup (what was looked up, what
	// it resolved to, how long it took); nil discards it.
	Logger *slog.Logger
}

// Resolve returns the target id to start a session with. Ids are returned
// without an API call; a name or tag must match exactly one node, and that
// node must be Online. A name or tag that matches nothing is a
// *NotFoundError with the near matches Suggest finds.
func (r Resolver) Resolve(ctx context.Context, target string) (string, error) {
	q, err := Parse(target)
	if err != nil {
		return "", err
	}
	if q.ID != "" {
		return q.ID, nil
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	found, err := Lookup(ctx, r.API, q)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		log.Debug("target lookup failed", "target", q.String(), "took", took)
		return "", err
	}
	switch {
	case len(found) == 0:
		near := Suggest(ctx, r.API, q)
		log.Debug("target lookup found nothing", "target", q.String(), "took", took, "near", len(near))
		return "", &NotFoundError{Query: q, Near: near}
	case len(found) > 1:
		log.Debug("target lookup found several", "target", q.String(), "took", took, "matches", len(found))
		return "", &AmbiguousError{Query: q, Matches: found}
	}
	log.Debug("target lookup", "target", q.String(), "id", found[0].ID, "ping", found[0].PingStatus, "took", took)
	if found[0].PingStatus != PingOnline {
		return "", &NotOnlineError{Query: q, Instance: found[0]}
	}
	return found[0].ID, nil
}

// NotFoundError reports a name or tag that matches no managed node.
type NotFoundError struct {
	Query Query
	// Near are nodes that almost match: the same tag in another case, a
	// similar host name.
	Near []Near
}

func (e *NotFoundError) Error() string {
	if e.Query.ID != "" {
		return fmt.Sprintf("%s is not registered with Systems Manager", e.Query.ID)
	}
	if e.Query.TagKey == "Name" {
		return fmt.Sprintf("no managed node is named %q (tag Name=%s)", e.Query.TagValue, e.Query.TagValue)
	}
	return fmt.Sprintf("no managed node has the tag %s=%s", e.Query.TagKey, e.Query.TagValue)
}

// AmbiguousError reports a name or tag that matches several nodes.
type AmbiguousError struct {
	Query   Query
	Matches []Instance
}

func (e *AmbiguousError) Error() string {
	names := make([]string, len(e.Matches))
	for i, m := range e.Matches {
		names[i] = m.String()
	}
	return fmt.Sprintf("%s matches %d managed nodes: %s", e.Query, len(e.Matches), strings.Join(names, "; "))
}

// NotOnlineError reports a node whose agent is not connected.
type NotOnlineError struct {
	Query    Query
	Instance Instance
}

func (e *NotOnlineError) Error() string {
	name := e.Instance.ID
	if e.Query.ID == "" {
		name = e.Query.String() + " (" + e.Instance.ID + ")"
	}
	return fmt.Sprintf("%s is not connected to Systems Manager: PingStatus %s, %s", name, e.Instance.PingStatus, LastPing(e.Instance.LastPing, time.Now()))
}

// LastPing describes when the agent was last heard from.
func LastPing(t, now time.Time) string {
	if t.IsZero() {
		return "never pinged"
	}
	return fmt.Sprintf("last ping %s (%s ago)", t.UTC().Format("2006-01-02 15:04:05 UTC"), now.Sub(t).Round(time.Second))
}
