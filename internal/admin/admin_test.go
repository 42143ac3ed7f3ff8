package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/ec2"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const testToken = "0123456789abcdef-test-token"

// logBuffer collects the server's log at debug level.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// unixHTTP is a plain HTTP client of the socket, for requests the Client
// would never send.
func unixHTTP(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, method, url string, header map[string]string, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(data)}
}

func configInstance() *ec2.Instance {
	inst := admintest.Instance("cfg", "10.0.0.1")
	inst.Region = "eu-west-1"
	return inst
}

func TestClient_Lifecycle(t *testing.T) {
	ctx := context.Background()
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, nil)
	c := admin.NewClient(srv.SocketPath)

	if err := c.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}

	spec := admintest.Instance("web-1", "10.0.0.5", "fd00::5")
	spec.Tags = []ec2.Tag{{Key: "env", Value: "dev"}}
	spec.UserData = []byte("#cloud-config\nhostname: web-1\n")
	spec.Metadata.HTTPTokens = ec2.TokensRequired
	added, err := c.AddInstance(ctx, spec)
	if err != nil {
		t.Fatalf("AddInstance: %v", err)
	}
	if added.ID == "" || added.Origin != ec2.OriginAPI || added.Metadata.HTTPTokens != ec2.TokensRequired {
		t.Errorf("AddInstance = %+v, want a derived api instance with imdsv2 required", added)
	}

	list, err := c.ListInstances(ctx)
	if err != nil {
		t.Fatalf("ListInstances: %v", err)
	}
	var names []string
	for _, inst := range list {
		names = append(names, inst.Name+"/"+inst.Origin)
	}
	if got, want := strings.Join(names, " "), "cfg/config web-1/api"; got != want {
		t.Errorf("ListInstances names = %q, want %q", got, want)
	}

	got, err := c.GetInstance(ctx, "web-1")
	if err != nil {
		t.Fatalf("GetInstance: %v", err)
	}
	if got.ID != added.ID || string(got.UserData) != string(spec.UserData) || got.AccountID == "" {
		t.Errorf("GetInstance = %+v, want the derived instance %s with its user data", got, added.ID)
	}

	gotSpec, err := c.GetInstanceSpec(ctx, "web-1")
	if err != nil {
		t.Fatalf("GetInstanceSpec: %v", err)
	}
	if gotSpec.ID != "" || gotSpec.AccountID != "" || strings.Join(gotSpec.SourceAddrs, ",") != "10.0.0.5,fd00::5" {
		t.Errorf("GetInstanceSpec = %+v, want the spec without derived values", gotSpec)
	}

	gotSpec.Tags = append(gotSpec.Tags, ec2.Tag{Key: "team", Value: "a"})
	set, err := c.SetInstance(ctx, gotSpec)
	if err != nil {
		t.Fatalf("SetInstance: %v", err)
	}
	if len(set.Tags) != 2 || set.ID != added.ID {
		t.Errorf("SetInstance tags = %v, ID %s; want 2 tags and the same ID %s", set.Tags, set.ID, added.ID)
	}

	if err := c.RemoveInstance(ctx, "web-1"); err != nil {
		t.Fatalf("RemoveInstance: %v", err)
	}
	if _, err := c.GetInstance(ctx, "web-1"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("GetInstance after RemoveInstance: err=%v, want ENOTFOUND", err)
	}
}

func TestClient_Errors(t *testing.T) {
	ctx := context.Background()
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, nil)
	c := admin.NewClient(srv.SocketPath)

	if _, err := c.AddInstance(ctx, admintest.Instance("dup", "10.0.0.1")); ec2.ErrorCode(err) != ec2.ECONFLICT ||
		!strings.Contains(ec2.ErrorMessage(err), `"cfg"`) {
		t.Errorf("AddInstance with a taken address: err=%v, want ECONFLICT naming cfg", err)
	}
	cfg := configInstance()
	cfg.Region = "us-west-2"
	if _, err := c.SetInstance(ctx, cfg); ec2.ErrorCode(err) != ec2.EFORBIDDEN {
		t.Errorf("SetInstance of a config instance: err=%v, want EFORBIDDEN", err)
	}
	if err := c.RemoveInstance(ctx, "cfg"); ec2.ErrorCode(err) != ec2.EFORBIDDEN {
		t.Errorf("RemoveInstance of a config instance: err=%v, want EFORBIDDEN", err)
	}
	if err := c.RemoveInstance(ctx, "nope"); ec2.ErrorCode(err) != ec2.ENOTFOUND || ec2.ErrorMessage(err) != `no instance named "nope"` {
		t.Errorf("RemoveInstance of an unknown name: err=%v, want ENOTFOUND with the server's message", err)
	}
	if _, err := c.GetInstance(ctx, ""); ec2.ErrorCode(err) != ec2.EINVALID {
		t.Errorf("GetInstance(\"\"): err=%v, want EINVALID", err)
	}
	bad := admintest.Instance("bad")
	bad.InstanceType = "huge"
	if _, err := c.AddInstance(ctx, bad); ec2.ErrorCode(err) != ec2.EINVALID || !strings.Contains(ec2.ErrorMessage(err), "instance_type") {
		t.Errorf("AddInstance of an invalid instance: err=%v, want EINVALID naming instance_type", err)
	}
	// Every code comes back as itself, with the server's message.
	for _, code := range []string{ec2.EINVALID, ec2.EUNAUTHORIZED, ec2.EFORBIDDEN, ec2.ENOTFOUND, ec2.EMETHOD,
		ec2.ECONFLICT, ec2.ETHROTTLED, ec2.EUNAVAILABLE, ec2.EUNSUPPORTED} {
		_, err := c.GetInstance(ctx, admintest.FailPrefix+code)
		if ec2.ErrorCode(err) != code || ec2.ErrorMessage(err) != "simulated "+code+" error" {
			t.Errorf("GetInstance(fail-%s): err=%v, want code %s", code, err, code)
		}
	}
	_, err := c.GetInstance(ctx, admintest.FailPrefix+"plain")
	if ec2.ErrorCode(err) != ec2.EINTERNAL || strings.Contains(ec2.ErrorMessage(err), "secret") {
		t.Errorf("GetInstance(fail-plain): err=%v, want EINTERNAL without the server's details", err)
	}
}

func TestClient_AddInstancesDocuments(t *testing.T) {
	ctx := context.Background()
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, nil)
	c := admin.NewClient(srv.SocketPath)

	yamlDoc := `instances:
  - name: y1
    source_addresses: [10.1.0.1]
    tags:
      env: dev
    user_data: |
      #cloud-config
  - name: y2
    imdsv2: required
`
	got, err := c.AddInstancesFile(ctx, "fleet.yaml", []byte(yamlDoc))
	if err != nil {
		t.Fatalf("AddInstancesFile(YAML): %v", err)
	}
	if len(got) != 2 || got[0].Name != "y1" || got[1].Metadata.HTTPTokens != ec2.TokensRequired || got[0].ID == "" {
		t.Fatalf("AddInstancesFile(YAML) = %v, want y1 and y2 derived", got)
	}

	jsonDoc := `[{"name": "j1", "region": "eu-west-1"}]`
	got, err = c.AddInstances(ctx, []byte(jsonDoc))
	if err != nil {
		t.Fatalf("AddInstances(JSON): %v", err)
	}
	if len(got) != 1 || got[0].AvailabilityZone[:len("eu-west-1")] != "eu-west-1" {
		t.Fatalf("AddInstances(JSON) = %v, want j1 in eu-west-1", got)
	}

	// Problems in the document name the file and line.
	_, err = c.AddInstancesFile(ctx, "fleet.yaml", []byte("instances:\n  - name: z1\n    colour: blue\n"))
	if ec2.ErrorCode(err) != ec2.EINVALID || !strings.HasPrefix(ec2.ErrorMessage(err), "fleet.yaml:3: ") {
		t.Errorf("unknown key: err=%v, want EINVALID starting with fleet.yaml:3:", err)
	}
	// The server never reads files for a client.
	_, err = c.AddInstances(ctx, []byte("name: f1\nuser_data_file: /etc/shadow\n"))
	if ec2.ErrorCode(err) != ec2.EINVALID {
		t.Errorf("user_data_file: err=%v, want EINVALID", err)
	}

	// A batch stops at the first failure; what came before stays.
	_, err = c.AddInstances(ctx, []byte("- name: b1\n- name: b2\n  source_addresses: [10.0.0.1]\n- name: b3\n"))
	if ec2.ErrorCode(err) != ec2.ECONFLICT {
		t.Fatalf("batch with a conflict: err=%v, want ECONFLICT", err)
	}
	if msg := ec2.ErrorMessage(err); !strings.Contains(msg, `instance "b2" (2 of 3)`) || !strings.Contains(msg, "kept: b1") {
		t.Errorf("batch message = %q, want it to name b2 and the kept b1", msg)
	}
	if _, err := c.GetInstance(ctx, "b1"); err != nil {
		t.Errorf("b1 should stay added: %v", err)
	}
	if _, err := c.GetInstance(ctx, "b3"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("b3 should not be added: err=%v", err)
	}
}

func TestServer_PutNameMismatch(t *testing.T) {
	srv := admintest.MustOpenServer(t, admintest.NewService(), nil, nil)
	c := admin.NewClient(srv.SocketPath)
	if _, err := c.AddInstance(context.Background(), admintest.Instance("a")); err != nil {
		t.Fatal(err)
	}
	hc := unixHTTP(srv.SocketPath)
	r := do(t, hc, "PUT", "http://imds/v1/instances/a", map[string]string{"Content-Type": "application/yaml"}, "name: b\n")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "cannot be renamed") {
		t.Errorf("PUT with another name = %d %s, want 400 about renaming", r.status, r.body)
	}
	r = do(t, hc, "PUT", "http://imds/v1/instances/a", map[string]string{"Content-Type": "application/json"}, `{"name":"a","imdsv2":"required"}`)
	if r.status != http.StatusOK || !strings.Contains(r.body, `"imdsv2":"required"`) {
		t.Errorf("PUT = %d %s, want 200 with the changed instance", r.status, r.body)
	}
}

// TestServer_ErrorBodies checks the status and body of every error the API
// renders against testdata/errors.golden.
func TestServer_ErrorBodies(t *testing.T) {
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, func(s *admin.Server) {
		s.TCPAddr, s.Token, s.MaxBody = "127.0.0.1:0", testToken, 200
	})
	uc, tc := unixHTTP(srv.SocketPath), http.DefaultClient
	tcp := srv.TCPURL()
	yaml := map[string]string{"Content-Type": "application/yaml"}

	type tcase struct {
		name   string
		client *http.Client
		method string
		url    string
		header map[string]string
		body   string
	}
	var cases []tcase
	for _, code := range []string{ec2.EINVALID, ec2.EUNAUTHORIZED, ec2.EFORBIDDEN, ec2.ENOTFOUND, ec2.EMETHOD,
		ec2.ECONFLICT, ec2.ETHROTTLED, ec2.EINTERNAL, ec2.EUNAVAILABLE, ec2.EUNSUPPORTED, "plain", "made_up"} {
		cases = append(cases, tcase{"code " + code, uc, "GET", "http://imds/v1/instances/" + admintest.FailPrefix + code, nil, ""})
	}
	cases = append(cases,
		tcase{"unknown instance", uc, "GET", "http://imds/v1/instances/nope", nil, ""},
		tcase{"unknown path", uc, "GET", "http://imds/v2/instances", nil, ""},
		tcase{"method not allowed", uc, "POST", "http://imds/v1/instances/cfg", nil, ""},
		tcase{"method not allowed on the collection", uc, "DELETE", "http://imds/v1/instances", nil, ""},
		tcase{"Origin", uc, "GET", "http://imds/v1/instances", map[string]string{"Origin": "https://evil.example"}, ""},
		tcase{"Referer", uc, "GET", "http://imds/v1/instances", map[string]string{"Referer": "https://evil.example/"}, ""},
		tcase{"Sec-Fetch-Site", uc, "GET", "http://imds/v1/instances", map[string]string{"Sec-Fetch-Site": "cross-site"}, ""},
		tcase{"DNS rebinding Host", uc, "GET", "http://imds/v1/instances", map[string]string{"Host": "evil.example"}, ""},
		tcase{"body over the limit", uc, "POST", "http://imds/v1/instances", yaml, "name: big\nuser_data: " + strings.Repeat("x", 300) + "\n"},
		tcase{"form content type", uc, "POST", "http://imds/v1/instances", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "name=x"},
		tcase{"no instance", uc, "POST", "http://imds/v1/instances", yaml, "instances: []\n"},
		tcase{"bad document", uc, "POST", "http://imds/v1/instances?file=my.yaml", yaml, "name: x\nhop_limit: 99\ncolour: red\n"},
		tcase{"bad document without a file name", uc, "POST", "http://imds/v1/instances", yaml, "name: x\nhop_limit: 99\n"},
		tcase{"bad one-line document", uc, "POST", "http://imds/v1/instances", map[string]string{"Content-Type": "application/json"}, `{"name":"x","instance_type":"huge"}`},
		tcase{"conflict", uc, "POST", "http://imds/v1/instances", yaml, "name: cfg\n"},
		tcase{"config instance removal", uc, "DELETE", "http://imds/v1/instances/cfg", nil, ""},
		tcase{"TCP without token", tc, "GET", tcp + "/v1/instances", nil, ""},
		tcase{"TCP with a wrong token", tc, "GET", tcp + "/v1/instances", map[string]string{"Authorization": "Bearer wrong"}, ""},
		tcase{"TCP with a Basic header", tc, "GET", tcp + "/v1/instances", map[string]string{"Authorization": "Basic " + testToken}, ""},
	)

	var golden bytes.Buffer
	for _, tc := range cases {
		r := do(t, tc.client, tc.method, tc.url, tc.header, tc.body)
		fmt.Fprintf(&golden, "== %s: %s %s\n%d\n%s", tc.name, tc.method, strings.Replace(tc.url, tcp, "TCP", 1), r.status, r.body)
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Error.Code == "" {
			t.Errorf("%s: body %q is not a JSON error", tc.name, r.body)
			continue
		}
		if got, want := r.status, admin.StatusOf(body.Error.Code); got != want {
			t.Errorf("%s: status %d for code %s, want %d", tc.name, got, body.Error.Code, want)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q, want application/json", tc.name, ct)
		}
		if strings.Contains(r.body, "secret") {
			t.Errorf("%s: body leaks server details: %s", tc.name, r.body)
		}
		if tc.name == "method not allowed" && r.header.Get("Allow") == "" {
			t.Errorf("%s: no Allow header", tc.name)
		}
		if strings.HasPrefix(tc.name, "TCP") && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate header", tc.name)
		}
	}

	path := filepath.Join("testdata", "errors.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, golden.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got := golden.String(); got != string(want) {
		t.Errorf("error bodies differ from %s (go test -update rewrites it):\n%s", path, got)
	}
}

func TestServer_AllowedRequests(t *testing.T) {
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, nil)
	hc := unixHTTP(srv.SocketPath)
	for _, host := range []string{"imds", "localhost", "LOCALHOST.", "127.0.0.1:1339", "[::1]", "localhost:80"} {
		if r := do(t, hc, "GET", "http://imds/v1/health", map[string]string{"Host": host}, ""); r.status != http.StatusOK {
			t.Errorf("Host %q: status %d %s, want 200", host, r.status, r.body)
		}
	}
	// JSON with a charset and YAML under its older names.
	for i, ct := range []string{"application/json; charset=utf-8", "application/x-yaml", "text/yaml"} {
		body := fmt.Sprintf(`{"name": "ct%d"}`, i)
		if r := do(t, hc, "POST", "http://imds/v1/instances", map[string]string{"Content-Type": ct}, body); r.status != http.StatusCreated {
			t.Errorf("Content-Type %q: status %d %s, want 201", ct, r.status, r.body)
		}
	}
	r := do(t, hc, "GET", "http://imds/v1/instances/cfg/spec", nil, "")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"origin":"config"`) {
		t.Errorf("GET spec = %d %s, want 200 with the origin", r.status, r.body)
	}
	r = do(t, hc, "GET", "http://imds/v1/instances", nil, "")
	var list struct{ Instances []map[string]any }
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Instances) != 4 {
		t.Errorf("GET list = %d %s, want {instances: [4 documents]}", r.status, r.body)
	}
	if r := do(t, hc, "DELETE", "http://imds/v1/instances/ct0", nil, ""); r.status != http.StatusNoContent || r.body != "" {
		t.Errorf("DELETE = %d %q, want 204 without a body", r.status, r.body)
	}
}

func TestServer_TCP(t *testing.T) {
	ctx := context.Background()
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, func(s *admin.Server) {
		s.TCPAddr, s.Token = "127.0.0.1:0", testToken
	})
	if _, err := admin.NewTCPClient(srv.TCPURL(), testToken).ListInstances(ctx); err != nil {
		t.Errorf("TCP with the token: %v", err)
	}
	if _, err := admin.NewTCPClient(srv.TCPURL(), "x"+testToken).ListInstances(ctx); ec2.ErrorCode(err) != ec2.EUNAUTHORIZED {
		t.Errorf("TCP with a wrong token: err=%v, want EUNAUTHORIZED", err)
	}
	if _, err := admin.NewTCPClient(srv.TCPURL(), "").ListInstances(ctx); ec2.ErrorCode(err) != ec2.EUNAUTHORIZED {
		t.Errorf("TCP without a token: err=%v, want EUNAUTHORIZED", err)
	}
	// The socket needs none.
	if _, err := admin.NewClient(srv.SocketPath).ListInstances(ctx); err != nil {
		t.Errorf("socket without a token: %v", err)
	}

	for _, tt := range []struct {
		name, token, want string
	}{
		{"no token", "", "needs a token"},
		{"short token", "short", "at least 16"},
	} {
		s := admin.NewServer()
		s.Service, s.TCPAddr, s.Token = admintest.NewService(), "127.0.0.1:0", tt.token
		if err := s.Open(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Open err=%v, want it to contain %q", tt.name, err, tt.want)
			s.Close(ctx)
		}
	}
}

// TestServer_HandlerNeedsToken: the handler used outside Open treats every
// request as TCP.
func TestServer_HandlerNeedsToken(t *testing.T) {
	s := admin.NewServer()
	s.Service = admintest.NewService()
	req, _ := http.NewRequest("GET", "http://localhost/v1/health", nil)
	rec := &recorder{header: http.Header{}}
	s.Handler().ServeHTTP(rec, req)
	if rec.status != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", rec.status)
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }

func TestServer_Socket(t *testing.T) {
	ctx := context.Background()
	dir := admintest.SocketDir(t)
	path := filepath.Join(dir, "sub", "admin.sock")

	s := admin.NewServer()
	s.Service, s.SocketPath = admintest.NewService(), path
	if err := s.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v (%v), want 0700", di.Mode(), err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("socket directory holds %d files, want only the socket (no temporary name left)", len(entries))
	}

	// A second server on a live socket is refused, and leaves it alone.
	s2 := admin.NewServer()
	s2.Service, s2.SocketPath = admintest.NewService(), path
	if err := s2.Open(); err == nil || !strings.Contains(err.Error(), "is in use") {
		t.Errorf("Open on a live socket: err=%v, want \"is in use\"", err)
		s2.Close(ctx)
	}
	if err := admin.NewClient(path).Health(ctx); err != nil {
		t.Errorf("first server after the refused second: %v", err)
	}

	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v, want it removed", err)
	}
}

func TestServer_StaleSocket(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(admintest.SocketDir(t), "admin.sock")
	// A server that died without removing its socket.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket: %v", err)
	}

	s := admin.NewServer()
	s.Service, s.SocketPath = admintest.NewService(), path
	if err := s.Open(); err != nil {
		t.Fatalf("Open over a stale socket: %v", err)
	}
	defer s.Close(ctx)
	if err := admin.NewClient(path).Health(ctx); err != nil {
		t.Errorf("Health: %v", err)
	}
}

func TestServer_SocketRefusals(t *testing.T) {
	dir := admintest.SocketDir(t)
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, path, want string
	}{
		{"not a socket", regular, "is not a socket"},
		{"directory writable by others", filepath.Join(shared, "admin.sock"), "writable by other users"},
		{"too long", filepath.Join(dir, strings.Repeat("x", 120)), "too long"},
	} {
		s := admin.NewServer()
		s.Service, s.SocketPath = admintest.NewService(), tt.path
		if err := s.Open(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Open err=%v, want it to contain %q", tt.name, err, tt.want)
			s.Close(context.Background())
		}
	}
	if data, err := os.ReadFile(regular); err != nil || string(data) != "keep me" {
		t.Errorf("the regular file was touched: %q, %v", data, err)
	}
}

func TestClient_Unreachable(t *testing.T) {
	path := filepath.Join(admintest.SocketDir(t), "none.sock")
	_, err := admin.NewClient(path).ListInstances(context.Background())
	want := "cannot reach the imds admin socket " + path + ": is `imds serve` running?"
	if ec2.ErrorCode(err) != ec2.EUNAVAILABLE || !strings.HasPrefix(ec2.ErrorMessage(err), want) {
		t.Errorf("err=%v, want EUNAVAILABLE starting with %q", err, want)
	}
}

// TestServer_Log: the access log is at debug level and never holds a body;
// internal errors are logged with their details.
func TestServer_Log(t *testing.T) {
	logger, logs := newLogger()
	srv := admintest.MustOpenServer(t, admintest.NewService(), logger, nil)
	c := admin.NewClient(srv.SocketPath)
	spec := admintest.Instance("logged")
	spec.UserData = []byte("password=hunter2")
	if _, err := c.AddInstance(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	c.GetInstance(context.Background(), admintest.FailPrefix+"plain")
	out := logs.String()
	for _, want := range []string{
		`level=DEBUG msg="admin request" method=POST path=/v1/instances status=201 via=unix`,
		admintest.SecretFailure,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("log holds a request body:\n%s", out)
	}
}
