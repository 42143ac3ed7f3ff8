package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestReportTellsV1FromV2 serves two instances, one on 127.0.0.1 read by
// botocore (which uses IMDSv2) and one on ::1 read by cloud-init on an
// unidentified platform (which uses IMDSv1), and checks that imds report
// says which one is ready for IMDSv2-only.
func TestReportTellsV1FromV2(t *testing.T) {
	requirePythonModule(t, "botocore", "python3-botocore")
	requirePythonModule(t, "cloudinit", "cloud-init")
	cfg := `instances:
  - name: app-v2
    source_addresses: [127.0.0.1]
  - name: app-v1
    source_addresses: ["::1"]
    user_data: "#cloud-config\nhostname: app-v1\n"
    public_keys: [{name: k, key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC5fakekey k@example"}]
`
	srv, err := openServer(t, cfg, listen("127.0.0.1:0", "[::1]:0"))
	if err != nil {
		t.Skipf("cannot listen on ::1 here: %v", err)
	}
	v4, v6 := srv.at(0), srv.at(1)

	if _, err := botocoreKey(t, v4); err != nil {
		t.Fatalf("botocore: %v", err)
	}
	if _, stderr, err := runPyClient(t, v6, "cloudinit_client.py", "--platform", "unknown", "--max-wait", "5", "--retries", "0"); err != nil {
		t.Fatalf("cloud-init: %v\n%s", err, stderr)
	}
	report := func(name string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"report", name, "--admin-socket", srv.d.Admin.SocketPath}, &out, &errOut); code != 0 {
			t.Fatalf("imds report %s: exit %d: %s", name, code, errOut.String())
		}
		return out.String()
	}
	v2, v1 := report("app-v2"), report("app-v1")
	t.Logf("report app-v2:\n%s\nreport app-v1:\n%s", v2, v1)
	if !strings.Contains(v2, "ready for IMDSv2-only") || strings.Contains(v2, "NOT ready") || !strings.Contains(v2, "Botocore") {
		t.Errorf("report of the botocore instance:\n%s", v2)
	}
	if !strings.Contains(v1, "NOT ready for IMDSv2-only") || !strings.Contains(v1, "/2009-04-04/meta-data/instance-id") {
		t.Errorf("report of the cloud-init (IMDSv1) instance:\n%s", v1)
	}
}
