package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
)

// TestMain lets the test binary stand in for the imds binary: with
// IMDS_TEST_AS_MAIN=1 it runs the command line instead of the tests, so
// README examples can call `imds` without building it.
func TestMain(m *testing.M) {
	if os.Getenv("IMDS_TEST_AS_MAIN") == "1" {
		// As main does: SIGTERM and SIGINT shut the server down cleanly.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

type fence struct{ lang, body string }

// exampleDocs are the files whose shell and YAML examples TestReadmeExamples
// runs: README.md and the guides it sends users to first.
func exampleDocs() []string {
	return []string{"README.md", "docs/credentials.md", "docs/events-and-faults.md", "docs/operations.md"}
}

func readmeBlocks(t *testing.T) []fence {
	t.Helper()
	var out []fence
	for _, name := range exampleDocs() {
		b, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range regexp.MustCompile("(?ms)^```(\\w*)\\n(.*?)^```").FindAllStringSubmatch(string(b), -1) {
			out = append(out, fence{m[1], m[2]})
			n++
		}
		if n == 0 {
			t.Fatalf("found no code blocks in %s", name)
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d code blocks in %v", len(out), exampleDocs())
	}
	return out
}

// TestReadmeExamples runs every shell example of README.md (and of
// exampleDocs) against a server
// started by the test (the address and `go run ./cmd/imds` are swapped for the
// test's own) and decodes every YAML example with the real config parser.
func TestReadmeExamples(t *testing.T) {
	srv := mustRunServer(t, "", "")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "imds")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nIMDS_TEST_AS_MAIN=1 exec "+self+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ran := 0
	for i, blk := range readmeBlocks(t) {
		switch blk.lang {
		case "yaml":
			f, err := config.Parse("README.md block", []byte(blk.body), dir)
			if err != nil {
				t.Errorf("README YAML block %d: %v", i, err)
				continue
			}
			if _, err := f.BuildInstance(ec2.DeriveOptions{Seed: []byte("readme")}); err != nil {
				t.Errorf("README YAML block %d: %v", i, err)
			}
			ran++
		case "sh":
			body := blk.body
			if strings.Contains(body, "cmd/imds serve") || strings.Contains(body, "test-all.sh") {
				continue // the server is already running; the test command is what is running this
			}
			body = strings.ReplaceAll(body, "http://127.0.0.1:1338", srv.URL)
			body = strings.ReplaceAll(body, "go run ./cmd/imds", wrapper)
			if strings.Contains(body, "openssl") {
				if _, err := exec.LookPath("openssl"); err != nil {
					t.Skip("openssl not installed (scripts/deps.sh installs it)")
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", body)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "IMDS_DATA_DIR="+srv.DataDir, "IMDS_ADMIN_SOCKET="+srv.d.Admin.SocketPath)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			cancel()
			switch {
			case err != nil:
				t.Errorf("README block %d failed: %v\n%s\n%s", i, err, body, out.String())
			case strings.Contains(out.String(), "<title>"):
				t.Errorf("README block %d got an error page:\n%s", i, out.String())
			case strings.Contains(body, "openssl") && !strings.Contains(out.String(), "Verification successful"):
				t.Errorf("README block %d did not verify:\n%s", i, out.String())
			case strings.Contains(body, "curl -s http") && !strings.Contains(body, ">") && !strings.Contains(out.String(), `"Code" : "Success"`):
				t.Errorf("README block %d printed no credentials:\n%s", i, out.String())
			}
			ran++
		}
	}
	if ran < 4 {
		t.Errorf("ran only %d README examples", ran)
	}
}

// TestServeErrors checks that mistakes a user can make end with one clear
// line naming the input, and a non-zero exit.
func TestServeErrors(t *testing.T) {
	dir := t.TempDir()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: 127.0.0.1:1338\ninstance:\n  regoin: eu-west-1\n  imdsv2: sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noTemplates := filepath.Join(dir, "no-templates.yaml")
	if err := os.WriteFile(noTemplates, []byte("user_data_templates:\n  dir: "+filepath.Join(dir, "missing")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"missing template directory", []string{"serve", "--config", noTemplates, "--data-dir", dir}, nil,
			[]string{"user_data_templates.dir " + filepath.Join(dir, "missing") + ": ", "no such file or directory"}},
		{"config errors", []string{"serve", "--config", bad}, nil,
			[]string{bad + ":3: instance.regoin: unknown key", bad + ":4: instance.imdsv2: "}},
		{"missing config", []string{"serve", "--config", filepath.Join(dir, "nope.yaml")}, nil, []string{"nope.yaml"}},
		{"bad imdsv2 flag", []string{"serve", "--imdsv2", "sometimes", "--data-dir", dir}, nil, []string{"--imdsv2: must be optional or required"}},
		{"bad env", []string{"serve", "--data-dir", dir}, []string{"IMDS_IMDSV2", "never"}, []string{`environment variable IMDS_IMDSV2: must be optional or required, got "never"`}},
		{"bad env log level", []string{"serve", "--data-dir", dir}, []string{"IMDS_LOG_LEVEL", "loud"}, []string{`environment variable IMDS_LOG_LEVEL: must be debug, info, warn or error, got "loud"`}},
		{"bad env listen", []string{"serve", "--data-dir", dir}, []string{"IMDS_LISTEN", "127.0.0.1:1338,nonsense"}, []string{`environment variable IMDS_LISTEN: must be host:port like 127.0.0.1:1338, got "nonsense"`}},
		{"bad listen", []string{"serve", "--listen", "127.0.0.1:99999", "--data-dir", dir}, nil, []string{"127.0.0.1:99999"}},
		{"bad log level", []string{"serve", "--log-level", "loud", "--data-dir", dir}, nil, []string{`--log-level: must be debug, info, warn or error, got "loud"`}},
		{"port in use", []string{"serve", "--listen", held.Addr().String(), "--data-dir", dir}, nil, []string{"listen " + held.Addr().String(), "address already in use"}},
		{"unknown flag", []string{"serve", "--nope"}, nil, []string{"unknown flag --nope; see imds serve --help"}},
		{"extra args", []string{"serve", "extra"}, nil, []string{`serve takes no arguments, got "extra"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("IMDS_ADMIN_SOCKET", shortSocketPath(t))
			for i := 0; i+1 < len(tt.env); i += 2 {
				t.Setenv(tt.env[i], tt.env[i+1])
			}
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if code := run(ctx, tt.args, &out, &errOut); code == 0 {
				t.Fatalf("exit 0, want non-zero; stderr=%s", errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr=%q, want it to contain %q", errOut.String(), w)
				}
			}
			if !strings.HasPrefix(errOut.String(), "imds: ") {
				t.Errorf("stderr=%q, want it to start with imds: ", errOut.String())
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "imds ") {
		t.Errorf("imds version: exit %d, output %q", code, out.String())
	}
}

// TestEnvironmentPrecedence checks flag > IMDS_* environment > defaults.
func TestEnvironmentPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("IMDS_IMDSV2", "required")
	t.Setenv("IMDS_DATA_DIR", dir)
	t.Setenv("IMDS_LISTEN", "127.0.0.1:0")
	t.Setenv("IMDS_ADMIN_SOCKET", shortSocketPath(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--log-format", "json"}, &errOut, &errOut) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errOut.String(), "serving instance metadata") {
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after cancel: %s", code, errOut.String())
	}
	logs := errOut.String()
	for _, want := range []string{`"imdsv2":"required"`, `"data_dir":"` + dir + `"`, `"listen":"127.0.0.1:`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log %q lacks %s", logs, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "identity", "identity-key.pem")); err != nil {
		t.Errorf("signing key not in IMDS_DATA_DIR: %v", err)
	}
}

// TestDocsConfigExamples decodes every imds config example of the docs
// (YAML blocks that start with "# imds.yaml") with the real parser.
func TestDocsConfigExamples(t *testing.T) {
	n := 0
	// configuration.md's complete example names files beside it; the
	// config package's testdata has them.
	for _, doc := range []struct{ name, baseDir string }{
		{"networking.md", ""}, {"libvirt.md", ""}, {"metrics.md", ""}, {"cluster.md", ""},
		{"configuration.md", filepath.Join("..", "..", "internal", "config", "testdata")},
	} {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", doc.name))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile("(?ms)^```yaml\\n(.*?)^```").FindAllStringSubmatch(string(b), -1) {
			if !strings.HasPrefix(m[1], "# imds.yaml") {
				continue
			}
			n++
			baseDir := doc.baseDir
			if baseDir == "" {
				baseDir = t.TempDir()
			}
			f, err := config.Parse(doc.name, []byte(m[1]), baseDir)
			if err != nil {
				t.Errorf("docs example %d: %v", n, err)
				continue
			}
			if _, err := f.BuildInstances(ec2.DeriveOptions{Seed: []byte("docs")}); err != nil {
				t.Errorf("docs example %d: %v", n, err)
			}
		}
	}
	if n < 5 {
		t.Errorf("found %d imds config examples in docs/, want the ones of networking.md, libvirt.md, metrics.md and configuration.md", n)
	}
}
