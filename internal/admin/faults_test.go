package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/ec2"
)

// fakeFaults is an ec2.FaultService that keeps the faults it is given; it
// knows the instance "web-1" and every instance ("").
type fakeFaults struct {
	mu     sync.Mutex
	faults map[string]ec2.Faults
	sets   int
}

func (f *fakeFaults) SetFaults(_ context.Context, name string, faults ec2.Faults) error {
	if name != "" && name != "web-1" {
		return ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults == nil {
		f.faults = map[string]ec2.Faults{}
	}
	f.faults[name] = faults
	f.sets++
	return nil
}

func (f *fakeFaults) GetFaults(_ context.Context, name string) (ec2.Faults, error) {
	if name != "" && name != "web-1" {
		return ec2.Faults{}, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.faults[name], nil
}

func (f *fakeFaults) get(name string) ec2.Faults {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.faults[name]
}

func (f *fakeFaults) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sets
}

// allFaults sets every fault.
var allFaults = ec2.Faults{Latency: 200 * time.Millisecond, LatencyMax: 1500 * time.Millisecond, ErrorRate: 0.2, ErrorStatus: 500,
	RateLimit: 10.5, Burst: 5, Token: ec2.TokenRefuse, ExpiredCredentials: true, DropRate: 0.1}

func openFaultServer(t *testing.T, fs ec2.FaultService) *admin.Server {
	t.Helper()
	return admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, func(s *admin.Server) {
		s.Faults = fs
	})
}

func TestClient_Faults(t *testing.T) {
	ctx := context.Background()
	fake := &fakeFaults{}
	srv := openFaultServer(t, fake)
	c := admin.NewClient(srv.SocketPath)

	for _, name := range []string{"web-1", ""} {
		for _, f := range []ec2.Faults{
			allFaults,
			{Latency: time.Second},
			{ErrorRate: 1},
			{Token: ec2.TokenTimeout},
			{ExpiredCredentials: true},
			{},
		} {
			if err := c.SetFaults(ctx, name, f); err != nil {
				t.Fatalf("SetFaults(%q, %+v): %v", name, f, err)
			}
			if got := fake.get(name); got != f {
				t.Errorf("SetFaults(%q): the service got %+v, want %+v", name, got, f)
			}
			if got, err := c.GetFaults(ctx, name); err != nil || got != f {
				t.Errorf("GetFaults(%q) = %+v, %v; want %+v", name, got, err, f)
			}
		}
	}

	// Clearing one instance leaves the faults of every instance.
	if err := c.SetFaults(ctx, "", allFaults); err != nil {
		t.Fatal(err)
	}
	if err := c.SetFaults(ctx, "web-1", allFaults); err != nil {
		t.Fatal(err)
	}
	if err := c.ClearFaults(ctx, "web-1"); err != nil || fake.get("web-1").Active() || fake.get("") != allFaults {
		t.Errorf("ClearFaults(web-1) = %v; faults %+v, every instance %+v", err, fake.get("web-1"), fake.get(""))
	}
	if err := c.ClearFaults(ctx, ""); err != nil || fake.get("").Active() {
		t.Errorf("ClearFaults(\"\") = %v; faults %+v", err, fake.get(""))
	}

	if err := c.SetFaults(ctx, "nope", allFaults); ec2.ErrorCode(err) != ec2.ENOTFOUND || ec2.ErrorMessage(err) != `no instance named "nope"` {
		t.Errorf("SetFaults(nope) = %v, want ENOTFOUND", err)
	}
	if _, err := c.GetFaults(ctx, "nope"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("GetFaults(nope) = %v, want ENOTFOUND", err)
	}
	if err := c.ClearFaults(ctx, "nope"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("ClearFaults(nope) = %v, want ENOTFOUND", err)
	}
	n := fake.count()
	if err := c.SetFaults(ctx, "web-1", ec2.Faults{ErrorRate: 0.5, ErrorStatus: 404}); ec2.ErrorCode(err) != ec2.EINVALID ||
		!strings.Contains(ec2.ErrorMessage(err), "error_status must be 500 or 503, got 404") {
		t.Errorf("SetFaults(status 404) = %v, want EINVALID naming error_status", err)
	}
	if fake.count() != n {
		t.Errorf("invalid faults reached the service")
	}
}

func TestServer_FaultBodies(t *testing.T) {
	fake := &fakeFaults{}
	srv := openFaultServer(t, fake)
	hc := unixHTTP(srv.SocketPath)
	jsonType := map[string]string{"Content-Type": "application/json"}

	for _, url := range []string{"http://imds/v1/instances/web-1/faults", "http://imds/v1/faults"} {
		name := "web-1"
		if url == "http://imds/v1/faults" {
			name = ""
		}
		// The document, both ways.
		doc := `{"latency":"200ms","latency_max":"1.5s","error_rate":0.2,"error_status":500,"rate_limit":10.5,"burst":5,` +
			`"token":"refuse","expired_credentials":true,"drop_rate":0.1}` + "\n"
		r := do(t, hc, http.MethodPut, url, jsonType, doc)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" || r.body != doc {
			t.Errorf("PUT %s: %d %s, want 200 %s", url, r.status, r.body, doc)
		}
		if got := fake.get(name); got != allFaults {
			t.Errorf("PUT %s: the service got %+v, want %+v", url, got, allFaults)
		}
		if r := do(t, hc, http.MethodGet, url, nil, ""); r.status != http.StatusOK || r.body != doc {
			t.Errorf("GET %s: %d %s, want %s", url, r.status, r.body, doc)
		}

		// Durations in another spelling come back in Go's; zero values are
		// left out.
		r = do(t, hc, http.MethodPut, url, nil, `{"latency":"0.25s","error_rate":0,"burst":0,"expired_credentials":false}`)
		if want := `{"latency":"250ms"}` + "\n"; r.status != http.StatusOK || r.body != want {
			t.Errorf("PUT %s: %d %s, want %s", url, r.status, r.body, want)
		}
		if got := fake.get(name); got != (ec2.Faults{Latency: 250 * time.Millisecond}) {
			t.Errorf("PUT %s: the service got %+v", url, got)
		}

		// DELETE leaves no fault.
		if r := do(t, hc, http.MethodDelete, url, nil, ""); r.status != http.StatusNoContent || r.body != "" {
			t.Errorf("DELETE %s: %d %q, want 204 without a body", url, r.status, r.body)
		}
		if got := fake.get(name); got.Active() {
			t.Errorf("DELETE %s: the service has %+v", url, got)
		}
		if r := do(t, hc, http.MethodGet, url, nil, ""); r.status != http.StatusOK || r.body != "{}\n" {
			t.Errorf("GET %s without faults: %d %s, want {}", url, r.status, r.body)
		}
		if r := do(t, hc, http.MethodPut, url, jsonType, `{}`); r.status != http.StatusOK || r.body != "{}\n" {
			t.Errorf("PUT %s {}: %d %s, want {}", url, r.status, r.body)
		}

		if r := do(t, hc, http.MethodPost, url, nil, "{}"); r.status != http.StatusMethodNotAllowed ||
			r.header.Get("Allow") != "DELETE, GET, HEAD, PUT" || !strings.Contains(r.body, `"code":"method"`) {
			t.Errorf("POST %s: %d %v %s", url, r.status, r.header, r.body)
		}
	}

	url := "http://imds/v1/instances/web-1/faults"
	n := fake.count()
	for _, tt := range []struct {
		name, ctype, body string
		want              string
	}{
		{"unknown field", "application/json", `{"latency":"1s","jitter":"1s"}`, `unknown field "jitter"; the fields are latency, latency_max, error_rate,`},
		{"bad duration", "", `{"latency":"200"}`, `latency: must be a duration like 200ms or 1s, got "200"`},
		{"bad max duration", "", `{"latency_max":"soon"}`, `latency_max: must be a duration like 200ms or 1s, got "soon"`},
		{"duration as number", "", `{"latency":200}`, `latency: must be a duration string like 200ms, got a JSON number`},
		{"rate as string", "", `{"error_rate":"0.2"}`, `error_rate: must be a number between 0 and 1, got a JSON string`},
		{"fractional status", "", `{"error_status":503.5}`, `error_status: must be the integer 500 or 503, got a JSON number`},
		{"bool as string", "", `{"expired_credentials":"yes"}`, `expired_credentials: must be true or false, got a JSON string`},
		{"negative latency", "", `{"latency":"-1s"}`, "latency must be between 0 and 1m"},
		{"long latency", "", `{"latency":"2m"}`, "latency must be between 0 and 1m"},
		{"max below latency", "", `{"latency":"1s","latency_max":"500ms"}`, "latency_max must not be below latency"},
		{"error rate above 1", "", `{"error_rate":1.5}`, "error_rate and drop_rate are shares between 0 and 1"},
		{"negative drop rate", "", `{"drop_rate":-0.1}`, "error_rate and drop_rate are shares between 0 and 1"},
		{"bad status", "", `{"error_rate":0.1,"error_status":502}`, "error_status must be 500 or 503, got 502"},
		{"negative burst", "", `{"rate_limit":1,"burst":-1}`, "rate_limit and burst must not be negative"},
		{"bad token", "", `{"token":"slow"}`, `token must be refuse or timeout, got "slow"`},
		{"not an object", "", `["latency"]`, `the body must be a JSON object`},
		{"not JSON", "", `latency=1s`, `the body is not valid JSON`},
		{"truncated", "", `{"latency":"1s"`, `the body is not valid JSON`},
		{"two objects", "", `{}{}`, `the body must hold one JSON object and nothing after it`},
		{"empty", "", ``, `the body must be a JSON object like {"latency": "200ms"}, or {} for no fault`},
		{"form", "application/x-www-form-urlencoded", `{}`, `Content-Type must be application/json`},
		{"too big", "", `{"token":"` + strings.Repeat("x", admin.DefaultMaxBody) + `"}`, "request body larger than 1048576 bytes"},
	} {
		h := map[string]string{}
		if tt.ctype != "" {
			h["Content-Type"] = tt.ctype
		}
		r := do(t, hc, http.MethodPut, url, h, tt.body)
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(r.body), &body); err != nil || r.status != http.StatusBadRequest ||
			body.Error.Code != ec2.EINVALID || !strings.Contains(body.Error.Message, tt.want) {
			t.Errorf("%s: %d %s, want 400 invalid with %q", tt.name, r.status, r.body, tt.want)
		}
	}
	if fake.count() != n {
		t.Errorf("invalid requests reached the service")
	}

	for _, method := range []string{http.MethodPut, http.MethodGet, http.MethodDelete} {
		if r := do(t, hc, method, "http://imds/v1/instances/nope/faults", nil, `{}`); r.status != http.StatusNotFound ||
			!strings.Contains(r.body, `"code":"not_found"`) || !strings.Contains(r.body, `no instance named \"nope\"`) {
			t.Errorf("%s faults of an unknown instance: %d %s", method, r.status, r.body)
		}
	}
}

func TestServer_FaultsUnsupported(t *testing.T) {
	ctx := context.Background()
	srv := openFaultServer(t, nil)
	c := admin.NewClient(srv.SocketPath)
	if err := c.SetFaults(ctx, "web-1", allFaults); ec2.ErrorCode(err) != ec2.EUNSUPPORTED ||
		ec2.ErrorMessage(err) != "this server cannot inject faults" {
		t.Errorf("SetFaults without Faults = %v, want EUNSUPPORTED", err)
	}
	if _, err := c.GetFaults(ctx, ""); ec2.ErrorCode(err) != ec2.EUNSUPPORTED {
		t.Errorf("GetFaults without Faults = %v, want EUNSUPPORTED", err)
	}
	hc := unixHTTP(srv.SocketPath)
	for _, method := range []string{http.MethodPut, http.MethodGet, http.MethodDelete} {
		for _, url := range []string{"http://imds/v1/instances/web-1/faults", "http://imds/v1/faults"} {
			r := do(t, hc, method, url, nil, `{}`)
			if r.status != http.StatusNotImplemented || !strings.Contains(r.body, `"code":"not_supported"`) {
				t.Errorf("%s %s without Faults: %d %s", method, url, r.status, r.body)
			}
		}
	}
}
