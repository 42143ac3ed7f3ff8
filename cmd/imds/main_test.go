package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/daemon"
	"github.com/imdsdev/imds/internal/ec2"
)

// testServer is an `imds serve` started in-process by a test.
type testServer struct {
	URL     string
	DataDir string
	d       *daemon.Daemon
	logs    *syncBuffer
}

// syncBuffer collects the server's log for assertions. The daemon batches
// its log, so String flushes it first when flush is set.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	flush func() error
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	if s.flush != nil {
		s.flush()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mustRunServer starts `imds serve` on a free loopback port with a fresh data
// directory. configYAML, when not empty, is written to a config file and
// passed with --config; imdsv2 is the --imdsv2 flag ("" for none).
func mustRunServer(t testing.TB, configYAML, imdsv2 string) *testServer {
	t.Helper()
	return startTestServer(t, configYAML, imdsv2, nil)
}

// startTestServer is mustRunServer with a clock of the test's (nil for the
// real one).
func startTestServer(t testing.TB, configYAML, imdsv2 string, clk clock.Clock) *testServer {
	t.Helper()
	return startServer(t, configYAML, func(c *daemon.Config) { c.IMDSv2, c.Clock = imdsv2, clk })
}

// startServer starts `imds serve` in-process like mustRunServer; each of
// opts then changes the daemon.Config (listen addresses, clock, ...).
func startServer(t testing.TB, configYAML string, opts ...func(*daemon.Config)) *testServer {
	t.Helper()
	srv, err := openServer(t, configYAML, opts...)
	if err != nil {
		t.Fatalf("daemon.Open: %v\nconfig:\n%s", err, configYAML)
	}
	return srv
}

// openServer is startServer returning the error of daemon.Open, for tests
// that skip when, say, ::1 is missing.
func openServer(t testing.TB, configYAML string, opts ...func(*daemon.Config)) (*testServer, error) {
	t.Helper()
	dir := t.TempDir()
	logs := &syncBuffer{}
	cfg := daemon.Config{Listen: []string{"127.0.0.1:0"}, DataDir: filepath.Join(dir, "data"),
		AdminSocket: shortSocketPath(t), Stderr: logs}
	if configYAML != "" {
		cfg.ConfigPath = filepath.Join(dir, "imds.yaml")
		if err := os.WriteFile(cfg.ConfigPath, []byte(configYAML), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := daemon.Open(cfg)
	if err != nil {
		return nil, err
	}
	logs.flush = d.Flush
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &testServer{URL: d.URL(), DataDir: d.DataDir, d: d, logs: logs}, nil
}

// at is the server as seen on its i-th listen address.
func (s *testServer) at(i int) *testServer {
	c := *s
	c.URL = "http://" + s.d.Addrs()[i].String()
	return &c
}

// listen sets the metadata listen addresses.
func listen(addrs ...string) func(*daemon.Config) {
	return func(c *daemon.Config) { c.Listen = addrs }
}

// shortSocketPath returns a Unix socket path of the test's own that fits the
// 108-byte limit (t.TempDir paths can be longer).
func shortSocketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "imds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "admin.sock")
}

func TestCLIMessage(t *testing.T) {
	notFound := ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", "x")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("--ip: bad"), "--ip: bad"},
		{"application error", notFound, `no instance named "x"`},
		{"wrapped", fmt.Errorf("web-1: %w", notFound), `web-1: no instance named "x"`},
		{"joined", errors.Join(notFound, ec2.Errorf(ec2.EFORBIDDEN, "declared in the config file")), "no instance named \"x\"\ndeclared in the config file"},
		{"internal", ec2.Errorf(ec2.EINTERNAL, "db: disk full"), "the server failed with an internal error; see its log"},
	}
	for _, tt := range tests {
		if got := cliMessage(tt.err); got != tt.want {
			t.Errorf("%s: cliMessage=%q, want %q", tt.name, got, tt.want)
		}
	}
}
