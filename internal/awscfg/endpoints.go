package awscfg

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// Endpoint is where one service's requests go, and which setting says so.
type Endpoint struct {
	// Service is "ssm" or "ssmmessages".
	Service string
	URL     *url.URL
	// Setting names what points Service at URL (AWS_ENDPOINT_URL_SSM, a
	// profile's services section, …); "" when URL is the default.
	Setting string
	// ServerName is the TLS server name the client verifies: URL's host,
	// except for an ssmmessages override, which keeps the regional name
	// (see Dialer).
	ServerName string
}

// SSMEndpoint is the endpoint SSM API calls with cfg go to, resolved as
// the SDK resolves it.
func SSMEndpoint(ctx context.Context, cfg aws.Config) (Endpoint, error) {
	o := ssm.NewFromConfig(cfg).Options()
	params := ssm.EndpointParameters{
		Region:       aws.String(o.Region),
		Endpoint:     o.BaseEndpoint,
		UseFIPS:      aws.Bool(o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled),
		UseDualStack: aws.Bool(o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled),
	}
	ep, err := ssm.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, params)
	if err != nil {
		return Endpoint{}, fmt.Errorf("resolve the SSM endpoint: %w", err)
	}
	u := ep.URI
	return Endpoint{Service: "ssm", URL: &u, Setting: endpointSetting(cfg, "SSM"), ServerName: u.Hostname()}, nil
}

// DataChannelEndpoint is where the data-channel websockets of sessions
// started with cfg connect: the ssmmessages override if there is one
// (AWS_ENDPOINT_URL_SSMMESSAGES, or the profile's services section);
// otherwise the regional name, ssmmessages.REGION.amazonaws.com (or the
// partition's suffix) — unless the SSM endpoint is overridden with a host
// that is not an AWS name: such a stand-in (an emulator, a test service)
// serves the data channel itself, so its host is where StreamUrls point.
func DataChannelEndpoint(ctx context.Context, cfg aws.Config) (Endpoint, error) {
	api, err := SSMEndpoint(ctx, cfg)
	if err != nil {
		return Endpoint{}, err
	}
	regional := "ssmmessages." + cfg.Region + "." + dnsSuffix(api.URL.Hostname(), cfg.Region)
	if raw, setting := messagesOverride(cfg); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return Endpoint{}, fmt.Errorf("%s %q: want a URL such as https://vpce-0123-abcd.ssmmessages.%s.vpce.amazonaws.com", setting, raw, cfg.Region)
		}
		return Endpoint{Service: "ssmmessages", URL: u, Setting: setting, ServerName: regional}, nil
	}
	if api.Setting != "" && !IsAWSHost(api.URL.Hostname()) {
		u := *api.URL
		return Endpoint{Service: "ssmmessages", URL: &u, Setting: api.Setting, ServerName: u.Hostname()}, nil
	}
	u := &url.URL{Scheme: "https", Host: regional}
	return Endpoint{Service: "ssmmessages", URL: u, ServerName: regional}, nil
}

// IsAWSHost reports whether host is under one of AWS's service domains
// (amazonaws.com, amazonaws.com.cn, api.aws, …), VPC endpoint names
// included.
func IsAWSHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, d := range protocol.AWSDomains {
		if strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

// dnsSuffix is the partition's domain, taken from the SSM API's host name
// when it is a regional AWS name (ssm.REGION.SUFFIX), or from the region.
func dnsSuffix(apiHost, region string) string {
	for _, svc := range []string{"ssm.", "ssm-fips."} {
		if rest, ok := strings.CutPrefix(apiHost, svc+region+"."); ok && IsAWSHost(apiHost) {
			return rest
		}
	}
	if strings.HasPrefix(region, "cn-") {
		return "amazonaws.com.cn"
	}
	return "amazonaws.com"
}

// messagesOverride is the ssmmessages endpoint override and the setting
// it comes from, "" if none.
func messagesOverride(cfg aws.Config) (endpoint, setting string) {
	if v := os.Getenv(EndpointEnvSSMMessages); v != "" {
		return v, EndpointEnvSSMMessages
	}
	_, shared := configSources(cfg)
	if v := shared.Services.ServiceValues["ssmmessages"]["endpoint_url"]; v != "" {
		return v, servicesSetting(shared, "ssmmessages")
	}
	return "", ""
}

// configSources finds the environment and shared configuration cfg was
// loaded from.
func configSources(cfg aws.Config) (config.EnvConfig, config.SharedConfig) {
	var env config.EnvConfig
	var shared config.SharedConfig
	for _, src := range cfg.ConfigSources {
		switch c := src.(type) {
		case config.EnvConfig:
			env = c
		case config.SharedConfig:
			shared = c
		}
	}
	return env, shared
}

// endpointSetting names the setting that sends requests of the service
// with SDK id sdkID ("SSM", "STS", "SSO OIDC", …) somewhere else than its
// default endpoint, following the SDK's order (the service's variable,
// AWS_ENDPOINT_URL, the profile's services section, the profile's
// endpoint_url); "" when none does. A few credential sources that are not
// SDK services have their own variables.
func endpointSetting(cfg aws.Config, sdkID string) string {
	env, shared := configSources(cfg)
	switch sdkID {
	case imdsService:
		if os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT") != "" {
			return "AWS_EC2_METADATA_SERVICE_ENDPOINT"
		}
		if shared.EC2IMDSEndpoint != "" {
			return fmt.Sprintf("ec2_metadata_service_endpoint of profile %q", shared.Profile)
		}
		return ""
	case containerService:
		if env.ContainerCredentialsEndpoint != "" {
			return "AWS_CONTAINER_CREDENTIALS_FULL_URI"
		}
		return "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
	}
	if ignore(env, shared) {
		return ""
	}
	svcVar := "AWS_ENDPOINT_URL_" + strings.ReplaceAll(strings.ToUpper(sdkID), " ", "_")
	svcKey := strings.ReplaceAll(strings.ToLower(sdkID), " ", "_")
	switch {
	case os.Getenv(svcVar) != "":
		return svcVar
	case os.Getenv("AWS_ENDPOINT_URL") != "":
		return "AWS_ENDPOINT_URL"
	case shared.Services.ServiceValues[svcKey]["endpoint_url"] != "":
		return servicesSetting(shared, svcKey)
	case shared.BaseEndpoint != "":
		return fmt.Sprintf("endpoint_url of profile %q", shared.Profile)
	case sdkID == "SSO" || sdkID == "SSO OIDC":
		return ssoSetting(&shared)
	}
	return ""
}

// ssoSetting names the sso_region that places IAM Identity Center's
// endpoints, and the start URL it goes with, from the profile in the
// source_profile chain that signs in with it.
func ssoSetting(sc *config.SharedConfig) string {
	for ; sc != nil; sc = sc.Source {
		switch {
		case sc.SSOSession != nil:
			return fmt.Sprintf("sso_region %s of sso-session %q (start URL %s)", sc.SSOSession.SSORegion, sc.SSOSession.Name, sc.SSOSession.SSOStartURL)
		case sc.SSOStartURL != "":
			return fmt.Sprintf("sso_region %s of profile %q (start URL %s)", sc.SSORegion, sc.Profile, sc.SSOStartURL)
		}
	}
	return ""
}

// servicesSetting names a service's endpoint_url in a profile's services
// section.
func servicesSetting(shared config.SharedConfig, key string) string {
	return fmt.Sprintf("%s endpoint_url in the services section of profile %q", key, shared.Profile)
}

// ignore reports AWS_IGNORE_CONFIGURED_ENDPOINT_URLS or the profile's
// ignore_configured_endpoint_urls.
func ignore(env config.EnvConfig, shared config.SharedConfig) bool {
	if env.IgnoreConfiguredEndpoints != nil {
		return *env.IgnoreConfiguredEndpoints
	}
	return shared.IgnoreConfiguredEndpoints != nil && *shared.IgnoreConfiguredEndpoints
}

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

// ssmMessagesEndpoint is the ssmmessages endpoint override, if any.
func ssmMessagesEndpoint(cfg aws.Config) string {
	e, _ := messagesOverride(cfg)
	return e
}
