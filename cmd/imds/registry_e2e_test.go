package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
)

func body(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestInstanceCLIAgainstServer registers an instance with the CLI on a
// running server: its address is served as that instance at once, and
// removing it gives the address back to the default instance.
func TestInstanceCLIAgainstServer(t *testing.T) {
	srv := mustRunServer(t, "", "")
	sock := srv.d.Admin.SocketPath
	cli := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append(args, "--admin-socket", sock), &out, &errOut); code != 0 {
			t.Fatalf("imds %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		return out.String()
	}
	_, defaultID := body(t, srv.URL+"/latest/meta-data/instance-id")
	ud := filepath.Join(t.TempDir(), "ud")
	os.WriteFile(ud, []byte("#cloud-config\nhostname: vm-1\n"), 0o644)
	cli("instance", "add", "vm-1", "--ip", "127.0.0.1", "--tag", "Name=vm-1", "--role", "vm-role", "--user-data", ud)

	_, id := body(t, srv.URL+"/latest/meta-data/instance-id")
	if id == defaultID || !strings.HasPrefix(id, "i-0") {
		t.Fatalf("after add, 127.0.0.1 is served instance-id %q (the default is %q)", id, defaultID)
	}
	if _, got := body(t, srv.URL+"/latest/user-data"); got != "#cloud-config\nhostname: vm-1\n" {
		t.Errorf("user-data %q", got)
	}
	if _, got := body(t, srv.URL+"/latest/meta-data/iam/security-credentials/"); got != "vm-role" {
		t.Errorf("role %q", got)
	}
	if _, got := body(t, srv.URL+"/latest/meta-data/local-ipv4"); got != "127.0.0.1" {
		t.Errorf("local-ipv4 %q, want the registered address", got)
	}
	list := cli("instance", "list")
	if !strings.Contains(list, "vm-1") || !strings.Contains(list, id) || !strings.Contains(list, "default") {
		t.Errorf("instance list:\n%s", list)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(cli("instance", "get", "vm-1", "-o", "json")), &doc); err != nil || doc["instance_id"] != id || doc["origin"] != "api" {
		t.Errorf("instance get -o json: %v %v", doc, err)
	}
	cli("instance", "set", "vm-1", "--tag", "env=dev", "--imdsv2", "required")
	if code, _ := body(t, srv.URL+"/latest/meta-data/instance-id"); code != 401 {
		t.Errorf("after set --imdsv2 required, a v1 request got %d, want 401", code)
	}
	// The config's instance cannot be changed through the API.
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"instance", "rm", "default", "--admin-socket", sock}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "config file") {
		t.Errorf("rm of the config instance: exit %d, %q", code, errOut.String())
	}
	cli("instance", "rm", "vm-1")
	if _, got := body(t, srv.URL+"/latest/meta-data/instance-id"); got != defaultID {
		t.Errorf("after rm, instance-id %q, want the default %q", got, defaultID)
	}
}

// TestCrashSafetyOfRegistrations registers instances concurrently on a real
// server process, kills it with SIGKILL mid-way and restarts it: every
// registration the admin API acknowledged is there.
func TestCrashSafetyOfRegistrations(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	sock := shortSocketPath(t)
	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(self, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--admin-socket", sock, "--log-level", "warn")
		cmd.Env = append(os.Environ(), "IMDS_TEST_AS_MAIN=1")
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		client := admin.NewClient(sock)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := client.ListInstances(context.Background()); err == nil {
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
	client := admin.NewClient(sock)
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				spec := ec2.NewDefaultInstance()
				spec.Name = fmt.Sprintf("vm-%d-%d", w, i)
				spec.SourceAddrs = []string{fmt.Sprintf("10.77.%d.%d", w, i%250+1)}
				if i >= 250 {
					return
				}
				if _, err := client.AddInstance(context.Background(), spec); err == nil {
					mu.Lock()
					acked = append(acked, spec.Name)
					mu.Unlock()
				}
			}
		}()
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
	close(stop)
	wg.Wait()
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()

	os.Remove(sock) // a killed server leaves its socket file; the new one replaces it either way
	server = start()
	defer func() {
		server.Process.Signal(syscall.SIGTERM)
		server.Wait()
	}()
	list, err := client.ListInstances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, inst := range list {
		have[inst.Name] = true
	}
	missing := 0
	for _, name := range want {
		if !have[name] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged registrations lost after kill -9", missing, len(want))
	}
	t.Logf("%d registrations acknowledged before kill -9, %d instances after restart, none lost", len(want), len(list)-1)
}
