package ssmtest

// DescribeInstanceProperties (properties.go), through the SDK's client as
// `ssm-proxy list` calls it for names.

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
)

func TestDescribeInstanceProperties(t *testing.T) {
	srv := apiTestServer(t, Options{Instances: append(DefaultInstances(), Instance{
		ID: "i-0eeeeeeeeeeeeeee6", Name: "win-1", PlatformType: "Windows",
		Tags: map[string]string{"Name": "windows-1"},
	}, Instance{ID: "i-0fffffffffffffff7"})})
	client := apiTestClient(srv)
	ids := []string{"i-0eeeeeeeeeeeeeee6", "i-0123456789abcdef0", "i-0fffffffffffffff7", "i-0ccccccccccccccc4"}
	p := ssm.NewDescribeInstancePropertiesPaginator(client, &ssm.DescribeInstancePropertiesInput{
		InstancePropertyFilterList: []types.InstancePropertyFilter{{Key: types.InstancePropertyFilterKeyInstanceIds, ValueSet: ids}},
		MaxResults:                 aws.Int32(50),
	})
	got := map[string]types.InstanceProperty{}
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(apiContext(t))
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, ip := range out.InstanceProperties {
			got[aws.ToString(ip.InstanceId)] = ip
		}
	}
	if len(got) != len(ids) || pages != 2 { // the default page size is 2
		t.Fatalf("%d properties in %d pages, want %d in 2: %v", len(got), pages, len(ids), got)
	}
	for id, want := range map[string]string{
		"i-0eeeeeeeeeeeeeee6": "windows-1", // the Name tag, over Instance.Name
		"i-0123456789abcdef0": "web-1",
		"i-0fffffffffffffff7": "", // no Name tag: blank
	} {
		if n := aws.ToString(got[id].Name); n != want {
			t.Errorf("%s: Name %q, want %q", id, n, want)
		}
	}
	if ip := got["i-0ccccccccccccccc4"]; ip.PingStatus != types.PingStatusConnectionLost || aws.ToString(ip.AgentVersion) == "" {
		t.Errorf("i-0ccccccccccccccc4: %+v", ip)
	}

	_, err := client.DescribeInstanceProperties(apiContext(t), &ssm.DescribeInstancePropertiesInput{
		InstancePropertyFilterList: []types.InstancePropertyFilter{{Key: types.InstancePropertyFilterKeyPlatformTypes, ValueSet: []string{"Linux"}}},
	})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidFilterKey" {
		t.Errorf("an unsupported filter: %v, want InvalidFilterKey", err)
	}
}
