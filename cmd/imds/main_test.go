package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/clock"
)

// testServer is an `imds serve` started in-process by a test.
type testServer struct {
	URL     string
	DataDir string
	d       *daemon
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
	dir := t.TempDir()
	o := serveOptions{listen: []string{"127.0.0.1:0"}, dataDir: filepath.Join(dir, "data"), imdsv2: imdsv2,
		adminSock: shortSocketPath(t), clock: clk}
	if configYAML != "" {
		o.configPath = filepath.Join(dir, "imds.yaml")
		if err := os.WriteFile(o.configPath, []byte(configYAML), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncBuffer{}
	d, err := openDaemon(o, logs)
	if err != nil {
		t.Fatalf("openDaemon: %v", err)
	}
	logs.flush = d.logw.Flush
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testServer{URL: d.metadata.URL(), DataDir: o.dataDir, d: d, logs: logs}
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
