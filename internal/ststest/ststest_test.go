package ststest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

const (
	baseKey    = "AKIAIOSFODNN7EXAMPLE"
	baseSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	roleARN    = "arn:aws:iam::210987654321:role/service/deploy"
)

// t0 starts the stand-in's clock at the real time of the run: the SDK signs
// with the real clock, and the Server refuses requests signed 15 minutes
// away from its own, as STS does.
var t0 = time.Now().UTC().Truncate(time.Second)

// fakeClock is a goroutine-safe injected clock.
type fakeClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestServer(t *testing.T) (*Server, *fakeClock) {
	s := NewServer(t)
	clk := newClock(t0)
	s.Now = clk.Now
	s.AddKey(baseKey, baseSecret)
	return s, clk
}

// client is the real SDK STS client pointed at s, without retries.
func client(s *Server, akid, secret, token string, optFns ...func(*sts.Options)) *sts.Client {
	cfg := aws.Config{
		Region:      "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider(akid, secret, token),
	}
	return sts.NewFromConfig(cfg, append([]func(*sts.Options){func(o *sts.Options) {
		o.BaseEndpoint = aws.String(s.URL())
		o.RetryMaxAttempts = 1
	}}, optFns...)...)
}

func assumeInput(session string) *sts.AssumeRoleInput {
	return &sts.AssumeRoleInput{
		RoleArn:         aws.String(roleARN),
		RoleSessionName: aws.String(session),
		ExternalId:      aws.String("ext-42"),
		DurationSeconds: aws.Int32(7200),
	}
}

// wantAPIError checks that err is an STS error with code and HTTP status.
func wantAPIError(t *testing.T, err error, code string, status int) smithy.APIError {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want an API error %s", err, code)
	}
	if ae.ErrorCode() != code {
		t.Errorf("code = %q (%s), want %q", ae.ErrorCode(), ae.ErrorMessage(), code)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v carries no HTTP response", err)
	}
	if re.HTTPStatusCode() != status {
		t.Errorf("status = %d, want %d", re.HTTPStatusCode(), status)
	}
	if re.ServiceRequestID() == "" {
		t.Error("no request ID in the error")
	}
	return ae
}

var (
	akidRE   = regexp.MustCompile(`^ASIA[A-Z2-7]{16}$`)
	roleIDRE = regexp.MustCompile(`^AROA[A-Z2-7]{17}:imds-test$`)
)

func TestAssumeRole(t *testing.T) {
	s, _ := newTestServer(t)
	c := client(s, baseKey, baseSecret, "")
	ctx := context.Background()

	out, err := c.AssumeRole(ctx, assumeInput("imds-test"))
	if err != nil {
		t.Fatal(err)
	}
	cr := out.Credentials
	if !akidRE.MatchString(aws.ToString(cr.AccessKeyId)) {
		t.Errorf("AccessKeyId = %q, want ASIA + 16 base32 characters", aws.ToString(cr.AccessKeyId))
	}
	if n := len(aws.ToString(cr.SecretAccessKey)); n != 40 {
		t.Errorf("len(SecretAccessKey) = %d, want 40", n)
	}
	if tok := aws.ToString(cr.SessionToken); !strings.HasPrefix(tok, "IQoJb3JpZ2luX2Vj") || len(tok) < 900 {
		t.Errorf("SessionToken %.20q… (len %d) does not look like an STS token", tok, len(tok))
	}
	if want := t0.Add(2 * time.Hour); !aws.ToTime(cr.Expiration).Equal(want) {
		t.Errorf("Expiration = %v, want %v", aws.ToTime(cr.Expiration), want)
	}
	u := out.AssumedRoleUser
	if got, want := aws.ToString(u.Arn), "arn:aws:sts::210987654321:assumed-role/deploy/imds-test"; got != want {
		t.Errorf("AssumedRoleUser.Arn = %q, want %q", got, want)
	}
	if !roleIDRE.MatchString(aws.ToString(u.AssumedRoleId)) {
		t.Errorf("AssumedRoleId = %q", aws.ToString(u.AssumedRoleId))
	}
	if s.Calls() != 1 {
		t.Errorf("Calls = %d, want 1", s.Calls())
	}
	want := Request{
		RoleARN: roleARN, RoleSessionName: "imds-test", ExternalID: "ext-42", DurationSeconds: 7200,
		AccessKeyID: baseKey, Region: "eu-west-1", SignatureVerified: true,
	}
	if got := s.LastRequest(); got != want {
		t.Errorf("LastRequest = %+v, want %+v", got, want)
	}

	// Without DurationSeconds the credentials last an hour; each call
	// hands out a new set; the role ID is stable.
	in := assumeInput("imds-test")
	in.DurationSeconds, in.ExternalId = nil, nil
	out2, err := c.AssumeRole(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(time.Hour); !aws.ToTime(out2.Credentials.Expiration).Equal(want) {
		t.Errorf("default Expiration = %v, want %v", aws.ToTime(out2.Credentials.Expiration), want)
	}
	if aws.ToString(out2.Credentials.AccessKeyId) == aws.ToString(cr.AccessKeyId) ||
		aws.ToString(out2.Credentials.SecretAccessKey) == aws.ToString(cr.SecretAccessKey) {
		t.Error("second AssumeRole returned the same credentials")
	}
	if aws.ToString(out2.AssumedRoleUser.AssumedRoleId) != aws.ToString(u.AssumedRoleId) {
		t.Error("AssumedRoleId changed between calls")
	}
	if r := s.LastRequest(); r.DurationSeconds != 0 || r.ExternalID != "" {
		t.Errorf("LastRequest = %+v, want no DurationSeconds and no ExternalId", r)
	}
	if s.Calls() != 2 {
		t.Errorf("Calls = %d, want 2", s.Calls())
	}
}

func TestIssuedCredentials(t *testing.T) {
	s, clk := newTestServer(t)
	ctx := context.Background()
	out, err := client(s, baseKey, baseSecret, "").AssumeRole(ctx, assumeInput("imds-test"))
	if err != nil {
		t.Fatal(err)
	}
	cr := out.Credentials
	id, secret, token := aws.ToString(cr.AccessKeyId), aws.ToString(cr.SecretAccessKey), aws.ToString(cr.SessionToken)

	// The issued credentials work, and sign as the assumed role.
	who, err := client(s, id, secret, token).GetCallerIdentity(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(who.Arn) != aws.ToString(out.AssumedRoleUser.Arn) || aws.ToString(who.Account) != "210987654321" ||
		aws.ToString(who.UserId) != aws.ToString(out.AssumedRoleUser.AssumedRoleId) {
		t.Errorf("GetCallerIdentity = %s %s %s, want the assumed role", aws.ToString(who.Arn), aws.ToString(who.Account), aws.ToString(who.UserId))
	}
	// Role chaining: the issued credentials may assume a role in turn,
	// and the Server verifies their signature.
	if _, err := client(s, id, secret, token).AssumeRole(ctx, assumeInput("chained")); err != nil {
		t.Fatal(err)
	}
	if r := s.LastRequest(); r.AccessKeyID != id || r.SessionToken != token || !r.SignatureVerified {
		t.Errorf("chained request recorded as key %s, verified %v", r.AccessKeyID, r.SignatureVerified)
	}

	_, err = client(s, id, secret, "not-the-token").GetCallerIdentity(ctx, nil)
	wantAPIError(t, err, "InvalidClientTokenId", 403)
	_, err = client(s, id, strings.Repeat("x", 40), token).GetCallerIdentity(ctx, nil)
	wantAPIError(t, err, "SignatureDoesNotMatch", 403)

	clk.Advance(2 * time.Hour)
	_, err = client(s, id, secret, token).GetCallerIdentity(ctx, nil)
	wantAPIError(t, err, "ExpiredToken", 403)

	// Keys the Server does not know are accepted unverified.
	who, err = client(s, "AKIAUNKNOWNKEY000000", "whatever", "").GetCallerIdentity(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(who.Arn), "arn:aws:iam::123456789012:user/ststest"; got != want {
		t.Errorf("GetCallerIdentity.Arn = %q, want %q", got, want)
	}
}

func TestAccessDenied(t *testing.T) {
	s, _ := newTestServer(t)
	c := client(s, baseKey, baseSecret, "")
	ctx := context.Background()

	s.SetDenied(true)
	_, err := c.AssumeRole(ctx, assumeInput("imds-test"))
	ae := wantAPIError(t, err, "AccessDenied", 403)
	if want := "is not authorized to perform: sts:AssumeRole on resource: " + roleARN; !strings.Contains(ae.ErrorMessage(), want) {
		t.Errorf("message %q lacks %q", ae.ErrorMessage(), want)
	}
	s.SetDenied(false)
	if _, err := c.AssumeRole(ctx, assumeInput("imds-test")); err != nil {
		t.Fatal(err)
	}

	s.AllowedRoleARN = "arn:aws:iam::210987654321:role/other"
	_, err = c.AssumeRole(ctx, assumeInput("imds-test"))
	wantAPIError(t, err, "AccessDenied", 403)

	s.AllowedRoleARN = roleARN
	s.RequiredExternalID = "the-right-one"
	_, err = c.AssumeRole(ctx, assumeInput("imds-test"))
	wantAPIError(t, err, "AccessDenied", 403)
	in := assumeInput("imds-test")
	in.ExternalId = aws.String("the-right-one")
	if _, err := c.AssumeRole(ctx, in); err != nil {
		t.Fatal(err)
	}
	if s.Calls() != 5 {
		t.Errorf("Calls = %d, want 5", s.Calls())
	}
}

func TestValidationError(t *testing.T) {
	s, _ := newTestServer(t)
	c := client(s, baseKey, baseSecret, "")
	ctx := context.Background()
	for _, tc := range []struct {
		mod  func(*sts.AssumeRoleInput)
		want string
	}{
		{func(in *sts.AssumeRoleInput) { in.DurationSeconds = aws.Int32(100) }, "Value '100' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"},
		{func(in *sts.AssumeRoleInput) { in.DurationSeconds = aws.Int32(43201) }, "less than or equal to 43200"},
		{func(in *sts.AssumeRoleInput) { in.RoleSessionName = aws.String("bad name!") }, "'roleSessionName'"},
		{func(in *sts.AssumeRoleInput) { in.RoleArn = aws.String("arn:aws:iam::1:user/x") }, "is invalid"},
	} {
		in := assumeInput("imds-test")
		tc.mod(in)
		_, err := c.AssumeRole(ctx, in)
		ae := wantAPIError(t, err, "ValidationError", 400)
		if ae != nil && !strings.Contains(ae.ErrorMessage(), tc.want) {
			t.Errorf("message %q lacks %q", ae.ErrorMessage(), tc.want)
		}
	}
	if s.Calls() != 4 {
		t.Errorf("Calls = %d, want 4", s.Calls())
	}
	if r := s.LastRequest(); r.RoleARN != "arn:aws:iam::1:user/x" {
		t.Errorf("LastRequest.RoleARN = %q", r.RoleARN)
	}
}

func TestOutage(t *testing.T) {
	s, _ := newTestServer(t)
	ctx := context.Background()
	s.SetOutage(true)

	_, err := client(s, baseKey, baseSecret, "").AssumeRole(ctx, assumeInput("imds-test"))
	wantAPIError(t, err, "ServiceUnavailable", 503)
	if s.Calls() != 1 {
		t.Errorf("Calls = %d, want 1", s.Calls())
	}

	// The SDK's standard retryer treats the outage as retryable (backoff
	// disabled so that the test does not wait).
	noWait := func(o *sts.Options) {
		o.RetryMaxAttempts = 0
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 3
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})
	}
	_, err = client(s, baseKey, baseSecret, "", noWait).AssumeRole(ctx, assumeInput("imds-test"))
	wantAPIError(t, err, "ServiceUnavailable", 503)
	if s.Calls() != 4 {
		t.Errorf("Calls = %d, want 4 (1 + 3 attempts)", s.Calls())
	}

	status, body := post(t, s, "sts", url.Values{"Action": {"GetCallerIdentity"}, "Version": {APIVersion}}, true)
	if status != 503 || !strings.Contains(string(body), "<Type>Receiver</Type>") || !strings.Contains(string(body), "<Code>ServiceUnavailable</Code>") {
		t.Errorf("outage answer %d %s", status, body)
	}

	s.SetOutage(false)
	if _, err := client(s, baseKey, baseSecret, "").AssumeRole(ctx, assumeInput("imds-test")); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

func TestGetCallerIdentity(t *testing.T) {
	s, _ := newTestServer(t)
	who, err := client(s, baseKey, baseSecret, "").GetCallerIdentity(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(who.Arn) != "arn:aws:iam::123456789012:user/ststest" || aws.ToString(who.Account) != "123456789012" ||
		!strings.HasPrefix(aws.ToString(who.UserId), "AIDA") {
		t.Errorf("GetCallerIdentity = %s %s %s", aws.ToString(who.Arn), aws.ToString(who.Account), aws.ToString(who.UserId))
	}
	if s.Calls() != 0 {
		t.Errorf("Calls = %d, want 0: GetCallerIdentity is not AssumeRole", s.Calls())
	}
}

func TestSignatureMismatch(t *testing.T) {
	s, _ := newTestServer(t)
	_, err := client(s, baseKey, "wrong-secret", "a-session-token").AssumeRole(context.Background(), assumeInput("imds-test"))
	ae := wantAPIError(t, err, "SignatureDoesNotMatch", 403)
	// Like AWS, the message shows the canonical request, session token included.
	if ae != nil && !strings.Contains(ae.ErrorMessage(), "x-amz-security-token:a-session-token") {
		t.Errorf("message %q does not show the canonical request", ae.ErrorMessage())
	}
	if r := s.LastRequest(); r.SignatureVerified || r.AccessKeyID != baseKey || s.Calls() != 1 {
		t.Errorf("LastRequest = %+v, Calls = %d", r, s.Calls())
	}
}

// post sends a raw, SigV4-signed query-protocol request.
func post(t *testing.T, s *Server, service string, form url.Values, sign bool) (int, []byte) {
	t.Helper()
	body := form.Encode()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if sign {
		sum := sha256.Sum256([]byte(body))
		err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: baseKey, SecretAccessKey: baseSecret},
			req, hex.EncodeToString(sum[:]), service, "us-east-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/xml" {
		t.Errorf("Content-Type = %q, want text/xml", ct)
	}
	return resp.StatusCode, b
}

// elements lists the element paths of an XML document, with the namespace
// of the root.
func elements(t *testing.T, doc []byte) []string {
	t.Helper()
	var paths, stack []string
	d := xml.NewDecoder(strings.NewReader(string(doc)))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return paths
		}
		if err != nil {
			t.Fatalf("bad XML %s: %v", doc, err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && e.Name.Space != Namespace {
				t.Errorf("root namespace = %q, want %q", e.Name.Space, Namespace)
			}
			stack = append(stack, e.Name.Local)
			paths = append(paths, strings.Join(stack, "/"))
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
}

func TestWireFormat(t *testing.T) {
	s, _ := newTestServer(t)
	status, body := post(t, s, "sts", url.Values{
		"Action": {"AssumeRole"}, "Version": {APIVersion}, "RoleArn": {roleARN}, "RoleSessionName": {"wire"},
	}, true)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	want := []string{
		"AssumeRoleResponse",
		"AssumeRoleResponse/AssumeRoleResult",
		"AssumeRoleResponse/AssumeRoleResult/AssumedRoleUser",
		"AssumeRoleResponse/AssumeRoleResult/AssumedRoleUser/AssumedRoleId",
		"AssumeRoleResponse/AssumeRoleResult/AssumedRoleUser/Arn",
		"AssumeRoleResponse/AssumeRoleResult/Credentials",
		"AssumeRoleResponse/AssumeRoleResult/Credentials/AccessKeyId",
		"AssumeRoleResponse/AssumeRoleResult/Credentials/SecretAccessKey",
		"AssumeRoleResponse/AssumeRoleResult/Credentials/SessionToken",
		"AssumeRoleResponse/AssumeRoleResult/Credentials/Expiration",
		"AssumeRoleResponse/ResponseMetadata",
		"AssumeRoleResponse/ResponseMetadata/RequestId",
	}
	if got := elements(t, body); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("elements:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(string(body), "<Expiration>"+t0.Add(time.Hour).Format(time.RFC3339)+"</Expiration>") {
		t.Errorf("Expiration not in STS format:\n%s", body)
	}

	for _, tc := range []struct {
		name    string
		service string
		sign    bool
		status  int
		code    string
	}{
		{"unsigned", "sts", false, 403, "MissingAuthenticationToken"},
		{"wrong service", "iam", true, 403, "SignatureDoesNotMatch"},
	} {
		status, body := post(t, s, tc.service, url.Values{"Action": {"GetCallerIdentity"}, "Version": {APIVersion}}, tc.sign)
		if status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, status, tc.status)
		}
		want := []string{"ErrorResponse", "ErrorResponse/Error", "ErrorResponse/Error/Type", "ErrorResponse/Error/Code",
			"ErrorResponse/Error/Message", "ErrorResponse/RequestId"}
		if got := elements(t, body); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: elements %v, want %v", tc.name, got, want)
		}
		if !strings.Contains(string(body), "<Code>"+tc.code+"</Code>") || !strings.Contains(string(body), "<Type>Sender</Type>") {
			t.Errorf("%s: body %s, want code %s", tc.name, body, tc.code)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s, _ := newTestServer(t)
	c := client(s, baseKey, baseSecret, "")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.SetDenied(i%4 == 3)
			_, _ = c.AssumeRole(context.Background(), assumeInput("imds-test"))
			_ = s.LastRequest()
		}()
	}
	wg.Wait()
	if s.Calls() != 8 {
		t.Errorf("Calls = %d, want 8", s.Calls())
	}
}

// TestClockSkew: as STS, the Server refuses requests signed more than 15
// minutes from its clock, either way, and names both times. The SDK signs
// with the real clock, so this is also what a test sees whose stand-in
// clock was fixed at a date far from the day it runs.
func TestClockSkew(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		offset  time.Duration
		wantMsg string
	}{
		{"within", 14 * time.Minute, ""},
		{"server ahead", 16 * time.Minute, "Signature expired: "},
		{"server behind", -16 * time.Minute, "Signature not yet current: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(t)
			s.Now = func() time.Time { return time.Now().Add(tc.offset) }
			_, err := client(s, "AKIAUNKNOWNKEY000000", "whatever", "").GetCallerIdentity(ctx, nil)
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("signed %v from the Server's clock: %v", -tc.offset, err)
				}
				return
			}
			wantAPIError(t, err, "SignatureDoesNotMatch", 403)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %v, want %q", err, tc.wantMsg)
			}
		})
	}
}
