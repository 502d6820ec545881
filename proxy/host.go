package proxy

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// StreamHostError reports a StreamUrl that ssm-proxy will not connect to:
// nothing is signed and no token is sent to it (§15.3).
type StreamHostError struct {
	URL    string // the host (scheme and host only, never the query)
	Region string
	Reason string
}

func (e *StreamHostError) Error() string {
	return fmt.Sprintf("refusing the stream URL %s: %s", e.URL, e.Reason)
}

// checkStreamURL applies the StreamUrl check of §15.3 before anything is
// signed for, or any token sent to, raw: its host must be a Session Manager
// messages endpoint of region — ssmmessages.<region>.<partition domain>,
// the FIPS form ssmmessages-fips, or an interface VPC endpoint name
// (vpce-….ssmmessages.<region>.vpce.<domain>) — or one of allowed, the
// hosts the user configured (the ssmmessages or SSM endpoint override).
// AWS endpoints must use wss; a configured host may use ws (a local
// emulator). It returns the parsed URL.
func checkStreamURL(raw, region string, allowed []string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "wss" && u.Scheme != "ws") {
		return nil, &StreamHostError{URL: scrubURL(raw), Region: region, Reason: "it is not a ws:// or wss:// URL"}
	}
	shown := scrubURL(raw)
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	for _, a := range allowed {
		if a != "" && host == strings.TrimSuffix(strings.ToLower(a), ".") {
			return u, nil
		}
	}
	if !isMessagesHost(host, region) {
		return nil, &StreamHostError{URL: shown, Region: region,
			Reason: fmt.Sprintf("%s is not a Session Manager messages endpoint for %s", host, region)}
	}
	if u.Scheme != "wss" {
		return nil, &StreamHostError{URL: shown, Region: region, Reason: "an AWS endpoint must be reached over TLS (wss://)"}
	}
	return u, nil
}

// isMessagesHost reports whether host is an AWS messages endpoint name for
// region.
func isMessagesHost(host, region string) bool {
	if !regionPattern().MatchString(region) {
		return false
	}
	for _, d := range protocol.AWSDomains {
		for _, svc := range []string{"ssmmessages", "ssmmessages-fips"} {
			if host == svc+"."+region+"."+d {
				return true
			}
			// Interface VPC endpoints: vpce-<id>[-<suffix>][-<az>].ssmmessages.<region>.vpce.<domain>.
			if pre, ok := strings.CutSuffix(host, "."+svc+"."+region+".vpce."+d); ok && vpcePattern().MatchString(pre) {
				return true
			}
		}
	}
	return false
}

var (
	regionPattern = textutil.LazyRegexp(`^[a-z]{2,4}(-[a-z]+)+-\d+$`)
	vpcePattern   = textutil.LazyRegexp(`^vpce-[0-9a-z]+(-[0-9a-z]+)*$`)
)

// scrubURL shows raw's scheme and host only: its path names the session
// and its query may carry credentials.
func scrubURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" {
		return fmt.Sprintf("%q", u.Scheme+"://"+u.Host)
	}
	if i := strings.IndexAny(raw, "/?#"); i >= 0 {
		raw = raw[:i]
	}
	if len(raw) > 60 {
		raw = raw[:60] + "…"
	}
	return fmt.Sprintf("%q", raw)
}
