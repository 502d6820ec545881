package awscfg

import (
	"context"
	"fmt"
	"net"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/gorilla/websocket"
)

// EndpointEnvSSMMessages overrides where the data-channel websocket
// connects, in the SDK's AWS_ENDPOINT_URL_<SERVICE> style. The profile's
// services section may set the same as `ssmmessages = endpoint_url = …`.
const EndpointEnvSSMMessages = "AWS_ENDPOINT_URL_SSMMESSAGES"

// Dialer returns the websocket dialer for the data channel with the same
// network settings as cfg's API client: the proxy environment
// (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) and the TLS configuration
// (AWS_CA_BUNDLE or the profile's ca_bundle).
//
// With an ssmmessages endpoint override (a VPC interface endpoint's DNS
// name when private DNS is off), every websocket connects to that host —
// through the proxy, with CONNECT, when the proxy settings apply to it —
// while TLS server name, Host header and signature stay those of the
// StreamUrl the service returned: the interface endpoint's certificate
// covers the regional service name.
func Dialer(cfg aws.Config) (*websocket.Dialer, error) {
	// Timeouts and buffer sizes are left to the session (proxy.Options).
	proxies := readProxyEnv()
	d := &websocket.Dialer{Proxy: proxies.proxyFunc}
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		if tr := bc.GetTransport(); tr.TLSClientConfig != nil {
			d.TLSClientConfig = tr.TLSClientConfig.Clone()
		}
	}
	endpoint, _ := messagesOverride(cfg)
	if endpoint == "" {
		return d, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("ssmmessages endpoint %q: want a URL such as https://vpce-0123-abcd.ssmmessages.us-east-1.vpce.amazonaws.com", endpoint)
	}
	addr, err := endpointAddr(endpoint)
	if err != nil {
		return nil, err
	}
	tlsConf := d.TLSClientConfig
	d.Proxy = nil
	d.NetDialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return proxies.dialThrough(ctx, u, addr, tlsConf)
	}
	return d, nil
}

// endpointAddr turns an endpoint URL into host:port.
func endpointAddr(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("ssmmessages endpoint %q: want a URL such as https://vpce-0123-abcd.ssmmessages.us-east-1.vpce.amazonaws.com", endpoint)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	return net.JoinHostPort(u.Hostname(), defaultPort(u.Scheme)), nil
}
