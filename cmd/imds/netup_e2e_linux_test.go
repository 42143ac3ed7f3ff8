//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/netsetup/netsetuptest"
)

// TestNetUpContainerReachesMetadata is issue 5's scene: a "host" namespace
// with a bridge runs `imds net up` and an unprivileged `imds serve` on a high
// port; a "container" namespace on the bridge reaches http://169.254.169.254/
// and http://[fd00:ec2::254]/ with curl, the Go SDK and botocore, and the
// server sees the container's own address. `imds net down` then leaves the
// host namespace's ruleset and addresses exactly as they were.
func TestNetUpContainerReachesMetadata(t *testing.T) {
	hostNS := newNetTestNS(t, "host")
	ctrNS := newNetTestNS(t, "ctr")
	sub := 216
	ip := func(args ...string) { t.Helper(); mustIP(t, args...) }
	bridgeV4, ctrV4 := fmt.Sprintf("10.%d.0.1", sub), fmt.Sprintf("10.%d.0.2", sub)
	bridgeV6, ctrV6 := fmt.Sprintf("fd00:%d::1", sub), fmt.Sprintf("fd00:%d::2", sub)
	ip("-n", hostNS, "link", "add", "br0", "type", "bridge")
	ip("-n", hostNS, "addr", "add", bridgeV4+"/24", "dev", "br0")
	ip("-n", hostNS, "addr", "add", bridgeV6+"/64", "dev", "br0", "nodad")
	ip("-n", hostNS, "link", "set", "br0", "up")
	ip("-n", hostNS, "link", "add", "vh", "type", "veth", "peer", "name", "eth0", "netns", ctrNS)
	ip("-n", hostNS, "link", "set", "vh", "master", "br0", "up")
	ip("-n", ctrNS, "addr", "add", ctrV4+"/24", "dev", "eth0")
	ip("-n", ctrNS, "addr", "add", ctrV6+"/64", "dev", "eth0", "nodad")
	ip("-n", ctrNS, "link", "set", "eth0", "up")
	ip("-n", ctrNS, "route", "add", "default", "via", bridgeV4)
	ip("-n", ctrNS, "-6", "route", "add", "default", "via", bridgeV6)

	snapshot := func() string { t.Helper(); return netsetuptest.Snapshot(t, hostNS) }
	before := snapshot()

	// The server: unprivileged port, inside the host namespace.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "imds.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`instances:
  - name: container
    source_addresses: [%s, "%s"]
    role: container-role
    tags_in_metadata: true
    tags: {Name: container}
    user_data: "#cloud-config\n"
`, ctrV4, ctrV6)), 0o600)
	sock := shortSocketPath(t)
	client := serveInNetns(t, hostNS, sock, &syncBuffer{}, "--config", cfg, "--data-dir", filepath.Join(dir, "data"),
		"--listen", bridgeV4+":1338", "--listen", "["+bridgeV6+"]:1338", "--log-level", "warn")

	// The privileged one-shot.
	state := filepath.Join(dir, "state")
	if out, err := runNet(t, "up", "--netns", hostNS, "--bridge", "br0", "--ipv6", "--port", "1338", "--state-dir", state); err != nil {
		t.Fatalf("imds net up: %v\n%s", err, out)
	}
	ctr := &netnsHost{NS: ctrNS}
	for _, base := range []string{"http://169.254.169.254", "http://[fd00:ec2::254]"} {
		if status, ok := curlStatus(t, ctr, "GET", base+"/latest/meta-data/instance-id", nil); ok && status != 200 {
			t.Errorf("curl %s from the container: status %d", base, status)
		}
		res := goHelper(t, ctr, netnsHelperJob{URL: base, SDK: true})
		if len(res.SDKError) > 0 || res.NameTag != "container" || res.RoleName != "container-role" || !strings.HasPrefix(res.AccessKeyID, "ASIA") {
			t.Errorf("Go SDK through %s: %+v", base, res)
		}
		out := botocoreInNetns(t, ctr, base)
		if out["role_name"] != "container-role" || out["method"] != "iam-role" {
			t.Errorf("botocore through %s: %v", base, out)
		}
	}
	recs, err := client.Requests(context.Background(), "container", 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		host := r.Remote[:strings.LastIndexByte(r.Remote, ':')]
		seen[strings.Trim(host, "[]")] = true
	}
	if !seen[ctrV4] || !seen[ctrV6] || len(seen) != 2 {
		t.Errorf("the server saw requests from %v, want exactly the container's own %s and %s", seen, ctrV4, ctrV6)
	}

	// Down restores the host namespace exactly.
	if out, err := runNet(t, "down", "--netns", hostNS, "--state-dir", state); err != nil {
		t.Fatalf("imds net down: %v\n%s", err, out)
	}
	if after := snapshot(); after != before {
		t.Errorf("after net down the host namespace differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("ip", "netns", "exec", ctrNS, "curl", "-s", "-m", "1", "--noproxy", "*", "http://169.254.169.254/latest/meta-data/instance-id").CombinedOutput()
		if err == nil {
			t.Errorf("the metadata address still answers after net down: %s", out)
		}
	}
}

// TestNetStatusComposeRecipe is docs/networking.md's compose recipe, where
// issue 13 found net status saying "status 404 ... not reachable" and exit 1
// while the containers worked: the host is not an instance, so imds answers
// the host's own probe (from 169.254.169.254, the address on lo) with 404.
// That is reachable: status says so and how to give the host an instance,
// and exits 0.
func TestNetStatusComposeRecipe(t *testing.T) {
	hostNS := newNetTestNS(t, "cmph")
	ctrNS := newNetTestNS(t, "cmpc")
	ip := func(args ...string) { t.Helper(); mustIP(t, args...) }
	ip("-n", hostNS, "link", "add", "br-imds", "type", "bridge")
	ip("-n", hostNS, "addr", "add", "172.30.0.1/24", "dev", "br-imds")
	ip("-n", hostNS, "link", "set", "br-imds", "up")
	ip("-n", hostNS, "link", "add", "vh", "type", "veth", "peer", "name", "eth0", "netns", ctrNS)
	ip("-n", hostNS, "link", "set", "vh", "master", "br-imds", "up")
	ip("-n", ctrNS, "addr", "add", "172.30.0.10/24", "dev", "eth0")
	ip("-n", ctrNS, "link", "set", "eth0", "up")
	ip("-n", ctrNS, "route", "add", "default", "via", "172.30.0.1")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "imds.yaml")
	if err := os.WriteFile(cfg, []byte("instances:\n  - name: app\n    source_addresses: [172.30.0.10]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if out, err := runNet(t, "up", "--netns", hostNS, "--bridge", "br-imds", "--port", "1338", "--state-dir", state); err != nil {
		t.Fatalf("imds net up: %v\n%s", err, out)
	}
	serveInNetns(t, hostNS, shortSocketPath(t), &syncBuffer{}, "--config", cfg, "--data-dir", filepath.Join(dir, "data"),
		"--log-level", "warn", "--listen", "172.30.0.1:1338", "--listen", "127.0.0.1:1338")
	if status, ok := curlStatus(t, &netnsHost{NS: ctrNS}, "GET", "http://169.254.169.254/latest/meta-data/instance-id", nil); ok && status != 200 {
		t.Fatalf("the container gets status %d", status)
	}
	out, err := runNet(t, "status", "--state-dir", state)
	for _, want := range []string{
		"lo 169.254.169.254:80: reachable: imds answered 404 because 169.254.169.254, the probe's source (this host), is not an instance; to give it one: imds instance add NAME --ip 169.254.169.254",
		"bridge br-imds 169.254.169.254:80: reachable: imds answered 404 because 172.30.0.1",
		"OK: every path reaches imds",
	} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("imds net status in the compose recipe: %v, want %q", err, want)
		}
	}
	if out, err := runNet(t, "down", "--netns", hostNS, "--state-dir", state); err != nil {
		t.Fatalf("imds net down: %v\n%s", err, out)
	}
}
