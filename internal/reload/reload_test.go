package reload

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/registry"
)

func TestInstances(t *testing.T) {
	derive := ec2.DeriveOptions{Seed: []byte("test"), Launch: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} // fixed instant: a launch time, only derived into instance fields
	tests := []struct {
		name, yaml, imdsv2 string
		wantNames          []string
		wantDefault        registry.Default
		wantTokens         string
		wantErr            string
	}{
		{name: "zero configuration", wantNames: []string{ec2.DefaultInstanceName}, wantDefault: registry.Default{Name: ec2.DefaultInstanceName, Implicit: true, ZeroConfig: true}},
		{name: "no instances in the file", yaml: "listen: 127.0.0.1:1338\n", wantNames: []string{ec2.DefaultInstanceName},
			wantDefault: registry.Default{Name: ec2.DefaultInstanceName, Implicit: true, ZeroConfig: true}},
		{name: "instance:", yaml: "instance:\n  name: web-1\n", wantNames: []string{"web-1"},
			wantDefault: registry.Default{Name: "web-1", Implicit: true}},
		{name: "instances", yaml: "instances:\n  - name: a\n    source_addresses: [10.0.0.1]\n  - name: b\n    source_addresses: [10.0.0.2]\n",
			imdsv2: ec2.TokensRequired, wantNames: []string{"a", "b"}, wantTokens: ec2.TokensRequired},
		{name: "bad imdsv2", imdsv2: "always", wantErr: "--imdsv2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := config.Default()
			if tt.yaml != "" {
				path := filepath.Join(t.TempDir(), "imds.yaml")
				if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				var err error
				if file, err = config.Load(path); err != nil {
					t.Fatal(err)
				}
			}
			insts, def, err := Instances(file, derive, tt.imdsv2)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err=%v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, inst := range insts {
				names = append(names, inst.Name)
				if tt.wantTokens != "" && inst.Metadata.HTTPTokens != tt.wantTokens {
					t.Errorf("%s: HTTPTokens=%q, want %q", inst.Name, inst.Metadata.HTTPTokens, tt.wantTokens)
				}
			}
			if strings.Join(names, ",") != strings.Join(tt.wantNames, ",") || def != tt.wantDefault {
				t.Errorf("names=%v default=%+v, want %v %+v", names, def, tt.wantNames, tt.wantDefault)
			}
		})
	}
}

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

// TestWatcherPolls changes the file's modification time and moves a fake
// clock past the poll interval: the good file is applied, the broken one is
// reported and not applied.
func TestWatcherPolls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imds.yaml")
	write := func(s string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	write("instances:\n  - name: a\n    source_addresses: [10.0.0.1]\n", base)
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) // fixed instant: starts a fake clock (internal/clock)
	applied := make(chan int, 4)
	logs := &lockedBuffer{}
	w := &Watcher{Path: path, Clock: clk, Interval: time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Apply: func(_ context.Context, file *config.File) (Outcome, error) {
			applied <- len(file.Instances)
			return Outcome{Instances: len(file.Instances)}, nil
		}}
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); w.Wait() }()
	created := clk.TimerCreated()
	w.Start(ctx)
	tick := func() {
		t.Helper()
		select {
		case <-created:
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher never waited on the clock")
		}
		created = clk.TimerCreated()
		clk.Advance(time.Second)
	}
	write("instances:\n  - name: a\n    source_addresses: [10.0.0.1]\n  - name: b\n    source_addresses: [10.0.0.2]\n", base.Add(time.Minute))
	tick()
	select {
	case n := <-applied:
		if n != 2 {
			t.Errorf("applied %d instances, want 2", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the changed file was never applied")
	}
	write("instances:\n  - name: a\n    source_addresses: [not-an-ip]\n", base.Add(2*time.Minute))
	tick()
	tick() // the reload of the broken file is done once the next timer is made
	select {
	case <-created:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher stopped")
	}
	if got := logs.String(); !strings.Contains(got, "configuration not reloaded") || !strings.Contains(got, "source_addresses[0]") {
		t.Errorf("log lacks the failed reload naming the field:\n%s", got)
	}
	select {
	case n := <-applied:
		t.Errorf("a broken file was applied (%d instances)", n)
	default:
	}
}

func TestDiff(t *testing.T) {
	load := func(yaml string) *config.File {
		t.Helper()
		f, err := config.Parse("t.yaml", []byte(yaml), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	base := "roles:\n  web: {}\ninstance:\n  role: web\n"
	for _, tc := range []struct {
		name             string
		next             string
		changed, restart []string
	}{
		{"nothing", base, nil, nil},
		{"a role moved by a comment", "# a comment\n" + base, nil, nil},
		{"a new role", base + "  # in roles\n", nil, nil},
		{"roles", "roles:\n  web: {}\n  db: {}\ninstance:\n  role: web\n", []string{"roles"}, nil},
		{"instances", "roles:\n  web: {}\ninstance:\n  role: web\n  region: eu-west-1\n", []string{"instances"}, nil},
		{"identity and hosts", base + "identity:\n  trusted_proxies: [10.0.0.1/32]\n  proxy_secret: 0123456789abcdef0123\nallowed_hosts: [imds]\n",
			[]string{"identity", "allowed_hosts"}, nil},
		{"listen and limits", base + "listen: [\"127.0.0.1:1339\"]\nlimits:\n  max_connections: 10\n", nil, []string{"listen", "limits"}},
		{"log and metrics", base + "log:\n  level: debug\nmetrics:\n  listen: 127.0.0.1:9101\n", nil, []string{"metrics", "log"}},
	} {
		changed, restart := Diff(load(base), load(tc.next))
		if !slices.Equal(changed, tc.changed) || !slices.Equal(restart, tc.restart) {
			t.Errorf("%s: Diff = %v, %v; want %v, %v", tc.name, changed, restart, tc.changed, tc.restart)
		}
	}
}
