package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadConfig: a changed config file takes effect on SIGHUP without a
// restart, and a broken one leaves the served instances as they were.
func TestReloadConfig(t *testing.T) {
	srv := runServerWith(t, "instances:\n  - name: first\n    source_addresses: [127.0.0.1]\n", nil)
	path := srv.d.ConfigPath
	if got := getV1(t, srv, "/latest/meta-data/tags/instance/Name"); got != 404 {
		t.Fatalf("tags before reload: status %d, want 404", got)
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	write("instances:\n  - name: first\n    source_addresses: [127.0.0.1]\n    tags_in_metadata: true\n    tags: {Name: reloaded}\n")
	waitFor(t, func() bool { return getV1(t, srv, "/latest/meta-data/tags/instance/Name") == 200 })

	write("instances:\n  - name: first\n    source_addresses: [not-an-ip]\n")
	waitFor(t, func() bool { return strings.Contains(srv.logs.String(), "configuration not reloaded") })
	if got := getV1(t, srv, "/latest/meta-data/tags/instance/Name"); got != 200 {
		t.Errorf("a broken config replaced the served instances (status %d)", got)
	}
	if !strings.Contains(srv.logs.String(), "source_addresses[0]") {
		t.Errorf("the reload error does not name the field:\n%s", srv.logs.String())
	}
}

func getV1(t *testing.T, srv *testServer, path string) int {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // generous: a poll, not a measurement
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 seconds")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadSettings: a reload puts roles, identity, allowed hosts and
// user-data templates in force, and names what takes a restart.
func TestReloadSettings(t *testing.T) {
	srv := runServerWith(t, "roles:\n  web: {}\ninstance:\n  name: web-1\n  role: web\n", nil)
	path := srv.d.ConfigPath
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/default.tmpl", []byte("#cloud-config\nhostname: {{ .Name }}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withHost := func(host string) int {
		req, _ := http.NewRequest("GET", srv.URL+"/latest/meta-data/instance-id", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := withHost("metadata.internal"); got != 403 {
		t.Fatalf("Host metadata.internal before the reload: %d, want 403", got)
	}
	if served(t, srv, "web").AccessKeyId[:4] != "ASIA" {
		t.Fatal("the fake role does not serve fake credentials")
	}
	config := `
roles:
  web:
    source: static
    access_key_id: AKIARELOADEDEXAMPLE1
    secret_access_key: reloadedsecretreloadedsecretreloadedsecr
instance:
  name: web-1
  role: web
allowed_hosts: [metadata.internal]
user_data_templates:
  dir: ` + dir + `
  default: ` + dir + `/default.tmpl
listen: ["127.0.0.1:1"]
`
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(srv.logs.String(), "configuration reloaded") })
	logs := srv.logs.String()
	for _, want := range []string{"changed=roles,allowed_hosts,user_data_templates", "needs_restart=listen"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the reload log lacks %s:\n%s", want, logs)
		}
	}
	if got := withHost("metadata.internal"); got != 200 {
		t.Errorf("Host metadata.internal after the reload: %d, want 200", got)
	}
	if got := served(t, srv, "web").AccessKeyId; got != "AKIARELOADEDEXAMPLE1" {
		t.Errorf("role web serves %s after it became static", got)
	}
	if got := getBody(t, srv.URL+"/latest/user-data"); got != "#cloud-config\nhostname: web-1\n" {
		t.Errorf("user-data after the reload: %q", got)
	}
	if strings.Contains(logs, "reloadedsecret") {
		t.Error("the log holds the secret key")
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
