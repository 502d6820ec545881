package awscfg

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/config"
)

// CABundleError reports a CA bundle setting (AWS_CA_BUNDLE, or a profile's
// ca_bundle) that names a file that cannot be read, or one without a PEM
// certificate. The SDK's own words are "failed to load custom CA bundle
// PEM file", without the setting or the path.
type CABundleError struct {
	Setting string // "AWS_CA_BUNDLE" or `ca_bundle of profile "x"`
	Path    string
	Err     error
}

func (e *CABundleError) Error() string {
	return fmt.Sprintf("%s names %s, which %v", e.Setting, e.Path, e.Err)
}

func (e *CABundleError) Unwrap() error { return e.Err }

// errNotPEM is CABundleError.Err for a file without a PEM certificate.
var errNotPEM = errors.New("holds no PEM certificate")

// checkCABundle reads path as the SDK would and says what is wrong with it.
func checkCABundle(setting, path string) error {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &CABundleError{Setting: setting, Path: path, Err: errors.New("does not exist")}
	case err != nil:
		return &CABundleError{Setting: setting, Path: path, Err: fmt.Errorf("cannot be read: %w", err)}
	case !x509.NewCertPool().AppendCertsFromPEM(b):
		return &CABundleError{Setting: setting, Path: path, Err: errNotPEM}
	}
	return nil
}

// explainLoadError finds the CA bundle setting behind a failure to load
// the configuration, where there is one; other errors are returned as
// they are. The environment's AWS_CA_BUNDLE wins over the profile's, as
// in the SDK.
func explainLoadError(ctx context.Context, o Options, err error) error {
	if p := os.Getenv("AWS_CA_BUNDLE"); p != "" {
		if cerr := checkCABundle("AWS_CA_BUNDLE", p); cerr != nil {
			return cerr
		}
		return err
	}
	profile := o.Profile
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	if profile == "" {
		profile = "default"
	}
	sc, lerr := config.LoadSharedConfigProfile(ctx, profile, func(lo *config.LoadSharedConfigOptions) {
		lo.ConfigFiles = []string{envOr("AWS_CONFIG_FILE", config.DefaultSharedConfigFilename())}
		lo.CredentialsFiles = []string{envOr("AWS_SHARED_CREDENTIALS_FILE", config.DefaultSharedCredentialsFilename())}
	})
	if lerr == nil && sc.CustomCABundle != "" {
		if cerr := checkCABundle(fmt.Sprintf("ca_bundle of profile %q", profile), sc.CustomCABundle); cerr != nil {
			return cerr
		}
	}
	return err
}

// envOr is the variable's value, or def when it is unset or empty.
func envOr(variable, def string) string {
	if v := os.Getenv(variable); v != "" {
		return v
	}
	return def
}
