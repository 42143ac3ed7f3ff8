//go:build linux

package main

// imds net up/status/down inside network namespaces the test creates
// (imdsnet-<pid>-...). Nothing of the host's own network is touched and no
// request goes to the host's 169.254.169.254.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/netsetup"
)

// newNetTestNS creates a namespace with lo up, deleted when the test ends.
func newNetTestNS(t *testing.T, role string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("imds net tests need root: they create network namespaces and change nftables inside them")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("imds net tests need %s", tool)
		}
	}
	name := fmt.Sprintf("imdsnet-%d-cmd%s", os.Getpid(), role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v %s", name, err, out)
	}
	return name
}

func TestNetCommandUpStatusDown(t *testing.T) {
	ns := newNetTestNS(t, "a")
	dir := t.TempDir()
	port := strconv.Itoa(30000 + os.Getpid()%20000)
	common := []string{"--netns", ns, "--state-dir", dir}

	expect := func(wantErr bool, want string, args ...string) {
		t.Helper()
		out, err := runNet(t, append(args, common...)...)
		if (err != nil) != wantErr || !strings.Contains(out, want) {
			t.Errorf("imds net %v: %v (error wanted: %v)\n%s\nwant %q", args, err, wantErr, out, want)
		}
	}
	expect(true, "address 169.254.169.254 missing on lo", "status", "--port", port)
	expect(false, "added 169.254.169.254/32 to lo", "up", "--port", port)
	expect(false, "nothing to change", "up", "--port", port)
	expect(true, "nothing listening on port "+port, "status", "--port", port)

	var ln net.Listener
	if err := netsetup.InNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:"+port)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "i-0cmdtest")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	expect(false, "OK: metadata reachable (instance i-0cmdtest)", "status", "--port", port)
	// Without --port, status checks the port up recorded (issue 10: it
	// checked 1338 and failed); without --netns, every recorded namespace.
	expect(false, "OK: metadata reachable (instance i-0cmdtest)", "status")
	if out, err := runNet(t, "status", "--state-dir", dir); err != nil || !strings.Contains(out, "netns "+ns+":\n  server port "+port+" (recorded by imds net up)") ||
		!strings.Contains(out, "OK: metadata reachable (instance i-0cmdtest)") {
		t.Errorf("imds net status with what up recorded: %v\n%s", err, out)
	}
	if out, err := runNet(t, "status", "--state-dir", dir, "--netns", ns, "--port", "1338"); err == nil || !strings.Contains(out, "no redirect rule for port 1338\n") {
		t.Errorf("imds net status --port 1338 (told otherwise): %v\n%s", err, out)
	}

	expect(false, "deleted table inet imds", "down")
	expect(false, "nothing to change", "down")
	expect(true, "address 169.254.169.254 missing on lo", "status", "--port", port)
}

func TestNetCommandErrors(t *testing.T) {
	ns := newNetTestNS(t, "e")
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"up", "--netns", "imdsnet-nosuch"}, `unknown network namespace "imdsnet-nosuch"`},
		{[]string{"up", "--netns", ns, "--bridge", "nosuchbr0"}, `unknown bridge "nosuchbr0"`},
	} {
		_, err := runNet(t, append(tc.args, "--state-dir", dir)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("imds net %v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("ruleset after failed ups: %v %s", err, out)
	}
}

// TestNetCommandUpAdds is issue 13's scene: net up --bridge br-a then net up
// --bridge br-b printed "replaced table inet imds" and br-a lost its rules.
func TestNetCommandUpAdds(t *testing.T) {
	ns := newNetTestNS(t, "add")
	for i, br := range []string{"br-a", "br-b"} {
		for _, args := range [][]string{
			{"-n", ns, "link", "add", br, "type", "bridge"},
			{"-n", ns, "addr", "add", fmt.Sprintf("10.217.%d.1/24", i), "dev", br},
		} {
			mustIP(t, args...)
		}
	}
	dir := t.TempDir()
	common := []string{"--netns", ns, "--state-dir", dir}
	expect := func(want, notWant string, args ...string) {
		t.Helper()
		out, err := runNet(t, append(args, common...)...)
		if err != nil || !strings.Contains(out, want) || (notWant != "" && strings.Contains(out, notWant)) {
			t.Errorf("imds net %v: %v\n%s\nwant %q, not %q", args, err, out, want, notWant)
		}
	}
	expect("created table inet imds with 2 rules", "", "up", "--bridge", "br-a")
	expect(`netns `+ns+`: added rule iifname "br-b" ip daddr 169.254.169.254 tcp dport 80 dnat to 10.217.1.1:1338`, "removed", "up", "--bridge", "br-b")
	rules, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "imds").CombinedOutput()
	if err != nil || !strings.Contains(string(rules), `iifname "br-a"`) || !strings.Contains(string(rules), `iifname "br-b"`) {
		t.Errorf("after the second up: %v\n%s", err, rules)
	}
	expect("moved every rule from port 1338 to port 1339", "", "up", "--port", "1339")
	expect(`removed rule iifname "br-a" ip daddr 169.254.169.254 tcp dport 80 dnat to 10.217.0.1:1339`, "br-b", "down", "--bridge", "br-a")
	expect("nothing to change", "", "down", "--bridge", "br-a")
	expect("deleted table inet imds", "", "down")
}
