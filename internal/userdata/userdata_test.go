package userdata

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	keyA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa alice@laptop"
	keyB = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb bob"
	keyS = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYssss ops@server"
)

// instance returns a derived-looking instance named name.
func instance(name string) *ec2.Instance {
	return &ec2.Instance{
		Name:             name,
		ID:               "i-0123456789abcdef0",
		Region:           "eu-west-1",
		AvailabilityZone: "eu-west-1b",
		Interfaces: []ec2.NetworkInterface{{
			DeviceNumber:  0,
			MAC:           "02:00:0A:00:00:05",
			PrivateIPv4s:  []string{"10.0.0.5", "10.0.0.6"},
			LocalHostname: "ip-10-0-0-5.eu-west-1.compute.internal",
		}},
		PublicKeys: []ec2.PublicKey{{Name: "alice", Key: keyA}, {Name: "bob", Key: keyB}},
		Tags:       []ec2.Tag{{Key: "Name", Value: "web server #1"}, {Key: "Env", Value: "prod"}},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func render(t *testing.T, r *Renderer, inst *ec2.Instance) []byte {
	t.Helper()
	out, err := r.Render(inst)
	if err != nil {
		t.Fatalf("Render(%s): %v", inst.Name, err)
	}
	return out
}

// checkCloudConfig parses out with PyYAML, cloud-init's parser, when present.
func checkCloudConfig(t *testing.T, out []byte, wantKeys int) {
	t.Helper()
	if !bytes.HasPrefix(out, []byte("#cloud-config\n")) {
		t.Errorf("does not start with #cloud-config:\n%s", out)
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Log("python3 not found; YAML not checked")
		return
	}
	if exec.Command(py, "-c", "import yaml").Run() != nil {
		t.Log("python3-yaml not installed; YAML not checked")
		return
	}
	script := fmt.Sprintf(`import yaml,sys
d=yaml.safe_load(sys.stdin.read())
assert isinstance(d, dict) and isinstance(d["hostname"], str), d
keys=d.get("ssh_authorized_keys")
assert (keys is None) if %d == 0 else (len(keys) == %d and all(isinstance(k, str) for k in keys)), keys
`, wantKeys, wantKeys)
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("PyYAML rejects the cloud-config: %v\n%s\n%s", err, msg, out)
	}
}

func TestBuiltinDefault(t *testing.T) {
	// The server key keyS is added; keyA is given again with another comment
	// and appears once.
	r := &Renderer{SSHKeys: []string{keyS, strings.TrimSuffix(keyA, "alice@laptop") + "other comment"}}
	out := render(t, r, instance("web-1"))
	golden(t, "builtin-keys", out)
	checkCloudConfig(t, out, 3)

	inst := instance("bare")
	inst.PublicKeys = nil
	inst.Interfaces[0].LocalHostname = ""
	out = render(t, &Renderer{}, inst)
	golden(t, "builtin-nokeys", out)
	checkCloudConfig(t, out, 0)
	if bytes.Contains(out, []byte("ssh_authorized_keys")) {
		t.Errorf("no keys but ssh_authorized_keys present:\n%s", out)
	}
}

func TestBuiltinDefaultQuotesHostileValues(t *testing.T) {
	inst := instance("x")
	inst.Interfaces[0].LocalHostname = "evil\"\n- rm -rf /: #\u2028\x01.example"
	inst.PublicKeys = []ec2.PublicKey{{Name: "k", Key: "ssh-ed25519 AAAA x\"y: z\\"}}
	out := render(t, &Renderer{}, inst)
	checkCloudConfig(t, out, 1)
}

func TestPerNameTemplate(t *testing.T) {
	r := &Renderer{
		Dir: "testdata/templates",
		Data: map[string]any{
			"domain":   "example.internal",
			"packages": []any{"nginx", "curl"},
			"motd":     "Welcome\nto the web tier",
		},
		SSHKeys: []string{keyS},
	}
	golden(t, "per-name", render(t, r, instance("web-1")))
}

func TestLookupOrder(t *testing.T) {
	dir := t.TempDir()
	files := []string{"db-1", "db-1.yaml", "02:00:0a:00:00:05", "02:00:0a:00:00:05.yaml", "02-00-0a-00-00-05", "02-00-0a-00-00-05.yaml"}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("#cloud-config\n# from "+f+" for {{.Name}}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := &Renderer{Dir: dir, Default: "#cloud-config\n# default for {{.Name}}\n"}
	var log bytes.Buffer
	for _, f := range files {
		fmt.Fprintf(&log, "%s", render(t, r, instance("db-1")))
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintf(&log, "%s", render(t, r, instance("db-1")))
	golden(t, "lookup-order", log.Bytes())

	r.Default = "-"
	if out, err := r.Render(instance("db-1")); out != nil || err != nil {
		t.Errorf(`Default "-": got %q, %v; want nil, nil`, out, err)
	}
	// The instance's own user-data beats every file.
	if err := os.WriteFile(filepath.Join(dir, "db-1"), []byte("from file"), 0o644); err != nil {
		t.Fatal(err)
	}
	inst := instance("db-1")
	inst.UserData = []byte("own")
	if out := render(t, r, inst); string(out) != "own" {
		t.Errorf("own user-data: got %q", out)
	}
}

func TestUnsafeNamesNotLookedUp(t *testing.T) {
	var tried []string
	r := &Renderer{Dir: "/srv/ud", Default: "-", ReadFile: func(p string) ([]byte, error) {
		tried = append(tried, p)
		return nil, fs.ErrNotExist
	}}
	inst := instance("..")
	inst.Interfaces = nil
	if out, err := r.Render(inst); out != nil || err != nil {
		t.Fatalf("got %q, %v", out, err)
	}
	if len(tried) != 0 {
		t.Errorf("looked up %q", tried)
	}
}

func TestReadErrorFails(t *testing.T) {
	boom := errors.New("permission denied")
	r := &Renderer{Dir: "/srv/ud", ReadFile: func(p string) ([]byte, error) { return nil, boom }}
	_, err := r.Render(instance("a"))
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, boom) || e.File != filepath.Join("/srv/ud", "a") {
		t.Fatalf("got %v", err)
	}
}

func TestVerbatimFiles(t *testing.T) {
	dir := t.TempDir()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	fmt.Fprintf(zw, "#cloud-config\nhostname: {{.Name}}\n")
	zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "zipped.yaml"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Renderer{Dir: dir}
	if out := render(t, r, instance("zipped")); !bytes.Equal(out, gz.Bytes()) {
		t.Errorf("gzip file changed: got % x\nwant % x", out, gz.Bytes())
	}

	mime, err := os.ReadFile("testdata/templates/mime")
	if err != nil {
		t.Fatal(err)
	}
	out := render(t, &Renderer{Dir: "testdata/templates"}, instance("mime"))
	if !bytes.Equal(out, mime) {
		t.Errorf("MIME file changed:\n%s", out)
	}
}

func TestInlineUserData(t *testing.T) {
	mime, err := os.ReadFile("testdata/templates/mime")
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	fmt.Fprintf(zw, "## template: imds\n{{.Name}}\n")
	zw.Close()
	for _, ud := range [][]byte{
		[]byte("#!/bin/sh\necho {{.Name}}\n"),
		[]byte("#cloud-config\n## template: imds\nhostname: {{.Name}}\n"), // marker not on line 1
		[]byte("## template: imds but not quite\n{{.Name}}\n"),
		[]byte("## template: imds\n{{.Name}} \xff\n"), // not UTF-8
		mime,
		gz.Bytes(),
		{},
	} {
		inst := instance("web-1")
		inst.UserData = ud
		out := render(t, &Renderer{Dir: "testdata/templates"}, inst)
		if !bytes.Equal(out, ud) || out == nil {
			t.Errorf("user-data %q changed to %q", ud, out)
		}
	}

	inst := instance("web-1")
	inst.UserData = []byte("## template: imds \r\n#cloud-config\nhostname: {{.Hostname}}\nfqdn: {{.Hostname}}.{{.Data.domain}}\n# {{.InstanceID}} {{.PrivateIP}} {{.MAC}} {{.AvailabilityZone}}\n")
	golden(t, "inline-template", render(t, &Renderer{Data: map[string]any{"domain": "example.org"}}, inst))
}

func TestTemplateErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bad-syntax", "#cloud-config\nhostname: x\nruncmd: [{{if .Name}]\n")
	write("bad-field.yaml", "#cloud-config\n\nhostname: {{.Nmae}}\n")
	write("bad-tag", "#cloud-config\n{{define \"t\"}}\n\n{{.Tags.Nope}}{{end}}\n{{template \"t\" .}}\n")
	write("bad-func", "line1\nline2\n{{exec \"rm\"}}\n")
	for _, tc := range []struct {
		name, file string
		line       int
		problem    string
	}{
		{"bad-syntax", "bad-syntax", 3, "bad character"},
		{"bad-field", "bad-field.yaml", 3, `map has no entry for key "Nmae"`},
		{"bad-tag", "bad-tag", 4, `map has no entry for key "Nope"`},
		{"bad-func", "bad-func", 3, `function "exec" not defined`},
	} {
		r := &Renderer{Dir: dir}
		out, err := r.Render(instance(tc.name))
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: got %q, %v; want an *Error", tc.name, out, err)
			continue
		}
		if e.File != filepath.Join(dir, tc.file) || e.Line != tc.line || e.Instance != tc.name || !strings.Contains(e.Err.Error(), tc.problem) {
			t.Errorf("%s: got %#v (%v)", tc.name, e, e)
		}
		want := fmt.Sprintf("user-data template %s:%d: ", filepath.Join(dir, tc.file), tc.line)
		if msg := err.Error(); !strings.HasPrefix(msg, want) || !strings.HasSuffix(msg, "(instance "+tc.name+")") || strings.Contains(msg, "template: imds") {
			t.Errorf("%s: message %q, want prefix %q", tc.name, msg, want)
		}
		// Another instance renders fine afterwards.
		if out := render(t, r, instance("good")); !bytes.Contains(out, []byte("hostname: \"good\"")) {
			t.Errorf("after %s: %s", tc.name, out)
		}
	}

	// Marker lines count: the error is on line 3 of the user-data.
	inst := instance("m")
	inst.UserData = []byte("## template: imds\n#cloud-config\n{{.Bad}}\n")
	_, err := (&Renderer{}).Render(inst)
	var e *Error
	if !errors.As(err, &e) || e.File != FileInstance || e.Line != 3 {
		t.Errorf("marked user-data: %v", err)
	}
	inst.UserData = nil
	_, err = (&Renderer{Default: "a\nb\n{{call .Data}}", Data: map[string]any{}}).Render(inst)
	if !errors.As(err, &e) || e.File != FileDefault || e.Line != 3 || !strings.Contains(err.Error(), "call is not available") {
		t.Errorf("call: %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	inst := instance("big")
	for _, tc := range []struct {
		name string
		text string
		ok   bool
	}{
		{"exact", strings.Repeat("x", MaxSize), true},
		{"literal", strings.Repeat("x", MaxSize+1), false},
		{"loop", `{{range 9000}}xx{{end}}`, false},
		{"small-steps", `{{range 8192}}xx{{end}}`, true},
	} {
		out, err := (&Renderer{Default: tc.text}).Render(inst)
		if tc.ok {
			if err != nil || len(out) != MaxSize {
				t.Errorf("%s: %d bytes, %v", tc.name, len(out), err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "16384") {
			t.Errorf("%s: got %d bytes, %v; want ErrTooLarge", tc.name, len(out), err)
		}
	}
	inst.UserData = bytes.Repeat([]byte{0xff}, MaxSize+1)
	if _, err := (&Renderer{}).Render(inst); !errors.Is(err, ErrTooLarge) {
		t.Errorf("verbatim: %v", err)
	}
}

func TestRunawayTemplates(t *testing.T) {
	for name, text := range map[string]string{
		"range-int":   `{{range 1000000000}}{{end}}`,
		"nested":      `{{range 1000}}{{range 1000}}{{end}}{{end}}`,
		"nested-var":  `{{$n := 50000}}{{range $n}}{{range $n}}{{end}}{{end}}`,
		"recursion":   `{{define "r"}}{{template "r" .}}{{end}}{{template "r" .}}`,
		"exponential": `{{define "e"}}{{if .}}{{template "e" (slice . 1)}}{{template "e" (slice . 1)}}{{end}}{{end}}{{template "e" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}`,
		"doubling":    `{{$x := "ab"}}{{range 64}}{{$x = printf "%s%s" $x $x}}{{end}}`,
		"indent":      `{{$x := "a\n"}}{{range 7}}{{$x = printf "%s%s%s%s" $x $x $x $x}}{{end}}{{range 64}}{{$x = indent 1000 $x}}{{end}}`,
		"join":        `{{$x := "ab"}}{{range 64}}{{$x = join $x $.Data.list}}{{end}}`,
		"html":        `{{$x := "<<<<"}}{{range 64}}{{$x = html $x $x}}{{end}}`,
		"wide":        `{{range 100000}}{{$x := printf "%0999999d" 1}}{{end}}`,
		"block":       `{{block "b" .}}{{template "b" .}}{{end}}`,
	} {
		start := time.Now()
		_, err := (&Renderer{Default: text, Data: map[string]any{"list": make([]any, 1000)}}).Render(instance(name))
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: got %v; want an *Error", name, err)
		}
		if strings.Contains(err.Error(), "_imds") {
			t.Errorf("%s: message shows the guard: %v", name, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
		t.Logf("%s: %v (%v)", name, err, time.Since(start))
	}
}

func TestFuncs(t *testing.T) {
	inst := instance("f")
	for text, want := range map[string]string{
		`{{.PublicKeys | join ","}}`:                                      keyA + "," + keyB,
		`{{join "-" .Data.list}}`:                                         "1-x-true",
		`{{"a\n\nb\n" | indent 2}}`:                                       "  a\n\n  b\n",
		`{{quote "it's \"q\"\\ \t\u2028\x01é"}}`:                          `"it's \"q\"\\ \t\L\x01é"`,
		`{{quote 42}}`:                                                    `"42"`,
		`{{index .Tags "Missing" | default "dev"}}`:                       "dev",
		`{{index .Tags "Env" | default "dev"}}`:                           "prod",
		`{{.Data.empty | default "d"}}`:                                   "d",
		`{{.Tags.Name}}|{{.LocalHostname}}|{{.Hostname}}`:                 "web server #1|ip-10-0-0-5.eu-west-1.compute.internal|f",
		`{{len .PublicKeys}} {{range $i, $k := .Data.list}}{{$i}}{{end}}`: "2 012",
	} {
		r := &Renderer{Default: text, Data: map[string]any{"list": []any{1, "x", true}, "empty": []any{}}}
		out, err := r.Render(inst)
		if err != nil || string(out) != want {
			t.Errorf("%s: got %q, %v; want %q", text, out, err, want)
		}
	}
}

func TestConcurrent(t *testing.T) {
	r := &Renderer{Dir: "testdata/templates", Data: map[string]any{"domain": "d", "packages": []any{"a"}, "motd": "m"}}
	want := render(t, r, instance("web-1"))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				inst := instance("web-1")
				if i%2 == 1 {
					inst = instance("fails")
					inst.UserData = []byte("## template: imds\n{{.Nope}}")
				}
				out, err := r.Render(inst)
				if i%2 == 0 && (err != nil || !bytes.Equal(out, want)) {
					t.Errorf("got %q, %v", out, err)
				}
				if i%2 == 1 && err == nil {
					t.Error("no error")
				}
			}
		})
	}
	wg.Wait()
}

func FuzzRender(f *testing.F) {
	f.Add(BuiltinDefault)
	f.Add("{{range .PublicKeys}}{{.}}{{end}}")
	f.Add("{{define \"a\"}}{{template \"a\"}}{{end}}{{template \"a\"}}")
	f.Add("{{range 100}}{{range 100}}{{range 100}}x{{end}}{{end}}{{end}}")
	f.Add("{{printf \"%*d\" 1000000 1}}")
	f.Add("{{.Data.m.x | quote | indent 3}}")
	f.Add("## template: imds\n{{block \"b\" .Tags}}{{.Env}}{{end}}")
	f.Add("{{with $x := .Data.list}}{{range $i, $v := $x}}{{join \",\" $x}}{{break}}{{end}}{{end}}")
	f.Fuzz(func(t *testing.T, text string) {
		if text == "" || text == "-" {
			return
		}
		r := &Renderer{Default: text, SSHKeys: []string{keyS}, Data: map[string]any{
			"list": []any{"a", 1, 2.5, nil}, "m": map[string]any{"x": "y\n"}, "n": 3,
		}}
		out, err := r.Render(instance("fuzz"))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Instance != "fuzz" {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			return
		}
		if len(out) > MaxSize {
			t.Fatalf("%d bytes", len(out))
		}
	})
}

func TestQuoteRoundTripsThroughPyYAML(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil || exec.Command(py, "-c", "import yaml").Run() != nil {
		t.Skip("python3 with PyYAML not available")
	}
	values := []string{"", "plain", "a: b", "- x", "#c", "'s'", `"d"`, `\`, "yes", "null", "~", "1e3", "0x1f",
		"tab\tnl\ncr\r", "\x00\x01\x1b\x7f", "é ü 日本 🙂", "\u0085\u00a0\u2028\u2029\ufeff", "\u200b\u00ad", "{{x}}", "% @ `"}
	var doc strings.Builder
	for _, v := range values {
		q, err := quote(v)
		if err != nil {
			t.Fatal(err)
		}
		doc.WriteString("- " + q + "\n")
	}
	want := make([]string, len(values))
	for i, v := range values {
		want[i] = fmt.Sprintf("h%x", v)
	}
	cmd := exec.Command(py, "-c", `import yaml,sys
for v in yaml.safe_load(sys.stdin.read()): print("h"+v.encode("utf-8").hex())`)
	cmd.Stdin = strings.NewReader(doc.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("PyYAML: %v\n%s\n%s", err, out, doc.String())
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("round trip:\ngot  %q\nwant %q\n%s", got, want, doc.String())
	}
}

// TestHostname: .Hostname is the instance's name when that is a valid host
// name, as DHCP and DNS name a VM, else the local hostname's first label.
func TestHostname(t *testing.T) {
	for name, want := range map[string]string{
		"vm-1":                  "vm-1",
		"web_1":                 "ip-10-0-0-5",
		"db.internal":           "ip-10-0-0-5",
		"-x":                    "ip-10-0-0-5",
		strings.Repeat("a", 64): "ip-10-0-0-5",
	} {
		inst := &ec2.Instance{Name: name, Interfaces: []ec2.NetworkInterface{{LocalHostname: "ip-10-0-0-5.eu-west-1.compute.internal"}}}
		out, err := (&Renderer{Default: "{{.Hostname}}"}).Render(inst)
		if err != nil || string(out) != want {
			t.Errorf("name %q: .Hostname = %q, %v; want %q", name, out, err, want)
		}
	}
}

// TestCheckTemplateDir: a template directory that does not exist is an
// error at start-up, not a silent fallback at every render.
func TestCheckTemplateDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		dir, want string
	}{
		{"", ""},
		{dir, ""},
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{file, "not a directory"},
	} {
		err := (&Renderer{Dir: tc.dir}).Check()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Check with Dir %q: %v, want %q", tc.dir, err, tc.want)
		}
	}
}
