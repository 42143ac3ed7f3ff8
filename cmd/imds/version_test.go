package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestVersionOutputs(t *testing.T) {
	text := mustRunCLI(t, "version")
	flag := mustRunCLI(t, "--version")
	if text != flag {
		t.Errorf("imds --version=%q, want the same as imds version %q", flag, text)
	}
	for _, want := range []string{"imds ", "commit: ", "go: " + runtime.Version(), "platform: " + runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(text, want) {
			t.Errorf("imds version=%q, want it to contain %q", text, want)
		}
	}
	var b buildInfo
	if err := json.Unmarshal([]byte(mustRunCLI(t, "version", "-o", "json")), &b); err != nil {
		t.Fatal(err)
	}
	if b.Version == "" || b.Commit == "" || b.Go != runtime.Version() || b.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("imds version -o json = %+v, want every field", b)
	}
	mustFailCLI(t, "-o/--output: must be text, json or yaml", "version", "-o", "xml")
}

func TestHealthcheck(t *testing.T) {
	srv := mustRunServer(t, "", "")
	sock := srv.d.Admin.SocketPath
	if out := mustRunCLI(t, "healthcheck", "--admin-socket", sock, "--url", srv.URL+"/"); out != "ok\n" {
		t.Errorf("healthcheck printed %q, want ok", out)
	}
	mustRunCLI(t, "healthcheck", "--no-admin", "--url", srv.URL+"/latest/meta-data/nope")

	// Something else on the port is not imds.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	other := &http.Server{Handler: http.NotFoundHandler()}
	go other.Serve(ln)
	t.Cleanup(func() { other.Close() })
	mustFailCLI(t, "not imds", "healthcheck", "--no-admin", "--url", "http://"+ln.Addr().String()+"/")

	gone := filepath.Join(t.TempDir(), "none.sock")
	mustFailCLI(t, "admin API", "healthcheck", "--admin-socket", gone)
	mustFailCLI(t, "--url: must be an http:// URL", "healthcheck", "--no-admin", "--url", "ftp://x/")
	mustFailCLI(t, "--no-admin needs --url", "healthcheck", "--no-admin")
}

func TestGendocs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	mustRunCLI(t, "gendocs", "--man-dir", filepath.Join(dir, "man"), "--completion-dir", filepath.Join(dir, "compl"))
	page, err := os.ReadFile(filepath.Join(dir, "man", "imds-serve.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`.TH "IMDS" "1" "Jan 2026"`, `--admin-socket`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("imds-serve.1 lacks %q:\n%.400s", want, page)
		}
	}
	for _, f := range []string{"imds.bash", "_imds", "imds.fish"} {
		b, err := os.ReadFile(filepath.Join(dir, "compl", f))
		if err != nil || !strings.Contains(string(b), "imds") {
			t.Errorf("completion %s: %v (%d bytes)", f, err, len(b))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "man", "imds-gendocs.1")); err == nil {
		t.Errorf("man page of the hidden gendocs command written")
	}
	mustFailCLI(t, "nothing to do", "gendocs")
}
