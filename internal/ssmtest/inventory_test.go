package ssmtest

// Loading the emulator's instance inventory (inventory.go): the testdata
// file, the JSON forms and their errors, tags and defaults, and an Example.
// How the API serves the instances is api_test.go's
// (DescribeInstanceInformation); the ssm-emulator -inventory flag is
// cmd/ssm-emulator/main_test.go's.

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadInstances(t *testing.T) {
	insts, err := LoadInstances(filepath.Join("testdata", "inventory.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 6 {
		t.Fatalf("%d instances, want 6", len(insts))
	}
	db := insts[1]
	if db.ID != "i-0fedcba9876543210" || db.Name != "db-1" || db.Tags["Role"] != "db" || db.Addr != "127.0.0.1:5432" || db.IPAddress != "10.0.2.20" {
		t.Errorf("db-1 = %+v", db)
	}
	if lost := insts[3]; lost.PingStatus != pingConnectionLost || !lost.LastPing.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("stopped-1 = %+v", lost)
	}
	if !insts[4].Denied || insts[2].Platform != "Microsoft Windows Server 2022 Datacenter" || insts[5].AgentVersion != "3.1.1446.0" {
		t.Errorf("instances = %+v", insts)
	}

	_, err = LoadInstances(filepath.Join(t.TempDir(), "missing.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseInstances(t *testing.T) {
	cases := []struct {
		name, data string
		ids        string // space-separated; ignored when err is set
		err        string
	}{
		{name: "array", data: `[{"InstanceId":"i-1"},{"InstanceId":"mi-2"}]`, ids: "i-1 mi-2"},
		{name: "object", data: ` {"Instances":[{"InstanceId":"i-1","Tags":{"a":"b"}}]} `, ids: "i-1"},
		{name: "empty array", data: `[]`, ids: ""},
		{name: "empty object", data: `{}`, ids: ""},
		{name: "unknown field", data: `[{"InstanceId":"i-1","Nmae":"x"}]`, err: `unknown field "Nmae"`},
		{name: "unknown top-level field", data: `{"Instance":[]}`, err: `unknown field "Instance"`},
		{name: "no id", data: `[{"Name":"x"}]`, err: `InstanceId "" is not an i- or mi- id`},
		{name: "bad id", data: `[{"InstanceId":"web-1"}]`, err: `"web-1" is not an i- or mi- id`},
		{name: "duplicate", data: `[{"InstanceId":"i-1"},{"InstanceId":"i-1"}]`, err: `duplicate InstanceId "i-1"`},
		{name: "ping status", data: `[{"InstanceId":"i-1","PingStatus":"Up"}]`, err: `PingStatus "Up"`},
		{name: "platform", data: `[{"InstanceId":"i-1","PlatformType":"linux"}]`, err: `PlatformType "linux"`},
		{name: "trailing data", data: `[] []`, err: "unexpected data"},
		{name: "not json", data: `Instances:`, err: "decode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			insts, err := parseInstances([]byte(c.data))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if insts == nil {
				t.Fatal("nil inventory: Start would use the default one")
			}
			var ids []string
			for _, inst := range insts {
				ids = append(ids, inst.ID)
			}
			if got := strings.Join(ids, " "); got != c.ids {
				t.Errorf("ids = %q, want %q", got, c.ids)
			}
		})
	}
}

func TestInstanceTagsAndDefaults(t *testing.T) {
	inst := withInstanceDefaults(Instance{ID: "i-1", Name: "n", Tags: map[string]string{"Env": "dev"}})
	if inst.PingStatus != pingOnline || inst.AgentVersion != DefaultAgentVersion || inst.Platform != "Amazon Linux" || inst.PlatformType != "Linux" {
		t.Errorf("defaults = %+v", inst)
	}
	if tags := instanceTags(inst); len(tags) != 2 || tags["Name"] != "n" || tags["Env"] != "dev" {
		t.Errorf("tags = %v", tags)
	}
	if tags := instanceTags(Instance{Name: "n", Tags: map[string]string{"Name": "tag"}}); tags["Name"] != "tag" {
		t.Errorf("Tags[Name] should win over Name: %v", tags)
	}
}

func ExampleLoadInstances() {
	insts, err := LoadInstances("testdata/inventory.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := Start(Options{Instances: insts, TargetAddr: "127.0.0.1:22"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	for _, inst := range srv.Options().Instances[:2] {
		fmt.Println(inst.ID, inst.Name)
	}
	// Output:
	// i-0123456789abcdef0 web-1
	// i-0fedcba9876543210 db-1
}
