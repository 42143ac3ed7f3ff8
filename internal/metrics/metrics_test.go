package metrics

import (
	"bytes"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/imdsdev/imds/internal/ec2"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// ourFamilies are the metrics this package defines whose values the
// tests fix (build info and the Go runtime's vary by toolchain).
var ourFamilies = []string{
	"imds_metadata_requests_total", "imds_tokens_issued_total", "imds_tokens_refused_total",
	"imds_unknown_requests_total", "imds_faulted_requests_total", "imds_instances",
	"imds_metrics_instance_series", "imds_metrics_instance_series_limit", "imds_credential_refreshes_total",
	"imds_credentials_age_seconds", "imds_credentials_remaining_seconds", "imds_credentials_valid",
	"imds_dnsmasq_restarts_total", "imds_store_up",
}

// testOptions has every scrape-time source answer fixed values.
func testOptions(served map[string]bool) Options {
	// fixed instant: an injected clock that only ages the test's own credentials.
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	return Options{
		Now:       func() time.Time { return now },
		Instances: func() map[string]int { return map[string]int{ec2.OriginConfig: 2, ec2.OriginAPI: 1} },
		Served: func(name string) bool {
			mu.Lock()
			defer mu.Unlock()
			return served == nil || served[name]
		},
		Roles: func() []ec2.RoleStatus {
			return []ec2.RoleStatus{
				{Role: "web", Kind: "fake", Source: "fake", Valid: true, LastUpdated: now.Add(-10 * time.Minute), Expiration: now.Add(5*time.Hour + 50*time.Minute), Sets: 2, Refreshes: 3},
				{Role: "deploy", Kind: "static", Source: "static keys AKIA…WXYZ", Valid: false, LastUpdated: now.Add(-7 * time.Hour), Expiration: now.Add(-time.Hour), Refreshes: 1, Failures: 4, LastError: "boom"},
				{Role: "never", Kind: "process", Source: "credential_process helper (1 arg)", Failures: 2},
			}
		},
		DNSMasq: func() (int64, int64) { return 1, 3 },
		Store:   func() (string, bool) { return "etcd", false },
	}
}

func TestExposition(t *testing.T) {
	m := New(testOptions(nil))
	for _, rec := range []ec2.RequestRecord{
		{Instance: "web-1", API: "v1", Category: ec2.CategoryListing, Method: "GET", Status: 200, Latency: 80 * time.Microsecond},
		{Instance: "web-1", API: "v1", Category: ec2.CategoryListing, Method: "GET", Status: 200, Latency: 90 * time.Microsecond},
		{Instance: "web-1", API: "v2", Category: ec2.CategoryToken, Method: "PUT", Status: 200, Latency: time.Millisecond},
		{Instance: "web-1", API: "v2", Category: ec2.CategoryCredentials, Method: "GET", Status: 200, Latency: 2 * time.Millisecond},
		{Instance: "web-1", API: "v2", Category: ec2.CategoryCredentials, Method: "GET", Status: 401}, // a bad token
		{Instance: "web-2", API: "v1", Category: ec2.CategoryUserData, Method: "GET", Status: 401},    // IMDSv2 required
		{Instance: "web-2", API: "v2", Category: ec2.CategoryToken, Method: "PUT", Status: 403},       // X-Forwarded-For
		{Instance: "web-2", API: "v2", Category: ec2.CategoryToken, Method: "PUT", Status: 0},         // beyond the hop limit
		{Instance: "web-2", API: "v1", Category: ec2.CategoryIdentity, Method: "GET", Status: 503, Fault: "error"},
		{Instance: "web-2", API: "v1", Category: ec2.CategoryOther, Method: "GET", Status: 418},                       // not one of ours: "other"
		{Instance: "", API: "v1", Category: ec2.CategoryListing, Method: "GET", Status: 404},                          // unknown requester
		{Instance: "web-1", API: "v1", Category: ec2.CategoryOther, Method: "GET", Status: 404, Latency: time.Second}, // no such path
	} {
		m.Record(rec)
	}
	got, err := testutil.GatherAndFormat(m.Registry(), expfmt.TypeTextPlain, ourFamilies...)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "exposition.golden", got)

	// The latency histogram: 12 observations, 1 of them at one second.
	n, err := testutil.GatherAndCount(m.Registry(), "imds_metadata_request_duration_seconds")
	if err != nil || n == 0 {
		t.Fatalf("duration series: %d, %v", n, err)
	}
}

func TestBuildInfo(t *testing.T) {
	opt := testOptions(nil)
	opt.Version, opt.Commit = "v1.2.3", "0123abc"
	m := New(opt)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	families := parse(t, rec.Body.Bytes())
	bi := families["imds_build_info"]
	if bi == nil || len(bi.Metric) != 1 {
		t.Fatalf("imds_build_info: %v", bi)
	}
	labels := map[string]string{}
	for _, l := range bi.Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != "v1.2.3" || labels["commit"] != "0123abc" || !strings.HasPrefix(labels["goversion"], "go") {
		t.Errorf("imds_build_info labels = %v", labels)
	}
	for _, want := range []string{"go_goroutines", "process_open_fds"} {
		if _, ok := families[want]; !ok {
			t.Errorf("%s missing from the exposition", want)
		}
	}
}

// TestLint runs the checks of promtool check metrics (promlint) on a
// populated exposition: names, units, help texts, counter suffixes.
func TestLint(t *testing.T) {
	m := New(testOptions(nil))
	m.Record(ec2.RequestRecord{Instance: "a", API: "v2", Category: ec2.CategoryCredentials, Status: 200})
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "imds_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

// TestInstanceSeriesBound: past the cap, requests count under _other;
// an instance no longer served loses its series at the next scrape and
// frees its place.
func TestInstanceSeriesBound(t *testing.T) {
	served := map[string]bool{"a": true, "b": true, "c": true, "d": true}
	opt := testOptions(served)
	opt.MaxInstances = 2
	var mu sync.Mutex
	opt.Served = func(name string) bool { mu.Lock(); defer mu.Unlock(); return served[name] }
	m := New(opt)
	rec := func(name string) {
		m.Record(ec2.RequestRecord{Instance: name, API: "v1", Category: ec2.CategoryOther, Status: 200})
	}
	rec("a")
	rec("b")
	rec("c")
	rec("c")
	if got := requests(t, m); got["a"] != 1 || got["b"] != 1 || got[OtherInstance] != 2 || len(got) != 3 {
		t.Fatalf("after a, b, c, c with a cap of 2: %v", got)
	}
	mu.Lock()
	delete(served, "a")
	mu.Unlock()
	if got := requests(t, m); got["a"] != 0 || len(got) != 2 {
		t.Fatalf("after a stopped being served: %v", got)
	}
	rec("d")
	if got := requests(t, m); got["d"] != 1 || got["b"] != 1 || got[OtherInstance] != 2 {
		t.Fatalf("d should have taken a's place: %v", got)
	}
}

// requests sums imds_metadata_requests_total by instance_name.
func requests(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]float64{}
	if f := parse(t, rec.Body.Bytes())["imds_metadata_requests_total"]; f != nil {
		for _, mt := range f.Metric {
			for _, l := range mt.Label {
				if l.GetName() == "instance_name" {
					out[l.GetValue()] += mt.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, b)
	}
	return fams
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func BenchmarkRecord(b *testing.B) {
	m := New(testOptions(nil))
	rec := ec2.RequestRecord{Instance: "web-1", API: "v2", Category: ec2.CategoryCredentials, Method: "GET", Status: 200, Latency: 50 * time.Microsecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Record(rec)
		}
	})
}
