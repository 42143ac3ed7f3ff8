package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const metricsConfig = `
roles:
  web-role: {}
instance:
  name: web-1
  role: web-role
metrics:
  listen: 127.0.0.1:0
`

// TestMetricsCountRealClients scrapes /metrics (on metrics.listen and on
// the admin socket) while the AWS SDK reads metadata and credentials, and
// checks that each counter moved by what the clients did.
func TestMetricsCountRealClients(t *testing.T) {
	srv := startServer(t, metricsConfig)
	endpoint := "http://" + srv.d.MetricsEndpoint.Addr().String() + "/metrics"
	before := scrape(t, http.DefaultClient, endpoint)

	// The Go SDK: a token PUT, then GET instance-id with the token.
	client := sdkimds.New(sdkimds.Options{Endpoint: srv.URL})
	ctx := context.Background()
	if _, err := client.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: "instance-id"}); err != nil {
		t.Fatal(err)
	}
	// ec2rolecreds: the role listing, then the role's credentials, with the same token.
	if _, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }).Retrieve(ctx); err != nil {
		t.Fatal(err)
	}
	// A stale token (401, invalid), a user-data miss (404, v1), a browser (403).
	do(t, "GET", srv.URL+"/latest/meta-data/", map[string]string{"X-aws-ec2-metadata-token": "AQAEAnotavalidtoken=="}, 401)
	do(t, "GET", srv.URL+"/latest/user-data", nil, 404)
	do(t, "GET", srv.URL+"/latest/meta-data/instance-id", map[string]string{"Origin": "http://evil.example"}, 403)

	after := scrape(t, http.DefaultClient, endpoint)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		delta  float64
	}{
		{"imds_tokens_issued_total", nil, 1},
		{"imds_tokens_refused_total", map[string]string{"reason": "invalid"}, 1},
		{"imds_metadata_requests_total", map[string]string{"instance_name": "web-1", "api": "v2", "category": "token", "code": "200"}, 1},
		{"imds_metadata_requests_total", map[string]string{"instance_name": "web-1", "api": "v2", "category": "other", "code": "200"}, 1},
		{"imds_metadata_requests_total", map[string]string{"instance_name": "web-1", "api": "v2", "category": "listing", "code": "200"}, 1},
		{"imds_metadata_requests_total", map[string]string{"instance_name": "web-1", "api": "v2", "category": "credentials", "code": "200"}, 1},
		{"imds_metadata_requests_total", map[string]string{"instance_name": "web-1", "api": "v2", "category": "listing", "code": "401"}, 1},
		{"imds_metadata_requests_total", map[string]string{"instance_name": "web-1", "api": "v1", "category": "user-data", "code": "404"}, 1},
		{"imds_metadata_requests_total", map[string]string{"api": "v1", "category": "other", "code": "403"}, 1},
		{"imds_metadata_request_duration_seconds", map[string]string{"api": "v2", "category": "credentials"}, 1},
	} {
		if got := value(after, tc.name, tc.labels) - value(before, tc.name, tc.labels); got != tc.delta {
			t.Errorf("%s%v moved by %v, want %v", tc.name, tc.labels, got, tc.delta)
		}
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"imds_instances", map[string]string{"origin": "config"}, 1},
		{"imds_credentials_valid", map[string]string{"role": "web-role"}, 1},
		{"imds_credential_refreshes_total", map[string]string{"role": "web-role", "source": "fake", "result": "success"}, 1},
		{"imds_build_info", nil, 1},
	} {
		if got := value(after, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if left := value(after, "imds_credentials_remaining_seconds", map[string]string{"role": "web-role"}); left < 3600 {
		t.Errorf("imds_credentials_remaining_seconds = %v, want hours", left)
	}

	// The admin socket serves the same exposition, and only to GET.
	sock := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", srv.d.Admin.SocketPath)
	}}}
	viaSocket := scrape(t, sock, "http://imds/metrics")
	if value(viaSocket, "imds_tokens_issued_total", nil) != value(after, "imds_tokens_issued_total", nil) {
		t.Error("the admin socket and metrics.listen disagree on imds_tokens_issued_total")
	}
	resp, err := sock.Post("http://imds/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d, want 405", resp.StatusCode)
	}

	// Secrets never reach the exposition.
	raw := fetch(t, http.DefaultClient, endpoint)
	creds, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }).Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken} {
		if strings.Contains(string(raw), secret) {
			t.Error("the exposition holds a credential")
		}
	}

	// promtool, where Debian's prometheus package is installed.
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(raw)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed: skipped promtool check metrics")
	}
}

func do(t *testing.T, method, url string, headers map[string]string, want int) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d", method, url, resp.StatusCode, want)
	}
}

func fetch(t *testing.T, c *http.Client, url string) []byte {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, b)
	}
	return b
}

// scrape reads and parses an exposition in the text format.
func scrape(t *testing.T, c *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(fetch(t, c, url)))
	if err != nil {
		t.Fatalf("the exposition of %s does not parse: %v", url, err)
	}
	return fams
}

// value sums the series of a family whose labels include want: counters,
// gauges, and the sample count of histograms.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	sum := 0.0
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}
