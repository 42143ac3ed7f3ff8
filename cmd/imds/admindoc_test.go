package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAdminAPIDoc runs the curl examples of docs/admin-api.md in order
// against a server started with the doc's own config, and checks each
// answer against the block after it: a JSON block must have the shape of
// the answer (every documented field there, of the same JSON type; values
// that vary, such as IDs and times, are not compared), a text block must
// be the answer. Errors are compared whole.
func TestAdminAPIDoc(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (scripts/deps.sh installs it)")
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "admin-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []fence
	for _, m := range regexp.MustCompile("(?ms)^```(\\w*)\\n(.*?)^```").FindAllStringSubmatch(string(b), -1) {
		blocks = append(blocks, fence{m[1], m[2]})
	}
	if len(blocks) == 0 || blocks[0].lang != "yaml" || !strings.HasPrefix(blocks[0].body, "# imds.yaml") {
		t.Fatal("docs/admin-api.md must start its examples with the server's config (# imds.yaml)")
	}
	srv := startServer(t, blocks[0].body)
	ran := 0
	for i := 1; i < len(blocks); i++ {
		blk := blocks[i]
		if blk.lang != "sh" {
			continue
		}
		body := strings.ReplaceAll(blk.body, "/run/imds/admin.sock", srv.d.Admin.SocketPath)
		body = strings.ReplaceAll(body, "http://127.0.0.1:1338", srv.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", body)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		ran++
		if err != nil {
			t.Errorf("admin-api.md block %d failed: %v\n%s\n%s", i, err, blk.body, out.String())
			continue
		}
		if i+1 >= len(blocks) || blocks[i+1].lang == "sh" {
			t.Errorf("admin-api.md block %d has no answer after it:\n%s", i, blk.body)
			continue
		}
		want := blocks[i+1]
		switch want.lang {
		case "json":
			var got, doc any
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Errorf("admin-api.md block %d answered no JSON (%v):\n%s", i, err, out.String())
				continue
			}
			if err := json.Unmarshal([]byte(want.body), &doc); err != nil {
				t.Errorf("admin-api.md block %d: the documented answer is not JSON: %v", i+1, err)
				continue
			}
			exact := strings.Contains(want.body, `"error"`)
			if problem := sameShape("", doc, got, exact); problem != "" {
				t.Errorf("admin-api.md block %d: %s\ndocumented: %s\nanswered:   %s", i, problem, want.body, out.String())
			}
		case "text":
			if got := out.String(); got != want.body {
				t.Errorf("admin-api.md block %d answered %q, documented %q", i, got, want.body)
			}
		default:
			t.Errorf("admin-api.md block %d: the answer's block is %q, want json or text", i+1, want.lang)
		}
	}
	if ran < 10 {
		t.Errorf("ran only %d examples of docs/admin-api.md", ran)
	}
}

// sameShape says how got differs from the documented doc: a documented
// field missing or of another JSON type. exact compares the values too.
func sameShape(path string, doc, got any, exact bool) string {
	if exact {
		if fmt.Sprint(doc) != fmt.Sprint(got) {
			return fmt.Sprintf("%s: documented %v, answered %v", path, doc, got)
		}
		return ""
	}
	switch d := doc.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: documented an object, answered %T", path, got)
		}
		for k, dv := range d {
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s.%s: documented, not in the answer", path, k)
			}
			if p := sameShape(path+"."+k, dv, gv, false); p != "" {
				return p
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s: documented a list, answered %T", path, got)
		}
		if len(d) > 0 {
			if len(g) == 0 {
				return fmt.Sprintf("%s: documented a non-empty list, answered []", path)
			}
			return sameShape(path+"[0]", d[0], g[0], false)
		}
	case nil:
		if got != nil {
			return fmt.Sprintf("%s: documented null, answered %v", path, got)
		}
	default:
		if fmt.Sprintf("%T", doc) != fmt.Sprintf("%T", got) {
			return fmt.Sprintf("%s: documented a %T, answered a %T", path, doc, got)
		}
	}
	return ""
}
