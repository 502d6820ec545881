package ssmtest

// The emulated SSM API through the SDK and raw requests: StartSession
// errors, the Start/Resume/Terminate lifecycle, every call's credentials
// checked, the JSON 1.1 envelope, STS routing, internal errors as 500, and
// DescribeInstanceInformation's fields, filters, paging and errors. The
// signature arithmetic is sigv4_test.go's, API faults apifaults_test.go's;
// how ssm-proxy reads these answers is internal/target's and the root's.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
)

// apiTestServer starts an emulator for one test.
func apiTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	srv, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// apiClient is an SDK client for srv signing with creds for region. It
// loads no shared config and no environment, so nothing can reach AWS,
// and it does not retry, so each call is one request.
func apiClient(srv *Server, creds aws.Credentials, region string) *ssm.Client {
	return ssm.New(ssm.Options{
		Region:           region,
		BaseEndpoint:     aws.String(srv.Endpoint()),
		Credentials:      aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil }),
		RetryMaxAttempts: 1,
	})
}

// apiTestClient is apiClient with the emulator's own key and region.
func apiTestClient(srv *Server) *ssm.Client {
	return apiClient(srv, sigCredentials(AccessKeyID, ""), DefaultRegion)
}

func apiContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkAPIError checks that err is the API error code with a message
// containing msg, sent with status 400 and a request id.
func checkAPIError(t *testing.T, err error, code, msg string) {
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
	if re.HTTPStatusCode() != http.StatusBadRequest || re.ServiceRequestID() == "" {
		t.Errorf("status %d, request id %q", re.HTTPStatusCode(), re.ServiceRequestID())
	}
}

func TestStartSessionErrors(t *testing.T) {
	insts := append(DefaultInstances(), Instance{ID: "mi-0fffffffffffffff0", Denied: true, PingStatus: pingConnectionLost},
		Instance{ID: "mi-0eeeeeeeeeeeeeee0", StandardTier: true})
	srv := apiTestServer(t, Options{Instances: insts})
	client := apiTestClient(srv)
	long := strings.Repeat("x", 257)
	cases := []struct {
		name      string
		in        ssm.StartSessionInput
		code, msg string
	}{
		{"empty target", ssm.StartSessionInput{Target: aws.String("")}, "ValidationException",
			"1 validation error detected: Value '' at 'target' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"unknown target", ssm.StartSessionInput{Target: aws.String("i-00000000000000000")}, "TargetNotConnected",
			"i-00000000000000000 is not connected."},
		{"target offline", ssm.StartSessionInput{Target: aws.String("i-0ccccccccccccccc4")}, "TargetNotConnected",
			"i-0ccccccccccccccc4 is not connected."},
		{"denied instance", ssm.StartSessionInput{Target: aws.String("i-0ddddddddddddddd5")}, "AccessDeniedException",
			"User: arn:aws:sts::123456789012:assumed-role/Test/test is not authorized to perform: ssm:StartSession on resource: " +
				"arn:aws:ec2:us-east-1:123456789012:instance/i-0ddddddddddddddd5 because no identity-based policy allows the ssm:StartSession action"},
		{"denied managed instance before offline", ssm.StartSessionInput{Target: aws.String("mi-0fffffffffffffff0")}, "AccessDeniedException",
			"on resource: arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0fffffffffffffff0 because"},
		{"on-premises node on the standard tier", ssm.StartSessionInput{Target: aws.String("mi-0eeeeeeeeeeeeeee0")}, "BadRequest",
			"Enable advanced-instances tier to use Session Manager with your on-premises instances"},
		{"unknown document", ssm.StartSessionInput{Target: aws.String("i-0123456789abcdef0"), DocumentName: aws.String("No-Such-Doc")},
			"InvalidDocument", "Document with name No-Such-Doc does not exist."},
		{"unknown document before offline target", ssm.StartSessionInput{Target: aws.String("i-0ccccccccccccccc4"), DocumentName: aws.String("No-Such-Doc")},
			"InvalidDocument", "No-Such-Doc"},
		{"document name pattern", ssm.StartSessionInput{Target: aws.String("i-0123456789abcdef0"), DocumentName: aws.String("a b")},
			"ValidationException", "at 'documentName' failed to satisfy constraint: Member must satisfy regular expression pattern"},
		{"empty reason", ssm.StartSessionInput{Target: aws.String("i-0123456789abcdef0"), Reason: aws.String("")},
			"ValidationException", "at 'reason'"},
		{"long reason", ssm.StartSessionInput{Target: aws.String("i-0123456789abcdef0"), Reason: aws.String(long)},
			"ValidationException", "Member must have length less than or equal to 256"},
		{"multi-line reason", ssm.StartSessionInput{Target: aws.String("i-0123456789abcdef0"), Reason: aws.String("a\nb")},
			"ValidationException", "regular expression pattern: ^.{1,256}$"},
		{"empty parameter value", ssm.StartSessionInput{Target: aws.String("i-0123456789abcdef0"),
			Parameters: map[string][]string{"portNumber": {""}}}, "ValidationException", "at 'parameters.portNumber.member'"},
		{"two errors", ssm.StartSessionInput{Target: aws.String(""), Reason: aws.String("")},
			"ValidationException", "3 validation errors detected: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := client.StartSession(apiContext(t), &c.in)
			checkAPIError(t, err, c.code, c.msg)
		})
	}
	if st := srv.Stats(); st.SessionsStarted != 0 || st.Active != 0 {
		t.Errorf("stats after refused sessions: %+v", st)
	}
}

// TestSessionLifecycle drives StartSession, ResumeSession and
// TerminateSession against the agent side's session contract.
func TestSessionLifecycle(t *testing.T) {
	srv := apiTestServer(t, Options{})
	client := apiTestClient(srv)
	ctx := apiContext(t)

	shell, err := client.StartSession(ctx, &ssm.StartSessionInput{Target: aws.String("i-0123456789abcdef0")})
	if err != nil {
		t.Fatalf("start session with the default document: %v", err)
	}
	ssh, err := client.StartSession(ctx, &ssm.StartSessionInput{
		Target:       aws.String("mi-0123456789abcdef0"),
		DocumentName: aws.String("AWS-StartSSHSession"),
		Reason:       aws.String("deploy"),
		Parameters:   map[string][]string{"portNumber": {"22"}},
	})
	if err != nil {
		t.Fatalf("start ssh session: %v", err)
	}
	for _, out := range []*ssm.StartSessionOutput{shell, ssh} {
		id := aws.ToString(out.SessionId)
		u, err := url.Parse(aws.ToString(out.StreamUrl))
		if id == "" || aws.ToString(out.TokenValue) == "" || err != nil || u.Host != strings.TrimPrefix(srv.Endpoint(), "http://") ||
			!strings.Contains(u.Path, id) {
			t.Errorf("StartSession = id %q url %q token %q", id, aws.ToString(out.StreamUrl), aws.ToString(out.TokenValue))
		}
	}
	if aws.ToString(shell.SessionId) == aws.ToString(ssh.SessionId) {
		t.Errorf("two sessions with id %q", aws.ToString(ssh.SessionId))
	}
	if st := srv.Stats(); st.SessionsStarted != 2 {
		t.Errorf("SessionsStarted = %d, want 2", st.SessionsStarted)
	}

	res, err := client.ResumeSession(ctx, &ssm.ResumeSessionInput{SessionId: ssh.SessionId})
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if aws.ToString(res.SessionId) != aws.ToString(ssh.SessionId) || aws.ToString(res.StreamUrl) != aws.ToString(ssh.StreamUrl) ||
		aws.ToString(res.TokenValue) == "" {
		t.Errorf("ResumeSession = %q %q token %q", aws.ToString(res.SessionId), aws.ToString(res.StreamUrl), aws.ToString(res.TokenValue))
	}

	term, err := client.TerminateSession(ctx, &ssm.TerminateSessionInput{SessionId: ssh.SessionId})
	if err != nil || aws.ToString(term.SessionId) != aws.ToString(ssh.SessionId) {
		t.Fatalf("terminate = %v, %v", term, err)
	}
	res, err = client.ResumeSession(ctx, &ssm.ResumeSessionInput{SessionId: ssh.SessionId})
	if err != nil || res.TokenValue != nil && *res.TokenValue != "" {
		t.Errorf("resume after terminate = token %q, %v; want an empty token", aws.ToString(res.TokenValue), err)
	}
	// Terminating twice is not an error.
	if _, err := client.TerminateSession(ctx, &ssm.TerminateSessionInput{SessionId: ssh.SessionId}); err != nil {
		t.Errorf("terminate again: %v", err)
	}
	if _, err := client.TerminateSession(ctx, &ssm.TerminateSessionInput{SessionId: shell.SessionId}); err != nil {
		t.Errorf("terminate shell session: %v", err)
	}
	if err := srv.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Endings[EndTerminated] != 2 {
		t.Errorf("Endings = %v, want 2 %s", st.Endings, EndTerminated)
	}
}

func TestResumeAndTerminateUnknownSession(t *testing.T) {
	srv := apiTestServer(t, Options{})
	client := apiTestClient(srv)
	ctx := apiContext(t)
	_, err := client.ResumeSession(ctx, &ssm.ResumeSessionInput{SessionId: aws.String("nobody-0123456789abcdef0")})
	checkAPIError(t, err, "DoesNotExistException", "nobody-0123456789abcdef0")
	_, err = client.ResumeSession(ctx, &ssm.ResumeSessionInput{SessionId: aws.String("")})
	checkAPIError(t, err, "ValidationException", "at 'sessionId'")
	_, err = client.TerminateSession(ctx, &ssm.TerminateSessionInput{SessionId: aws.String(strings.Repeat("s", 97))})
	checkAPIError(t, err, "ValidationException", "Member must have length less than or equal to 96")

	out, err := client.TerminateSession(ctx, &ssm.TerminateSessionInput{SessionId: aws.String("nobody-0123456789abcdef0")})
	if err != nil || aws.ToString(out.SessionId) != "nobody-0123456789abcdef0" {
		t.Errorf("terminate unknown session = %v, %v; want the id echoed", out, err)
	}
}

// TestAPICredentials: every call is verified, and refused credentials
// surface in the SDK with the real codes.
func TestAPICredentials(t *testing.T) {
	srv := apiTestServer(t, Options{})
	wrongSecret := sigCredentials(AccessKeyID, "")
	wrongSecret.SecretAccessKey = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY"
	cases := []struct {
		name      string
		creds     aws.Credentials
		region    string
		code, msg string
	}{
		{"fixed key", sigCredentials(AccessKeyID, ""), DefaultRegion, "", ""},
		{"fixed key with token", sigCredentials(AccessKeyID, "token"), DefaultRegion, "", ""},
		{"temporary key", sigCredentials(SessionAccessKeyID, "token"), DefaultRegion, "", ""},
		{"temporary key without token", sigCredentials(SessionAccessKeyID, ""), DefaultRegion, "UnrecognizedClientException", msgInvalidToken},
		{"expired token", sigCredentials(SessionAccessKeyID, ExpiredSessionToken), DefaultRegion, "ExpiredTokenException", msgExpiredToken},
		{"unknown key", sigCredentials("AKIDUNKNOWN00000000", ""), DefaultRegion, "UnrecognizedClientException", msgInvalidToken},
		{"wrong secret", wrongSecret, DefaultRegion, "InvalidSignatureException", msgSignatureMismatch},
		{"wrong region", sigCredentials(AccessKeyID, ""), "eu-west-1", "InvalidSignatureException", "Credential should be scoped to a valid region"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			client := apiClient(srv, c.creds, c.region)
			_, err := client.DescribeInstanceInformation(apiContext(t), &ssm.DescribeInstanceInformationInput{})
			if c.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkAPIError(t, err, c.code, c.msg)
			_, err = client.StartSession(apiContext(t), &ssm.StartSessionInput{Target: aws.String("i-0123456789abcdef0")})
			checkAPIError(t, err, c.code, c.msg)
		})
	}
}

// rawAPICall sends one request to srv, signed unless sign is false, and
// returns the status, headers and decoded error body.
func rawAPICall(t *testing.T, srv *Server, method, target, contentType, body string, sign bool) (int, http.Header, map[string]string) {
	t.Helper()
	r, err := http.NewRequestWithContext(apiContext(t), method, srv.Endpoint()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", contentType)
	if target != "" {
		r.Header.Set("X-Amz-Target", target)
	}
	if sign {
		err := v4.NewSigner().SignHTTP(r.Context(), sigCredentials(AccessKeyID, ""), r, sigHash([]byte(body)), "ssm", DefaultRegion, time.Now())
		if err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	json.Unmarshal(b, &out) // success bodies are not all strings; errors are
	return resp.StatusCode, resp.Header, out
}

// TestAPIWire checks the JSON 1.1 envelope for what the SDK cannot send.
func TestAPIWire(t *testing.T) {
	srv := apiTestServer(t, Options{})
	cases := []struct {
		name, method, target, contentType, body string
		unsigned                                bool
		status                                  int
		code, msg                               string
	}{
		{"unknown operation", "POST", "AmazonSSM.SendCommand", apiContentType, "{}", false, 400, "UnknownOperationException", "AmazonSSM.SendCommand"},
		{"other service's prefix", "POST", "TrentService.GenerateDataKey", apiContentType, "{}", false, 400, "UnknownOperationException", ""},
		{"no target", "POST", "", apiContentType, "{}", false, 400, "UnknownOperationException", ""},
		{"unsigned", "POST", "AmazonSSM.DescribeInstanceInformation", apiContentType, "{}", true, 400, "MissingAuthenticationTokenException", "Missing Authentication Token"},
		{"bad json", "POST", "AmazonSSM.StartSession", apiContentType, "{", false, 400, "SerializationException", ""},
		{"wrong member type", "POST", "AmazonSSM.StartSession", apiContentType, `{"Target":7}`, false, 400, "SerializationException", ""},
		{"wrong content type", "POST", "AmazonSSM.StartSession", "text/plain", "{}", false, 400, "SerializationException", "Content-Type"},
		{"missing target", "POST", "AmazonSSM.StartSession", apiContentType, "{}", false, 400, "ValidationException",
			"1 validation error detected: Value null at 'target' failed to satisfy constraint: Member must not be null"},
		{"empty body", "POST", "AmazonSSM.ResumeSession", apiContentType, "", false, 400, "ValidationException", "Value null at 'sessionId'"},
		{"body too large", "POST", "AmazonSSM.StartSession", apiContentType, `{"Reason":"` + strings.Repeat("x", maxAPIBody) + `"}`, false,
			413, "SerializationException", "larger than"},
		{"GET", "GET", "AmazonSSM.StartSession", apiContentType, "", false, 404, "UnknownOperationException", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, hdr, body := rawAPICall(t, srv, c.method, c.target, c.contentType, c.body, !c.unsigned)
			if status != c.status || body["__type"] != c.code || !strings.Contains(body["message"], c.msg) {
				t.Errorf("got %d %v, want %d %s containing %q", status, body, c.status, c.code, c.msg)
			}
			if hdr.Get("x-amzn-RequestId") == "" || hdr.Get("Content-Type") != apiContentType {
				t.Errorf("headers %v", hdr)
			}
		})
	}
	status, hdr, _ := rawAPICall(t, srv, "POST", "AmazonSSM.DescribeInstanceInformation", apiContentType, "", true)
	if status != http.StatusOK || hdr.Get("x-amzn-RequestId") == "" {
		t.Errorf("describe with an empty body: %d %v", status, hdr)
	}
}

// TestAPIRoutesSTS: a signed form POST without X-Amz-Target is an STS
// call, not an unknown SSM operation.
func TestAPIRoutesSTS(t *testing.T) {
	srv := apiTestServer(t, Options{})
	body := "Action=GetCallerIdentity&Version=2011-06-15"
	r, err := http.NewRequestWithContext(apiContext(t), http.MethodPost, srv.Endpoint()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	err = v4.NewSigner().SignHTTP(r.Context(), sigCredentials(AccessKeyID, ""), r, sigHash([]byte(body)), "sts", DefaultRegion, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "GetCallerIdentityResult") {
		t.Errorf("STS call: %d %s", resp.StatusCode, b)
	}
}

func TestInternalErrorsAre500(t *testing.T) {
	ae := toAPIError(errors.New("boom"))
	if ae.Status != http.StatusInternalServerError || ae.Code != "InternalServerError" || strings.Contains(ae.Message, "boom") {
		t.Errorf("toAPIError = %+v", ae)
	}
	if ae := toAPIError(fmt.Errorf("wrapped: %w", newAPIError("TargetNotConnected", "x"))); ae.Status != 400 || ae.Code != "TargetNotConnected" {
		t.Errorf("wrapped apiError = %+v", ae)
	}
}

// describeAll lists every instance matching in with the SDK paginator,
// returning the ids and the number of pages.
func describeAll(t *testing.T, client *ssm.Client, in *ssm.DescribeInstanceInformationInput) ([]string, int, error) {
	t.Helper()
	var ids []string
	pages := 0
	p := ssm.NewDescribeInstanceInformationPaginator(client, in)
	for p.HasMorePages() {
		out, err := p.NextPage(apiContext(t))
		if err != nil {
			return nil, pages, err
		}
		pages++
		for _, info := range out.InstanceInformationList {
			ids = append(ids, aws.ToString(info.InstanceId))
		}
	}
	return ids, pages, nil
}

func TestDescribeInstanceInformation(t *testing.T) {
	srv := apiTestServer(t, Options{Instances: append(DefaultInstances(), Instance{
		ID: "i-0eeeeeeeeeeeeeee6", Name: "win-1", PlatformType: "Windows", Platform: "Microsoft Windows Server 2022 Datacenter",
		IPAddress: "10.0.3.7", LastPing: time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC),
		Tags: map[string]string{"Name": "windows-1", "Env": "dev"},
	})})
	client := apiTestClient(srv)
	filter := func(key string, values ...string) types.InstanceInformationStringFilter {
		return types.InstanceInformationStringFilter{Key: aws.String(key), Values: values}
	}
	cases := []struct {
		name    string
		filters []types.InstanceInformationStringFilter
		legacy  []types.InstanceInformationFilter
		want    string
	}{
		{"all", nil, nil, "i-0123456789abcdef0 i-0123456789abcdef1 i-0aaaaaaaaaaaaaaa2 i-0bbbbbbbbbbbbbbb3 i-0ccccccccccccccc4 i-0ddddddddddddddd5 mi-0123456789abcdef0 i-0eeeeeeeeeeeeeee6"},
		{"by name", []types.InstanceInformationStringFilter{filter("tag:Name", "web-1")}, nil, "i-0123456789abcdef0"},
		{"Name tag", []types.InstanceInformationStringFilter{filter("tag:Name", "windows-1")}, nil, "i-0eeeeeeeeeeeeeee6"},
		{"Name tag overrides Name", []types.InstanceInformationStringFilter{filter("tag:Name", "win-1")}, nil, ""},
		{"tag values are ORed", []types.InstanceInformationStringFilter{filter("tag:Role", "web", "bastion")}, nil,
			"i-0123456789abcdef0 i-0123456789abcdef1 i-0aaaaaaaaaaaaaaa2"},
		{"filters are ANDed", []types.InstanceInformationStringFilter{filter("tag:Env", "prod"), filter("tag:Role", "bastion")}, nil, "i-0aaaaaaaaaaaaaaa2"},
		{"tag-key", []types.InstanceInformationStringFilter{filter("tag-key", "Role", "Nope")}, nil,
			"i-0123456789abcdef0 i-0123456789abcdef1 i-0aaaaaaaaaaaaaaa2"},
		{"no match", []types.InstanceInformationStringFilter{filter("tag:Name", "nope")}, nil, ""},
		{"instance ids", []types.InstanceInformationStringFilter{filter("InstanceIds", "mi-0123456789abcdef0", "i-0ddddddddddddddd5")}, nil,
			"i-0ddddddddddddddd5 mi-0123456789abcdef0"},
		{"ping status", []types.InstanceInformationStringFilter{filter("PingStatus", "ConnectionLost", "Inactive")}, nil, "i-0ccccccccccccccc4"},
		{"platform", []types.InstanceInformationStringFilter{filter("PlatformTypes", "Windows")}, nil, "i-0eeeeeeeeeeeeeee6"},
		{"agent version", []types.InstanceInformationStringFilter{filter("AgentVersion", "2.3.612.0")}, nil, "i-0bbbbbbbbbbbbbbb3"},
		{"resource type", []types.InstanceInformationStringFilter{filter("ResourceType", "ManagedInstance")}, nil, "mi-0123456789abcdef0"},
		{"combined", []types.InstanceInformationStringFilter{filter("ResourceType", "EC2Instance"), filter("PingStatus", "Online"),
			filter("PlatformTypes", "Linux"), filter("AgentVersion", DefaultAgentVersion)}, nil,
			"i-0123456789abcdef0 i-0123456789abcdef1 i-0aaaaaaaaaaaaaaa2 i-0ddddddddddddddd5"},
		{"legacy list", nil, []types.InstanceInformationFilter{{Key: types.InstanceInformationFilterKeyPingStatus, ValueSet: []string{"ConnectionLost"}}},
			"i-0ccccccccccccccc4"},
		{"no data for activation ids", []types.InstanceInformationStringFilter{filter("ActivationIds", "x")}, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids, pages, err := describeAll(t, client, &ssm.DescribeInstanceInformationInput{Filters: c.filters, InstanceInformationFilterList: c.legacy})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ids, " "); got != c.want {
				t.Errorf("ids = %s\nwant %s", got, c.want)
			}
			if want := max(1, (len(ids)+1)/2); pages != want {
				t.Errorf("%d pages for %d instances, want %d", pages, len(ids), want)
			}
		})
	}
}

func TestDescribeInstanceInformationFields(t *testing.T) {
	srv := apiTestServer(t, Options{PageSize: 50, Instances: append(DefaultInstances(), Instance{
		ID: "i-0eeeeeeeeeeeeeee6", Platform: "Microsoft Windows Server 2022 Datacenter", PlatformType: "Windows",
		IPAddress: "10.0.3.7", LastPing: time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC),
	})})
	before := time.Now().Add(-time.Second)
	out, err := apiTestClient(srv).DescribeInstanceInformation(apiContext(t), &ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(50)})
	if err != nil {
		t.Fatal(err)
	}
	byID := make(map[string]types.InstanceInformation)
	for _, info := range out.InstanceInformationList {
		byID[aws.ToString(info.InstanceId)] = info
	}
	if len(byID) != 8 || out.NextToken != nil {
		t.Fatalf("%d instances, next token %v", len(byID), out.NextToken)
	}
	web := byID["i-0123456789abcdef0"]
	if web.PingStatus != types.PingStatusOnline || aws.ToString(web.AgentVersion) != DefaultAgentVersion || !aws.ToBool(web.IsLatestVersion) ||
		web.PlatformType != types.PlatformTypeLinux || aws.ToString(web.PlatformName) != "Amazon Linux" ||
		web.ResourceType != types.ResourceTypeEc2Instance || web.Name != nil || web.LastPingDateTime == nil || web.LastPingDateTime.Before(before) {
		t.Errorf("web-1 = %+v", web)
	}
	if old := byID["i-0bbbbbbbbbbbbbbb3"]; aws.ToBool(old.IsLatestVersion) || aws.ToString(old.AgentVersion) != "2.3.612.0" {
		t.Errorf("old-agent = %+v", old)
	}
	if lost := byID["i-0ccccccccccccccc4"]; lost.PingStatus != types.PingStatusConnectionLost || !lost.LastPingDateTime.Before(before) {
		t.Errorf("stopped-1 = %+v", lost)
	}
	if mi := byID["mi-0123456789abcdef0"]; mi.ResourceType != types.ResourceTypeManagedInstance || aws.ToString(mi.Name) != "onprem-1" ||
		aws.ToString(mi.ComputerName) != "onprem-1" || mi.SourceType != types.SourceTypeAwsSsmManagedinstance {
		t.Errorf("onprem-1 = %+v", mi)
	}
	win := byID["i-0eeeeeeeeeeeeeee6"]
	if win.PlatformType != types.PlatformTypeWindows || aws.ToString(win.IPAddress) != "10.0.3.7" ||
		aws.ToString(win.ComputerName) != "ip-10-0-3-7.ec2.internal" || !win.LastPingDateTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)) ||
		aws.ToString(win.SourceId) != "i-0eeeeeeeeeeeeeee6" {
		t.Errorf("windows = %+v", win)
	}
}

// TestDescribeInstanceInformationPaging: pages are min(MaxResults,
// PageSize) long, the token is needed to move on and only fits its query.
func TestDescribeInstanceInformationPaging(t *testing.T) {
	srv := apiTestServer(t, Options{PageSize: 6})
	client := apiTestClient(srv)
	ctx := apiContext(t)
	in := &ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(5)}
	first, err := client.DescribeInstanceInformation(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.InstanceInformationList) != 5 || first.NextToken == nil {
		t.Fatalf("first page: %d items, token %v", len(first.InstanceInformationList), first.NextToken)
	}
	again, err := client.DescribeInstanceInformation(ctx, in)
	if err != nil || aws.ToString(again.InstanceInformationList[0].InstanceId) != aws.ToString(first.InstanceInformationList[0].InstanceId) {
		t.Errorf("without the token the first page comes again: %v", err)
	}
	second, err := client.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(5), NextToken: first.NextToken})
	if err != nil || len(second.InstanceInformationList) != 2 || second.NextToken != nil {
		t.Fatalf("second page: %v, %v", second, err)
	}
	if ids, pages, err := describeAll(t, client, &ssm.DescribeInstanceInformationInput{}); err != nil || len(ids) != 7 || pages != 2 {
		t.Errorf("default MaxResults with PageSize 6: %d ids in %d pages, %v", len(ids), pages, err)
	}

	_, err = client.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{NextToken: aws.String("garbage")})
	checkAPIError(t, err, "InvalidNextToken", "")
	_, err = client.DescribeInstanceInformation(ctx, &ssm.DescribeInstanceInformationInput{
		NextToken: first.NextToken,
		Filters:   []types.InstanceInformationStringFilter{{Key: aws.String("tag:Env"), Values: []string{"prod"}}},
	})
	checkAPIError(t, err, "InvalidNextToken", "")
}

func TestDescribeInstanceInformationErrors(t *testing.T) {
	srv := apiTestServer(t, Options{})
	client := apiTestClient(srv)
	filter := func(key string, values ...string) []types.InstanceInformationStringFilter {
		return []types.InstanceInformationStringFilter{{Key: aws.String(key), Values: values}}
	}
	cases := []struct {
		name      string
		in        ssm.DescribeInstanceInformationInput
		code, msg string
	}{
		{"unknown key", ssm.DescribeInstanceInformationInput{Filters: filter("Name", "web-1")}, "InvalidFilterKey", ""},
		{"empty tag key", ssm.DescribeInstanceInformationInput{Filters: filter("tag:", "x")}, "InvalidFilterKey", ""},
		{"no values", ssm.DescribeInstanceInformationInput{Filters: filter("tag:Name", []string{}...)}, "ValidationException",
			"Value '[]' at 'filters.1.member.values' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"tag mixed with other", ssm.DescribeInstanceInformationInput{Filters: append(filter("tag:Name", "web-1"), filter("PingStatus", "Online")...)},
			"ValidationException", "Cannot mix tag or inventory filter with any other filter."},
		{"two resource types", ssm.DescribeInstanceInformationInput{Filters: filter("ResourceType", "EC2Instance", "ManagedInstance")},
			"InvalidInstanceInformationFilterValue", "ResourceType filter may contain only one value."},
		{"bad resource type", ssm.DescribeInstanceInformationInput{Filters: filter("ResourceType", "Document")},
			"InvalidInstanceInformationFilterValue", "ResourceType filter is invalid, valid values are EC2Instance, ManagedInstance"},
		{"bad ping status", ssm.DescribeInstanceInformationInput{Filters: filter("PingStatus", "Up")}, "InvalidInstanceInformationFilterValue", "PingStatus"},
		{"bad platform", ssm.DescribeInstanceInformationInput{Filters: filter("PlatformTypes", "Plan9")}, "InvalidInstanceInformationFilterValue", "PlatformTypes"},
		{"unknown instance id", ssm.DescribeInstanceInformationInput{Filters: filter("InstanceIds", "i-0123456789abcdef0", "i-00000000000000000")},
			"InvalidInstanceId", "i-00000000000000000"},
		{"max results too small", ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(4)}, "ValidationException",
			"Value '4' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 5"},
		{"max results too big", ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(51)}, "ValidationException", "less than or equal to 50"},
		{"both filter lists", ssm.DescribeInstanceInformationInput{Filters: filter("PingStatus", "Online"),
			InstanceInformationFilterList: []types.InstanceInformationFilter{{Key: "PingStatus", ValueSet: []string{"Online"}}}},
			"ValidationException", "cannot be used together"},
		{"legacy tag key", ssm.DescribeInstanceInformationInput{
			InstanceInformationFilterList: []types.InstanceInformationFilter{{Key: "tag:Name", ValueSet: []string{"web-1"}}}},
			"ValidationException", "at 'instanceInformationFilterList.1.member.key' failed to satisfy constraint: Member must satisfy enum value set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := client.DescribeInstanceInformation(apiContext(t), &c.in)
			checkAPIError(t, err, c.code, c.msg)
		})
	}
}
