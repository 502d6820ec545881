package awscfg

// Assume-role with MFA against the emulator's STS: the code asked for once
// through Options.Prompt, later loads served from the disk cache without
// asking, ErrNoTerminal with neither, a wrong code refused and not cached.
// The error a user then sees is the root package's identity_test.go; the
// real terminal prompt_unix_test.go's and e2e/mfa_linux_test.go's.

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
)

const mfaProfile = baseProfile + `
[profile mfa]
role_arn = arn:aws:iam::123456789012:role/Dev
source_profile = base
mfa_serial = arn:aws:iam::123456789012:mfa/alice
region = us-east-1
`

// TestAssumeRoleMFA: the MFA code is asked for once, through Options.Prompt;
// later loads (new ssm-proxy processes) use the disk cache and do not ask.
func TestAssumeRoleMFA(t *testing.T) {
	emu, err := ssmtest.Start(ssmtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	isolate(t, mfaProfile)
	t.Setenv("AWS_ENDPOINT_URL_STS", emu.Endpoint())
	ctx := testCtx(t)

	var asked []string
	prompt := func(serial string) (string, error) {
		asked = append(asked, serial)
		return ssmtest.MFATokenCode, nil
	}
	cfg, info, err := Load(ctx, Options{Profile: "mfa", Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != ssmtest.SessionAccessKeyID || creds.SessionToken == "" {
		t.Fatalf("credentials %s / token %t", creds.AccessKeyID, creds.SessionToken != "")
	}
	if len(asked) != 1 || asked[0] != "arn:aws:iam::123456789012:mfa/alice" {
		t.Fatalf("asked %q", asked)
	}
	fi, err := os.Stat(info.CachePath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache %s: %v %v", info.CachePath, fi, err)
	}
	data, _ := os.ReadFile(info.CachePath)
	if !strings.Contains(string(data), creds.SessionToken) {
		t.Fatal("cache does not hold the session token")
	}

	noTerminal := func(string) (string, error) { return "", ErrNoTerminal }
	cfg, _, err = Load(ctx, Options{Profile: "mfa", Prompt: noTerminal})
	if err != nil {
		t.Fatal(err)
	}
	again, err := cfg.Credentials.Retrieve(ctx)
	if err != nil || again.SessionToken != creds.SessionToken {
		t.Fatalf("second process: %v (same token %t)", err, again.SessionToken == creds.SessionToken)
	}

	// Without the cache and without a terminal: a CredentialsError that is
	// ErrNoTerminal.
	os.Remove(info.CachePath)
	cfg, _, _ = Load(ctx, Options{Profile: "mfa", Prompt: noTerminal})
	_, err = cfg.Credentials.Retrieve(ctx)
	var ce *CredentialsError
	if !errors.As(err, &ce) || !errors.Is(err, ErrNoTerminal) {
		t.Fatalf("err = %v", err)
	}

	// A wrong code: STS refuses, nothing is cached.
	cfg, _, _ = Load(ctx, Options{Profile: "mfa", Prompt: func(string) (string, error) { return "000000", nil }})
	_, err = cfg.Credentials.Retrieve(ctx)
	var ae smithy.APIError
	if !errors.As(err, &ce) || !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
		t.Fatalf("wrong code: %v", err)
	}
	if _, err := os.Stat(info.CachePath); !os.IsNotExist(err) {
		t.Errorf("refused credentials cached: %v", err)
	}
}
