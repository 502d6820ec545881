package ssmtest

// The emulated STS: GetCallerIdentity, AssumeRole with an MFA code and the
// temporary credentials it returns, each refusal's error code, and unsigned
// AssumeRoleWithWebIdentity. The SDK's credential chain calling it is
// internal/awscfg's assume_test.go and the root package's identity_test.go;
// STS requests reaching this handler is api_test.go's (TestAPIRoutesSTS).

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// stsClient is an STS client for srv signing with key and secret.
func stsClient(srv *Server, key, secret, token string) *sts.Client {
	return sts.New(sts.Options{
		Region:       DefaultRegion,
		BaseEndpoint: aws.String(srv.Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider(key, secret, token),
	})
}

func stsErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestSTS(t *testing.T) {
	srv, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := stsClient(srv, AccessKeyID, SecretAccessKey, "")

	id, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil || aws.ToString(id.Arn) != CallerARN || aws.ToString(id.Account) != AccountID || aws.ToString(id.UserId) == "" {
		t.Fatalf("GetCallerIdentity = %+v, %v", id, err)
	}

	role := "arn:aws:iam::123456789012:role/Dev"
	out, err := c.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(role), RoleSessionName: aws.String("alice"),
		SerialNumber: aws.String("arn:aws:iam::123456789012:mfa/alice"), TokenCode: aws.String(MFATokenCode)})
	if err != nil {
		t.Fatal(err)
	}
	cr := out.Credentials
	if aws.ToString(cr.AccessKeyId) != SessionAccessKeyID || aws.ToString(cr.SessionToken) == "" ||
		time.Until(aws.ToTime(cr.Expiration)) < 59*time.Minute || aws.ToString(out.AssumedRoleUser.Arn) != "arn:aws:sts::123456789012:assumed-role/Dev/alice" {
		t.Fatalf("AssumeRole = %+v %+v", cr, out.AssumedRoleUser)
	}
	// The temporary credentials work.
	tmp := stsClient(srv, aws.ToString(cr.AccessKeyId), aws.ToString(cr.SecretAccessKey), aws.ToString(cr.SessionToken))
	if _, err := tmp.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("with assumed-role credentials: %v", err)
	}

	for _, c2 := range []struct {
		name string
		call func() error
		code string
	}{
		{"wrong MFA code", func() error {
			_, err := c.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(role), RoleSessionName: aws.String("a"),
				SerialNumber: aws.String("arn:aws:iam::123456789012:mfa/alice"), TokenCode: aws.String("000000")})
			return err
		}, "AccessDenied"},
		{"denied role", func() error {
			_, err := c.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::123456789012:role/Denied"), RoleSessionName: aws.String("a")})
			return err
		}, "AccessDenied"},
		{"bad role arn", func() error {
			_, err := c.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("Dev"), RoleSessionName: aws.String("a")})
			return err
		}, "ValidationError"},
		{"wrong secret", func() error {
			_, err := stsClient(srv, AccessKeyID, "wrong", "").GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			return err
		}, "SignatureDoesNotMatch"},
		{"unknown key", func() error {
			_, err := stsClient(srv, "AKIDUNKNOWN", SecretAccessKey, "").GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			return err
		}, "InvalidClientTokenId"},
		{"expired token", func() error {
			_, err := stsClient(srv, SessionAccessKeyID, SecretAccessKey, ExpiredSessionToken).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			return err
		}, "ExpiredToken"},
		{"expired web identity", func() error {
			_, err := c.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(role),
				RoleSessionName: aws.String("a"), WebIdentityToken: aws.String(ExpiredWebIdentityToken)})
			return err
		}, "ExpiredTokenException"},
	} {
		if got := stsErrorCode(c2.call()); got != c2.code {
			t.Errorf("%s: error code %q, want %q", c2.name, got, c2.code)
		}
	}

	web, err := sts.New(sts.Options{Region: DefaultRegion, BaseEndpoint: aws.String(srv.Endpoint())}).AssumeRoleWithWebIdentity(ctx,
		&sts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(role), RoleSessionName: aws.String("pod"), WebIdentityToken: aws.String("eyJ.token")})
	if err != nil || aws.ToString(web.Credentials.AccessKeyId) != SessionAccessKeyID {
		t.Fatalf("AssumeRoleWithWebIdentity (unsigned) = %+v, %v", web, err)
	}
}
