package awscfg

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/gorilla/websocket"
)

// EndpointEnvSSMMessages overrides where the data-channel websocket
// connects, in the SDK's AWS_ENDPOINT_URL_<SERVICE> style. The profile's
// services section may set the same as `ssmmessages = endpoint_url = …`.
const EndpointEnvSSMMessages = "AWS_ENDPOINT_URL_SSMMESSAGES"

// Dialer returns the websocket dialer for the data channel with the same
// network settings as cfg's API client: its proxy function (HTTPS_PROXY,
// HTTP_PROXY, NO_PROXY) and its TLS configuration (AWS_CA_BUNDLE or the
// profile's ca_bundle).
//
// With an ssmmessages endpoint override (a VPC interface endpoint's DNS
// name when private DNS is off), every websocket connects to that host
// directly, not through a proxy, while TLS server name, Host header and
// signature stay those of the StreamUrl the service returned — the
// interface endpoint's certificate covers the regional service name.
func Dialer(cfg aws.Config) (*websocket.Dialer, error) {
	// Timeouts and buffer sizes are left to the session (proxy.Options).
	d := &websocket.Dialer{Proxy: http.ProxyFromEnvironment}
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		tr := bc.GetTransport()
		d.Proxy = tr.Proxy
		if tr.TLSClientConfig != nil {
			d.TLSClientConfig = tr.TLSClientConfig.Clone()
		}
	}
	endpoint := ssmMessagesEndpoint(cfg)
	if endpoint == "" {
		return d, nil
	}
	addr, err := endpointAddr(endpoint)
	if err != nil {
		return nil, err
	}
	var nd net.Dialer
	d.Proxy = nil
	d.NetDialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return nd.DialContext(ctx, network, addr)
	}
	return d, nil
}

// ssmMessagesEndpoint is the ssmmessages endpoint override, if any.
func ssmMessagesEndpoint(cfg aws.Config) string {
	if v := os.Getenv(EndpointEnvSSMMessages); v != "" {
		return v
	}
	for _, src := range cfg.ConfigSources {
		if sc, ok := src.(config.SharedConfig); ok {
			return sc.Services.ServiceValues["ssmmessages"]["endpoint_url"]
		}
	}
	return ""
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
	port := "443"
	if u.Scheme == "http" || u.Scheme == "ws" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}
