//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
)

// mustIP runs ip(8) with args, failing the test on an error.
func mustIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// serveInNetns runs `imds serve` with args inside the network namespace ns
// (the test binary standing in for imds), on the admin socket sock, stops it
// at the end of the test, and returns a client of its admin API once it
// answers. Its stderr goes to log.
func serveInNetns(t *testing.T, ns, sock string, log *syncBuffer, args ...string) *admin.Client {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"netns", "exec", ns, self, "serve", "--admin-socket", sock}, args...)
	server := exec.Command("ip", argv...)
	server.Env = append(os.Environ(), "IMDS_TEST_AS_MAIN=1", "GORACE=atexit_sleep_ms=0")
	server.Stderr = log
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		server.Process.Signal(syscall.SIGTERM)
		server.Wait()
	})
	client := admin.NewClient(sock)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := client.ListInstances(context.Background()); err == nil {
			return client
		}
		if time.Now().After(deadline) {
			t.Fatalf("imds serve in %s did not start:\n%s", ns, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
