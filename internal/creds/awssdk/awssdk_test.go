package awssdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/ststest"
)

const (
	baseKey    = "AKIAIOSFODNN7EXAMPLE"
	baseSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	baseToken  = "IQoJb3JpZ2luX2VjEBaseSessionTokenForTestsOnly0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ+/=="

	profKey    = "AKIAPROFILEKEY000001"
	profSecret = "pr0fileSecretKeyForTests/0123456789abcdE"

	roleARN = "arn:aws:iam::210987654321:role/service/deploy"
)

// t0 is the stand-in STS's clock and t1 the Source's. Both start from the
// real time of the run: the SDK signs requests and checks the expiry of the
// credentials it caches with the real clock, so a fixed date would fail (or
// pass only until that date is half an hour behind).
var (
	t0 = time.Now().UTC().Truncate(time.Second)
	t1 = t0.Add(7 * time.Second)
)

// proxyHits counts requests that tried to leave the machine: TestMain points
// HTTP(S)_PROXY at a trap, which loopback requests bypass. So nothing here
// can reach real AWS, and any attempt fails the run.
var proxyHits atomic.Int64

func TestMain(m *testing.M) {
	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxyHits.Add(1)
		fmt.Fprintf(os.Stderr, "BUG: a request tried to leave the machine: %s %s\n", r.Method, r.Host)
		http.Error(w, "forbidden in tests", http.StatusForbidden)
	}))
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		os.Setenv(k, trap.URL)
	}
	os.Unsetenv("NO_PROXY")
	os.Unsetenv("no_proxy")
	code := m.Run()
	trap.Close()
	if n := proxyHits.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d request(s) tried to leave the machine\n", n)
		code = 1
	}
	os.Exit(code)
}

// fakeClock is a goroutine-safe clock for the stand-in.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

type testEnv struct {
	dir      string
	sts      *ststest.Server
	imdsHits atomic.Int64
}

// setup isolates the test from the host's AWS settings: no AWS_* variables,
// HOME and the shared files in a temp dir, STS at a stand-in (through
// AWS_ENDPOINT_URL_STS) and EC2 instance metadata at a trap.
func setup(t *testing.T) *testEnv {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	e := &testEnv{dir: t.TempDir()}
	t.Setenv("HOME", e.dir)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(e.dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(e.dir, "credentials"))
	e.write(t, "config", "")
	e.write(t, "credentials", "")

	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.imdsHits.Add(1)
		http.Error(w, "imds must never be asked", http.StatusForbidden)
	}))
	t.Cleanup(func() {
		trap.Close()
		if n := e.imdsHits.Load(); n > 0 {
			t.Errorf("EC2 instance metadata was contacted %d time(s)", n)
		}
	})
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", trap.URL)

	clk := &fakeClock{}
	clk.ns.Store(t0.UnixNano())
	e.sts = ststest.NewServer(t)
	e.sts.Now = clk.Now
	e.sts.AddKey(baseKey, baseSecret)
	e.sts.AddKey(profKey, profSecret)
	t.Setenv("AWS_ENDPOINT_URL_STS", e.sts.URL())
	return e
}

func (e *testEnv) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func baseEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", baseKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", baseSecret)
	t.Setenv("AWS_SESSION_TOKEN", baseToken)
}

func newSource(t *testing.T, cfg Config) *Source {
	t.Helper()
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return t1 }
	return s
}

func retrieve(t *testing.T, s *Source) ec2.Credentials {
	t.Helper()
	c, err := s.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// noSecrets fails if msg contains any of the secrets.
func noSecrets(t *testing.T, what, msg string, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, baseSecret, baseToken, profSecret) {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("%s contains a secret (%.6s…): %s", what, s, msg)
		}
	}
}

var akidRE = regexp.MustCompile(`^ASIA[A-Z2-7]{16}$`)

func TestBaseFromEnv(t *testing.T) {
	e := setup(t)
	baseEnv(t)
	s := newSource(t, Config{})
	c := retrieve(t, s)
	want := ec2.Credentials{AccessKeyID: baseKey, SecretAccessKey: baseSecret, SessionToken: baseToken, LastUpdated: t1}
	if c != want {
		t.Errorf("Retrieve = %+v, want the environment's keys with zero Expiration", c)
	}
	if e.sts.Calls() != 0 {
		t.Errorf("STS called %d times without a role", e.sts.Calls())
	}
	if got := s.String(); got != "aws(default chain, region us-east-1)" {
		t.Errorf("String = %q", got)
	}
	noSecrets(t, "String", fmt.Sprint(s))
}

func TestBaseFromProfile(t *testing.T) {
	e := setup(t)
	baseEnv(t) // a named profile wins over the environment
	e.write(t, "credentials", "[dev]\naws_access_key_id = "+profKey+"\naws_secret_access_key = "+profSecret+"\n")
	e.write(t, "config", "[profile dev]\nregion = ap-southeast-2\n")
	s := newSource(t, Config{Profile: "dev"})
	c := retrieve(t, s)
	if c.AccessKeyID != profKey || c.SecretAccessKey != profSecret || c.SessionToken != "" || !c.Expiration.IsZero() {
		t.Errorf("Retrieve = %v, want the keys of profile dev", c)
	}
	if got := s.String(); got != `aws(profile "dev", region ap-southeast-2)` {
		t.Errorf("String = %q", got)
	}
}

func TestCredentialProcess(t *testing.T) {
	e := setup(t)
	script := filepath.Join(e.dir, "creds.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat \""+filepath.Join(e.dir, "out.json")+"\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	e.write(t, "config", "[profile proc]\ncredential_process = "+script+"\n")
	s := newSource(t, Config{Profile: "proc"})

	e.write(t, "out.json", `{"Version":1,"AccessKeyId":"`+profKey+`","SecretAccessKey":"`+profSecret+`","SessionToken":"`+baseToken+`","Expiration":"`+t0.Add(150*time.Minute).Format(time.RFC3339)+`"}`)
	c := retrieve(t, s)
	if c.AccessKeyID != profKey || c.SecretAccessKey != profSecret || !c.Expiration.Equal(t0.Add(150*time.Minute)) {
		t.Errorf("Retrieve = %v, want the process's keys and Expiration", c)
	}

	// The SDK echoes unparseable process output, secret included; Source
	// must not pass that on. A new secret makes sure it is not merely
	// scrubbed for having been seen before.
	const newSecret = "neverSeenBeforeSecret/0123456789abcdefXYZ"
	e.write(t, "out.json", `{"Version":1,"AccessKeyId":"`+profKey+`","SecretAccessKey":"`+newSecret+`","Expiration":"half past noon"}`)
	_, err := s.Retrieve(context.Background())
	if err == nil {
		t.Fatal("Retrieve succeeded on bad process output")
	}
	if !strings.Contains(err.Error(), "credential_process") || !strings.Contains(err.Error(), `profile "proc"`) {
		t.Errorf("error %q does not explain the failure", err)
	}
	noSecrets(t, "error", err.Error(), newSecret)
}

func TestAssumeRole(t *testing.T) {
	e := setup(t)
	baseEnv(t)
	s := newSource(t, Config{RoleARN: roleARN, ExternalID: "ext-42", SessionName: "imds@host.example", Duration: 2 * time.Hour, Region: "eu-central-1"})
	c := retrieve(t, s)
	if !akidRE.MatchString(c.AccessKeyID) || len(c.SecretAccessKey) != 40 || len(c.SessionToken) < 900 {
		t.Errorf("Retrieve = %v, want STS credentials", c)
	}
	if !c.Expiration.Equal(t0.Add(2*time.Hour)) || !c.LastUpdated.Equal(t1) {
		t.Errorf("Expiration %v LastUpdated %v, want %v and %v", c.Expiration, c.LastUpdated, t0.Add(2*time.Hour), t1)
	}
	want := ststest.Request{
		RoleARN: roleARN, RoleSessionName: "imds@host.example", ExternalID: "ext-42", DurationSeconds: 7200,
		AccessKeyID: baseKey, SessionToken: baseToken, Region: "eu-central-1", SignatureVerified: true,
	}
	if got := e.sts.LastRequest(); got != want {
		t.Errorf("STS saw %+v, want %+v", got, want)
	}

	// No cache: every Retrieve is a new AssumeRole.
	c2 := retrieve(t, s)
	if e.sts.Calls() != 2 || c2.AccessKeyID == c.AccessKeyID {
		t.Errorf("second Retrieve: %d STS calls, key %s (first %s)", e.sts.Calls(), c2.AccessKeyID, c.AccessKeyID)
	}
	str := s.String()
	if want := "aws(default chain, role " + roleARN + ", session imds@host.example, duration 2h0m0s, with external ID, region eu-central-1)"; str != want {
		t.Errorf("String = %q, want %q", str, want)
	}
	noSecrets(t, "String", str, c.SecretAccessKey, c.SessionToken, "ext-42")
}

func TestAssumeRoleDefaults(t *testing.T) {
	e := setup(t)
	baseEnv(t)
	t.Setenv("AWS_REGION", "sa-east-1")
	s := newSource(t, Config{RoleARN: roleARN})
	c := retrieve(t, s)
	if !c.Expiration.Equal(t0.Add(time.Hour)) {
		t.Errorf("Expiration = %v, want an hour after STS's now", c.Expiration)
	}
	r := e.sts.LastRequest()
	if r.RoleSessionName != DefaultSessionName() || r.DurationSeconds != 3600 || r.ExternalID != "" || r.Region != "sa-east-1" {
		t.Errorf("STS saw %+v, want session %q, 3600 s, no external ID, region sa-east-1", r, DefaultSessionName())
	}
	if !strings.HasPrefix(r.RoleSessionName, "imds-") {
		t.Errorf("default session name %q", r.RoleSessionName)
	}
}

func TestAccessDenied(t *testing.T) {
	e := setup(t)
	baseEnv(t)
	e.sts.RequiredExternalID = "the-right-one"
	s := newSource(t, Config{RoleARN: roleARN, ExternalID: "the-wrong-one"})
	_, err := s.Retrieve(context.Background())
	var re *ec2.RoleError
	if !errors.As(err, &re) || re.EC2Code != "AssumeRoleUnauthorizedAccess" {
		t.Fatalf("err = %v, want a RoleError AssumeRoleUnauthorizedAccess", err)
	}
	if want := "imds cannot assume the role " + roleARN + ": User: arn:aws:iam::123456789012:user/ststest is not authorized to perform: sts:AssumeRole on resource: " + roleARN; re.Message != want {
		t.Errorf("message %q, want %q", re.Message, want)
	}
	noSecrets(t, "error", err.Error())

	e.sts.SetDenied(true)
	s = newSource(t, Config{RoleARN: roleARN, ExternalID: "the-right-one"})
	if _, err := s.Retrieve(context.Background()); !errors.As(err, &re) {
		t.Errorf("err = %v, want a RoleError", err)
	}
	e.sts.SetDenied(false)
	retrieve(t, s)
}

func TestOutage(t *testing.T) {
	e := setup(t)
	baseEnv(t)
	t.Setenv("AWS_MAX_ATTEMPTS", "1") // the SDK would otherwise back off between retries
	s := newSource(t, Config{RoleARN: roleARN})
	prev := retrieve(t, s)

	e.sts.SetOutage(true)
	_, err := s.Retrieve(context.Background())
	if err == nil {
		t.Fatal("Retrieve succeeded during an outage")
	}
	var re *ec2.RoleError
	if errors.As(err, &re) {
		t.Errorf("outage reported as a role error: %v", err)
	}
	if !strings.Contains(err.Error(), roleARN) || !strings.Contains(err.Error(), "ServiceUnavailable") {
		t.Errorf("error %q should name the role and the failure", err)
	}
	noSecrets(t, "error", err.Error(), prev.SecretAccessKey, prev.SessionToken)
	e.sts.SetOutage(false)

	// STS gone altogether.
	e.sts.Close()
	_, err = s.Retrieve(context.Background())
	if err == nil || !strings.Contains(err.Error(), roleARN) {
		t.Fatalf("err = %v, want a failure naming the role", err)
	}
	noSecrets(t, "error", err.Error(), prev.SecretAccessKey, prev.SessionToken)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Retrieve(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want one that is context.Canceled", err)
	}
}

// STS echoes the canonical request, session token included, when a
// signature does not match (as AWS does). The error must not.
func TestSecretsScrubbed(t *testing.T) {
	e := setup(t)
	baseEnv(t)
	e.sts.AddKey(baseKey, "not-the-secret-the-host-signs-with")
	s := newSource(t, Config{RoleARN: roleARN})
	_, err := s.Retrieve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("err = %v, want SignatureDoesNotMatch", err)
	}
	if !strings.Contains(err.Error(), "x-amz-security-token:"+redacted) {
		t.Errorf("error %q does not show the redacted token where STS put it", err)
	}
	noSecrets(t, "error", err.Error())
}

func TestScrubShapes(t *testing.T) {
	for in, want := range map[string]string{
		"key " + baseSecret + " end":                    "key " + redacted + " end",
		"tok=" + strings.Repeat("a", 120):               "tok=" + redacted,
		"arn:aws:iam::123456789012:role/a/b/c":          "arn:aws:iam::123456789012:role/a/b/c",
		"sha " + strings.Repeat("0123456789abcdef", 4):  "sha " + strings.Repeat("0123456789abcdef", 4),
		"roles/ThisIsALongRoleNameWithoutAnyDigitsInIt": "roles/ThisIsALongRoleNameWithoutAnyDigitsInIt",
	} {
		if got := scrubShapes(in); got != want {
			t.Errorf("scrubShapes(%q) = %q, want %q", in, got, want)
		}
	}
}

const chainConfig = `
[profile base]
region = eu-west-1

[profile chain]
role_arn = arn:aws:iam::210987654321:role/chain
source_profile = base
role_session_name = chain-session
external_id = ext-chain
duration_seconds = 1800
`

// A profile that assumes a role from a source_profile: the SDK's own chain,
// reaching the stand-in through endpoint_url in the profile (which the SDK
// alone would not use for that role).
func TestSourceProfileChain(t *testing.T) {
	e := setup(t)
	os.Unsetenv("AWS_ENDPOINT_URL_STS")
	e.write(t, "credentials", "[base]\naws_access_key_id = "+baseKey+"\naws_secret_access_key = "+baseSecret+"\n")
	e.write(t, "config", chainConfig+"endpoint_url = "+e.sts.URL()+"\n")

	s := newSource(t, Config{Profile: "chain"})
	c := retrieve(t, s)
	if !akidRE.MatchString(c.AccessKeyID) || !c.Expiration.Equal(t0.Add(30*time.Minute)) {
		t.Errorf("Retrieve = %v, want the chain role's credentials for 30 minutes", c)
	}
	want := ststest.Request{
		RoleARN: "arn:aws:iam::210987654321:role/chain", RoleSessionName: "chain-session", ExternalID: "ext-chain",
		DurationSeconds: 1800, AccessKeyID: baseKey, Region: "us-east-1", SignatureVerified: true,
	}
	if got := e.sts.LastRequest(); got != want {
		t.Errorf("STS saw %+v, want %+v", got, want)
	}
	// The SDK caches the chain's credentials; Source asks anew each time.
	if c2 := retrieve(t, s); e.sts.Calls() != 2 || c2.AccessKeyID == c.AccessKeyID {
		t.Errorf("second Retrieve made %d STS calls in all, want 2", e.sts.Calls())
	}

	// Role chaining: Source assumes RoleARN with the chain's credentials.
	s = newSource(t, Config{Profile: "chain", RoleARN: roleARN, SessionName: "second-hop"})
	c = retrieve(t, s)
	r := e.sts.LastRequest()
	if e.sts.Calls() != 4 || r.RoleARN != roleARN || !akidRE.MatchString(r.AccessKeyID) || !r.SignatureVerified {
		t.Errorf("after chaining: %d calls, last %+v; want AssumeRole of %s signed with issued credentials", e.sts.Calls(), r, roleARN)
	}
	if !c.Expiration.Equal(t0.Add(time.Hour)) {
		t.Errorf("Expiration = %v", c.Expiration)
	}

	// Denied in the profile's own role.
	e.sts.SetDenied(true)
	_, err := newSource(t, Config{Profile: "chain"}).Retrieve(context.Background())
	var re *ec2.RoleError
	if !errors.As(err, &re) || re.EC2Code != "AssumeRoleUnauthorizedAccess" || !strings.Contains(re.Message, `profile "chain"`) {
		t.Errorf("err = %v, want AssumeRoleUnauthorizedAccess naming the profile", err)
	}
}

// The same chain with the global AWS_ENDPOINT_URL, and with an sts entry in
// a services section.
func TestSourceProfileChainEndpoints(t *testing.T) {
	for name, tc := range map[string]struct {
		env    bool
		config string
	}{
		"AWS_ENDPOINT_URL": {env: true, config: chainConfig},
		"services":         {config: chainConfig + "services = local\n\n[services local]\nsts =\n  endpoint_url = %s\n"},
	} {
		t.Run(name, func(t *testing.T) {
			e := setup(t)
			os.Unsetenv("AWS_ENDPOINT_URL_STS")
			if tc.env {
				t.Setenv("AWS_ENDPOINT_URL", e.sts.URL())
			}
			e.write(t, "credentials", "[base]\naws_access_key_id = "+baseKey+"\naws_secret_access_key = "+baseSecret+"\n")
			cfg := tc.config
			if strings.Contains(cfg, "%s") {
				cfg = fmt.Sprintf(cfg, e.sts.URL())
			}
			e.write(t, "config", cfg)
			retrieve(t, newSource(t, Config{Profile: "chain"}))
			retrieve(t, newSource(t, Config{Profile: "chain", RoleARN: roleARN}))
			// 1 + 2 (the profile's role, then RoleARN)
			if e.sts.Calls() != 3 || e.sts.LastRequest().RoleARN != roleARN {
				t.Errorf("STS saw %d calls, last %+v", e.sts.Calls(), e.sts.LastRequest())
			}
		})
	}
}

// Config.SourceProfile: base credentials from one profile, region and
// endpoint from another.
func TestSourceProfileField(t *testing.T) {
	e := setup(t)
	os.Unsetenv("AWS_ENDPOINT_URL_STS")
	baseEnv(t) // ignored: the source profile has keys
	e.write(t, "credentials", "[keys]\naws_access_key_id = "+profKey+"\naws_secret_access_key = "+profSecret+"\n")
	e.write(t, "config", "[profile app]\nregion = ca-central-1\nendpoint_url = "+e.sts.URL()+"\n\n[profile keys]\nregion = eu-north-1\n")
	s := newSource(t, Config{Profile: "app", SourceProfile: "keys", RoleARN: roleARN})
	retrieve(t, s)
	if r := e.sts.LastRequest(); r.AccessKeyID != profKey || r.Region != "ca-central-1" || !r.SignatureVerified {
		t.Errorf("STS saw %+v, want a request signed with profile keys in ca-central-1", r)
	}
	if got, want := s.String(), `aws(profile "app", source profile "keys", role `+roleARN+`, session `+DefaultSessionName()+`, duration 1h0m0s, region ca-central-1)`; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	// Without a role, the source profile's keys are served.
	c := retrieve(t, newSource(t, Config{Profile: "app", SourceProfile: "keys"}))
	if c.AccessKeyID != profKey {
		t.Errorf("Retrieve = %v, want the keys of profile keys", c)
	}
}

// With no credentials anywhere the SDK would fall back to EC2 instance
// metadata, even with AWS_EC2_METADATA_DISABLED=false; New refuses.
func TestNeverAsksIMDS(t *testing.T) {
	for name, config := range map[string]string{
		"nothing":           "",
		"credential_source": "[profile ec2]\nrole_arn = " + roleARN + "\ncredential_source = Ec2InstanceMetadata\n",
	} {
		t.Run(name, func(t *testing.T) {
			e := setup(t)
			t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
			e.write(t, "config", config)
			cfg := Config{}
			if config != "" {
				cfg.Profile = "ec2"
			}
			_, err := New(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), "instance metadata is never used") {
				t.Errorf("New = %v, want a refusal to use instance metadata", err)
			}
		})
	}
}

// Below New's check, the SDK's own EC2 provider is disabled too.
func TestLoadDisablesIMDS(t *testing.T) {
	e := setup(t)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	cfg, err := load(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != DefaultRegion {
		t.Errorf("Region = %q, want %q", cfg.Region, DefaultRegion)
	}
	_, err = cfg.Credentials.Retrieve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "access disabled to EC2 IMDS") {
		t.Errorf("Retrieve = %v, want the SDK's IMDS client disabled", err)
	}
	if e.imdsHits.Load() != 0 {
		t.Error("instance metadata was contacted")
	}
}

func TestInvalidConfig(t *testing.T) {
	setup(t)
	baseEnv(t)
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{RoleARN: "arn:aws:iam::123:role/x"}, "RoleARN"},
		{Config{RoleARN: "arn:aws:iam::123456789012:user/x"}, "RoleARN"},
		{Config{RoleARN: "deploy"}, "RoleARN"},
		{Config{RoleARN: roleARN, Duration: 10 * time.Minute}, "Duration"},
		{Config{RoleARN: roleARN, Duration: 13 * time.Hour}, "Duration"},
		{Config{RoleARN: roleARN, Duration: 20*time.Minute + time.Millisecond}, "Duration"},
		{Config{RoleARN: roleARN, SessionName: "a"}, "SessionName"},
		{Config{RoleARN: roleARN, SessionName: "has space"}, "SessionName"},
		{Config{RoleARN: roleARN, SessionName: strings.Repeat("s", 65)}, "SessionName"},
		{Config{RoleARN: roleARN, ExternalID: "x"}, "ExternalID"},
		{Config{RoleARN: roleARN, ExternalID: "bad#id"}, "ExternalID"},
		{Config{ExternalID: "ext-1"}, "ExternalID"},
		{Config{SessionName: "sess"}, "SessionName"},
		{Config{Duration: time.Hour}, "Duration"},
		{Config{Region: "US East"}, "Region"},
		{Config{Profile: "missing"}, "Profile"},
		{Config{SourceProfile: "missing"}, "SourceProfile"},
	} {
		_, err := New(context.Background(), tc.cfg)
		if err == nil || !strings.HasPrefix(err.Error(), "aws: "+tc.field+" ") {
			t.Errorf("New(%+v) = %v, want an error about %s", tc.cfg, err, tc.field)
		}
	}
}

func TestSanitizeSessionName(t *testing.T) {
	for in, want := range map[string]string{
		"imds-web01.example.com":          "imds-web01.example.com",
		"imds-host name/ü":                "imds-host-name--",
		"imds-" + strings.Repeat("h", 70): "imds-" + strings.Repeat("h", 59),
		"":                                "--",
	} {
		if got := SanitizeSessionName(in); got != want {
			t.Errorf("SanitizeSessionName(%q) = %q, want %q", in, got, want)
		}
		if got := SanitizeSessionName(in); !sessionNameRE.MatchString(got) {
			t.Errorf("SanitizeSessionName(%q) = %q does not fit STS", in, got)
		}
	}
	if !sessionNameRE.MatchString(DefaultSessionName()) {
		t.Errorf("DefaultSessionName() = %q does not fit STS", DefaultSessionName())
	}
}

// Documents why load wraps the SDK's AssumeRole client: for a role that a
// profile assumes, the SDK builds its STS client before it resolves
// endpoint_url (and AWS_ENDPOINT_URL), so that client would go to the real
// STS. Requests here can only reach loopback.
func TestSDKChainSkipsProfileEndpoint(t *testing.T) {
	e := setup(t)
	os.Unsetenv("AWS_ENDPOINT_URL_STS")
	e.write(t, "credentials", "[base]\naws_access_key_id = "+baseKey+"\naws_secret_access_key = "+baseSecret+"\n")
	e.write(t, "config", chainConfig+"endpoint_url = "+e.sts.URL()+"\n")
	var mu sync.Mutex
	var hosts []string
	client := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		if ip := net.ParseIP(r.URL.Hostname()); ip == nil || !ip.IsLoopback() {
			mu.Lock()
			hosts = append(hosts, r.URL.Host)
			mu.Unlock()
			return nil, errors.New("refused in tests")
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithSharedConfigProfile("chain"),
		config.WithRegion("us-east-1"), config.WithRetryMaxAttempts(1), config.WithHTTPClient(client))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Credentials.Retrieve(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if err == nil && len(hosts) == 0 {
		t.Logf("this SDK version applies endpoint_url to profile roles itself; load's wrapper is now redundant")
		return
	}
	t.Logf("SDK chain went to %v: %v", hosts, err)
	if len(hosts) == 0 || !strings.HasPrefix(hosts[0], "sts.") {
		t.Errorf("SDK chain: err %v, hosts %v", err, hosts)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
