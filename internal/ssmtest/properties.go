package ssmtest

// DescribeInstanceProperties, the part a client needs for names: the
// InstanceIds filter of InstancePropertyFilterList and the Name of each
// node, which for an EC2 instance is its Name tag (blank without one) —
// the one SSM call that returns it. Other filters are refused rather than
// ignored; results come a page at a time as DescribeInstanceInformation's.

import (
	"slices"
	"time"
)

// propertiesInput is the DescribeInstanceProperties request.
type propertiesInput struct {
	InstancePropertyFilterList []legacyFilterInput
	FiltersWithOperator        []struct{ Key *string }
	MaxResults                 *int
	NextToken                  *string
}

// propertiesOutput is the DescribeInstanceProperties response.
type propertiesOutput struct {
	InstanceProperties []instanceProperty
	NextToken          string `json:",omitempty"`
}

// instanceProperty is one InstanceProperty item.
type instanceProperty struct {
	InstanceId       string
	Name             string `json:",omitempty"`
	PingStatus       string
	LastPingDateTime epochSeconds
	AgentVersion     string
	PlatformType     string
	PlatformName     string `json:",omitempty"`
	ResourceType     string
}

// apiDescribeInstanceProperties lists the inventory's properties, those
// of the given InstanceIds if the filter is there.
func (s *Server) apiDescribeInstanceProperties(in *propertiesInput) (*propertiesOutput, error) {
	if len(in.FiltersWithOperator) > 0 {
		return nil, newAPIError("InvalidFilterKey", "the emulator supports only the InstanceIds filter of InstancePropertyFilterList")
	}
	var ids []string
	for _, f := range in.InstancePropertyFilterList {
		if f.Key == nil || *f.Key != "InstanceIds" {
			return nil, newAPIError("InvalidFilterKey", "the emulator supports only the InstanceIds filter of InstancePropertyFilterList")
		}
		if len(f.ValueSet) == 0 || len(f.ValueSet) > maxFilterValues {
			return nil, newAPIError("InvalidFilterValue", "InstanceIds takes 1 to %d values", maxFilterValues)
		}
		ids = append(ids, f.ValueSet...)
	}
	var matches []Instance
	for _, inst := range s.opts.Instances {
		if ids == nil || slices.Contains(ids, inst.ID) {
			matches = append(matches, withInstanceDefaults(inst))
		}
	}
	fp := filtersFingerprint([]instanceFilter{{Key: "InstanceIds", Values: ids}})
	start := 0
	if in.NextToken != nil {
		var err error
		if start, err = parsePageToken(*in.NextToken, fp, len(matches)); err != nil {
			return nil, err
		}
	}
	size := defaultMaxResults
	if in.MaxResults != nil {
		size = *in.MaxResults
	}
	if size < minMaxResults || size > maxMaxResults {
		return nil, newAPIError("ValidationException", "MaxResults must be between %d and %d", minMaxResults, maxMaxResults)
	}
	size = min(size, s.opts.PageSize)
	end := min(start+size, len(matches))
	out := &propertiesOutput{InstanceProperties: make([]instanceProperty, 0, end-start)}
	now := time.Now()
	for _, inst := range matches[start:end] {
		info := s.instanceInformation(inst, now)
		out.InstanceProperties = append(out.InstanceProperties, instanceProperty{
			InstanceId:       inst.ID,
			Name:             instanceTags(inst)["Name"],
			PingStatus:       info.PingStatus,
			LastPingDateTime: info.LastPingDateTime,
			AgentVersion:     info.AgentVersion,
			PlatformType:     info.PlatformType,
			PlatformName:     info.PlatformName,
			ResourceType:     info.ResourceType,
		})
	}
	if end < len(matches) {
		out.NextToken = pageToken(end, fp)
	}
	return out, nil
}
