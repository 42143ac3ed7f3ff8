//go:build linux

package main

// The hop limit of token responses, for real: a client namespace reaches
// the server namespace through a router namespace that forwards between
// them, so the server's replies cross one router and lose one TTL, as a
// container's do on EC2. With hop_limit 1 the token response dies in the
// router; with 2 it arrives. The topology lives entirely in namespaces
// named hopNetnsPrefix<pid>-...: the veths are created inside them (never in
// the host's namespace), forwarding is enabled in the router namespace only,
// and nothing is sent outside 10.215.1.0/24 and 10.215.2.0/24 in there.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/config"
)

const hopNetnsPrefix = "imdshop-"

// TestHopDistancesConfig checks the hop_distances key of the config file.
func TestHopDistancesConfig(t *testing.T) {
	f, err := config.Parse("t.yaml", []byte("hop_distances:\n  - cidr: 172.17.0.0/16\n    hops: 2\n  - cidr: 10.1.2.3\n    hops: 64\n  - {cidr: \"fd00::1/64\", hops: 1}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	want := []config.HopDistance{
		{CIDR: netip.MustParsePrefix("172.17.0.0/16"), Hops: 2},
		{CIDR: netip.MustParsePrefix("10.1.2.3/32"), Hops: 64},
		{CIDR: netip.MustParsePrefix("fd00::/64"), Hops: 1},
	}
	if fmt.Sprint(f.HopDistances) != fmt.Sprint(want) {
		t.Errorf("hop_distances = %v, want %v", f.HopDistances, want)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"hop_distances:\n  - cidr: 172.17.0.0/16\n    hops: 0\n", "t.yaml:3: hop_distances[0].hops: must be between 1 and 64, got 0"},
		{"hop_distances:\n  - cidr: 172.17.0.0/16\n    hops: 65\n", "t.yaml:3: hop_distances[0].hops: must be between 1 and 64, got 65"},
		{"hop_distances:\n  - cidr: docker0\n    hops: 2\n", `t.yaml:2: hop_distances[0].cidr: must be an address or CIDR like 172.17.0.0/16, got "docker0"`},
		{"hop_distances:\n  - cidr: 172.17.0.0/16\n", "t.yaml:2: hop_distances[0].hops: is required"},
		{"hop_distances:\n  - hops: 2\n", "t.yaml:2: hop_distances[0].cidr: is required"},
		{"hop_distances:\n  - cidr: 172.17.0.0/16\n    hops: 2\n    hop: 3\n", "t.yaml:4: hop_distances[0].hop: unknown key; did you mean hops?"},
		{"hop_distances:\n  - {cidr: 172.17.0.0/16, hops: 2}\n  - {cidr: 172.17.1.1/16, hops: 3}\n",
			"t.yaml:3: hop_distances[1].cidr: 172.17.0.0/16 is already given in hop_distances[0]"},
		{"hop_distances: 2\n", "t.yaml:1: hop_distances: must be a list"},
		{"hop_distances:\n  -\n", "hop_distances[0]: must be a mapping"},
	} {
		_, err := config.Parse("t.yaml", []byte(tc.yaml), "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// hopCmd runs name with args, bounded in time, and returns its combined
// output.
func hopCmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// removeStaleHopNamespaces deletes the namespaces of earlier runs of this
// test whose process is gone.
func removeStaleHopNamespaces(t *testing.T) {
	for _, ns := range netnsNames(t) {
		rest, ok := strings.CutPrefix(ns, hopNetnsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.HasSuffix(strings.TrimSpace(string(comm)), ".test") {
			continue // a test still running
		}
		if _, err := ipCmd("netns", "del", ns); err != nil && !isNotFound(err) {
			t.Logf("removing the leftover namespace %s: %v", ns, err)
		}
	}
}

// hopLab is client —veth— router —veth— server, each a namespace.
type hopLab struct{ client, router, server string }

func newHopLab(t *testing.T) *hopLab {
	t.Helper()
	requireNetns(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("the hop limit test needs curl (apt-get install curl)")
	}
	removeStaleHopNamespaces(t)
	base := hopNetnsPrefix + strconv.Itoa(os.Getpid()) + "-"
	lab := &hopLab{client: base + "client", router: base + "router", server: base + "server"}
	t.Cleanup(func() {
		for _, ns := range []string{lab.client, lab.router, lab.server} {
			if _, err := ipCmd("netns", "del", ns); err != nil && !isNotFound(err) {
				t.Errorf("removing namespace %s: %v", ns, err)
			}
		}
		for _, ns := range netnsNames(t) {
			if strings.HasPrefix(ns, base) {
				t.Errorf("namespace %s is left over", ns)
			}
		}
	})
	if _, err := ipCmd("netns", "add", lab.client); err != nil {
		if strings.Contains(err.Error(), "not permitted") || strings.Contains(err.Error(), "ermission denied") {
			t.Skipf("cannot create network namespaces here: %v", err)
		}
		t.Fatal(err)
	}
	must := func(args ...string) {
		t.Helper()
		if _, err := ipCmd(args...); err != nil {
			t.Fatalf("setting up the namespaces: %v", err)
		}
	}
	must("netns", "add", lab.router)
	must("netns", "add", lab.server)
	// Both veth pairs are created in the router namespace, one end moved
	// straight into the other namespace: none appears in the host's.
	must("-n", lab.router, "link", "add", "toclient", "type", "veth", "peer", "name", "eth0", "netns", lab.client)
	must("-n", lab.router, "link", "add", "toserver", "type", "veth", "peer", "name", "eth0", "netns", lab.server)
	for _, c := range []struct{ ns, dev, addr string }{
		{lab.client, "eth0", "10.215.1.2/24"},
		{lab.router, "toclient", "10.215.1.1/24"},
		{lab.router, "toserver", "10.215.2.1/24"},
		{lab.server, "eth0", "10.215.2.2/24"},
	} {
		must("-n", c.ns, "addr", "add", c.addr, "dev", c.dev)
		must("-n", c.ns, "link", "set", c.dev, "up")
	}
	for _, ns := range []string{lab.client, lab.router, lab.server} {
		must("-n", ns, "link", "set", "lo", "up")
	}
	must("-n", lab.client, "route", "add", "10.215.2.0/24", "via", "10.215.1.1")
	must("-n", lab.server, "route", "add", "10.215.1.0/24", "via", "10.215.2.1")
	// Forwarding in the router namespace only (the setting is per namespace).
	if _, err := hopCmd(netnsCmdTimeout, "ip", "netns", "exec", lab.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}
	return lab
}

// curl runs curl in the client namespace; the exit code tells timeouts (28)
// from other failures.
func (lab *hopLab) curl(args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), netnsCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", lab.client, "curl", "-s"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		return string(out), -1
	}
	return string(out), 0
}

// serve runs `imds serve` (this test binary standing in for imds) inside
// the server namespace, on 10.215.2.2:port, for one instance with the hop
// limit given; it returns the server's log.
func (lab *hopLab) serve(t *testing.T, port, hopLimit int) *syncBuffer {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "imds.yaml")
	yaml := fmt.Sprintf("instance:\n  source_addresses: [10.215.1.2]\n  hop_limit: %d\n", hopLimit)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "10.215.2.2:" + strconv.Itoa(port)
	cmd := exec.Command("ip", "netns", "exec", lab.server, self, "serve", "--config", cfg,
		"--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--admin-socket", shortSocketPath(t))
	cmd.Env = append(os.Environ(), "IMDS_TEST_AS_MAIN=1")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill() // ip netns exec execs the server: this is its pid
		<-exited
		if t.Failed() {
			t.Logf("server log (hop_limit %d):\n%s", hopLimit, logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if out, code := lab.curl("-m", "2", "http://"+addr+"/latest/meta-data/instance-id"); code == 0 && strings.HasPrefix(out, "i-") {
			return logs
		}
		select {
		case <-exited:
			t.Fatalf("imds serve exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("imds serve in %s did not answer on %s:\n%s", lab.server, addr, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHopLimitRouted(t *testing.T) {
	lab := newHopLab(t)
	const one, two = 1338, 1339
	logOne := lab.serve(t, one, 1)
	lab.serve(t, two, 2)
	url := func(port int, path string) string { return "http://10.215.2.2:" + strconv.Itoa(port) + path }
	put := []string{"-m", "2", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60"}

	// The client reaches the server (and its requests arrive: they leave the
	// client with TTL 64), but the response to its PUT leaves with TTL 1 and
	// dies in the router; SDKs time out here and fall back to IMDSv1.
	start := time.Now()
	if out, code := lab.curl(append(put, url(one, "/latest/api/token"))...); code != 28 {
		t.Errorf("hop_limit 1, one router between: curl exit %d (%q) after %v, want 28 (timed out)", code, out, time.Since(start).Round(time.Millisecond))
	}
	if out, code := lab.curl("-m", "2", url(one, "/latest/meta-data/instance-id")); code != 0 || !strings.HasPrefix(out, "i-") {
		t.Errorf("hop_limit 1: IMDSv1 GET: curl exit %d %q, want an instance ID", code, out)
	}
	// The server gives up on the response once the client has, and says so.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logOne.String(), "fault=hop-limit") {
		if time.Now().After(deadline) {
			t.Errorf("the access log does not report the lost token response:\n%s", logOne.String())
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// With hop_limit 2 the token arrives, and the connection that carried
	// it goes on carrying responses with the normal TTL.
	out, code := lab.curl(append(put, "-w", "\n%{num_connects}\n", url(two, "/latest/api/token"),
		"--next", "-s", "-m", "2", "-w", "\n%{num_connects}\n", url(two, "/latest/meta-data/instance-id"))...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || len(lines[0]) < 20 || !strings.HasPrefix(lines[2], "i-") {
		t.Fatalf("hop_limit 2: curl exit %d %q, want a token and then an instance ID", code, out)
	}
	if lines[3] != "0" {
		t.Errorf("hop_limit 2: the GET after the token took a new connection (num_connects %s), want the same one", lines[3])
	}
	tok := lines[0]
	if out, code := lab.curl("-m", "2", "-H", "X-aws-ec2-metadata-token: "+tok, url(two, "/latest/meta-data/instance-id")); code != 0 || !strings.HasPrefix(out, "i-") {
		t.Errorf("hop_limit 2: GET with the token: curl exit %d %q", code, out)
	}
}
