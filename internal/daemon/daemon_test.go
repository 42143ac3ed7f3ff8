package daemon

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testConfig(t *testing.T) Config {
	t.Helper()
	sock, err := os.MkdirTemp("", "imds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	return Config{Listen: []string{"127.0.0.1:0"}, DataDir: filepath.Join(t.TempDir(), "data"),
		AdminSocket: filepath.Join(sock, "admin.sock"), Stderr: &lockedBuffer{}}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestOpenClose starts the zero-configuration daemon on a free port, reads
// its instance ID, and closes it twice.
func TestOpenClose(t *testing.T) {
	cfg := testConfig(t)
	d, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Addrs()) != 1 || strings.HasSuffix(d.URL(), ":0") {
		t.Fatalf("Addrs=%v URL=%s, want one address with a real port", d.Addrs(), d.URL())
	}
	if code, id := get(t, d.URL()+"/latest/meta-data/instance-id"); code != 200 || !strings.HasPrefix(id, "i-") {
		t.Errorf("instance-id: %d %q", code, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(cfg.AdminSocket); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
	if !strings.Contains(cfg.Stderr.(*lockedBuffer).String(), "serving instance metadata") {
		t.Errorf("log lacks the start-up line:\n%s", cfg.Stderr.(*lockedBuffer).String())
	}
}

// TestFailedOpenUnwinds fails the start at the very end (the metadata port
// is taken) and checks that what had started is stopped again: the admin
// socket is gone and the store can be opened by the next start.
func TestFailedOpenUnwinds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.Listen = []string{ln.Addr().String()}
	if _, err := Open(cfg); err == nil {
		t.Fatal("Open on a taken port succeeded")
	}
	if _, err := os.Stat(cfg.AdminSocket); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind by the failed start: %v", err)
	}
	cfg.Listen = []string{"127.0.0.1:0"}
	d, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open after a failed start: %v", err)
	}
	d.Close(context.Background())
}

func TestOpenRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "imdsv2", change: func(c *Config) { c.IMDSv2 = "always" }, wantErr: "--imdsv2"},
		{name: "log level", change: func(c *Config) { c.LogLevel = "loud" }, wantErr: "log level"},
		{name: "log format", change: func(c *Config) { c.LogFormat = "xml" }, wantErr: "log format"},
		{name: "config file", change: func(c *Config) { c.ConfigPath = filepath.Join(t.TempDir(), "missing.yaml") }, wantErr: "missing.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.change(&cfg)
			if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err=%v, want one with %q", err, tt.wantErr)
			}
		})
	}
}
