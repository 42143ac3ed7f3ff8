package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/chromedp/chromedp"

	"github.com/imdsdev/imds/internal/ec2"
)

// dashboardConfig has the instance the tests' own requests come from
// (127.0.0.1) and one elsewhere.
const dashboardConfig = `instances:
  - name: web-1
    source_addresses: [127.0.0.1]
    tags: {env: dev}
  - name: db-1
    source_addresses: [10.0.0.9]
    imdsv2: required
`

// startDashboard runs `imds dashboard` against srv as a user would and
// returns the login URL it printed.
func startDashboard(t *testing.T, srv *testServer) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"dashboard", "--admin-socket", srv.d.Admin.SocketPath}, out, errOut) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("imds dashboard exited %d: %s", code, errOut.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("imds dashboard did not stop within 10s of its interrupt")
		}
	})
	re := regexp.MustCompile(`http://127\.0\.0\.1:\d+/login\?token=[A-Za-z0-9_-]+`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if u := re.FindString(out.String()); u != "" {
			return u
		}
		select {
		case code := <-done:
			t.Fatalf("imds dashboard exited %d: %s%s", code, out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("imds dashboard printed no login URL within 10s: %q", out.String())
	return ""
}

// artifactDir is where the browser tests leave their screenshots:
// $IMDS_ARTIFACTS if set (kept), else a temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("IMDS_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromium returns the path of a Chromium, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH (Debian: apt-get install chromium; scripts/deps.sh installs it)")
	return ""
}

// browser starts a headless Chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // tests run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1360, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	// The first run starts the browser, which lives as long as its context:
	// no timeout on that one.
	if err := chromedp.Do(bctx); err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	// A generous bound for the rest of the test on a loaded machine.
	ctx, cancelTimeout := context.WithTimeout(bctx, 120*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100 is PNG, less is JPEG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, "dashboard-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// waitText waits until the element sel holds want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`(() => { const e = document.querySelector(`+jsString(sel)+`); return !!e && e.textContent.includes(`+jsString(want)+`); })()`,
		chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		screenshot(t, context.WithoutCancel(ctx), artifactDir(t), "failure")
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { const e = document.querySelector(`+jsString(sel)+`); return e ? e.textContent : "(no element)"; })()`))
		t.Fatalf("%s does not show %q (%v); it shows %q", sel, want, err, got)
	}
}

// clickLink clicks the link of in whose text is text.
func clickLink(in, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll(` + jsString(in+" a") + `)].find(a => a.textContent === ` + jsString(text) + `).click()`)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestDashboardInBrowser(t *testing.T) {
	srv := startServer(t, dashboardConfig)
	login := startDashboard(t, srv)
	base := login[:strings.Index(login, "login?")]
	art := artifactDir(t)
	ctx := browser(t)
	sdk := sdkimds.New(sdkimds.Options{Endpoint: srv.URL})

	// web-1 has asked for metadata with IMDSv2 (the SDK) and with IMDSv1.
	poll(t, sdk, "instance-id")
	if resp, err := http.Get(srv.URL + "/latest/meta-data/ami-id"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("IMDSv1 GET ami-id: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Log in with the printed URL: the token leaves the address bar.
	if err := chromedp.Do(ctx, chromedp.Navigate(login), chromedp.WaitVisible(chromedp.CSS(`#instances-body tr`))); err != nil {
		t.Fatalf("log in: %v", err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if loc != base {
		t.Errorf("after login the browser is at %s, want %s", loc, base)
	}
	waitText(t, ctx, "#instances-body", "web-1")
	waitText(t, ctx, "#instances-body", "db-1")
	waitText(t, ctx, `tr[data-name="db-1"]`, "10.0.0.9")
	waitText(t, ctx, `tr[data-name="db-1"]`, "required")
	// The filter box.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#filter"), "10.0.0")); err != nil {
		t.Fatal(err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll("#instances-body tr")].filter(r => !r.hidden).length`))
	if err != nil {
		t.Fatal(err)
	}
	if shown != 1 {
		t.Errorf("filter 10.0.0 shows %d instances, want 1 (db-1)", shown)
	}
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`(() => { const f = document.getElementById("filter"); f.value = ""; f.dispatchEvent(new Event("input")); })()`)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, `tr[data-name="web-1"]`, "uses IMDSv1 (1 of 3)")
	waitText(t, ctx, `tr[data-name="db-1"]`, "no requests yet")
	screenshot(t, ctx, art, "instances")

	// Open one.
	if err := chromedp.Do(ctx, clickLink("#instances-body", "web-1")); err != nil {
		t.Fatalf("open web-1: %v", err)
	}
	waitText(t, ctx, "#actions", "Spot interruption")
	waitText(t, ctx, "#tree-body", "instance-id")
	waitText(t, ctx, "#live", "live")

	// Spot interruption: the Go SDK sees spot/instance-action.
	if got := poll(t, sdk, "spot/instance-action"); got != "" {
		t.Fatalf("spot/instance-action before the button = %q, want 404", got)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#spot`))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#action-msg", "Spot interruption issued.")
	waitText(t, ctx, "#events", "spot terminate")
	var action struct{ Action, Time string }
	if got := poll(t, sdk, "spot/instance-action"); json.Unmarshal([]byte(got), &action) != nil || action.Action != "terminate" {
		t.Fatalf("after the spot button the SDK reads spot/instance-action = %q, want a terminate notice", got)
	}
	// The live requests show the SDK's read.
	waitText(t, ctx, "#requests-table", "/latest/meta-data/spot/instance-action")
	// Browse the tree to the notice, as the instance sees it.
	if err := chromedp.Do(ctx, clickLink("#tree-body", "spot/")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#tree-body", "instance-action")
	if err := chromedp.Do(ctx, clickLink("#tree-body", "instance-action")); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#tree-value", `"terminate"`)
	screenshot(t, ctx, art, "instance-spot")

	// A latency fault, seen in the SDK client's timing.
	const latency = 400 * time.Millisecond
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#fault-latency"), latency.String()), chromedp.Click(chromedp.CSS("#set-faults"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#action-msg", "Faults set.")
	waitText(t, ctx, "#events", "latency=400ms")
	start := time.Now()
	poll(t, sdk, "instance-id")
	// The SDK makes two requests (token, then the path), each delayed: a
	// lower bound only, which a loaded machine cannot break.
	if took := time.Since(start); took < latency {
		t.Errorf("with a %v latency fault the SDK read instance-id in %v, want at least %v", latency, took, latency)
	} else {
		t.Logf("latency fault %v: the SDK read instance-id in %v", latency, took)
	}
	waitText(t, ctx, "#requests-table", "latency")
	screenshot(t, ctx, art, "instance-fault")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#clear-faults"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#action-msg", "Faults cleared.")

	// Add an instance with a bad IP: the CLI's message on the page.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"#/"), chromedp.WaitVisible(chromedp.CSS(`#add-instance`)),
		chromedp.Click(chromedp.CSS(`#add-instance`)), chromedp.WaitVisible(chromedp.CSS(`#add-form`)),
		chromedp.SendKeys(chromedp.CSS(`#f-name`), "web-2"), chromedp.SendKeys(chromedp.CSS(`#f-ip`), "10.0.0.300"),
		chromedp.Click(chromedp.CSS(`#form-submit`))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#form-msg .error", `--ip: "10.0.0.300" is not an IP address`)
	screenshot(t, ctx, art, "add-error")
	if _, err := srv.d.Registry.GetInstance(context.Background(), "web-2"); err == nil {
		t.Errorf("web-2 was added despite its bad IP")
	}
	// And a good one is added.
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS(`#f-ip`), "10.0.0.30"), chromedp.Click(chromedp.CSS(`#form-submit`))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#instances-body", "web-2")
	if inst, err := srv.d.Registry.GetInstance(context.Background(), "web-2"); err != nil || len(inst.SourceAddrs) != 1 || inst.SourceAddrs[0] != "10.0.0.30" {
		t.Errorf("web-2 after adding it from the page: %v, %v", inst, err)
	}

	// Edit it: only what changed is sent, as imds instance set does.
	if err := chromedp.Do(ctx, clickLink("#instances-body", "web-2"), chromedp.WaitVisible(chromedp.CSS(`#edit`)),
		chromedp.Click(chromedp.CSS(`#edit`)), chromedp.WaitVisible(chromedp.CSS(`#edit-form`)),
		chromedp.SetValue(chromedp.CSS(`#f-tags`), "env=prod, team=web"), chromedp.Click(chromedp.CSS(`#form-submit`))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#details", "team=web")
	if inst, err := srv.d.Registry.GetInstance(context.Background(), "web-2"); err != nil || len(inst.Tags) != 2 || len(inst.SourceAddrs) != 1 {
		t.Errorf("web-2 after the edit: %+v, %v; want two tags and its address kept", inst, err)
	}
	// Remove it (the page asks first; the test says yes).
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`), chromedp.Click(chromedp.CSS(`#remove`))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#instances-count", "of 2 instances")
	if _, err := srv.d.Registry.GetInstance(context.Background(), "web-2"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("web-2 after Remove: %v, want ENOTFOUND", err)
	}
	// A config instance is read-only through the API: the page says so.
	if err := chromedp.Do(ctx, clickLink("#instances-body", "web-1"), chromedp.WaitVisible(chromedp.CSS(`#edit`)),
		chromedp.Click(chromedp.CSS(`#edit`)), chromedp.WaitVisible(chromedp.CSS(`#edit-form`)),
		chromedp.SetValue(chromedp.CSS(`#f-region`), "eu-west-1"), chromedp.Click(chromedp.CSS(`#form-submit`))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#form-msg .error", "web-1")
	msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#form-msg .error")))
	t.Logf("editing a config instance: %s", msg)

	// The server page: roles without secrets.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"#/server"), chromedp.WaitVisible(chromedp.CSS(`#roles`))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#roles", "imds-instance-role")
	waitText(t, ctx, "#listeners", strings.TrimPrefix(srv.URL, "http://"))
	waitText(t, ctx, "#store", "imds.db")
	screenshot(t, ctx, art, "server")
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, "SecretAccessKey") {
		t.Errorf("the server page holds SecretAccessKey")
	}
	if status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status"))); strings.Contains(status, "page error") {
		t.Errorf("the page failed: %s", status)
	}
}

// TestDashboardRefuses checks the dashboard's protections over plain HTTP.
func TestDashboardRefuses(t *testing.T) {
	srv := startServer(t, dashboardConfig)
	login := startDashboard(t, srv)
	base := login[:strings.Index(login, "login?")]
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: noRedirect, Timeout: 10 * time.Second}
	anon := &http.Client{CheckRedirect: noRedirect, Timeout: 10 * time.Second}
	do := func(c *http.Client, method, path string, hdr map[string]string, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}

	// Before login: no session, no API.
	if code, _ := do(anon, "GET", "api/overview", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("GET api/overview without a session = %d, want 401", code)
	}
	if code, body := do(anon, "GET", "", nil, ""); code != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Errorf("GET / without a session = %d, want the login page", code)
	}
	// A wrong token opens nothing.
	if code, _ := do(c, "GET", "login?token=wrong", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("login with a wrong token = %d, want 401", code)
	}
	// The printed URL logs in once, with a strict, HttpOnly cookie.
	req, _ := http.NewRequest("GET", login, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login = %d, want 303", resp.StatusCode)
	}
	sc := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("session cookie %q lacks %s", sc, want)
		}
	}
	if code, _ := do(anon, "GET", strings.TrimPrefix(login, base), nil, ""); code != http.StatusUnauthorized {
		t.Errorf("the login URL a second time = %d, want 401 (single use)", code)
	}
	if code, _ := do(c, "GET", "api/overview", nil, ""); code != http.StatusOK {
		t.Errorf("GET api/overview with the session = %d, want 200", code)
	}
	_, body := do(c, "GET", "api/session", nil, "")
	var sess struct{ CSRF, Header string }
	if err := json.Unmarshal([]byte(body), &sess); err != nil || sess.CSRF == "" {
		t.Fatalf("api/session = %s", body)
	}
	u, _ := url.Parse(base)
	origin := "http://" + u.Host
	event := `{"type":"rebalance"}`
	path := "api/v1/instances/web-1/events"
	for _, tt := range []struct {
		name string
		c    *http.Client
		hdr  map[string]string
		want int
	}{
		{"no session", anon, map[string]string{"Origin": origin, sess.Header: sess.CSRF, "Content-Type": "application/json"}, http.StatusUnauthorized},
		{"no CSRF token", c, map[string]string{"Origin": origin, "Content-Type": "application/json"}, http.StatusForbidden},
		{"wrong CSRF token", c, map[string]string{"Origin": origin, sess.Header: "x" + sess.CSRF, "Content-Type": "application/json"}, http.StatusForbidden},
		{"another origin", c, map[string]string{"Origin": "http://evil.example", sess.Header: sess.CSRF, "Content-Type": "application/json"}, http.StatusForbidden},
		{"no origin", c, map[string]string{sess.Header: sess.CSRF, "Content-Type": "application/json"}, http.StatusForbidden},
		{"cross-site fetch", c, map[string]string{"Origin": origin, "Sec-Fetch-Site": "cross-site", sess.Header: sess.CSRF}, http.StatusForbidden},
		{"rebinding host", c, map[string]string{"Host": "evil.example:" + u.Port(), "Origin": "http://evil.example:" + u.Port(), sess.Header: sess.CSRF}, http.StatusForbidden},
		{"all there", c, map[string]string{"Origin": origin, sess.Header: sess.CSRF, "Content-Type": "application/json"}, http.StatusOK},
	} {
		if code, body := do(tt.c, "POST", path, tt.hdr, event); code != tt.want {
			t.Errorf("%s: POST %s = %d %s, want %d", tt.name, path, code, body, tt.want)
		}
	}
	inst, err := srv.d.Registry.GetInstance(context.Background(), "web-1")
	if err != nil || inst.Events.Rebalance.IsZero() {
		t.Errorf("web-1 has no rebalance recommendation after the one accepted POST: %v", err)
	}
	// A read from another origin is refused too.
	if code, _ := do(c, "GET", "api/overview", map[string]string{"Origin": "http://evil.example"}, ""); code != http.StatusForbidden {
		t.Errorf("GET api/overview from another origin = %d, want 403", code)
	}
	// No secret: the credentials document comes masked, user-data by size.
	_, body = do(c, "GET", "api/v1/instances/web-1/metadata?path="+url.QueryEscape("latest/meta-data/iam/security-credentials/imds-instance-role"), nil, "")
	var doc struct {
		Body   string
		Masked bool
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || !doc.Masked || !strings.Contains(doc.Body, `"SecretAccessKey" : "********"`) || !strings.Contains(doc.Body, `"Token" : "********"`) {
		t.Errorf("the credentials document in the dashboard = %s, want the secrets masked", body)
	}
	creds := poll(t, sdkimds.New(sdkimds.Options{Endpoint: srv.URL}), "iam/security-credentials/imds-instance-role")
	var real struct{ SecretAccessKey, Token string }
	json.Unmarshal([]byte(creds), &real)
	for _, path := range []string{"api/overview", "api/v1/instances/web-1", "api/v1/server", "api/v1/instances/web-1/metadata?path=latest/meta-data/iam/security-credentials/imds-instance-role"} {
		if _, body := do(c, "GET", path, nil, ""); real.SecretAccessKey == "" || strings.Contains(body, real.SecretAccessKey) || strings.Contains(body, real.Token) {
			t.Errorf("GET %s holds the role's secret key or token (or the SDK read none)", path)
		}
	}
	// Logging out ends the session.
	if code, _ := do(c, "POST", "logout", map[string]string{"Origin": origin, sess.Header: sess.CSRF}, ""); code != http.StatusNoContent {
		t.Errorf("logout = %d, want 204", code)
	}
	if code, _ := do(c, "GET", "api/overview", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("GET api/overview after logout = %d, want 401", code)
	}
}
