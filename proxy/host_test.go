package proxy

// Tests of checkStreamURL (host.go) on its own: which StreamUrl hosts a
// session signs for and sends its token to, and that a refusal shows scheme
// and host only. A refused host at start and at resume is gateway_test.go's
// (TestGatewayStreamHost); sessions against the emulator at every level
// pass the check as a configured 127.0.0.1 (e2e/network_test.go as the
// regional messages host).

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckStreamURL: which StreamUrl hosts ssm-proxy signs for and sends
// its token to (§2.4, §15.3): the messages endpoints of the session's region
// in every partition, their FIPS and VPC endpoint forms, and hosts the user
// configured — nothing else.
func TestCheckStreamURL(t *testing.T) {
	const path = "/v1/data-channel/alice-0123456789abcdef0?role=publish_subscribe&cell-number=AAAA"
	configured := []string{"vpce.example.internal", "127.0.0.1", "SSM.Proxy.Corp."}
	accept := []struct{ url, region string }{
		{"wss://ssmmessages.us-east-1.amazonaws.com" + path, "us-east-1"},
		{"wss://SSMMESSAGES.US-EAST-1.AMAZONAWS.COM" + path, "us-east-1"},
		{"wss://ssmmessages.us-east-1.amazonaws.com.:443" + path, "us-east-1"},
		{"wss://ssmmessages-fips.us-gov-west-1.amazonaws.com" + path, "us-gov-west-1"},
		{"wss://ssmmessages.cn-north-1.amazonaws.com.cn" + path, "cn-north-1"},
		{"wss://ssmmessages.eusc-de-east-1.amazonaws.eu" + path, "eusc-de-east-1"},
		{"wss://ssmmessages.us-iso-east-1.c2s.ic.gov" + path, "us-iso-east-1"},
		{"wss://ssmmessages.eu-west-1.api.aws" + path, "eu-west-1"},
		{"wss://vpce-0123456789abcdef0-abcdefgh.ssmmessages.eu-west-1.vpce.amazonaws.com" + path, "eu-west-1"},
		{"wss://vpce-0123456789abcdef0-abcdefgh-eu-west-1a.ssmmessages.eu-west-1.vpce.amazonaws.com" + path, "eu-west-1"},
		{"wss://vpce.example.internal" + path, "eu-west-1"}, // configured (a private DNS name)
		{"ws://127.0.0.1:8080" + path, "us-east-1"},         // configured emulator, plain ws allowed
		{"wss://ssm.proxy.corp:8443" + path, "us-east-1"},   // configured, case and trailing dot ignored
		{"wss://ssmmessages.ap-southeast-2.amazonaws.com" + path, "ap-southeast-2"},
	}
	for _, c := range accept {
		if _, err := checkStreamURL(c.url, c.region, configured); err != nil {
			t.Errorf("refused %s in %s: %v", c.url, c.region, err)
		}
	}
	refuse := []struct{ url, region, why string }{
		{"wss://ssmmessages.eu-west-1.amazonaws.com" + path, "us-east-1", "not a Session Manager messages endpoint for us-east-1"}, // another region
		{"wss://evil.example.com" + path, "us-east-1", "evil.example.com"},
		{"wss://ssmmessages.us-east-1.amazonaws.com.evil.example" + path, "us-east-1", "not a Session Manager"},
		{"wss://ssmmessages.us-east-1.evil.amazonaws.com" + path, "us-east-1", "not a Session Manager"},
		{"wss://ssm.us-east-1.amazonaws.com" + path, "us-east-1", "not a Session Manager"}, // the API, not the gateway
		{"wss://xssmmessages.us-east-1.amazonaws.com" + path, "us-east-1", "not a Session Manager"},
		{"wss://vpce-x.ssmmessages.us-east-1.vpce.amazonaws.com.attacker.net" + path, "us-east-1", "not a Session Manager"},
		{"wss://evil.vpce-0.ssmmessages.us-east-1.vpce.amazonaws.com" + path, "us-east-1", "not a Session Manager"},
		{"ws://ssmmessages.us-east-1.amazonaws.com" + path, "us-east-1", "TLS"}, // an AWS host without TLS
		{"https://ssmmessages.us-east-1.amazonaws.com" + path, "us-east-1", "ws:// or wss://"},
		{"wss://" + path, "us-east-1", "ws:// or wss://"},
		{"::not a url", "us-east-1", "ws:// or wss://"},
		{"wss://ssmmessages.us-east-1.amazonaws.com" + path, "", "not a Session Manager"}, // no region known
		{"wss://127.0.0.2" + path, "us-east-1", "127.0.0.2"},                              // not the configured 127.0.0.1
	}
	for _, c := range refuse {
		_, err := checkStreamURL(c.url, c.region, configured)
		var he *StreamHostError
		if !errors.As(err, &he) {
			t.Errorf("accepted %s in %q (err %v)", c.url, c.region, err)
			continue
		}
		if !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v, want it to say %q", c.url, err, c.why)
		}
		if strings.Contains(err.Error(), "cell-number") || strings.Contains(err.Error(), "alice") {
			t.Errorf("%s: the error shows the URL's path or query: %v", c.url, err)
		}
	}
}
