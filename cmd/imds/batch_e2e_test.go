package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAddFromFileAllOrNothing: imds instance add --from-file against a
// running server adds the whole file or, when one entry is refused,
// nothing, naming every refused entry; then it says what it added. The
// list reads back in pages.
func TestAddFromFileAllOrNothing(t *testing.T) {
	srv := mustRunServer(t, "", "")
	sock := srv.d.Admin.SocketPath
	cli := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append(args, "--admin-socket", sock), &out, &errOut)
		return out.String(), errOut.String(), code
	}
	dir := t.TempDir()
	var doc strings.Builder
	doc.WriteString("instances:\n")
	for i := range 1500 {
		fmt.Fprintf(&doc, "  - {name: vm-%04d, source_addresses: [10.1.%d.%d]}\n", i, i/250, i%250+1)
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(doc.String()), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("- {name: new-1, source_addresses: [10.3.0.1]}\n- {name: vm-0003, source_addresses: [10.2.0.1]}\n- {name: other, source_addresses: [10.1.0.1]}\n"), 0o644)

	_, stderr, code := cli("instance", "add", "--from-file", good, "-o", "json")
	if code != 0 || !strings.Contains(stderr, "1500 instances added from "+good+", all in one change") {
		t.Fatalf("add --from-file: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = cli("instance", "add", "--from-file", bad)
	for _, want := range []string{"2 of 3 instances refused, nothing was added", `instance 2 of 3 ("vm-0003"): an instance named "vm-0003" already exists`,
		`instance 3 of 3 ("other"): address 10.1.0.1 already belongs to instance vm-0000`} {
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("add --from-file of a file with clashes: exit %d, stderr %q; want it to say %q", code, stderr, want)
		}
	}
	if _, _, code := cli("instance", "get", "new-1"); code == 0 {
		t.Error("a refused file added new-1")
	}
	out, _, code := cli("instance", "list")
	if lines := strings.Count(out, "\n"); code != 0 || lines != 1502 || !strings.HasPrefix(out, "NAME") || strings.Count(out, "NAME") != 1 {
		t.Errorf("instance list: exit %d, %d lines (want a header, the default and 1500)", code, lines)
	}
	out, stderr, code = cli("instance", "list", "--limit", "10")
	if lines := strings.Count(out, "\n"); code != 0 || lines != 11 || !strings.Contains(stderr, "the first 10 instances; more follow") {
		t.Errorf("instance list --limit 10: exit %d, %d lines, stderr %q", code, lines, stderr)
	}
}
