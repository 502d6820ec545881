package ssmtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+empty,
		"AWS_SHARED_CREDENTIALS_FILE="+empty,
	)
}
