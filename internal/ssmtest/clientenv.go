package ssmtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// ClientEnv is the environment for a client process (ssm-proxy, the
// official plugin, ssh running either) pointed at the emulator at endpoint:
// the fixed fake credentials, no other AWS_ variables, empty shared config
// files and no instance metadata, so that nothing can reach real AWS.
func ClientEnv(tb testing.TB, endpoint string) []string {
	tb.Helper()
	empty := filepath.Join(tb.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ACCESS_KEY_ID="+AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+SecretAccessKey,
		"AWS_REGION="+DefaultRegion,
		"AWS_ENDPOINT_URL_SSM="+endpoint,
		"AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT="+endpoint,
		// No test writes the machine's real session log.
		"SSM_PROXY_SESSION_LOG=off",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+empty,
		"AWS_SHARED_CREDENTIALS_FILE="+empty,
	)
}

// Credentials provides the fixed fake credentials the emulator accepts.
func Credentials() aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, Source: "ssmtest"}, nil
	})
}

// APIClient is an SDK client for the emulator at endpoint that signs with
// Credentials. It reads no shared config and no environment, so nothing
// can reach AWS, and it does not retry, so each call is one request.
func APIClient(endpoint string) *ssm.Client {
	return ssm.New(ssm.Options{
		Region:           DefaultRegion,
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      Credentials(),
		RetryMaxAttempts: 1,
	})
}
