package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
)

// TestClusterCLI: two servers on one etcd. An instance added with the CLI
// through host A is shown by host B, imds host list on either shows both
// with live leases, and a server that stops drops out of the list.
func TestClusterCLI(t *testing.T) {
	srv := etcdtest.Start(t)
	conf := func(host string) string {
		return fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    prefix: /cli/\n    host: %s\n", srv.ClientURL, host)
	}
	a, err := openServer(t, conf("hv-a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := openServer(t, conf("hv-b"))
	if err != nil {
		t.Fatal(err)
	}
	sockA, sockB := "--admin-socket="+a.d.Admin.SocketPath, "--admin-socket="+b.d.Admin.SocketPath

	mustRunCLI(t, "instance", "add", "web-1", "--ip", "10.30.0.5", sockA)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _, code := runCLI(t, "instance", "get", "web-1", "-o", "json", sockB)
		if code == 0 && strings.Contains(out, "10.30.0.5") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host B does not show web-1 after 10 s: %s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if out := mustRunCLI(t, "instance", "list", sockA); strings.Contains(out, "HOST") {
		t.Errorf("imds instance list shows a HOST column with no instance pinned:\n%s", out)
	}
	// Pinned instances: one to B, one to a host that is not live. Unpinned
	// are web-1 and each host's zero-configuration instance.
	mustFailCLI(t, `--host: must be a host name without / or spaces, got "hv b"`, "instance", "add", "vm-x", "--host", "hv b", sockA)
	mustRunCLI(t, "instance", "add", "vm-b", "--ip", "10.30.0.9", "--host", "hv-b", sockA)
	mustRunCLI(t, "instance", "add", "vm-gone", "--ip", "10.30.0.10", "--host", "hv-c", sockA)
	mustRunCLI(t, "instance", "set", "vm-gone", "--host", "hv-gone", sockA)
	out := mustRunCLI(t, "instance", "list", sockA)
	if !strings.Contains(out, "HOST") || !regexp.MustCompile(`(?m)^vm-b .* hv-b$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^web-1 .* -$`).MatchString(out) || !strings.Contains(out, "hv-gone") {
		t.Errorf("imds instance list with pinned instances:\n%s", out)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		out = mustRunCLI(t, "host", "list", sockB)
		if strings.Contains(out, "pinned to no live host (served by none): 1") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(out, "hv-a ") || !strings.Contains(out, "hv-b (this host)") || !strings.Contains(out, "LEASE") ||
		!regexp.MustCompile(`(?m)^hv-a .* 0$`).MatchString(out) || !regexp.MustCompile(`(?m)^hv-b \(this host\) .* 1$`).MatchString(out) ||
		!strings.Contains(out, "unpinned instances (served by every host): 2; pinned to no live host (served by none): 1") {
		t.Errorf("imds host list on B:\n%s", out)
	}
	var doc struct {
		Hosts []struct {
			Name       string   `json:"name"`
			Listen     []string `json:"listen"`
			TTLSeconds int      `json:"ttl_seconds"`
			Self       bool     `json:"self"`
			Pinned     *int     `json:"pinned"`
		} `json:"hosts"`
		Unpinned *int `json:"unpinned"`
	}
	if err := json.Unmarshal([]byte(mustRunCLI(t, "host", "list", "-o", "json", sockA)), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Hosts) != 2 || doc.Hosts[0].Name != "hv-a" || !doc.Hosts[0].Self || doc.Hosts[1].Self ||
		doc.Hosts[0].TTLSeconds <= 0 || len(doc.Hosts[0].Listen) != 1 ||
		doc.Hosts[1].Pinned == nil || *doc.Hosts[1].Pinned != 1 || doc.Unpinned == nil || *doc.Unpinned != 2 {
		t.Errorf("imds host list -o json on A: %+v", doc)
	}

	if err := b.d.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if out := mustRunCLI(t, "host", "list", sockA); strings.Contains(out, "hv-b") {
		t.Errorf("a closed host is still listed:\n%s", out)
	}
}

// TestHostListWithoutEtcd: without store.etcd, imds host list says so.
func TestHostListWithoutEtcd(t *testing.T) {
	s, err := openServer(t, "")
	if err != nil {
		t.Fatal(err)
	}
	mustFailCLI(t, "store.etcd is not set", "host", "list", "--admin-socket="+s.d.Admin.SocketPath)
}

// TestCrashSafetyOnEtcd registers instances concurrently through a real
// server process on etcd, kills it with SIGKILL mid-way, and checks that
// every acknowledged registration is served by another host; then the
// killed host starts again under its own name (its lease left over from
// the kill is waited out) and has them all too.
func TestCrashSafetyOnEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("a server process killed and restarted")
	}
	srv := etcdtest.Start(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "imds.yaml")
	doc := fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    prefix: /crash/\n    host: hv-crash\n", srv.ClientURL)
	if err := os.WriteFile(conf, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := shortSocketPath(t)
	client := admin.NewClient(sock)
	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(self, "serve", "--config", conf, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
			"--admin-socket", sock, "--log-level", "warn")
		cmd.Env = append(os.Environ(), "IMDS_TEST_AS_MAIN=1")
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := client.ListInstances(t.Context()); err == nil {
				return cmd
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("the server did not come up")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	server := start()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 200 {
				spec := &ec2.Instance{Name: fmt.Sprintf("vm-%d-%03d", w, i), SourceAddrs: []string{fmt.Sprintf("10.78.%d.%d", w, i+1)}}
				if _, err := client.AddInstance(context.Background(), spec); err != nil {
					return // the server is gone
				}
				mu.Lock()
				acked = append(acked, spec.Name)
				mu.Unlock()
			}
		})
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 100 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := server.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	server.Wait()
	wg.Wait()
	mu.Lock()
	want := slices.Clone(acked)
	mu.Unlock()

	other, err := openServer(t, strings.ReplaceAll(doc, "hv-crash", "hv-other"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(who string, list []*ec2.Instance) {
		t.Helper()
		have := map[string]bool{}
		for _, inst := range list {
			have[inst.Name] = true
		}
		for _, name := range want {
			if !have[name] {
				t.Errorf("%s lacks %s, acknowledged before the kill", who, name)
			}
		}
	}
	list, _ := other.d.Registry.ListInstances(t.Context())
	check("another host", list)
	t.Logf("%d registrations acknowledged before SIGKILL, %d instances stored", len(want), len(list)-1)

	restarted := start()
	defer func() { restarted.Process.Kill(); restarted.Wait() }()
	list, err = client.ListInstances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	check("the restarted host", list)
}
