package main

import (
	"crypto/tls"
	"errors"
	"fmt"
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
)

// errorText is err as one line. AWS API errors are shortened to service,
// operation, code and message (the SDK adds status and request id), and
// credential failures, which the SDK wraps in layers of "failed to refresh
// cached credentials", are cut down to their cause.
func errorText(err error) string {
	var (
		ce   *awscfg.CredentialsError
		sso  *ssocreds.InvalidTokenError
		proc *processcreds.ProviderError
		oe   *smithy.OperationError
		ae   smithy.APIError
	)
	if !errors.As(err, &ce) {
		text := err.Error()
		if errors.As(err, &oe) && errors.As(err, &ae) {
			short := fmt.Sprintf("%s %s: %s: %s", oe.Service(), oe.Operation(), ae.ErrorCode(), ae.ErrorMessage())
			text = strings.Replace(text, oe.Error(), short, 1)
		}
		return textutil.OneLine(text)
	}
	cause := ce.Err
	switch {
	case errors.As(cause, &sso):
		cause = errors.New("the SSO session has expired or is invalid")
	case errors.As(cause, &proc):
		cause = proc.Err
	case errors.As(cause, &ae):
		cause = fmt.Errorf("%s: %s", ae.ErrorCode(), ae.ErrorMessage())
	default:
		for errors.Unwrap(cause) != nil {
			cause = errors.Unwrap(cause)
		}
	}
	var pce *proxy.CredentialsError
	if errors.As(err, &pce) {
		return textutil.OneLine("the connection to Session Manager was lost, and the AWS credentials needed to restore the connection could not be refreshed: " + cause.Error())
	}
	return textutil.OneLine("cannot get AWS credentials: " + cause.Error())
}

// hints suggests what to do about err.
func hints(err error, o options, u *used) []string {
	var (
		ce  *awscfg.CredentialsError
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
	)
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return []string{"the server's TLS certificate is not trusted: behind a TLS-inspecting proxy, set AWS_CA_BUNDLE (or ca_bundle in the profile) to a PEM file with its CA; it applies to the API calls and the websocket"}
	}
	switch {
	case errors.Is(err, errNoRegion):
		return []string{"set --region, AWS_REGION, or region in the profile's section of ~/.aws/config"}
	case errors.As(err, &pne):
		return []string{fmt.Sprintf("profile %q is not in ~/.aws/config or ~/.aws/credentials (or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE); check --profile and AWS_PROFILE", pne.Profile)}
	case errors.As(err, &ce):
		return credentialHints(ce, u)
	case errors.As(err, &nf):
		return []string{
			fmt.Sprintf("only nodes registered with Systems Manager in %s are found; check the Name tag, the region and the profile", u.aws.Region),
			fmt.Sprintf("`ssm-proxy doctor %s` checks the whole path", u.target),
		}
	case errors.As(err, &amb):
		return []string{"connect by instance id, or pick a tag that only one node has: tag:Key=Value"}
	case errors.As(err, &off):
		return notOnlineHints(off.Instance)
	case errors.Is(err, proxy.ErrIdleTimeout):
		return []string{hintServerAlive}
	case errors.As(err, &pce):
		// Reached only when the resume's credentials error is not ours.
		return []string{"the established session did not need new credentials, but restoring the connection did; refresh them and reconnect"}
	case errors.As(err, &rse):
		return []string{
			fmt.Sprintf("the data channel (ssmmessages.%s.amazonaws.com:443) could not be reached again in time: check the network, HTTPS_PROXY, the ssmmessages VPC endpoint, or raise --resume-timeout", orRegion(u.aws.Region)),
			hintServerAlive,
		}
	case errors.Is(err, proxy.ErrSessionEnded):
		return []string{"Session Manager had already ended the session (terminated, or idle for too long while disconnected); reconnect"}
	case errors.As(err, &he):
		return []string{fmt.Sprintf("ssm-proxy carries plain port sessions; use the document AWS-StartSSHSession (the default) instead of %q", o.document)}
	case errors.As(err, &re):
		return remoteHints(re)
	}
	var hs []string
	if errors.As(err, &nc) {
		hs = append(hs, nc.hint(u.aws.Region))
	}
	if errors.As(err, &ae) {
		hs = append(hs, apiHints(err, ae, o, u)...)
	}
	return hs
}

// orRegion is region, or REGION when none is known.
func orRegion(region string) string {
	if region == "" {
		return "REGION"
	}
	return region
}

// apiHints explains SSM API errors (§10); ae is the API error in err.
func apiHints(err error, ae smithy.APIError, o options, u *used) []string {
	switch ae.ErrorCode() {
	case "TargetNotConnected":
		return []string{hintInstanceProfile, hintEndpoints, fmt.Sprintf("`ssm-proxy doctor %s` checks each of these", u.target)}
	case "AccessDeniedException":
		var oe *smithy.OperationError
		if errors.As(err, &oe) && oe.Operation() == "DescribeInstanceInformation" {
			return []string{hintDescribe}
		}
		return []string{strings.Replace(hintStartSession, "REGION", orRegion(u.aws.Region), 1)}
	case "InvalidDocument":
		return []string{fmt.Sprintf("the document %q does not exist or is not a session document; the default is AWS-StartSSHSession", o.document)}
	case "ExpiredTokenException", "ExpiredToken":
		return []string{refreshHint(u.aws)}
	case "UnrecognizedClientException", "InvalidSignatureException", "InvalidClientTokenId", "SignatureDoesNotMatch":
		return []string{refreshHint(u.aws), "check the system clock, too: signatures more than 5 minutes off are refused"}
	case "ThrottlingException":
		return []string{"Systems Manager is rate-limiting this account's API calls; retry in a moment"}
	}
	return nil
}

// credentialHints explains why no credentials could be obtained.
func credentialHints(ce *awscfg.CredentialsError, u *used) []string {
	info := u.aws
	var (
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
	switch innermostService(ce) {
	case "SSO", "SSO OIDC":
		return ssoLogin()
	case "STS":
		if errors.As(ce, &ae) && info.RoleARN == "" {
			return []string{fmt.Sprintf("STS refused %s (%s): renew the token, or check the role's trust policy", info.Credentials, ae.ErrorCode())}
		}
		if errors.As(ce, &ae) { // STS answered: it refused
			h := fmt.Sprintf("STS refused to let profile %q assume %s (%s): check the role's trust policy and the source credentials", info.Profile, info.RoleARN, ae.ErrorCode())
			if info.MFASerial != "" {
				h += ", and enter the current MFA code"
			}
			return []string{h}
		}
	}
	switch {
	case errors.Is(ce, awscfg.ErrNoTerminal):
		return []string{
			fmt.Sprintf("profile %q assumes %s with MFA (%s); ssm-proxy asks for the code on the terminal only, as stdin and stdout belong to ssh", info.Profile, info.RoleARN, info.MFASerial),
			fmt.Sprintf("run `ssm-proxy doctor %s` in a terminal once: the role's credentials are then cached until they expire", u.target),
		}
	case errors.As(ce, &sso), info.SSOProfile != "":
		return ssoLogin()
	case errors.As(ce, &proc):
		return []string{fmt.Sprintf("the credential_process of profile %q failed; run it by hand to see why", info.Profile)}
	case errors.As(ce, &ae):
		return []string{refreshHint(info)}
	case strings.Contains(info.Credentials, "instance metadata"):
		return []string{"no AWS credentials found: pass --profile or set AWS_PROFILE, run `aws configure` or `aws sso login`, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"}
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
	if u.aws.Credentials != "" {
		h += ", credentials from " + u.aws.Credentials
	}
	return h
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
