package awscfg

import (
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// StreamHosts are the hosts the user configured to which a Session Manager
// StreamUrl may point besides AWS's own messages endpoints (§15.3): the
// ssmmessages endpoint override, and the host of the SSM API endpoint
// override ssmEndpoint (an emulator, or a proxy that serves both).
func StreamHosts(cfg aws.Config, ssmEndpoint string) []string {
	var hosts []string
	for _, e := range []string{ssmMessagesEndpoint(cfg), ssmEndpoint} {
		if u, err := url.Parse(e); err == nil && u.Hostname() != "" {
			hosts = append(hosts, u.Hostname())
		}
	}
	return hosts
}

// MessagesEndpoint is the ssmmessages endpoint override
// (AWS_ENDPOINT_URL_SSMMESSAGES or the profile's services section), "" if
// none.
func MessagesEndpoint(cfg aws.Config) string { return ssmMessagesEndpoint(cfg) }
