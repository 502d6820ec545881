package ssmtest

// DescribeInstanceInformation, enough of it for a client that resolves a
// name or tag to an instance id and checks that the agent is online.
//
// Like the real API it cannot return tags, nor the Name tag of an EC2
// instance (InstanceInformation.Name is only the activation name of a
// managed instance, mi-): a client finds an instance by name with the
// filter Key "tag:Name". Filters are ANDed and the values of one filter
// ORed; tag filters cannot be mixed with others. Results come in inventory
// order, min(MaxResults, Options.PageSize) at a time, so clients must follow
// NextToken.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// describeInput is the DescribeInstanceInformation request.
type describeInput struct {
	Filters                       []stringFilterInput
	InstanceInformationFilterList []legacyFilterInput
	MaxResults                    *int
	NextToken                     *string
}

// stringFilterInput is an InstanceInformationStringFilter.
type stringFilterInput struct {
	Key    *string
	Values []string
}

// legacyFilterInput is the deprecated InstanceInformationFilter, whose
// members are lower-case on the wire.
type legacyFilterInput struct {
	Key      *string  `json:"key"`
	ValueSet []string `json:"valueSet"`
}

// describeOutput is the DescribeInstanceInformation response.
type describeOutput struct {
	InstanceInformationList []instanceInformation
	NextToken               string `json:",omitempty"`
}

// instanceInformation is one InstanceInformation item.
type instanceInformation struct {
	InstanceId       string
	PingStatus       string
	LastPingDateTime epochSeconds
	AgentVersion     string
	IsLatestVersion  bool
	PlatformType     string
	PlatformName     string
	ResourceType     string
	IPAddress        string `json:",omitempty"`
	ComputerName     string `json:",omitempty"`
	Name             string `json:",omitempty"`
	SourceId         string
	SourceType       string
}

// epochSeconds is a timestamp as AWS JSON 1.1 sends it: seconds since the
// epoch as a number, with milliseconds as the fraction.
type epochSeconds time.Time

// MarshalJSON implements json.Marshaler.
func (t epochSeconds) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(time.Time(t).UnixMilli())/1000, 'f', -1, 64)), nil
}

// instanceFilter is one filter from either list.
type instanceFilter struct {
	Key    string
	Values []string
}

// Filter keys. legacyFilterKeys is the InstanceInformationFilterKey enum;
// the string filters take those, SourceIds, SourceTypes, "tag-key" and
// "tag:<key>". ActivationIds, IamRole and AssociationStatus are accepted
// but match nothing: the emulator has no such data.
var (
	legacyFilterKeys = []string{"InstanceIds", "AgentVersion", "PingStatus", "PlatformTypes",
		"ActivationIds", "IamRole", "ResourceType", "AssociationStatus"}
	stringFilterKeys = append(slices.Clone(legacyFilterKeys), "SourceIds", "SourceTypes", "tag-key")
)

const (
	// defaultMaxResults is the real API's page size when MaxResults is
	// not given.
	defaultMaxResults = 10
	minMaxResults     = 5
	maxMaxResults     = 50
	maxFilterValues   = 100
)

// apiDescribeInstanceInformation lists the inventory a page at a time.
func (s *Server) apiDescribeInstanceInformation(in *describeInput) (*describeOutput, error) {
	filters, err := describeFilters(in)
	if err != nil {
		return nil, err
	}
	if err := s.checkInstanceIDs(filters); err != nil {
		return nil, err
	}
	var matches []Instance
	for _, inst := range s.opts.Instances {
		inst = withInstanceDefaults(inst)
		if matchesAll(filters, inst) {
			matches = append(matches, inst)
		}
	}
	start, end, next, err := s.page(len(matches), in.MaxResults, in.NextToken, filtersFingerprint(filters))
	if err != nil {
		return nil, err
	}
	out := &describeOutput{InstanceInformationList: make([]instanceInformation, 0, end-start), NextToken: next}
	now := time.Now()
	for _, inst := range matches[start:end] {
		out.InstanceInformationList = append(out.InstanceInformationList, s.instanceInformation(inst, now))
	}
	return out, nil
}

// page picks the page [start, end) of n results that a request with
// maxResults and nextToken asks for — min(MaxResults, Options.PageSize) at
// a time — and the token of the next page ("" on the last); fp is the
// fingerprint of the request's filters, which the token must match.
func (s *Server) page(n int, maxResults *int, nextToken *string, fp uint64) (start, end int, next string, err error) {
	if nextToken != nil {
		if start, err = parsePageToken(*nextToken, fp, n); err != nil {
			return 0, 0, "", err
		}
	}
	size := defaultMaxResults
	if maxResults != nil {
		size = *maxResults
	}
	end = min(start+min(size, s.opts.PageSize), n)
	if end < n {
		next = pageToken(end, fp)
	}
	return start, end, next, nil
}

// describeFilters validates the request and returns its filters, from
// whichever list it used.
func describeFilters(in *describeInput) ([]instanceFilter, error) {
	var v validation
	if in.MaxResults != nil && (*in.MaxResults < minMaxResults || *in.MaxResults > maxMaxResults) {
		c := fmt.Sprintf("Member must have value greater than or equal to %d", minMaxResults)
		if *in.MaxResults > maxMaxResults {
			c = fmt.Sprintf("Member must have value less than or equal to %d", maxMaxResults)
		}
		v.add(strconv.Itoa(*in.MaxResults), "maxResults", c)
	}
	var filters []instanceFilter
	for i, f := range in.Filters {
		at := fmt.Sprintf("filters.%d.member", i+1)
		if f.Key == nil {
			v.required(at + ".key")
		}
		v.count(at+".values", f.Values, 1, maxFilterValues)
		filters = append(filters, instanceFilter{Key: derefString(f.Key), Values: f.Values})
	}
	for i, f := range in.InstanceInformationFilterList {
		at := fmt.Sprintf("instanceInformationFilterList.%d.member", i+1)
		switch {
		case f.Key == nil:
			v.required(at + ".key")
		case !slices.Contains(legacyFilterKeys, *f.Key):
			v.add(*f.Key, at+".key", "Member must satisfy enum value set: ["+strings.Join(legacyFilterKeys, ", ")+"]")
		}
		v.count(at+".valueSet", f.ValueSet, 1, maxFilterValues)
		filters = append(filters, instanceFilter{Key: derefString(f.Key), Values: f.ValueSet})
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if len(in.Filters) > 0 && len(in.InstanceInformationFilterList) > 0 {
		return nil, newAPIError("ValidationException", "Filters and InstanceInformationFilterList cannot be used together.")
	}
	return filters, checkFilters(filters)
}

// checkFilters refuses unknown keys, tag filters mixed with others and
// values a key cannot have.
func checkFilters(filters []instanceFilter) error {
	var tags, others int
	for _, f := range filters {
		if isTagFilter(f.Key) {
			tags++
		} else {
			others++
		}
		if !isTagFilter(f.Key) && !slices.Contains(stringFilterKeys, f.Key) {
			return newAPIError("InvalidFilterKey", "The filter key %s is not valid.", f.Key)
		}
		if err := checkFilterValues(f); err != nil {
			return err
		}
	}
	if tags > 0 && others > 0 {
		return newAPIError("ValidationException", "Cannot mix tag or inventory filter with any other filter.")
	}
	return nil
}

// isTagFilter reports the keys "tag-key" and "tag:<key>".
func isTagFilter(key string) bool {
	name, ok := strings.CutPrefix(key, "tag:")
	return key == "tag-key" || ok && name != ""
}

// checkFilterValues checks the values of the enum-valued keys.
func checkFilterValues(f instanceFilter) error {
	var valid []string
	switch f.Key {
	case "PingStatus":
		valid = []string{pingOnline, pingConnectionLost, pingInactive}
	case "PlatformTypes":
		valid = platformTypes
	case "ResourceType":
		valid = []string{"EC2Instance", "ManagedInstance"}
		if len(f.Values) != 1 {
			return newAPIError("InvalidInstanceInformationFilterValue", "ResourceType filter may contain only one value.")
		}
	default:
		return nil
	}
	for _, val := range f.Values {
		if !slices.Contains(valid, val) {
			return newAPIError("InvalidInstanceInformationFilterValue", "%s filter is invalid, valid values are %s", f.Key, strings.Join(valid, ", "))
		}
	}
	return nil
}

// checkInstanceIDs refuses an InstanceIds filter naming an instance that
// is not in the inventory, as the API reference says the real API does.
func (s *Server) checkInstanceIDs(filters []instanceFilter) error {
	for _, f := range filters {
		if f.Key != "InstanceIds" {
			continue
		}
		for _, id := range f.Values {
			if _, ok := s.inventoryInstance(id); !ok {
				return newAPIError("InvalidInstanceId", "Instance Id %s is not valid or is not managed by Systems Manager.", id)
			}
		}
	}
	return nil
}

// matchesAll reports whether inst passes every filter.
func matchesAll(filters []instanceFilter, inst Instance) bool {
	for _, f := range filters {
		if !f.matches(inst) {
			return false
		}
	}
	return true
}

// matches reports whether one of f's values matches inst.
func (f instanceFilter) matches(inst Instance) bool {
	tags := instanceTags(inst)
	if f.Key == "tag-key" {
		return slices.ContainsFunc(f.Values, func(k string) bool { _, ok := tags[k]; return ok })
	}
	if name, ok := strings.CutPrefix(f.Key, "tag:"); ok {
		v, has := tags[name]
		return has && slices.Contains(f.Values, v)
	}
	var field string
	switch f.Key {
	case "InstanceIds", "SourceIds":
		field = inst.ID
	case "AgentVersion":
		field = inst.AgentVersion
	case "PingStatus":
		field = inst.PingStatus
	case "PlatformTypes":
		field = inst.PlatformType
	case "ResourceType":
		field = resourceType(inst)
	case "SourceTypes":
		field = sourceType(inst)
	default:
		return false
	}
	return slices.Contains(f.Values, field)
}

// instanceInformation renders inst (defaults filled in) for the response.
func (s *Server) instanceInformation(inst Instance, now time.Time) instanceInformation {
	last := inst.LastPing
	if last.IsZero() {
		last = now.Truncate(time.Millisecond)
		if inst.PingStatus != pingOnline {
			last = last.Add(-time.Hour)
		}
	}
	info := instanceInformation{
		InstanceId:       inst.ID,
		PingStatus:       inst.PingStatus,
		LastPingDateTime: epochSeconds(last),
		AgentVersion:     inst.AgentVersion,
		IsLatestVersion:  protocol.CompareAgentVersions(inst.AgentVersion, DefaultAgentVersion) >= 0,
		PlatformType:     inst.PlatformType,
		PlatformName:     inst.Platform,
		ResourceType:     resourceType(inst),
		IPAddress:        inst.IPAddress,
		ComputerName:     s.computerName(inst),
		SourceId:         inst.ID,
		SourceType:       sourceType(inst),
	}
	if info.ResourceType == "ManagedInstance" {
		info.Name = inst.Name
	}
	return info
}

// computerName is the host name the agent reports: EC2's ip-a-b-c-d
// private DNS name when the instance has an address, else (for managed
// instances) its name.
func (s *Server) computerName(inst Instance) string {
	switch {
	case inst.IPAddress != "" && resourceType(inst) == "EC2Instance":
		domain := s.opts.Region + ".compute.internal"
		if s.opts.Region == "us-east-1" {
			domain = "ec2.internal"
		}
		return "ip-" + strings.ReplaceAll(inst.IPAddress, ".", "-") + "." + domain
	case resourceType(inst) == "ManagedInstance":
		return inst.Name
	}
	return ""
}

// resourceType is EC2Instance, or ManagedInstance for mi- ids.
func resourceType(inst Instance) string {
	if strings.HasPrefix(inst.ID, "mi-") {
		return "ManagedInstance"
	}
	return "EC2Instance"
}

// sourceType is the SourceType matching resourceType.
func sourceType(inst Instance) string {
	if resourceType(inst) == "ManagedInstance" {
		return "AWS::SSM::ManagedInstance"
	}
	return "AWS::EC2::Instance"
}

// pageToken encodes where the next page starts and which filters it
// belongs to. Clients must treat it as opaque.
func pageToken(offset int, fingerprint uint64) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "ssmtest/%d/%016x", offset, fingerprint))
}

// parsePageToken returns the offset in a token from pageToken for the same
// filters.
func parsePageToken(token string, fingerprint uint64, n int) (int, error) {
	invalid := newAPIError("InvalidNextToken", "The specified token isn't valid.")
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, invalid
	}
	var offset int
	var fp uint64
	if _, err := fmt.Sscanf(string(raw), "ssmtest/%d/%x", &offset, &fp); err != nil ||
		fp != fingerprint || offset <= 0 || offset >= n || pageToken(offset, fp) != token {
		return 0, invalid
	}
	return offset, nil
}

// filtersFingerprint identifies a filter list, so that a token is only
// good for the query that produced it.
func filtersFingerprint(filters []instanceFilter) uint64 {
	b, _ := json.Marshal(filters)
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
