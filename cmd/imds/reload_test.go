package main

import (
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
