package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/ssocreds"
	"github.com/aws/smithy-go"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/target"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
	"github.com/ssm-proxy/ssm-proxy/protocol"
	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// Hints shared by the proxy command and doctor (docs/protocol.md §10).
const (
	hintInstanceProfile = "the instance needs the SSM agent running and an instance profile with the AmazonSSMManagedInstanceCore policy (or Default Host Management Configuration)"
	hintEndpoints       = "in a private subnet it needs VPC interface endpoints for ssm, ssmmessages and ec2messages with private DNS, whose security group allows HTTPS (443) from the instance, or HTTPS egress to the internet"
	hintStartSession    = "your identity needs ssm:StartSession on the instance and on the document (arn:aws:ssm:REGION::document/AWS-StartSSHSession), and ssm:ResumeSession/ssm:TerminateSession on its own sessions (examples/iam/user-policy.json)"
	hintDescribe        = "finding instances by name needs ssm:DescribeInstanceInformation; or connect by instance id"
	hintAgentUpdate     = "update the SSM agent (Run Command document AWS-UpdateSSMAgent, or the package manager): SSH sessions need agent " + protocol.AgentVersionPort + " or later"
	hintServerAlive     = "add `ServerAliveInterval 60` to the Host block in ~/.ssh/config to keep idle sessions open"
	hintCABundle        = "the server's TLS certificate is not trusted: behind a TLS-inspecting proxy, set AWS_CA_BUNDLE (or ca_bundle in the profile) to a PEM file with its CA; it applies to the API calls and the websocket"
	hintAdvancedTier    = "Session Manager reaches on-premises and other non-EC2 managed nodes (mi-…) only with the advanced-instances tier: turn it on in Systems Manager › Fleet Manager › Settings › Instance tier, or with `aws ssm update-service-setting --setting-id arn:aws:ssm:REGION:ACCOUNT_ID:servicesetting/ssm/managed-instance/activation-tier --setting-value advanced` (charged per node and hour)"
)

// Texts of AWS errors that share their code with others (docs/protocol.md §10).
const (
	// advancedTierText is in StartSession's BadRequest for an on-premises
	// node in an account on the standard-instances tier: "Enable
	// advanced-instances tier to use Session Manager with your on-premises
	// instances".
	advancedTierText = "advanced-instances tier"
	// regionScopeText is in InvalidSignatureException (SSM) and
	// SignatureDoesNotMatch (STS) for a request signed for another region
	// than the endpoint's: "Credential should be scoped to a valid region,
	// not 'eu-west-1'." (also "The credential must be scoped to a valid
	// region.").
	regionScopeText = "scoped to a valid region"
	// serviceScopeText is the same for another service: "Credential should
	// be scoped to correct service: 'ssm'."
	serviceScopeText = "scoped to correct service"
)

// errorText is err as one line with no secret in it. AWS API errors are
// shortened to service, operation, code and message (the SDK adds status
// and request id), an endpoint that did not answer to what our bounds
// found, and credential failures, which the SDK wraps in layers of "failed
// to refresh cached credentials", are cut down to their cause. AWS echoes
// the canonical request in some signature errors, session token included:
// the text is redacted (textutil.Redact).
func errorText(err error) string {
	return textutil.Redact(textutil.OneLine(rawErrorText(err)))
}

func rawErrorText(err error) string {
	var (
		ce   *awscfg.CredentialsError
		nc   *awscfg.NoCredentialsError
		pt   *awscfg.ProcessTimeoutError
		ee   *awscfg.EndpointError
		sso  *ssocreds.InvalidTokenError
		proc *processcreds.ProviderError
		oe   *smithy.OperationError
		ae   smithy.APIError
	)
	if !errors.As(err, &ce) {
		text := err.Error()
		switch {
		case errors.As(err, &oe) && errors.As(err, &ee):
			text = strings.Replace(text, oe.Error(), ee.Error(), 1)
		case errors.As(err, &oe) && errors.As(err, &ae):
			short := fmt.Sprintf("%s %s: %s: %s", oe.Service(), oe.Operation(), ae.ErrorCode(), ae.ErrorMessage())
			text = strings.Replace(text, oe.Error(), short, 1)
		}
		return text
	}
	var cause error
	switch {
	case errors.As(ce, &nc):
		return nc.Error()
	case errors.As(ce, &pt):
		cause = pt
	case errors.As(ce, &ee):
		cause = ee
	case errors.As(ce, &sso):
		cause = errors.New("the SSO session has expired or is invalid")
	case errors.As(ce, &proc):
		cause = proc.Err
	case errors.As(ce, &ae):
		cause = fmt.Errorf("%s: %s", ae.ErrorCode(), ae.ErrorMessage())
	default:
		cause = ce.Err
		for errors.Unwrap(cause) != nil {
			cause = errors.Unwrap(cause)
		}
	}
	var pce *proxy.CredentialsError
	if errors.As(err, &pce) {
		return "the connection to Session Manager was lost, and the AWS credentials needed to restore the connection could not be refreshed: " + cause.Error()
	}
	return "cannot get AWS credentials: " + cause.Error()
}

// hints suggests what to do about err, for the proxy command.
func hints(err error, o options, u *used) []string {
	return hintsFor(err, o, u, false)
}

// doctorHints is hints worded for doctor, which takes no session flags
// and is itself the check the proxy command's hints point to.
func doctorHints(err error, o options, u *used) []string {
	return hintsFor(err, o, u, true)
}

// hintsFor is hints, redacted like errorText.
func hintsFor(err error, o options, u *used, doctor bool) []string {
	hs := rawHints(err, o, u, doctor)
	for i, h := range hs {
		hs[i] = textutil.Redact(h)
	}
	return hs
}

func rawHints(err error, o options, u *used, doctor bool) []string {
	var (
		ce  *awscfg.CredentialsError
		cbe *awscfg.CABundleError
		ee  *awscfg.EndpointError
		pe  *awscfg.ProxyError
		pce *proxy.CredentialsError
		nc  *notConnectedError
		nf  *target.NotFoundError
		amb *target.AmbiguousError
		off *target.NotOnlineError
		re  *proxy.RemoteError
		rse *proxy.ResumeError
		he  *proxy.HandshakeError
		pne config.SharedConfigProfileNotExistError
		ae  smithy.APIError
		pke *pushKeyError
		she *proxy.StreamHostError
		ue  *proxy.UpgradeError
		rfe *proxy.RefusedError
		pre *proxy.ProtocolError
		le  *listenError
		de  *dialError
	)
	switch {
	case errors.As(err, &pke):
		return pke.hints
	case errors.As(err, &she):
		return []string{"ssm-proxy signs for, and sends its session token to, AWS messages endpoints of the session's region and hosts you configure only; if this host is yours (a VPC endpoint name or proxy), set AWS_ENDPOINT_URL_SSMMESSAGES to it"}
	case errors.As(err, &ue) && (ue.StatusCode == http.StatusForbidden || ue.StatusCode == http.StatusUnauthorized):
		return []string{
			"the data channel refused the signed websocket upgrade: your identity needs ssmmessages:OpenDataChannel (it comes with ssm:StartSession in AWS's policies), and the signature must be for the session's region with a correct clock",
			fmt.Sprintf("`ssm-proxy doctor %s` checks the endpoints and credentials", u.target),
		}
	case errors.As(err, &ue) && ue.StatusCode == http.StatusNotFound:
		return []string{"the data channel does not know the session (it may have moved or ended); reconnect"}
	case errors.As(err, &rfe):
		return []string{"the service no longer accepts this client: update ssm-proxy (" + version() + ")"}
	case errors.As(err, &pre):
		return []string{"the service sent something ssm-proxy cannot take; the session was ended. Retry; if it persists, report it with the -v output"}
	case errors.As(err, &le):
		return []string{"another program listens there: pick another LOCALPORT (0 picks a free one) or stop that program"}
	case errors.As(err, &de):
		return []string{fmt.Sprintf("the target could not connect to %s: check the host name and port, that it listens, and that security groups allow the target to reach it", de.dest)}
	case errors.Is(err, errNoRegion):
		return []string{"set --region, AWS_REGION, or region in the profile's section of ~/.aws/config"}
	case errors.As(err, &cbe):
		return []string{fmt.Sprintf("fix or unset %s: it must name a PEM file with the CA certificates to trust (a TLS-inspecting proxy's CA, say), and it applies to the API calls and the websocket", cbe.Setting)}
	case errors.As(err, &pne):
		return []string{fmt.Sprintf("profile %q is not in ~/.aws/config or ~/.aws/credentials (or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE); check --profile and AWS_PROFILE", pne.Profile)}
	case errors.As(err, &ce):
		return credentialHints(ce, u, doctor)
	case errors.As(err, &rse):
		return resumeHints(rse, u, doctor)
	case errors.As(err, &ee):
		return endpointHints(ee)
	case errors.As(err, &pe):
		return []string{proxyHint(pe.ProxyVariable(), pe.Target)}
	case isUntrusted(err):
		return []string{hintCABundle}
	case errors.As(err, &nf):
		return notFoundHints(nf, u, doctor)
	case errors.As(err, &amb):
		return []string{"connect by instance id, or pick a tag that only one node has: tag:Key=Value"}
	case errors.As(err, &off):
		return notOnlineHints(off.Instance)
	case errors.Is(err, proxy.ErrIdleTimeout):
		return []string{hintServerAlive}
	case errors.As(err, &pce):
		// Reached only when the resume's credentials error is not ours.
		return []string{"the established session did not need new credentials, but restoring the connection did; refresh them and reconnect"}
	case errors.Is(err, proxy.ErrSessionEnded):
		return []string{"Session Manager had already ended the session (terminated, or idle for too long while disconnected); reconnect"}
	case errors.As(err, &he) && he.Timeout:
		return []string{fmt.Sprintf("the session started but the agent did not answer: the instance must reach ssmmessages.%s.amazonaws.com on port 443 (an interface VPC endpoint, or HTTPS egress); see the agent's log on the instance", orRegion(u.aws.Region))}
	case errors.As(err, &he):
		if o.document == defaultDocument {
			return []string{fmt.Sprintf("the agent asked for %s, which ssm-proxy does not carry, although the document is %s: update the SSM agent on the instance (AWS-UpdateSSMAgent)", he.Reason, defaultDocument)}
		}
		return []string{fmt.Sprintf("ssm-proxy carries plain port sessions; use the document %s (the default) instead of %q", defaultDocument, o.document)}
	case errors.As(err, &re):
		return remoteHints(re)
	}
	var hs []string
	if errors.As(err, &nc) {
		hs = append(hs, nc.hint(u.aws.Region))
	}
	if errors.As(err, &ae) {
		hs = append(hs, apiHints(err, ae, o, u, doctor)...)
	}
	return hs
}

// resumeHints explains a lost connection that could not be restored,
// with what its last failure says first.
func resumeHints(rse *proxy.ResumeError, u *used, doctor bool) []string {
	var hs []string
	var ee *awscfg.EndpointError
	var pe *awscfg.ProxyError
	switch {
	case errors.As(rse, &ee):
		hs = endpointHints(ee)
	case errors.As(rse, &pe):
		hs = []string{proxyHint(pe.ProxyVariable(), pe.Target)}
	case isUntrusted(rse):
		hs = []string{hintCABundle}
	}
	messages := fmt.Sprintf("ssmmessages.%s.amazonaws.com:443", orRegion(u.aws.Region))
	if doctor {
		return append(hs, fmt.Sprintf("the data channel (%s, or AWS_ENDPOINT_URL_SSMMESSAGES) could not be reached again within the check's time: check the network, HTTPS_PROXY and the ssmmessages VPC endpoint", messages))
	}
	return append(hs,
		fmt.Sprintf("the data channel (%s) could not be reached again in time: check the network, HTTPS_PROXY, the ssmmessages VPC endpoint, or raise --resume-timeout", messages),
		hintServerAlive)
}

// defaultDocument is the session document ssm-proxy uses unless told.
const defaultDocument = "AWS-StartSSHSession"

// orRegion is region, or REGION when none is known.
func orRegion(region string) string {
	if region == "" {
		return "REGION"
	}
	return region
}

// isUntrusted reports a TLS certificate the client does not trust.
func isUntrusted(err error) bool {
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	return errors.As(err, &cve) || errors.As(err, &ua)
}

// apiHints explains SSM API errors (§10); ae is the API error in err.
func apiHints(err error, ae smithy.APIError, o options, u *used, doctor bool) []string {
	var oe *smithy.OperationError
	service := "SSM"
	if errors.As(err, &oe) {
		service = oe.Service()
	}
	msg := strings.ToLower(ae.ErrorMessage())
	switch code := ae.ErrorCode(); {
	case strings.Contains(msg, regionScopeText):
		return []string{regionHint(service, u)}
	case strings.Contains(msg, serviceScopeText):
		return []string{fmt.Sprintf("the endpoint answers for another AWS service than %s: check %s", service, serviceVar(service))}
	case code == "TargetNotConnected":
		if doctor {
			return []string{hintInstanceProfile, hintEndpoints}
		}
		return []string{hintInstanceProfile, hintEndpoints, fmt.Sprintf("`ssm-proxy doctor %s` checks each of these", u.target)}
	case code == "BadRequest" && strings.Contains(msg, advancedTierText):
		return []string{strings.Replace(hintAdvancedTier, "REGION", orRegion(u.aws.Region), 1)}
	case code == "AccessDeniedException":
		if errors.As(err, &oe) && oe.Operation() == "DescribeInstanceInformation" {
			return []string{hintDescribe}
		}
		return []string{strings.Replace(hintStartSession, "REGION", orRegion(u.aws.Region), 1)}
	case code == "InvalidDocument":
		return []string{fmt.Sprintf("the document %q does not exist or is not a session document; the default is %s", o.document, defaultDocument)}
	case code == "ExpiredTokenException", code == "ExpiredToken":
		return []string{refreshHint(u.aws)}
	case code == "UnrecognizedClientException", code == "InvalidSignatureException", code == "InvalidClientTokenId", code == "SignatureDoesNotMatch":
		return []string{refreshHint(u.aws), "check the system clock, too: signatures more than 5 minutes off are refused"}
	case code == "ThrottlingException":
		return []string{"Systems Manager is rate-limiting this account's API calls; retry in a moment"}
	}
	return nil
}

// regionHint explains a signature the endpoint refused as made for
// another region.
func regionHint(service string, u *used) string {
	from := ""
	if u.aws.RegionFrom != "" {
		from = " (from " + u.aws.RegionFrom + ")"
	}
	return fmt.Sprintf("the request was signed for region %s%s, but the %s endpoint serves another region: make --region or AWS_REGION the endpoint's region, or point %s at an endpoint in %s (a VPC endpoint serves its own region only)",
		orRegion(u.aws.Region), from, service, serviceVar(service), orRegion(u.aws.Region))
}

// serviceVar is the SDK's endpoint variable of an SDK service id:
// AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL_SSO_OIDC, ….
func serviceVar(service string) string {
	return "AWS_ENDPOINT_URL_" + strings.ReplaceAll(strings.ToUpper(service), " ", "_")
}

// proxyHint is the advice for a proxy that failed; variable is the one
// that names it.
func proxyHint(variable, target string) string {
	if variable == "" {
		variable = "HTTPS_PROXY"
	}
	return fmt.Sprintf("the proxy in %s does not work for %s: fix %s or unset it, or add the host to NO_PROXY if it is reachable directly", variable, target, variable)
}

// endpointHints explains an API call that got no usable answer: what to
// check, naming the setting that points at the endpoint, or for a default
// endpoint the usual way to reach it.
func endpointHints(ee *awscfg.EndpointError) []string {
	var (
		pe *awscfg.ProxyError
		oe *net.OpError
		he x509.HostnameError
		rh tls.RecordHeaderError
	)
	host := ee.Host
	if host == "" {
		host = "the endpoint"
	}
	if errors.As(ee.Err, &pe) || errors.As(ee.Err, &oe) && oe.Op == "proxyconnect" {
		variable := ""
		if pe != nil {
			variable = pe.ProxyVariable()
		} else if _, v, ok := strings.Cut(ee.Proxy, " ("); ok {
			variable = strings.TrimSuffix(v, ")")
		}
		return []string{proxyHint(variable, host)}
	}
	variable := settingOr(ee.Setting, serviceVar(ee.Service))
	var hs []string
	switch {
	case isUntrusted(ee.Err):
		return []string{hintCABundle}
	case errors.As(ee.Err, &he):
		return []string{fmt.Sprintf("the TLS certificate of %s does not cover that name: give the endpoint's DNS name (a VPC endpoint's, say), not an address, in %s", host, variable)}
	case errors.As(ee.Err, &rh):
		return []string{fmt.Sprintf("%s speaks plain HTTP: write its URL with http:// in %s", host, variable)}
	case ee.NotAPI:
		return []string{fmt.Sprintf("%s answers HTTP, but not as the %s API: check %s (the URL of another service, or a web page in front of it?)", host, ee.Service, variable)}
	case ee.Setting != "" && !strings.HasPrefix(ee.Setting, "sso_region "):
		hs = append(hs, fmt.Sprintf("%s points %s at %s: check that it is right, and that this host may reach it (a VPC endpoint's security group must allow HTTPS from here)", ee.Setting, ee.Service, host))
	default:
		hs = append(hs, defaultEndpointHint(ee.Service, host))
	}
	if ee.Proxy != "" {
		hs = append(hs, fmt.Sprintf("the request went through the proxy %s; if %s is reachable directly, add it to NO_PROXY", ee.Proxy, host))
	}
	return hs
}

func settingOr(setting, def string) string {
	if setting != "" {
		return setting
	}
	return def
}

// defaultEndpointHint is the advice for a service's default endpoint that
// cannot be reached.
func defaultEndpointHint(service, host string) string {
	switch service {
	case "SSM":
		return fmt.Sprintf("%s is the public SSM endpoint: from a private subnet, use an interface VPC endpoint for ssm (with private DNS, or set AWS_ENDPOINT_URL_SSM to its DNS name), or allow HTTPS egress; behind a proxy, set HTTPS_PROXY", host)
	case "STS":
		return fmt.Sprintf("STS (%s) cannot be reached: from a private subnet, use an STS interface VPC endpoint (with private DNS, or set AWS_ENDPOINT_URL_STS to its URL), or allow HTTPS egress; behind a proxy, set HTTPS_PROXY", host)
	case "SSO", "SSO OIDC":
		return fmt.Sprintf("IAM Identity Center (%s, in the profile's sso_region) cannot be reached: check the network and HTTPS_PROXY; %s overrides the endpoint", host, serviceVar(service))
	case "EC2 Instance Connect":
		return fmt.Sprintf("EC2 Instance Connect (%s) cannot be reached: from a private subnet allow HTTPS egress, or set AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT; behind a proxy, set HTTPS_PROXY", host)
	}
	return fmt.Sprintf("%s (%s) cannot be reached: check the network and HTTPS_PROXY, or set %s", service, host, serviceVar(service))
}

// notFoundHints explains a name or tag that matched nothing, with the
// nodes it almost matched.
func notFoundHints(nf *target.NotFoundError, u *used, doctor bool) []string {
	// One hint per suggested target, naming every node it reaches.
	var hs []string
	var targets []string
	ids := map[string][]string{}
	why := map[string]string{}
	for _, n := range nf.Near {
		if _, ok := ids[n.Target]; !ok {
			targets = append(targets, n.Target)
			why[n.Target] = n.Why
		}
		ids[n.Target] = append(ids[n.Target], n.Instance.ID)
	}
	for _, t := range targets {
		verb := "has"
		if len(ids[t]) > 1 {
			verb = "have"
		}
		hs = append(hs, fmt.Sprintf("did you mean %s? %s %s the %s", t, strings.Join(ids[t], " and "), verb, why[t]))
	}
	q := nf.Query
	hs = append(hs, fmt.Sprintf("only nodes registered with Systems Manager in %s are found; check the tag %s=%s (tag keys and values are case-sensitive), the region and the profile", orRegion(u.aws.Region), q.TagKey, q.TagValue))
	if !doctor {
		hs = append(hs, fmt.Sprintf("`ssm-proxy doctor %s` checks the whole path", u.target))
	}
	return hs
}

// credentialHints explains why no credentials could be obtained.
func credentialHints(ce *awscfg.CredentialsError, u *used, doctor bool) []string {
	info := u.aws
	var (
		nc   *awscfg.NoCredentialsError
		pt   *awscfg.ProcessTimeoutError
		ee   *awscfg.EndpointError
		sso  *ssocreds.InvalidTokenError
		proc *processcreds.ProviderError
		ae   smithy.APIError
	)
	ssoLogin := func() []string {
		p := info.SSOProfile
		if p == "" {
			p = info.Profile
		}
		return []string{fmt.Sprintf("the IAM Identity Center (SSO) session has expired or was never started: run `aws sso login --profile %s`", p)}
	}
	switch {
	case errors.As(ce, &nc):
		return []string{"configure credentials: pass --profile or set AWS_PROFILE, run `aws configure` or `aws sso login`, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"}
	case errors.As(ce, &pt):
		return []string{fmt.Sprintf("run the credential_process of profile %q by hand: it must print the credentials JSON and exit; one that waits for input gets none (stdin is not the terminal)", info.Profile)}
	case errors.As(ce, &ee):
		hs := endpointHints(ee)
		if ee.Service == "STS" && info.RoleARN != "" {
			hs = append([]string{fmt.Sprintf("profile %q needs STS to assume %s", info.Profile, info.RoleARN)}, hs...)
		}
		return hs
	}
	switch innermostService(ce) {
	case "SSO", "SSO OIDC":
		return ssoLogin()
	case "STS":
		if errors.As(ce, &ae) && info.RoleARN == "" {
			return []string{fmt.Sprintf("STS refused %s (%s): renew the token, or check the role's trust policy", info.Credentials, ae.ErrorCode())}
		}
		if errors.As(ce, &ae) { // STS answered: it refused
			if strings.Contains(strings.ToLower(ae.ErrorMessage()), regionScopeText) {
				return []string{regionHint("STS", u)}
			}
			h := fmt.Sprintf("STS refused to let profile %q assume %s (%s): check the role's trust policy and the source credentials", info.Profile, info.RoleARN, ae.ErrorCode())
			if info.MFASerial != "" {
				h += ", and enter the current MFA code"
			}
			return []string{h}
		}
	}
	switch {
	case errors.Is(ce, awscfg.ErrNoTerminal):
		hs := []string{fmt.Sprintf("profile %q assumes %s with MFA (%s); ssm-proxy asks for the code on the terminal only, as stdin and stdout belong to ssh", info.Profile, info.RoleARN, info.MFASerial)}
		if !doctor {
			hs = append(hs, fmt.Sprintf("run `ssm-proxy doctor %s` in a terminal once: the role's credentials are then cached until they expire", u.target))
		}
		return hs
	case errors.As(ce, &sso), info.SSOProfile != "":
		return ssoLogin()
	case errors.As(ce, &proc):
		return []string{fmt.Sprintf("the credential_process of profile %q failed; run it by hand to see why", info.Profile)}
	case errors.As(ce, new(*awscfg.ProcessOutputError)):
		return []string{fmt.Sprintf("run the credential_process of profile %q by hand: it must print only the credentials JSON, with \"Version\": 1", info.Profile)}
	case errors.As(ce, &ae):
		return []string{refreshHint(info)}
	}
	return []string{fmt.Sprintf("credentials come from %s; check that source", info.Credentials)}
}

// innermostService is the AWS service of the innermost failed operation
// in err's chain: with source_profile chains an STS AssumeRole fails
// because the SSO call for its source credentials did.
func innermostService(err error) string {
	var svc string
	for ; err != nil; err = errors.Unwrap(err) {
		if oe, ok := err.(*smithy.OperationError); ok {
			svc = oe.Service()
		}
	}
	return svc
}

// refreshHint is the advice for refused credentials.
func refreshHint(info awscfg.Info) string {
	switch {
	case info.SSOProfile != "":
		return fmt.Sprintf("the credentials were refused; refresh them: `aws sso login --profile %s`", info.SSOProfile)
	case info.Fallback:
		return "the instance profile's credentials were refused; check the role attached to the instance, or pick a profile with --profile"
	case info.Profile != "":
		return fmt.Sprintf("the credentials of profile %q were refused; refresh them (e.g. `aws sso login --profile %s`) or pick another with --profile", info.Profile, info.Profile)
	}
	return "the credentials from the environment (AWS_ACCESS_KEY_ID…) were refused; refresh them, or pick a profile with --profile"
}

// notOnlineHints explains a PingStatus other than Online.
func notOnlineHints(inst target.Instance) []string {
	if inst.PingStatus == "Inactive" {
		return []string{"Inactive: the instance is stopped or terminated, or the managed node was deregistered; start it, or check the id"}
	}
	return []string{"the agent stopped reporting: check that the instance is running and `systemctl status amazon-ssm-agent` on it", hintInstanceProfile, hintEndpoints}
}

// usedHint names the target, region and credentials a failed command used.
func usedHint(u *used) string {
	t := u.target
	if u.id != "" && u.id != u.target {
		t += " (" + u.id + ")"
	}
	h := "used target " + t
	if u.aws.Region != "" {
		h += ", region " + u.aws.Region + " (" + u.aws.RegionFrom + ")"
	}
	if c := credentialsUsed(u.aws); c != "" {
		h += ", " + c
	}
	return textutil.Redact(h)
}

// credentialsUsed says where a command's credentials came from: not
// "instance metadata" when that was only the SDK's last resort because
// nothing was configured.
func credentialsUsed(info awscfg.Info) string {
	switch {
	case info.Fallback:
		return "no credentials configured"
	case info.Credentials != "":
		return "credentials from " + info.Credentials
	}
	return ""
}

// remoteHints explains the agent's channel_closed texts (§10).
func remoteHints(re *proxy.RemoteError) []string {
	switch out := re.Output; {
	case strings.HasPrefix(out, protocol.DialFailedPrefix):
		return []string{"nothing is listening on that port on the instance: check that sshd is running, and the port in ~/.ssh/config"}
	case strings.Contains(out, protocol.PortPluginUnsupportedOutput):
		return []string{"the instance's SSM agent is too old for SSH sessions; " + hintAgentUpdate}
	case strings.Contains(out, protocol.HandshakeTimedOut):
		return []string{"the agent gave up waiting for the handshake; check network latency to ssmmessages and retry"}
	case strings.HasPrefix(out, protocol.ForbiddenAddressPrefix):
		return []string{"the agent refuses to forward to that address (instance metadata, VPC DNS and reserved addresses are forbidden)"}
	case strings.Contains(out, protocol.IdleTimeoutOutput):
		return []string{hintServerAlive}
	}
	return nil
}
