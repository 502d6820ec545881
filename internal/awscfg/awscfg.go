// Package awscfg loads the AWS configuration ssm-proxy runs with.
//
// It is the aws-sdk-go-v2 default chain (environment, shared config and
// credentials files, IAM Identity Center, assume-role with source_profile
// chains, credential_process, web identity, container and instance
// metadata) plus what a ProxyCommand needs on top:
//
//   - an MFA prompt on the controlling terminal, never on stdin/stdout,
//     which carry ssh's bytes (prompt.go);
//   - a disk cache of assumed-role credentials, so that every new ssh
//     connection does not call STS and prompt again (cache.go);
//   - credential failures marked as *CredentialsError, so that the caller
//     can tell them from API errors however the SDK wraps them;
//   - bounds on every API call, so that an endpoint that never answers
//     costs a bounded time and an error naming the endpoint and the
//     setting behind it (bounds.go), and a -v line for each call;
//   - the proxy environment read as net/http reads it, for the API client
//     and the websocket alike (proxy.go);
//   - a websocket dialer with the API client's proxy and CA bundle
//     (dialer.go);
//   - Info: which profile, region and kind of credentials were used, for
//     error hints and `ssm-proxy doctor`, and the endpoints the calls go
//     to (endpoints.go).
package awscfg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/smithy-go/middleware"
)

// Options select the profile and region and how to ask for MFA codes. The
// zero value is the SDK's defaults with the terminal prompt.
type Options struct {
	// Profile is the shared-config profile (--profile); "" means
	// AWS_PROFILE or "default", as for the SDK.
	Profile string
	// Region overrides AWS_REGION and the profile's region (--region).
	Region string
	// Prompt asks for the current code of the MFA device serial when a
	// profile assumes a role with mfa_serial. nil means TerminalPrompt.
	Prompt func(serial string) (string, error)
	// CacheDir holds cached assumed-role credentials; "" means
	// DefaultCacheDir().
	CacheDir string
	// Logger receives debug lines (never credentials); nil discards them.
	Logger *slog.Logger
	// Timeouts bound the API calls; zero fields mean the defaults.
	Timeouts Timeouts
}

// Info describes where the configuration came from, in the words a user
// would look for in their setup.
type Info struct {
	// Profile is the shared-config profile the credentials come from, ""
	// when they come from the environment.
	Profile string
	// ProfileFrom says how the profile was chosen: "--profile",
	// "AWS_PROFILE" or "default".
	ProfileFrom string
	// Region and RegionFrom ("--region", "AWS_REGION", "AWS_DEFAULT_REGION",
	// `profile "x"`), both "" when no region is configured.
	Region, RegionFrom string
	// Credentials describes the credential source, e.g. `profile "dev":
	// role arn:aws:iam::1:role/x with MFA via profile "base"`.
	Credentials string
	// SSOProfile is the profile in the chain that signs in with IAM
	// Identity Center, "" if none: the one to `aws sso login --profile`.
	SSOProfile string
	// RoleARN and MFASerial of the profile's assume-role, if any.
	RoleARN, MFASerial string
	// CachePath is the disk cache of the assumed-role credentials, "" when
	// they are not cached.
	CachePath string
	// Fallback reports that nothing is configured: the SDK's chain ends at
	// the EC2 instance metadata service, which has credentials on EC2 only.
	Fallback bool
	// Process reports a credential_process in the chain.
	Process bool
}

// DefaultCacheDir is ssm-proxy's directory in the user cache directory
// (~/.cache/ssm-proxy on Linux, ~/Library/Caches/ssm-proxy on macOS,
// %LocalAppData%\ssm-proxy on Windows).
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "ssm-proxy"), nil
}

// Load resolves the configuration. Credentials are not retrieved yet (that
// happens on first use, and may prompt); failures to retrieve them are
// *CredentialsError. A missing region is not an error here: Info.Region is
// "". A CA bundle setting naming a missing or non-PEM file is a
// *CABundleError.
func Load(ctx context.Context, o Options) (aws.Config, Info, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prompt := o.Prompt
	if prompt == nil {
		prompt = TerminalPrompt
	}
	prompt = serialize(prompt)
	t := o.Timeouts.withDefaults()
	proxies := readProxyEnv()
	b := &bounds{t: t, log: log, proxy: proxies}
	client := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = t.Connect }).
		WithTransportOptions(func(tr *http.Transport) {
			tr.Proxy = proxies.proxyFunc
			tr.OnProxyConnectResponse = proxies.checkConnectResponse
			tr.TLSHandshakeTimeout = t.Connect
			tr.ResponseHeaderTimeout = t.Attempt
		})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(client),
		config.WithLogger(sdkLogger{log}),
		config.WithAPIOptions([]func(*middleware.Stack) error{b.apply}),
		config.WithProcessCredentialOptions(func(po *processcreds.Options) { po.Timeout = t.Process }),
	}
	if t.MaxBackoff > 0 {
		opts = append(opts, config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) { so.MaxBackoff = t.MaxBackoff })
		}))
	}
	if o.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(o.Profile))
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	opts = append(opts, config.WithAssumeRoleCredentialOptions(func(ao *stscreds.AssumeRoleOptions) {
		serial := aws.ToString(ao.SerialNumber)
		ao.TokenProvider = func() (string, error) { return prompt(serial) }
	}))
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, Info{}, fmt.Errorf("load AWS configuration: %w", explainLoadError(ctx, o, err))
	}
	b.cfg = cfg
	info := describe(cfg, o)
	log.Debug("aws configuration", "profile", info.Profile, "region", info.Region, "credentials", info.Credentials)

	var creds aws.CredentialsProvider = cfg.Credentials
	if info.RoleARN != "" {
		dir := o.CacheDir
		if dir == "" {
			dir, err = DefaultCacheDir()
		}
		if err == nil {
			info.CachePath = filepath.Join(dir, cacheKey(info.Profile, info.RoleARN, info.MFASerial)+".json")
			creds = &diskCache{inner: creds, path: info.CachePath, log: log}
		} else {
			log.Debug("not caching assumed-role credentials: no cache directory", "err", err)
		}
	}
	if creds != nil {
		c := &checked{inner: creds, info: info, log: log}
		if info.Process && info.MFASerial == "" {
			c.process = t.Process
		}
		if info.Fallback {
			_, shared := configSources(cfg)
			c.tried = triedSources(shared)
		}
		cfg.Credentials = aws.NewCredentialsCache(c)
	}
	return cfg, info, nil
}

// serialize makes prompts one at a time, so that a source_profile chain
// with two MFA roles does not ask twice at once.
func serialize(prompt func(string) (string, error)) func(string) (string, error) {
	var mu sync.Mutex
	return func(serial string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return prompt(serial)
	}
}

// cacheKey names the cache file of a profile's role.
func cacheKey(profile, role, mfa string) string {
	sum := sha256.Sum256([]byte(profile + "\n" + role + "\n" + mfa))
	return hex.EncodeToString(sum[:16])
}

// describe works out Info the way the SDK chose its sources
// (config.resolveCredentialChain): an explicit --profile wins; otherwise
// environment keys, then a web identity token file, then the profile.
func describe(cfg aws.Config, o Options) Info {
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
	info := Info{Region: cfg.Region}
	switch {
	case o.Region != "":
		info.RegionFrom = "--region"
	case os.Getenv("AWS_REGION") != "":
		info.RegionFrom = "AWS_REGION"
	case os.Getenv("AWS_DEFAULT_REGION") != "":
		info.RegionFrom = "AWS_DEFAULT_REGION"
	case cfg.Region != "":
		info.RegionFrom = fmt.Sprintf("profile %q", shared.Profile)
	}

	switch {
	case o.Profile == "" && env.Credentials.HasKeys():
		info.Credentials = "environment variables (AWS_ACCESS_KEY_ID)"
		return info
	case o.Profile == "" && env.WebIdentityTokenFilePath != "":
		info.Credentials = "web identity token (AWS_WEB_IDENTITY_TOKEN_FILE) for role " + env.RoleARN
		return info
	}
	info.Profile = shared.Profile
	if info.Profile == "" {
		info.Profile = "default" // the SDK's, absent from the files
	}
	switch {
	case o.Profile != "":
		info.ProfileFrom = "--profile"
	case env.SharedConfigProfile != "":
		info.ProfileFrom = "AWS_PROFILE"
	default:
		info.ProfileFrom = "default"
	}
	if shared.RoleARN != "" && shared.WebIdentityTokenFile == "" {
		info.RoleARN, info.MFASerial = shared.RoleARN, shared.MFASerial
	}
	info.Credentials = fmt.Sprintf("profile %q: %s", info.Profile, describeProfile(&shared, env, &info))
	if shared.RoleARN == "" && baseKind(&shared, env) == kindIMDS {
		info.Fallback = true
		info.Credentials = "EC2 instance metadata (instance profile), as nothing else is configured"
	}
	return info
}

// describeProfile describes a profile's credentials, following its
// source_profile chain, and records the SSO profile in info.
func describeProfile(sc *config.SharedConfig, env config.EnvConfig, info *Info) string {
	var base string
	switch baseKind(sc, env) {
	case kindSource:
		base = fmt.Sprintf("profile %q (%s)", sc.Source.Profile, describeProfile(sc.Source, env, info))
	case kindKeys:
		base = "static keys"
	case kindCredentialSource:
		base = "credential_source " + sc.CredentialSource
	case kindWebIdentity:
		base = "web identity token " + sc.WebIdentityTokenFile
	case kindSSO:
		base = "IAM Identity Center (SSO)"
		if info.SSOProfile == "" {
			info.SSOProfile = sc.Profile
		}
	case kindLogin:
		base = "aws login session"
	case kindProcess:
		base = "credential_process"
		info.Process = true
	case kindContainer:
		base = "container credentials endpoint"
	default:
		base = "EC2 instance metadata (instance profile)"
	}
	if sc.RoleARN == "" {
		return base
	}
	role := "role " + sc.RoleARN
	if sc.MFASerial != "" {
		role += " with MFA"
	}
	if strings.HasPrefix(base, "profile ") {
		return role + " via " + base
	}
	return role + " from " + base
}

// credentialKind is where a profile's credentials come from, in the order
// the SDK looks (config.resolveCredsFromProfile).
type credentialKind int

const (
	kindSource credentialKind = iota
	kindKeys
	kindCredentialSource
	kindWebIdentity
	kindSSO
	kindLogin
	kindProcess
	kindContainer
	kindIMDS
)

func baseKind(sc *config.SharedConfig, env config.EnvConfig) credentialKind {
	switch {
	case sc.Source != nil:
		return kindSource
	case sc.Credentials.HasKeys():
		return kindKeys
	case sc.CredentialSource != "":
		return kindCredentialSource
	case sc.WebIdentityTokenFile != "":
		return kindWebIdentity
	case sc.SSOSession != nil || sc.SSOStartURL != "":
		return kindSSO
	case sc.LoginSession != "":
		return kindLogin
	case sc.CredentialProcess != "":
		return kindProcess
	case env.ContainerCredentialsEndpoint != "" || env.ContainerCredentialsRelativePath != "":
		return kindContainer
	}
	return kindIMDS
}
