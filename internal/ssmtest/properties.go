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
	unsupported := newAPIError("InvalidFilterKey", "the emulator supports only the InstanceIds filter of InstancePropertyFilterList")
	if len(in.FiltersWithOperator) > 0 {
		return nil, unsupported
	}
	var ids []string
	for _, f := range in.InstancePropertyFilterList {
		if f.Key == nil || *f.Key != "InstanceIds" {
			return nil, unsupported
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
	if m := in.MaxResults; m != nil && (*m < minMaxResults || *m > maxMaxResults) {
		return nil, newAPIError("ValidationException", "MaxResults must be between %d and %d", minMaxResults, maxMaxResults)
	}
	start, end, next, err := s.page(len(matches), in.MaxResults, in.NextToken, filtersFingerprint([]instanceFilter{{Key: "InstanceIds", Values: ids}}))
	if err != nil {
		return nil, err
	}
	out := &propertiesOutput{InstanceProperties: make([]instanceProperty, 0, end-start), NextToken: next}
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
	return out, nil
}
