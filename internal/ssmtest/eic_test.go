package ssmtest

// The emulated EC2 Instance Connect: a pushed key listed for its instance and
// user only until it expires, keys accumulating, each error, signatures,
// throttling, FailFirst, no state shared between servers, and the listing's
// request checks. The client side is internal/pushkey's send_test.go, the
// sshd that reads the listing internal/testenv's; both with ssm-proxy
// through ssh are e2e/pushkey_test.go's.

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect/types"
	"github.com/aws/smithy-go"
	"golang.org/x/crypto/ssh"
)

// eicServer starts an emulator for one test.
func eicServer(t *testing.T, o InstanceConnectOptions) *Server {
	t.Helper()
	srv, err := Start(Options{InstanceConnect: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// eicClient is an SDK client for srv with the emulator's credentials; it
// does not retry, so each call is one request.
func eicClient(srv *Server) *ec2instanceconnect.Client {
	return ec2instanceconnect.New(ec2instanceconnect.Options{
		Region:           DefaultRegion,
		BaseEndpoint:     aws.String(srv.Endpoint()),
		Credentials:      Credentials(),
		RetryMaxAttempts: 1,
	})
}

func eicContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// authorizedKey returns pub as an authorized_keys line with a comment.
func authorizedKey(t *testing.T, pub any) string {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " test@ssmtest"
}

func ed25519Key(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return authorizedKey(t, pub)
}

func rsaKey(t *testing.T, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return authorizedKey(t, &k.PublicKey)
}

// push calls SendSSHPublicKey.
func push(ctx context.Context, c *ec2instanceconnect.Client, id, user, key string) error {
	out, err := c.SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId: aws.String(id), InstanceOSUser: aws.String(user), SSHPublicKey: aws.String(key),
	})
	if err == nil && (!out.Success || aws.ToString(out.RequestId) == "") {
		return errors.New("success without Success and RequestId")
	}
	return err
}

// listKeys fetches the key listing as the AuthorizedKeysCommand does.
func listKeys(t *testing.T, srv *Server, id, user string) (int, string) {
	t.Helper()
	u := srv.Endpoint() + InstanceConnectKeysPath + "?" + url.Values{"instance": {id}, "user": {user}}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

const eicInstance = "i-0123456789abcdef0"

// TestSendSSHPublicKey: a pushed key is listed for its instance and user
// only, in the instance-metadata layout, until it expires.
func TestSendSSHPublicKey(t *testing.T) {
	srv := eicServer(t, InstanceConnectOptions{KeyLifetime: 2 * time.Second})
	c := eicClient(srv)
	ctx := eicContext(t)
	key := ed25519Key(t)
	if code, _ := listKeys(t, srv, eicInstance, "ec2-user"); code != http.StatusNotFound {
		t.Fatalf("listing before the push: %d, want 404", code)
	}
	before := time.Now()
	if err := push(ctx, c, eicInstance, "ec2-user", key); err != nil {
		t.Fatal(err)
	}
	code, body := listKeys(t, srv, eicInstance, "ec2-user")
	if code != http.StatusOK {
		t.Fatalf("listing: %d %q", code, body)
	}
	lines := strings.Split(body, "\n")
	if len(lines) != 7 || lines[4] != key || lines[5] != "" || lines[6] != "" {
		t.Fatalf("listing lines %q", lines)
	}
	ts, err := strconv.ParseInt(strings.TrimPrefix(lines[0], "#Timestamp="), 10, 64)
	if err != nil || ts < before.Add(2*time.Second).Unix() || ts > time.Now().Add(3*time.Second).Unix() {
		t.Errorf("timestamp line %q: want the expiry, 2 s from the push", lines[0])
	}
	for i, want := range []string{"#Instance=" + eicInstance, "#Caller=" + callerARN, "#Request="} {
		if !strings.HasPrefix(lines[i+1], want) {
			t.Errorf("line %d = %q, want %q…", i+1, lines[i+1], want)
		}
	}
	for _, other := range [][2]string{{eicInstance, "root"}, {"i-0123456789abcdef1", "ec2-user"}} {
		if code, _ := listKeys(t, srv, other[0], other[1]); code != http.StatusNotFound {
			t.Errorf("key listed for %s on %s: %d", other[1], other[0], code)
		}
	}
	if got := srv.InstanceConnectKeys(eicInstance, "ec2-user"); len(got) != 1 || got[0] != key {
		t.Errorf("InstanceConnectKeys = %q", got)
	}

	if err := srv.WaitInstanceConnectKeysExpired(ctx, eicInstance, "ec2-user"); err != nil {
		t.Fatal(err)
	}
	if time.Since(before) < 2*time.Second {
		t.Errorf("keys expired after %s, before their lifetime", time.Since(before))
	}
	if code, _ := listKeys(t, srv, eicInstance, "ec2-user"); code != http.StatusNotFound {
		t.Errorf("listing after the lifetime: %d, want 404", code)
	}
	st := srv.InstanceConnectStats()
	if st.Calls != 1 || st.Pushed != 1 || st.Listings != 5 || st.EmptyListings != 4 || st.KeysListed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestSendSSHPublicKeyKeysAccumulate: two pushes for the same user are
// both listed; an RSA 2048 key is accepted.
func TestSendSSHPublicKeyKeysAccumulate(t *testing.T) {
	srv := eicServer(t, InstanceConnectOptions{})
	c := eicClient(srv)
	ctx := eicContext(t)
	a, b := ed25519Key(t), rsaKey(t, 2048)
	for _, k := range []string{a, b} {
		if err := push(ctx, c, eicInstance, "ubuntu", k); err != nil {
			t.Fatal(err)
		}
	}
	_, body := listKeys(t, srv, eicInstance, "ubuntu")
	if strings.Count(body, "#Timestamp=") != 2 || !strings.Contains(body, "\n"+a+"\n") || !strings.Contains(body, "\n"+b+"\n") {
		t.Errorf("listing:\n%s", body)
	}
}

// checkEICError checks that err is the API error code with a message
// containing msg and the HTTP status.
func checkEICError(t *testing.T, err error, code string, status int, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want API error %s", err, code)
	}
	if ae.ErrorCode() != code || !strings.Contains(ae.ErrorMessage(), msg) {
		t.Errorf("err = %s %q, want %s containing %q", ae.ErrorCode(), ae.ErrorMessage(), code, msg)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want an HTTP response error", err)
	}
	if re.HTTPStatusCode() != status || re.ServiceRequestID() == "" {
		t.Errorf("status %d, request id %q; want %d", re.HTTPStatusCode(), re.ServiceRequestID(), status)
	}
}

func TestSendSSHPublicKeyErrors(t *testing.T) {
	ecdsaKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	insts := append(DefaultInstances(),
		Instance{ID: "i-0eeeeeeeeeeeeeee6", PingStatus: pingInactive},
		Instance{ID: "i-0fffffffffffffff7"},
		Instance{ID: "i-0fffffffffffffff8"},
	)
	srv, err := Start(Options{Instances: insts, InstanceConnect: InstanceConnectOptions{
		DeniedUsers:     []string{"root"},
		DeniedInstances: []string{"i-0aaaaaaaaaaaaaaa2"},
		InstanceStates:  map[string]string{"i-0fffffffffffffff7": StatePending, "i-0fffffffffffffff8": "terminated"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := eicClient(srv)
	ctx := eicContext(t)
	good := ed25519Key(t)
	long := strings.Repeat("a", 33)
	cases := []struct {
		name, id, user, key string
		az                  *string
		code                string
		status              int
		msg                 string
	}{
		{"managed node id", "mi-0123456789abcdef0", "ec2-user", good, nil, "ValidationException", 400, "Value 'mi-0123456789abcdef0' at 'instanceId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^i-[a-f0-9]+$"},
		{"short id", "i-0123", "ec2-user", good, nil, "ValidationException", 400, "at 'instanceId' failed to satisfy constraint: Member must have length greater than or equal to 10"},
		{"user with a space", eicInstance, "ec2 user", good, nil, "ValidationException", 400, "Value 'ec2 user' at 'instanceOSUser' failed to satisfy constraint: Member must satisfy regular expression pattern"},
		{"user too long", eicInstance, long, good, nil, "ValidationException", 400, "Member must have length less than or equal to 32"},
		{"empty user", eicInstance, "", good, nil, "ValidationException", 400, "Member must have length greater than or equal to 1"},
		{"key too short", eicInstance, "ec2-user", "ssh-ed25519 AAAA", nil, "ValidationException", 400, "at 'sSHPublicKey' failed to satisfy constraint: Member must have length greater than or equal to 80"},
		{"bad zone", eicInstance, "ec2-user", good, aws.String("nowhere"), "ValidationException", 400, "at 'availabilityZone' failed to satisfy constraint"},
		{"not a key", eicInstance, "ec2-user", strings.Repeat("x", 100), nil, "InvalidArgsException", 400, "Invalid input parameter received for Illegal argument exception: SSH Public key is not in OpenSSH public key format"},
		{"two lines", eicInstance, "ec2-user", good + "\n" + good, nil, "InvalidArgsException", 400, "single line"},
		{"ecdsa", eicInstance, "ec2-user", authorizedKey(t, &ecdsaKey.PublicKey), nil, "InvalidArgsException", 400, "SSH Public key type ecdsa-sha2-nistp256 is not supported"},
		{"rsa 1024", eicInstance, "ec2-user", rsaKey(t, 1024), nil, "InvalidArgsException", 400, "RSA - SSH Public key is invalid"},
		{"denied user", eicInstance, "root", good, nil, "AccessDeniedException", 400, "is not authorized to perform: ec2-instance-connect:SendSSHPublicKey on resource: arn:aws:ec2:us-east-1:123456789012:instance/" + eicInstance},
		{"denied instance", "i-0aaaaaaaaaaaaaaa2", "ec2-user", good, nil, "AccessDeniedException", 400, "instance/i-0aaaaaaaaaaaaaaa2 because no identity-based policy allows"},
		{"unknown instance", "i-0999999999999999f", "ec2-user", good, nil, "EC2InstanceNotFoundException", 404, "The specified instance was not found."},
		{"other zone", eicInstance, "ec2-user", good, aws.String("us-east-1b"), "EC2InstanceNotFoundException", 404, "not found in the given zone"},
		{"stopped", "i-0eeeeeeeeeeeeeee6", "ec2-user", good, nil, "EC2InstanceStateInvalidException", 400, "not in a valid state (stopped)"},
		{"terminated", "i-0fffffffffffffff8", "ec2-user", good, nil, "EC2InstanceStateInvalidException", 400, "(terminated)"},
		{"pending", "i-0fffffffffffffff7", "ec2-user", good, nil, "EC2InstanceUnavailableException", 503, "currently unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
				InstanceId: aws.String(tc.id), InstanceOSUser: aws.String(tc.user), SSHPublicKey: aws.String(tc.key), AvailabilityZone: tc.az,
			})
			checkEICError(t, err, tc.code, tc.status, tc.msg)
		})
	}
	// The SDK maps the modelled codes to its types.
	err = push(ctx, c, "i-0999999999999999f", "ec2-user", good)
	var nf *types.EC2InstanceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("unknown instance: %T, want *types.EC2InstanceNotFoundException", err)
	}
	if err := push(ctx, c, eicInstance, "ec2-user", good); err != nil {
		t.Errorf("the right zone's instance: %v", err)
	}
	if _, err := c.SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId: aws.String(eicInstance), InstanceOSUser: aws.String("9lives"), SSHPublicKey: aws.String(good), AvailabilityZone: aws.String("us-east-1a"),
	}); err != nil {
		t.Errorf("a user name starting with digits, in the instance's zone: %v", err)
	}
	st := srv.InstanceConnectStats()
	want := InstanceConnectStats{Calls: int64(len(cases)) + 3, Pushed: 2, Invalid: 11, Denied: 2, NotFound: 3, StateInvalid: 2, Unavailable: 1}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if keys := srv.InstanceConnectKeys(eicInstance, "root"); len(keys) != 0 {
		t.Errorf("denied user's keys listed: %q", keys)
	}
}

// TestSendSSHPublicKeySignature: calls are verified like the SSM API's,
// for service ec2-instance-connect.
func TestSendSSHPublicKeySignature(t *testing.T) {
	srv := eicServer(t, InstanceConnectOptions{})
	ctx := eicContext(t)
	key := ed25519Key(t)
	wrongKey := ec2instanceconnect.New(ec2instanceconnect.Options{
		Region: DefaultRegion, BaseEndpoint: aws.String(srv.Endpoint()), RetryMaxAttempts: 1,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: "wrong"}, nil
		}),
	})
	checkEICError(t, push(ctx, wrongKey, eicInstance, "ec2-user", key), "InvalidSignatureException", 400, "signature we calculated does not match")
	wrongService := ec2instanceconnect.New(ec2instanceconnect.Options{
		Region: DefaultRegion, BaseEndpoint: aws.String(srv.Endpoint()), RetryMaxAttempts: 1, Credentials: Credentials(),
	}, ec2instanceconnect.WithSigV4SigningName("ssm"))
	checkEICError(t, push(ctx, wrongService, eicInstance, "ec2-user", key), "InvalidSignatureException", 400, "Credential should be scoped to correct service: 'ec2-instance-connect'")

	req, err := http.NewRequest(http.MethodPost, srv.Endpoint()+"/", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Target", instanceConnectTargetPrefix+"SendSSHPublicKey")
	req.Header.Set("Content-Type", apiContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "MissingAuthenticationTokenException") {
		t.Errorf("unsigned call: %d %s", resp.StatusCode, b)
	}
	if st := srv.InstanceConnectStats(); st.Calls != 0 || st.Pushed != 0 {
		t.Errorf("refused calls counted: %+v", st)
	}
}

// TestSendSSHPublicKeyThrottle: beyond the rate, calls fail with
// ThrottlingException (429) until the bucket refills.
func TestSendSSHPublicKeyThrottle(t *testing.T) {
	srv := eicServer(t, InstanceConnectOptions{ThrottleRate: 20, ThrottleBurst: 3})
	c := eicClient(srv)
	ctx := eicContext(t)
	key := ed25519Key(t)
	const n = 12
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- push(ctx, c, eicInstance, "ec2-user", key)
		}()
	}
	wg.Wait()
	close(errs)
	var ok, throttled int64
	for err := range errs {
		var te *types.ThrottlingException
		switch {
		case err == nil:
			ok++
		case errors.As(err, &te):
			checkEICError(t, err, "ThrottlingException", http.StatusTooManyRequests, "too frequently")
			throttled++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	st := srv.InstanceConnectStats()
	if ok < 3 || throttled == 0 || st.Throttled != throttled || st.Pushed != ok || st.Calls != n {
		t.Errorf("%d ok, %d throttled; stats %+v", ok, throttled, st)
	}
	// The bucket refills at the rate: a later call gets through.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := push(ctx, c, eicInstance, "ec2-user", key)
		if err == nil {
			break
		}
		var te *types.ThrottlingException
		if !errors.As(err, &te) {
			t.Fatalf("after the burst: %v", err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("still throttled: %v", err)
		}
	}
}

// TestSendSSHPublicKeyFailFirst: the first FailFirst calls are
// ServiceException (500), the next one succeeds.
func TestSendSSHPublicKeyFailFirst(t *testing.T) {
	srv := eicServer(t, InstanceConnectOptions{FailFirst: 2})
	c := eicClient(srv)
	ctx := eicContext(t)
	key := ed25519Key(t)
	for i := 0; i < 2; i++ {
		checkEICError(t, push(ctx, c, eicInstance, "ec2-user", key), "ServiceException", http.StatusInternalServerError, "service encountered an error")
	}
	if err := push(ctx, c, eicInstance, "ec2-user", key); err != nil {
		t.Fatal(err)
	}
	if st := srv.InstanceConnectStats(); st.ServiceErrors != 2 || st.Pushed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestInstanceConnectStateNotShared: a server started with another's
// Options does not share its keys.
func TestInstanceConnectStateNotShared(t *testing.T) {
	a := eicServer(t, InstanceConnectOptions{})
	if err := push(eicContext(t), eicClient(a), eicInstance, "ec2-user", ed25519Key(t)); err != nil {
		t.Fatal(err)
	}
	b, err := Start(a.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if keys := b.InstanceConnectKeys(eicInstance, "ec2-user"); len(keys) != 0 {
		t.Errorf("second server lists the first one's keys: %q", keys)
	}
	if st := b.InstanceConnectStats(); st.Pushed != 0 {
		t.Errorf("second server's stats %+v", st)
	}
}

func TestInstanceConnectKeysListingRequests(t *testing.T) {
	srv := eicServer(t, InstanceConnectOptions{})
	for _, q := range []string{"", "?instance=" + eicInstance, "?user=root"} {
		resp, err := http.Get(srv.Endpoint() + InstanceConnectKeysPath + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: %d, want 400", q, resp.StatusCode)
		}
	}
	resp, err := http.Post(srv.Endpoint()+InstanceConnectKeysPath+"?instance="+eicInstance+"&user=root", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}
