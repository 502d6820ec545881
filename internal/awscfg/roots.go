package awscfg

import (
	"crypto/x509"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// loadSystemRoots loads the system's trusted roots into crypto/x509's
// process-wide pool, which every TLS handshake without RootCAs verifies
// against; tests replace it to see whether WarmRoots started it.
var loadSystemRoots = func() { _, _ = x509.SystemCertPool() }

// WarmRoots starts loading the system's trusted roots in the background
// when a TLS handshake of this process will verify against them: cfg's
// client has no CA bundle and one of endpoints (the SSM endpoint, the
// messages endpoint; "" for the default, which is https) uses TLS. It
// reports whether it started the load.
//
// Go loads the roots on first use, inside the first handshake, after the
// server's certificate has arrived and before the client's Finished can
// leave: on Linux it parses every certificate of the system's bundle and
// of its certificate directory, 10–20 ms of CPU on the path of every
// set-up, at any distance. Started now, the load runs while the first
// connections' TCP and TLS handshakes wait for the network, and the
// handshake finds the pool ready. It is the same pool, loaded the same way:
// only the moment changes.
func WarmRoots(cfg aws.Config, endpoints ...string) bool {
	if !usesSystemRoots(cfg, endpoints) {
		return false
	}
	go loadSystemRoots()
	return true
}

// usesSystemRoots says whether a connection to one of endpoints with cfg's
// client verifies the server against the system's roots.
func usesSystemRoots(cfg aws.Config, endpoints []string) bool {
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		if tc := bc.GetTransport().TLSClientConfig; tc != nil && tc.RootCAs != nil {
			return false // a CA bundle: the SDK's own pool, not the system's
		}
	}
	for _, e := range endpoints {
		if e == "" {
			return true
		}
		if u, err := url.Parse(e); err == nil && (u.Scheme == "https" || u.Scheme == "wss") {
			return true
		}
	}
	return false
}
