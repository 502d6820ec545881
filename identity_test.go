package main

// Credentials through run: a session from every source of the SDK chain
// (environment, profiles, assume role and chains, credential_process, SSO,
// web identity, instance metadata), each request's signature checked by the
// emulator; and each way of not getting them as one error line and hint,
// exit 1, no session. How internal/awscfg resolves each source is its own
// tests'; credentials re-resolved at resume are e2e/credentials_test.go's.

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

// Shared-config profiles for the identity tests. "base" has the emulator's
// static keys; the others reach credentials every way the SDK knows.
const identityConfig = `
[profile base]
aws_access_key_id = ` + ssmtest.AccessKeyID + `
aws_secret_access_key = ` + ssmtest.SecretAccessKey + `
region = us-east-1

[profile role]
role_arn = arn:aws:iam::123456789012:role/Dev
source_profile = base
region = us-east-1

[profile chain]
role_arn = arn:aws:iam::123456789012:role/Ops
source_profile = role
region = us-east-1

[profile mfa]
role_arn = arn:aws:iam::123456789012:role/Admin
source_profile = base
mfa_serial = arn:aws:iam::123456789012:mfa/alice
region = us-east-1

[profile denied]
role_arn = arn:aws:iam::123456789012:role/Denied
source_profile = base
region = us-east-1

[profile process]
credential_process = sh -c 'echo "{\"Version\":1,\"AccessKeyId\":\"` + ssmtest.AccessKeyID + `\",\"SecretAccessKey\":\"` + ssmtest.SecretAccessKey + `\",\"SessionToken\":\"p\",\"Expiration\":\"2099-01-01T00:00:00Z\"}"'
region = us-east-1

[profile broken-process]
credential_process = sh -c 'echo "vault is sealed" >&2; exit 3'
region = us-east-1

[profile hung-process]
credential_process = sh -c 'sleep 2; true'
region = us-east-1

[profile leaky-process]
credential_process = echo 'AccessKeyId=` + ssmtest.AccessKeyID + ` SecretAccessKey=` + ssmtest.SecretAccessKey + `'
region = us-east-1

[profile sso]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Dev
region = us-east-1

[profile sso-legacy]
sso_start_url = https://legacy.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = Dev
region = us-east-1

[profile sso-role]
role_arn = arn:aws:iam::123456789012:role/Admin
source_profile = sso
region = us-east-1

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1

[profile vpce]
aws_access_key_id = ` + ssmtest.AccessKeyID + `
aws_secret_access_key = ` + ssmtest.SecretAccessKey + `
region = us-east-1
services = vpce
`

// identityEnv prepares an emulator whose sessions reach a banner server,
// the identity config, and no environment credentials.
func identityEnv(t *testing.T) *ssmtest.Server {
	t.Helper()
	emu := startEmulator(t, ssmtest.Options{TargetAddr: bannerServer(t, false)})
	writeAWSConfig(t, identityConfig+"\n[services vpce]\nssm =\n  endpoint_url = "+emu.Endpoint()+"\nsts =\n  endpoint_url = "+emu.Endpoint()+"\n")
	setEnv(t, map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_REGION": ""})
	return emu
}

// ssoToken writes a cached IAM Identity Center token for key (a session
// name or a legacy start URL) that expires at exp.
func ssoToken(t *testing.T, key string, exp time.Time) {
	t.Helper()
	sum := sha1.Sum([]byte(key))
	p := filepath.Join(os.Getenv("HOME"), ".aws", "sso", "cache", hex.EncodeToString(sum[:])+".json")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{"accessToken": "sso-token", "expiresAt": exp.UTC().Format(time.RFC3339), "region": "us-east-1", "startUrl": "https://corp.awsapps.com/start"})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ssoPortal is a fake IAM Identity Center portal handing out the
// emulator's keys for the token ssoToken writes.
func ssoPortal(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/federation/credentials" || r.Header.Get("x-amz-sso_bearer_token") != "sso-token" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"message":"Session token not found or invalid"}`)
			w.Header().Set("x-amzn-ErrorType", "UnauthorizedException")
			return
		}
		fmt.Fprintf(w, `{"roleCredentials":{"accessKeyId":%q,"secretAccessKey":%q,"sessionToken":"s","expiration":%d}}`,
			ssmtest.SessionAccessKeyID, ssmtest.SecretAccessKey, time.Now().Add(time.Hour).UnixMilli())
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// imdsServer is a fake EC2 instance metadata service with a role.
func imdsServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			fmt.Fprint(w, "imds-token")
		case "/latest/meta-data/iam/security-credentials/":
			fmt.Fprint(w, "instance-role")
		case "/latest/meta-data/iam/security-credentials/instance-role":
			fmt.Fprintf(w, `{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":%q,"SecretAccessKey":%q,"Token":"i","Expiration":%q}`,
				ssmtest.SessionAccessKeyID, ssmtest.SecretAccessKey, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestIdentitySources connects with credentials from every source of the
// SDK chain; the emulator verifies each request's signature.
func TestIdentitySources(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  func(t *testing.T, emu *ssmtest.Server) map[string]string
	}{
		{"environment", nil, func(*testing.T, *ssmtest.Server) map[string]string {
			return map[string]string{"AWS_ACCESS_KEY_ID": ssmtest.AccessKeyID, "AWS_SECRET_ACCESS_KEY": ssmtest.SecretAccessKey, "AWS_REGION": "us-east-1"}
		}},
		{"AWS_PROFILE static keys", nil, func(*testing.T, *ssmtest.Server) map[string]string {
			return map[string]string{"AWS_PROFILE": "base"}
		}},
		{"assume role", []string{"--profile", "role"}, nil},
		{"assume role chain", []string{"--profile", "chain"}, nil},
		{"credential_process", []string{"--profile", "process"}, nil},
		{"sso session", []string{"--profile", "sso"}, func(t *testing.T, _ *ssmtest.Server) map[string]string {
			ssoToken(t, "corp", time.Now().Add(time.Hour))
			return map[string]string{"AWS_ENDPOINT_URL_SSO": ssoPortal(t)}
		}},
		{"sso legacy", []string{"--profile", "sso-legacy"}, func(t *testing.T, _ *ssmtest.Server) map[string]string {
			ssoToken(t, "https://legacy.awsapps.com/start", time.Now().Add(time.Hour))
			return map[string]string{"AWS_ENDPOINT_URL_SSO": ssoPortal(t)}
		}},
		{"role from sso", []string{"--profile", "sso-role"}, func(t *testing.T, _ *ssmtest.Server) map[string]string {
			ssoToken(t, "corp", time.Now().Add(time.Hour))
			return map[string]string{"AWS_ENDPOINT_URL_SSO": ssoPortal(t)}
		}},
		{"web identity", nil, func(t *testing.T, _ *ssmtest.Server) map[string]string {
			tok := filepath.Join(t.TempDir(), "token")
			os.WriteFile(tok, []byte("eyJ.web.token"), 0o600)
			return map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": tok, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/Pod",
				"AWS_ROLE_SESSION_NAME": "pod", "AWS_REGION": "us-east-1"}
		}},
		{"instance metadata", nil, func(t *testing.T, _ *ssmtest.Server) map[string]string {
			return map[string]string{"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imdsServer(t), "AWS_REGION": "us-east-1"}
		}},
		{"VPC endpoints from the profile's services section", []string{"--profile", "vpce"}, func(*testing.T, *ssmtest.Server) map[string]string {
			return map[string]string{"AWS_ENDPOINT_URL_SSM": "", "AWS_ENDPOINT_URL_STS": ""}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu := identityEnv(t)
			if c.env != nil {
				setEnv(t, c.env(t, emu))
			}
			code, stdout, stderr := runCLI(t, "", append(c.args, "i-0123456789abcdef0", "22")...)
			if code != exitOK || stdout != sshBanner {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
			}
			if st := emu.Stats(); st.SessionsStarted != 1 {
				t.Errorf("sessions started %d", st.SessionsStarted)
			}
		})
	}
}

// TestCredentialErrors: each way of not getting credentials is one error
// line, a hint that names the fix, exit 1, nothing on stdout and no
// session started.
func TestCredentialErrors(t *testing.T) {
	noTerminal := func(serial string) (string, error) {
		return "", fmt.Errorf("ask for %s: %w", serial, errNoTerminalForTest)
	}
	cases := []struct {
		name   string
		args   []string
		prompt func(string) (string, error)
		env    func(t *testing.T) map[string]string
		want   []string
	}{
		{"sso session expired", []string{"--profile", "sso"}, nil, func(t *testing.T) map[string]string {
			ssoToken(t, "corp", time.Now().Add(-time.Hour))
			return map[string]string{"AWS_ENDPOINT_URL_SSO": ssoPortal(t)}
		}, []string{"`aws sso login --profile sso`"}},
		{"sso never logged in", []string{"--profile", "sso-legacy"}, nil, func(t *testing.T) map[string]string {
			return map[string]string{"AWS_ENDPOINT_URL_SSO": ssoPortal(t)}
		}, []string{"`aws sso login --profile sso-legacy`"}},
		{"sso portal hangs", []string{"--profile", "sso"}, nil, func(t *testing.T) map[string]string {
			ssoToken(t, "corp", time.Now().Add(time.Hour))
			hang, _ := hangServer(t)
			return map[string]string{"AWS_ENDPOINT_URL_SSO": "http://" + hang}
		}, []string{"cannot get AWS credentials: SSO GetRoleCredentials: no answer from 127.0.0.1:", "(AWS_ENDPOINT_URL_SSO) within 1s",
			"AWS_ENDPOINT_URL_SSO points SSO at 127.0.0.1:"}},
		{"sso expired under a role", []string{"--profile", "sso-role"}, nil, func(t *testing.T) map[string]string {
			ssoToken(t, "corp", time.Now().Add(-time.Hour))
			return map[string]string{"AWS_ENDPOINT_URL_SSO": ssoPortal(t)}
		}, []string{"`aws sso login --profile sso`"}},
		{"mfa without a terminal", []string{"--profile", "mfa"}, noTerminal, nil,
			[]string{"no terminal", "asks for the code on the terminal only", "ssm-proxy doctor i-0123456789abcdef0"}},
		{"mfa wrong code", []string{"--profile", "mfa"}, func(string) (string, error) { return "000000", nil }, nil,
			[]string{"MultiFactorAuthentication failed", "STS refused to let profile \"mfa\" assume arn:aws:iam::123456789012:role/Admin (AccessDenied)", "MFA code"}},
		{"role denied", []string{"--profile", "denied"}, nil, nil,
			[]string{"not authorized to perform: sts:AssumeRole", "trust policy"}},
		{"credential_process fails", []string{"--profile", "broken-process"}, nil, nil,
			[]string{"credential_process of profile \"broken-process\" failed"}},
		// The process's child keeps its output open after the SDK kills it
		// at the timeout.
		{"credential_process hangs", []string{"--profile", "hung-process"}, nil, nil,
			[]string{`the credential_process of profile "hung-process" did not finish within 300ms`, "run the credential_process of profile \"hung-process\" by hand"}},
		// The SDK quotes the output in its error; it holds the secret key.
		{"credential_process prints something else", []string{"--profile", "leaky-process"}, nil, nil,
			[]string{`the credential_process of profile "leaky-process" printed something other than the credentials JSON`, "run the credential_process"}},
		{"unknown profile", []string{"--profile", "nope"}, nil, nil,
			[]string{`profile "nope" is not in ~/.aws/config`}},
		{"no credentials anywhere", nil, nil, func(*testing.T) map[string]string {
			return map[string]string{"AWS_REGION": "us-east-1"}
		}, []string{"no AWS credentials found: tried environment variables", "EC2 instance metadata (turned off by AWS_EC2_METADATA_DISABLED)", "--profile"}},
		{"expired session token", nil, nil, func(*testing.T) map[string]string {
			return map[string]string{"AWS_ACCESS_KEY_ID": ssmtest.SessionAccessKeyID, "AWS_SECRET_ACCESS_KEY": ssmtest.SecretAccessKey,
				"AWS_SESSION_TOKEN": ssmtest.ExpiredSessionToken, "AWS_REGION": "us-east-1"}
		}, []string{"ExpiredTokenException", "credentials from the environment (AWS_ACCESS_KEY_ID…) were refused"}},
		{"expired web identity token", nil, nil, func(t *testing.T) map[string]string {
			tok := filepath.Join(t.TempDir(), "token")
			os.WriteFile(tok, []byte(ssmtest.ExpiredWebIdentityToken), 0o600)
			return map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": tok, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/Pod", "AWS_REGION": "us-east-1"}
		}, []string{"ExpiredTokenException", "web identity token"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			emu := identityEnv(t)
			if c.env != nil {
				setEnv(t, c.env(t))
			}
			timeouts := fastAWS
			timeouts.Process = 300 * time.Millisecond
			code, stdout, stderr := runWith(t, &cli{prompt: c.prompt, awsTimeouts: timeouts}, "", append(c.args, "i-0123456789abcdef0", "22")...)
			if code != exitError || stdout != "" {
				t.Errorf("exit %d, stdout %q", code, stdout)
			}
			checkOneError(t, stderr, append(c.want, "ssm-proxy: hint: used target i-0123456789abcdef0")...)
			if strings.Contains(stderr, ssmtest.SecretAccessKey) {
				t.Error("stderr shows the secret key")
			}
			if st := emu.Stats(); st.SessionsStarted != 0 {
				t.Errorf("sessions started %d", st.SessionsStarted)
			}
		})
	}
}

// errNoTerminalForTest stands for the terminal prompt's failure in a
// process without a terminal.
var errNoTerminalForTest = awscfg.ErrNoTerminal
