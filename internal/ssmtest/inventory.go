package ssmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Instance.PingStatus values, as DescribeInstanceInformation reports them.
const (
	pingOnline         = "Online"
	pingConnectionLost = "ConnectionLost"
	pingInactive       = "Inactive"
)

// Instance.PlatformType values.
var platformTypes = []string{"Linux", "Windows", "MacOS"}

// LoadInstances reads an inventory file for Options.Instances: a JSON array
// of Instance, or an object {"Instances": [...]}, as in
// testdata/inventory.json. Unknown fields are errors, so that a misspelt
// field does not silently become a default. An empty array is an empty
// inventory, not the default one.
func LoadInstances(path string) ([]Instance, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssmtest: read inventory: %w", err)
	}
	insts, err := parseInstances(data)
	if err != nil {
		return nil, fmt.Errorf("ssmtest: inventory %s: %w", path, err)
	}
	return insts, nil
}

// parseInstances decodes and checks an inventory.
func parseInstances(data []byte) ([]Instance, error) {
	data = bytes.TrimSpace(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	insts := []Instance{}
	var err error
	if bytes.HasPrefix(data, []byte("{")) {
		var wrapped struct{ Instances []Instance }
		err = dec.Decode(&wrapped)
		if wrapped.Instances != nil {
			insts = wrapped.Instances
		}
	} else {
		err = dec.Decode(&insts)
	}
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode: unexpected data after the inventory")
	}
	return insts, checkInstances(insts)
}

// checkInstances refuses ids that are missing, duplicated or not an
// instance id, and enum fields with unknown values.
func checkInstances(insts []Instance) error {
	seen := make(map[string]bool, len(insts))
	for i, inst := range insts {
		switch {
		case !strings.HasPrefix(inst.ID, "i-") && !strings.HasPrefix(inst.ID, "mi-"):
			return fmt.Errorf("instance %d: InstanceId %q is not an i- or mi- id", i, inst.ID)
		case seen[inst.ID]:
			return fmt.Errorf("instance %d: duplicate InstanceId %q", i, inst.ID)
		}
		seen[inst.ID] = true
		switch inst.PingStatus {
		case "", pingOnline, pingConnectionLost, pingInactive:
		default:
			return fmt.Errorf("instance %s: PingStatus %q is not Online, ConnectionLost or Inactive", inst.ID, inst.PingStatus)
		}
		if inst.PlatformType != "" && !slices.Contains(platformTypes, inst.PlatformType) {
			return fmt.Errorf("instance %s: PlatformType %q is not one of %s", inst.ID, inst.PlatformType, strings.Join(platformTypes, ", "))
		}
	}
	return nil
}

// inventoryInstance returns the instance with id, its defaults filled in.
func (s *Server) inventoryInstance(id string) (Instance, bool) {
	for _, inst := range s.opts.Instances {
		if inst.ID == id {
			return withInstanceDefaults(inst), true
		}
	}
	return Instance{}, false
}

// withInstanceDefaults fills in the defaults documented on Instance.
func withInstanceDefaults(inst Instance) Instance {
	if inst.PingStatus == "" {
		inst.PingStatus = pingOnline
	}
	if inst.AgentVersion == "" {
		inst.AgentVersion = DefaultAgentVersion
	}
	if inst.Platform == "" {
		inst.Platform = "Amazon Linux"
	}
	if inst.PlatformType == "" {
		inst.PlatformType = "Linux"
	}
	return inst
}

// instanceTags are the instance's tags, Name included: Instance.Name is
// the Name tag unless Tags sets one itself.
func instanceTags(inst Instance) map[string]string {
	tags := make(map[string]string, len(inst.Tags)+1)
	if inst.Name != "" {
		tags["Name"] = inst.Name
	}
	for k, v := range inst.Tags {
		tags[k] = v
	}
	return tags
}
