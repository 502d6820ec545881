package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/ssm-proxy/ssm-proxy/internal/target"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// minAgentText is the first agent version SSH sessions work with.
const minAgentText = protocol.AgentVersionPort

// listTimeout bounds a whole list, every page and the name lookups.
const listTimeout = 2 * time.Minute

// node is one managed node as `ssm-proxy list` shows it. The JSON field
// names are part of the interface: scripts read them.
type node struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"` // Name tag, "" when unknown
	PingStatus   string     `json:"ping_status"`
	LastPing     *time.Time `json:"last_ping,omitempty"`
	AgentVersion string     `json:"agent_version"`
	Platform     string     `json:"platform"`
	ResourceType string     `json:"resource_type"`
	ComputerName string     `json:"computer_name,omitempty"`
	IPAddress    string     `json:"ip_address,omitempty"`
	// SSH says whether the agent is recent enough for SSH sessions; null
	// when it reports no version.
	SSH *bool `json:"ssh"`
}

// list runs `ssm-proxy list [--filter TARGET] [--json] [flags]`.
func (c *cli) list(ctx context.Context, args []string) int {
	var o options
	var filter string
	var asJSON bool
	fs := c.newFlagSet("ssm-proxy list")
	o.flags(fs)
	fs.StringVar(&filter, "filter", "", "")
	fs.BoolVar(&asJSON, "json", false, "")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return c.usageError(fmt.Errorf("list: unexpected argument %q (to narrow the list: --filter %s)", fs.Arg(0), fs.Arg(0)))
	}
	var q target.Query
	if filter != "" {
		var err error
		if q, err = target.Parse(filter); err != nil {
			return c.usageError(fmt.Errorf("list: --filter: %w", err))
		}
		if strings.HasPrefix(q.ID, "ecs:") {
			return c.usageError(fmt.Errorf("list: --filter %s: ECS tasks are not managed nodes", q.ID))
		}
	}
	log := newLogger(c.stderr, o.verbose)
	ctx, sig := withSignals(ctx)
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	u := &used{target: filter}
	nodes, err := c.listNodes(ctx, o, u, q, log)
	if n := sig(); n != 0 {
		return exitSignalsBase + n
	}
	if err != nil {
		hs := hints(err, o, u)
		if h := listUsedHint(u); h != "" {
			hs = append(hs, h)
		}
		printError(c.stderr, errorText(err), hs)
		return exitError
	}
	if filter == "" {
		c.saveTargets(o, nodes, log)
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if nodes == nil {
			nodes = []node{}
		}
		enc.Encode(nodes)
		return exitOK
	}
	if len(nodes) == 0 {
		what := "no managed nodes"
		if filter != "" {
			what += " match " + q.String()
		}
		printNote(c.stderr, fmt.Sprintf("%s in %s (credentials from %s)", what, u.aws.Region, u.aws.Credentials))
		return exitOK
	}
	writeTable(c.stdout, nodes)
	return exitOK
}

// listUsedHint names the region and credentials a failed list used.
// With no region it names none (the error itself says so).
func listUsedHint(u *used) string {
	var parts []string
	if u.aws.Region != "" {
		parts = append(parts, "listed region "+u.aws.Region+" ("+u.aws.RegionFrom+")")
	}
	if c := credentialsUsed(u.aws); c != "" {
		parts = append(parts, c)
	}
	return textutil.Redact(strings.Join(parts, ", "))
}

// writeTable writes nodes as an aligned table, "-" for what is unknown so
// that every row has every column (awk '{print $1, $2}' works).
func writeTable(w io.Writer, nodes []node) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPING\tAGENT\tPLATFORM\tSSH")
	dash := func(s string) string {
		if s = strings.Join(strings.Fields(s), "_"); s == "" {
			return "-"
		}
		return s
	}
	for _, n := range nodes {
		ssh := "?"
		if n.SSH != nil {
			ssh = map[bool]string{true: "yes", false: "no"}[*n.SSH]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, dash(n.Name), dash(n.PingStatus), dash(n.AgentVersion), dash(n.Platform), ssh)
	}
	tw.Flush()
}

// listNodes returns the managed nodes q matches (every node for the zero
// Query), with their Name tags where the caller may read them, sorted by
// name and id. optFns tune the SSM client.
func (c *cli) listNodes(ctx context.Context, o options, u *used, q target.Query, log *slog.Logger, optFns ...func(*ssm.Options)) ([]node, error) {
	cfg, err := c.loadAWS(ctx, o, u, log)
	if err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		return nil, errNoRegion
	}
	api := ssm.NewFromConfig(cfg, optFns...)
	start := time.Now()
	var insts []target.Instance
	if q == (target.Query{}) {
		insts, err = target.ListAll(ctx, api)
	} else {
		insts, err = target.Lookup(ctx, api, q)
	}
	if err != nil {
		return nil, err
	}
	log.Debug("listed managed nodes", "region", cfg.Region, "filter", q.String(), "count", len(insts), "took", time.Since(start).Round(time.Millisecond))

	var names map[string]string
	if q.TagKey == "Name" {
		names = map[string]string{}
		for _, inst := range insts {
			names[inst.ID] = q.TagValue
		}
	} else if len(insts) > 0 {
		ids := make([]string, len(insts))
		for i, inst := range insts {
			ids[i] = inst.ID
		}
		start := time.Now()
		names, err = nodeNames(ctx, api, ids)
		if err != nil {
			log.Debug("names unavailable: they need ssm:DescribeInstanceProperties", "err", errorText(err))
		} else {
			log.Debug("looked up names", "count", len(names), "took", time.Since(start).Round(time.Millisecond))
		}
	}
	nodes := make([]node, len(insts))
	for i, inst := range insts {
		nodes[i] = toNode(inst, names[inst.ID])
	}
	slices.SortFunc(nodes, func(a, b node) int {
		if (a.Name == "") != (b.Name == "") {
			return cmp.Compare(b.Name, a.Name) // named first
		}
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return nodes, nil
}

func toNode(inst target.Instance, name string) node {
	n := node{
		ID:           inst.ID,
		Name:         name,
		PingStatus:   inst.PingStatus,
		AgentVersion: inst.AgentVersion,
		Platform:     inst.Platform,
		ResourceType: inst.ResourceType,
		ComputerName: inst.ComputerName,
		IPAddress:    inst.IPAddress,
	}
	if !inst.LastPing.IsZero() {
		t := inst.LastPing.UTC()
		n.LastPing = &t
	}
	if inst.AgentVersion != "" {
		ok := protocol.CompareAgentVersions(inst.AgentVersion, protocol.AgentVersionPort) >= 0
		n.SSH = &ok
	}
	return n
}

// Name lookups: DescribeInstanceInformation cannot return tags, but
// DescribeInstanceProperties returns the Name tag. It is asked about the
// listed ids, namesPerCall at a time, within namesTimeout: the list is
// complete without names, so they are best effort.
const (
	namesPerCall = 40
	namesTimeout = 10 * time.Second
)

// nodeNames returns the Name tags of ids that have one.
func nodeNames(ctx context.Context, api ssm.DescribeInstancePropertiesAPIClient, ids []string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, namesTimeout)
	defer cancel()
	names := map[string]string{}
	for batch := range slices.Chunk(ids, namesPerCall) {
		p := ssm.NewDescribeInstancePropertiesPaginator(api, &ssm.DescribeInstancePropertiesInput{
			InstancePropertyFilterList: []types.InstancePropertyFilter{{Key: types.InstancePropertyFilterKeyInstanceIds, ValueSet: batch}},
			MaxResults:                 aws.Int32(50),
		})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("look up names: %w", err)
			}
			for _, ip := range out.InstanceProperties {
				if n := aws.ToString(ip.Name); n != "" {
					names[aws.ToString(ip.InstanceId)] = n
				}
			}
		}
	}
	return names, nil
}
