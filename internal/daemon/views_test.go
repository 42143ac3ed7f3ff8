package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
)

// TestDashboardOnAdminTCP logs in to the dashboard on the admin TCP
// listener with the admin token and uses it, while the admin API itself
// still refuses browsers.
func TestDashboardOnAdminTCP(t *testing.T) {
	cfg := testConfig(t)
	dir := t.TempDir()
	const token = "a-test-admin-token-0123456789"
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ConfigPath = filepath.Join(dir, "imds.yaml")
	conf := "admin:\n  listen: 127.0.0.1:0\n  token_file: " + tokenFile + "\ninstances:\n  - name: web-1\n    source_addresses: [127.0.0.1]\n"
	if err := os.WriteFile(cfg.ConfigPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Close(ctx)
	})
	base := d.Admin.TCPURL()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	do := func(c *http.Client, method, path string, hdr map[string]string, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	anon := &http.Client{Timeout: 10 * time.Second}

	if code, body := do(anon, "GET", "/dashboard/", nil, ""); code != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Errorf("GET /dashboard/ without a session = %d, want the login page", code)
	}
	if code, _ := do(anon, "GET", "/dashboard/api/overview", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("GET /dashboard/api/overview without a session = %d, want 401", code)
	}
	if code, _ := do(anon, "GET", "/dashboard/login?token=not-the-token", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("login with a wrong token = %d, want 401", code)
	}
	// The admin token logs in (the redirect lands on the dashboard).
	if code, body := do(c, "POST", "/dashboard/login", map[string]string{"Origin": base, "Content-Type": "application/x-www-form-urlencoded"}, "token="+token); code != http.StatusOK || !strings.Contains(body, "static/app.js") {
		t.Fatalf("login with the admin token = %d, want the dashboard page: %.200s", code, body)
	}
	code, body := do(c, "GET", "/dashboard/api/overview", nil, "")
	if code != http.StatusOK || !strings.Contains(body, `"name":"web-1"`) {
		t.Errorf("GET /dashboard/api/overview = %d %.300s, want web-1", code, body)
	}
	_, body = do(c, "GET", "/dashboard/api/session", nil, "")
	var sess struct{ CSRF, Header string }
	json.Unmarshal([]byte(body), &sess)
	if code, body := do(c, "PUT", "/dashboard/api/v1/instances/web-1/faults", map[string]string{"Origin": base, sess.Header: sess.CSRF}, `{"latency":"10ms"}`); code != http.StatusOK {
		t.Errorf("PUT faults through the dashboard = %d %s", code, body)
	}
	if inst, err := d.Registry.GetInstance(context.Background(), "web-1"); err != nil || inst.Faults.Latency != 10*time.Millisecond {
		t.Errorf("web-1 after the dashboard set a 10ms latency: %+v, %v", inst, err)
	}
	// A live stream of requests does not hold up Close.
	req, _ := http.NewRequest("GET", base+"/dashboard/api/stream?instance=web-1", nil)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /dashboard/api/stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	t.Cleanup(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close with a dashboard stream open: %v", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Close with a dashboard stream open took %v", took)
		}
	})
	if code, _ := do(anon, "GET", "/dashboard", nil, ""); code != http.StatusOK {
		t.Errorf("GET /dashboard = %d, want the page after a redirect", code)
	}

	// The admin API on the same listener: still token only, no browsers.
	if code, _ := do(c, "GET", "/v1/instances", map[string]string{"Origin": base}, ""); code != http.StatusForbidden {
		t.Errorf("GET /v1/instances with Origin (and the dashboard's cookie) = %d, want 403", code)
	}
	if code, _ := do(c, "GET", "/v1/instances", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/instances with the dashboard's cookie but no token = %d, want 401", code)
	}
	if _, err := admin.NewTCPClient(base, token).ListInstances(context.Background()); err != nil {
		t.Errorf("the admin API with the token: %v", err)
	}
}
