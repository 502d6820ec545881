package main

import (
	"errors"
	"fmt"

	"github.com/aws/smithy-go"

	"github.com/ssm-proxy/ssm-proxy/proxy"
)

// hints suggests what to do about err (protocol.md §10).
func hints(err error, o options, target string) []string {
	var ae smithy.APIError
	var re *proxy.RemoteError
	switch {
	case errors.Is(err, errNoRegion):
		return []string{"set --region, AWS_REGION, or region in the profile's section of ~/.aws/config"}
	case errors.Is(err, proxy.ErrIdleTimeout):
		return []string{"add `ServerAliveInterval 60` to the Host block in ~/.ssh/config to keep idle sessions open"}
	case errors.As(err, &ae):
		switch ae.ErrorCode() {
		case "TargetNotConnected":
			return []string{
				fmt.Sprintf("%s is not connected to Session Manager in this region/account; check that it is running, its SSM agent is running and registered, and it has an instance profile with AmazonSSMManagedInstanceCore", target),
				"in private subnets it needs VPC interface endpoints for ssm, ssmmessages and ec2messages (or HTTPS egress on port 443)",
			}
		case "AccessDeniedException":
			return []string{"your identity needs ssm:StartSession on the instance and on the document (arn:aws:ssm:REGION::document/AWS-StartSSHSession), and ssm:ResumeSession/ssm:TerminateSession on its own sessions"}
		case "InvalidDocument":
			return []string{fmt.Sprintf("the document %q does not exist or is not a session document; the default is AWS-StartSSHSession", o.document)}
		case "ExpiredTokenException", "ExpiredToken":
			return []string{credentialHint(o)}
		case "UnrecognizedClientException", "InvalidSignatureException", "InvalidClientTokenId", "SignatureDoesNotMatch":
			return []string{credentialHint(o), "check the system clock, too: signatures more than 5 minutes off are refused"}
		}
	case errors.As(err, &re):
		return remoteHints(re)
	}
	return nil
}

func credentialHint(o options) string {
	if o.profile != "" {
		return fmt.Sprintf("the credentials of profile %q were refused; refresh them (e.g. `aws sso login --profile %s`)", o.profile, o.profile)
	}
	return "the credentials were refused; refresh them (e.g. `aws sso login`) or pick a profile with --profile"
}
