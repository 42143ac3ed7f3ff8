package imds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// faultFixture serves an instance with faults and a log the test reads.
// It serves on a real listener, where held requests must end when the
// client goes away.
func faultFixture(t *testing.T, f ec2.Faults, random func() float64) (*fixture, *lockedBuffer) {
	t.Helper()
	inst := defaultInstance()
	inst.Faults = f
	fx := prepareFixture(t, inst)
	log := &lockedBuffer{}
	fx.srv.Logger = slog.New(slog.NewTextHandler(log, nil))
	fx.srv.Random = random
	fx.srv.Listen = []string{"127.0.0.1:0"}
	if err := fx.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fx.srv.Close(ctx)
	})
	fx.url = fx.srv.URL()
	return fx, log
}

func TestFaultErrorsAndThrottle(t *testing.T) {
	// Alternating random numbers: every other request draws below 0.5.
	n := 0
	alt := func() float64 { n++; return float64(n%2) * 0.9 }
	f, log := faultFixture(t, ec2.Faults{ErrorRate: 0.5, ErrorStatus: 500}, alt)
	var codes []int
	for i := 0; i < 4; i++ {
		resp, _ := f.do(t, "GET", "/latest/meta-data/instance-id")
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[200 500 200 500]" {
		t.Errorf("status codes %v, want 200 and 500 alternating", codes)
	}
	if !strings.Contains(log.String(), "fault=error") {
		t.Errorf("the access log does not name the fault:\n%s", log.String())
	}

	f, _ = faultFixture(t, ec2.Faults{RateLimit: 0.001, Burst: 2}, nil)
	var got []int
	for i := 0; i < 3; i++ {
		resp, _ := f.do(t, "GET", "/latest/meta-data/instance-id")
		got = append(got, resp.StatusCode)
	}
	if got[0] != 200 || got[1] != 200 || got[2] != 429 {
		t.Errorf("with a burst of 2: %v, want 200 200 429", got)
	}
}

func TestFaultToken(t *testing.T) {
	f, _ := faultFixture(t, ec2.Faults{Token: ec2.TokenRefuse}, nil)
	resp, _ := f.do(t, "PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "60")
	if resp.StatusCode != 403 {
		t.Errorf("token PUT with the refuse fault: %d, want 403", resp.StatusCode)
	}
	if resp, _ := f.do(t, "GET", "/latest/meta-data/instance-id"); resp.StatusCode != 200 {
		t.Errorf("IMDSv1 GET with the refuse fault: %d, want 200", resp.StatusCode)
	}

	f, _ = faultFixture(t, ec2.Faults{Token: ec2.TokenTimeout}, nil)
	client := &http.Client{Timeout: 300 * time.Millisecond}
	req, _ := http.NewRequest("PUT", f.url+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	if _, err := client.Do(req); err == nil {
		t.Errorf("token PUT with the timeout fault answered")
	}
}

func TestFaultDropAndLatency(t *testing.T) {
	f, _ := faultFixture(t, ec2.Faults{DropRate: 1}, nil)
	if _, err := http.Get(f.url + "/latest/meta-data/instance-id"); err == nil {
		t.Errorf("a request with the drop fault got a response")
	}
	f, log := faultFixture(t, ec2.Faults{Latency: 150 * time.Millisecond}, nil)
	start := time.Now()
	if resp, _ := f.do(t, "GET", "/latest/meta-data/instance-id"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("response after %v, want at least the 150ms latency fault", took)
	}
	if !strings.Contains(log.String(), "fault=latency") {
		t.Errorf("the access log does not name the fault")
	}
}

func TestFaultExpiredCredentials(t *testing.T) {
	f, _ := faultFixture(t, ec2.Faults{ExpiredCredentials: true}, nil)
	_, body := f.do(t, "GET", "/latest/meta-data/iam/security-credentials/"+ec2.DefaultRoleName)
	var d struct{ Code, Expiration string }
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	exp, _ := time.Parse(time.RFC3339, d.Expiration)
	if d.Code != "Success" || !exp.Before(f.clock.Now()) {
		t.Errorf("credentials %+v, want Success with an Expiration in the past (now %v)", d, f.clock.Now())
	}
}
