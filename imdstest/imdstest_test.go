package imdstest_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/imdsdev/imds/imdstest"
)

// These tests use only the public API, as a user in another module would.

func fetch(t *testing.T, client *http.Client, base, path string) (int, string) {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	token, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodGet, base+path, nil)
	if resp.StatusCode == http.StatusOK {
		req.Header.Set("X-aws-ec2-metadata-token", string(token))
	}
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestSetenvDefaultChain: after Setenv the SDK's default chain gets its
// credentials from the server, even with keys in the environment and a
// profile set before.
func TestSetenvDefaultChain(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAFROMTHEENVIRONMENT")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-to-be-used")
	t.Setenv("AWS_PROFILE", "someone-elses")
	srv := imdstest.NewServer(t, imdstest.WithInstance(imdstest.Instance{Name: "ci", Role: "ci-role", IMDSv2Required: true}))
	srv.Setenv(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if creds.Source != ec2rolecreds.ProviderName || !strings.HasPrefix(creds.AccessKeyID, "ASIA") {
		t.Fatalf("credentials %s from %s, want a temporary key from %s", creds.AccessKeyID, creds.Source, ec2rolecreds.ProviderName)
	}
	var saw bool
	for _, r := range srv.Requests("ci") {
		if r.Path == "/latest/meta-data/iam/security-credentials/ci-role" && r.Status == 200 && r.IMDSv2 {
			saw = true
		}
	}
	if !saw {
		t.Errorf("the request record lacks the IMDSv2 credentials request: %+v", srv.Requests(""))
	}
}

func TestRotateCredentials(t *testing.T) {
	srv := imdstest.NewServer(t, imdstest.WithCredentialTimes(time.Hour, 10*time.Minute))
	provider := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = imds.New(imds.Options{Endpoint: srv.URL()}) })
	ctx := context.Background()
	first, err := provider.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(first.Expires); left > time.Hour || left < 50*time.Minute {
		t.Errorf("credentials expire in %s, want about the 1h lifetime", left)
	}
	if err := srv.RotateCredentials(imdstest.DefaultRoleName); err != nil {
		t.Fatal(err)
	}
	second, err := provider.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.AccessKeyID == first.AccessKeyID {
		t.Errorf("the same key %s after RotateCredentials", first.AccessKeyID)
	}
}

func TestNoRole(t *testing.T) {
	srv := imdstest.NewServer(t, imdstest.WithInstance(imdstest.Instance{Name: "bare", NoRole: true}))
	if code, body := fetch(t, nil, srv.URL(), "/latest/meta-data/iam/security-credentials/"); code != 404 {
		t.Errorf("iam/security-credentials/ without a role: %d %q, want 404", code, body)
	}
}

// TestInstancesBySourceAddress: 127.0.0.1 gets the first instance, a
// client bound to 127.0.0.2 the instance that claims that address.
func TestInstancesBySourceAddress(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux puts all of 127.0.0.0/8 on the loopback interface")
	}
	srv := imdstest.NewServer(t,
		imdstest.WithInstance(imdstest.Instance{Name: "a", InstanceID: "i-0aaaaaaaaaaaaaaaa"}),
		imdstest.WithInstance(imdstest.Instance{Name: "b", InstanceID: "i-0bbbbbbbbbbbbbbbb", SourceAddrs: []string{"127.0.0.2"}}))
	from2 := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	tests := []struct {
		name   string
		client *http.Client
		want   string
	}{
		{"from 127.0.0.1", nil, "i-0aaaaaaaaaaaaaaaa"},
		{"from 127.0.0.2", from2, "i-0bbbbbbbbbbbbbbbb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, id := fetch(t, tt.client, srv.URL(), "/latest/meta-data/instance-id"); code != 200 || id != tt.want {
				t.Errorf("instance-id: %d %q, want %q", code, id, tt.want)
			}
		})
	}
	if srv.DefaultInstance() != "a" {
		t.Errorf("DefaultInstance() = %q, want a", srv.DefaultInstance())
	}
	if n := len(srv.Requests("b")); n != 2 {
		t.Errorf("instance b has %d recorded requests, want 2 (token and instance-id)", n)
	}
}

func TestEvents(t *testing.T) {
	tests := []struct {
		name    string
		trigger func(*imdstest.Server) error
		path    string
		want    string // in the body
	}{
		{"spot", func(s *imdstest.Server) error { return s.SpotInterruption("", "hibernate", time.Minute) },
			"/latest/meta-data/spot/instance-action", `"action": "hibernate"`},
		{"spot termination time", func(s *imdstest.Server) error { return s.SpotInterruption("", "", 0) },
			"/latest/meta-data/spot/termination-time", "T"},
		{"rebalance", func(s *imdstest.Server) error { return s.RebalanceRecommendation("") },
			"/latest/meta-data/events/recommendations/rebalance", "noticeTime"},
		{"maintenance", func(s *imdstest.Server) error {
			_, err := s.ScheduleMaintenance("", "instance-stop", 3*time.Hour)
			return err
		}, "/latest/meta-data/events/maintenance/scheduled", `"Code" : "instance-stop"`},
		{"autoscaling", func(s *imdstest.Server) error { return s.AutoscalingState("", "Terminated") },
			"/latest/meta-data/autoscaling/target-lifecycle-state", "Terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := imdstest.NewServer(t)
			if err := tt.trigger(srv); err != nil {
				t.Fatal(err)
			}
			if code, body := fetch(t, nil, srv.URL(), tt.path); code != 200 || !strings.Contains(body, tt.want) {
				t.Fatalf("%s: %d %q, want 200 with %q", tt.path, code, body, tt.want)
			}
			if err := srv.ClearEvents(""); err != nil {
				t.Fatal(err)
			}
			if code, body := fetch(t, nil, srv.URL(), tt.path); code != 404 && !(tt.path == "/latest/meta-data/events/maintenance/scheduled" && body == "[]") {
				t.Errorf("after ClearEvents %s: %d %q, want it gone", tt.path, code, body)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	srv := imdstest.NewServer(t, imdstest.WithInstance(imdstest.Instance{Name: "slow"}))
	if err := srv.SetFaults("slow", imdstest.Faults{Latency: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if code, _ := fetch(t, nil, srv.URL(), "/latest/meta-data/instance-id"); code != 200 {
		t.Fatalf("status %d with latency", code)
	}
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Errorf("two requests took %s with 300ms latency each", took)
	}
	if err := srv.SetFaults("slow", imdstest.Faults{TokenRefused: true}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodPut, srv.URL()+"/latest/api/token"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("token with TokenRefused: %d, want 403", resp.StatusCode)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	return req
}

// TestRefusals: bad options and bad calls say what is wrong.
func TestRefusals(t *testing.T) {
	start := func(opts ...imdstest.Option) func() error {
		return func() error {
			s, err := imdstest.Start(opts...)
			if err == nil {
				s.Close()
			}
			return err
		}
	}
	srv := imdstest.NewServer(t)
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"no name", start(imdstest.WithInstance(imdstest.Instance{})), "Instance.Name is required"},
		{"same name twice", start(imdstest.WithInstance(imdstest.Instance{Name: "x"}), imdstest.WithInstance(imdstest.Instance{Name: "x"})), `second instance named "x"`},
		{"bad name", start(imdstest.WithInstance(imdstest.Instance{Name: "Bad Name!"})), "name"},
		{"bad source address", start(imdstest.WithInstance(imdstest.Instance{Name: "x", SourceAddrs: []string{"nowhere"}})), "nowhere"},
		{"short lifetime", start(imdstest.WithCredentialTimes(time.Minute, 0)), "lifetime"},
		{"unknown instance", func() error { return srv.RebalanceRecommendation("web-9") }, `no instance named "web-9" (the server has default)`},
		{"bad spot action", func() error { return srv.SpotInterruption("", "explode", 0) }, "action"},
		{"negative lead", func() error { return srv.SpotInterruption("", "", -time.Second) }, "must not be negative"},
		{"bad asg state", func() error { return srv.AutoscalingState("", "Gone") }, "state"},
		{"bad error status", func() error { return srv.SetFaults("", imdstest.Faults{ErrorRate: 1, ErrorStatus: 404}) }, "error_status"},
		{"two token faults", func() error { return srv.SetFaults("", imdstest.Faults{TokenRefused: true, TokenTimeout: true}) }, "cannot both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one with %q", err, tt.want)
			}
		})
	}
}

// TestInstanceFields: each field of Instance reaches the metadata tree.
func TestInstanceFields(t *testing.T) {
	srv := imdstest.NewServer(t, imdstest.WithInstance(imdstest.Instance{
		Name: "db-1", InstanceID: "i-0123456789abcdef0", AccountID: "210987654321", Region: "ap-south-1",
		AvailabilityZone: "ap-south-1b", InstanceType: "r7g.large", Role: "db-role", Spot: true,
		Tags: map[string]string{"b": "2", "a": "1"}, UserData: []byte{0, 1, 2, 0xff},
	}))
	tests := []struct{ path, want string }{
		{"/latest/meta-data/instance-id", "i-0123456789abcdef0"},
		{"/latest/meta-data/placement/region", "ap-south-1"},
		{"/latest/meta-data/placement/availability-zone", "ap-south-1b"},
		{"/latest/meta-data/instance-type", "r7g.large"},
		{"/latest/meta-data/instance-life-cycle", "spot"},
		{"/latest/meta-data/iam/security-credentials/", "db-role"},
		{"/latest/meta-data/iam/info", "arn:aws:iam::210987654321:instance-profile/"},
		{"/latest/meta-data/tags/instance", "a\nb"},
		{"/latest/meta-data/tags/instance/b", "2"},
		{"/latest/user-data", "\x00\x01\x02\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if code, body := fetch(t, nil, srv.URL(), tt.path); code != 200 || !strings.Contains(body, tt.want) {
				t.Errorf("%d %q, want 200 with %q", code, body, tt.want)
			}
		})
	}
}
