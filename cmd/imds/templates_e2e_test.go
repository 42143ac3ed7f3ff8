package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUserDataTemplates: per-instance template files, the built-in default,
// and a broken template that breaks only its own instance.
func TestUserDataTemplates(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "web.yaml"), []byte("#cloud-config\nhostname: {{ .Name }}\nwrite_files:\n  - path: /etc/env\n    content: {{ .Data.env | quote }}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "broken"), []byte("#cloud-config\nhostname: {{ .Name }}\n{{ .Nope }}\n"), 0o644)
	srv := mustRunServer(t, fmt.Sprintf(`user_data_templates:
  dir: %s
  ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIServerKey ops@example"]
  data: {env: staging}
instances:
  - name: web
    source_addresses: [127.0.0.1]
`, dir), "")
	code, got := body(t, srv.URL+"/latest/user-data")
	if code != 200 || !strings.Contains(got, "hostname: web") || !strings.Contains(got, `content: "staging"`) {
		t.Errorf("web's rendered user-data: %d %q", code, got)
	}

	// The same server, with the instance renamed to use the built-in default, then the broken template.
	srv2 := mustRunServer(t, fmt.Sprintf("user_data_templates:\n  dir: %s\n  ssh_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIServerKey ops@example\"]\ninstances:\n  - name: plain\n    source_addresses: [127.0.0.1]\n", dir), "")
	code, got = body(t, srv2.URL+"/latest/user-data")
	if code != 200 || !strings.HasPrefix(got, "#cloud-config") || !strings.Contains(got, "ops@example") || !strings.Contains(got, `hostname: "plain"`) {
		t.Errorf("the built-in default: %d %q", code, got)
	}
	srv3 := mustRunServer(t, fmt.Sprintf("user_data_templates:\n  dir: %s\ninstances:\n  - name: broken\n    source_addresses: [127.0.0.1]\n", dir), "")
	if code, _ := body(t, srv3.URL+"/latest/user-data"); code != 500 {
		t.Errorf("a broken template: status %d, want 500", code)
	}
	if code, _ := body(t, srv3.URL+"/latest/meta-data/instance-id"); code != 200 {
		t.Errorf("the rest of the broken instance's metadata: status %d, want 200", code)
	}
	if logs := srv3.logs.String(); !strings.Contains(logs, "broken:3") {
		t.Errorf("the log does not name the template file and line:\n%s", logs)
	}
}
