//go:build linux

package netsetup

// These tests build their own network namespaces (named imdsnet-<pid>-...)
// and change nothing outside them: no address, rule or route of the host's
// own interfaces, and no traffic to the host's 169.254.169.254. They skip
// unless run as root with ip, nft and curl.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/netsetup/netsetuptest"
)

const nsPrefix = "imdsnet-"

func requireLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the tests create network namespaces and change nftables inside them")
	}
	for _, tool := range []string{"ip", "nft", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install iproute2 nftables curl)", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// removeStale deletes namespaces of earlier runs whose process is gone.
func removeStale(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(f[0], nsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			_ = exec.Command("ip", "netns", "del", f[0]).Run()
			t.Logf("removed the leftover namespace %s", f[0])
		}
	}
}

var nsCount struct {
	sync.Mutex
	n int
}

// newNS creates a namespace with lo up; it is deleted when the test ends.
func newNS(t *testing.T, role string) string {
	t.Helper()
	requireLab(t)
	removeStale(t)
	nsCount.Lock()
	nsCount.n++
	name := fmt.Sprintf("%s%d-%d%s", nsPrefix, os.Getpid(), nsCount.n, role)
	nsCount.Unlock()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	for _, k := range []string{"all", "default"} {
		run(t, "ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv6.conf."+k+".accept_dad=0")
	}
	return name
}

// snapshot is what the namespace's network looks like: nft list ruleset and
// ip addr.
func snapshot(t *testing.T, ns string) string {
	t.Helper()
	return netsetuptest.Snapshot(t, ns)
}

// serve runs an HTTP server inside ns on addr that answers instanceID and
// records the requesters' addresses.
func serve(t *testing.T, ns, addr, instanceID string) *recorder {
	t.Helper()
	var ln net.Listener
	if err := InNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listening on %s in %s: %v", addr, ns, err)
	}
	rec := &recorder{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.remotes = append(rec.remotes, r.RemoteAddr)
		rec.mu.Unlock()
		if r.URL.Path != "/latest/meta-data/instance-id" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, instanceID)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rec
}

type recorder struct {
	mu      sync.Mutex
	remotes []string
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.remotes...)
}

// curlIn GETs url from inside ns and returns the body.
func curlIn(t *testing.T, ns, url string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "curl", "-sS", "--noproxy", "*", "--max-time", "3", url).CombinedOutput()
	return string(out), err
}

func testPort() int { return 20000 + os.Getpid()%20000 }

func countRules(t *testing.T, ns string) int {
	out := run(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", TableName)
	return strings.Count(out, "comment \"imds:")
}

func TestUpDownLocal(t *testing.T) {
	ns := newNS(t, "host")
	dir := t.TempDir()
	ctx := context.Background()
	port := testPort()
	before := snapshot(t, ns)

	changes, err := Up(ctx, Plan{Port: port, Netns: []string{ns}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up: %v", changes)
	if len(changes) != 2 || !strings.Contains(changes[0].What, "added 169.254.169.254/32 to lo") ||
		!strings.Contains(changes[1].What, "created table inet imds with 1 rules") {
		t.Errorf("changes %v", changes)
	}
	if out := run(t, "ip", "-n", ns, "addr", "show", "dev", "lo"); !strings.Contains(out, "169.254.169.254/32") {
		t.Errorf("address missing on lo:\n%s", out)
	}
	rules := run(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset")
	t.Logf("ruleset:\n%s", rules)
	for _, want := range []string{"table inet imds", "chain output", "type nat hook output priority -100",
		"ip daddr 169.254.169.254 tcp dport 80 redirect to :" + strconv.Itoa(port)} {
		if !strings.Contains(rules, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	if fi, err := os.Stat(dir + "/" + stateName(ns)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v %v", fi, err)
	}

	rec := serve(t, ns, "127.0.0.1:"+strconv.Itoa(port), "i-0123456789abcdef0")
	body, err := curlIn(t, ns, "http://169.254.169.254/latest/meta-data/instance-id")
	if err != nil || body != "i-0123456789abcdef0" {
		t.Errorf("GET from inside: %q %v", body, err)
	}
	if len(rec.seen()) != 1 {
		t.Errorf("server saw %v", rec.seen())
	}

	changes, err = Up(ctx, Plan{Port: port, Netns: []string{ns}}, dir)
	if err != nil || len(changes) != 0 {
		t.Errorf("second up: %v %v, want no changes", changes, err)
	}
	if n := countRules(t, ns); n != 1 {
		t.Errorf("%d rules after the second up, want 1", n)
	}

	changes, err = Down(ctx, []string{ns}, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("down: %v", changes)
	if after := snapshot(t, ns); after != before {
		t.Errorf("after down:\n%s\nbefore up:\n%s", after, before)
	}
	if changes, err := Down(ctx, []string{ns}, dir); err != nil || len(changes) != 0 {
		t.Errorf("second down: %v %v", changes, err)
	}
	if _, err := os.Stat(dir + "/" + stateName(ns)); !os.IsNotExist(err) {
		t.Errorf("state file left: %v", err)
	}
}

// An address that was there before up stays after down.
func TestDownKeepsPreexistingAddress(t *testing.T) {
	ns := newNS(t, "pre")
	run(t, "ip", "-n", ns, "addr", "add", "169.254.169.254/32", "dev", "lo")
	before := snapshot(t, ns)
	dir := t.TempDir()
	changes, err := Up(context.Background(), Plan{Port: testPort(), Netns: []string{ns}}, dir)
	if err != nil || len(changes) != 1 {
		t.Fatalf("up: %v %v, want only the table", changes, err)
	}
	if _, err := Down(context.Background(), []string{ns}, dir); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, ns); after != before {
		t.Errorf("after down:\n%s\nbefore up:\n%s", after, before)
	}
}

func TestUpChangedPortReplacesRule(t *testing.T) {
	ns := newNS(t, "port")
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := Up(ctx, Plan{Port: 1338, Netns: []string{ns}, IPv6: true}, dir); err != nil {
		t.Fatal(err)
	}
	changes, err := Up(ctx, Plan{Port: 1339, Netns: []string{ns}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("changes: %v", changes)
	if len(changes) != 1 || changes[0].What != "moved every rule from port 1338 to port 1339" {
		t.Errorf("changes %v, want only the port move", changes)
	}
	// IPv6, once set up, stays: up is additive (issue 13).
	rules := run(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset")
	if !strings.Contains(rules, "ip daddr 169.254.169.254 tcp dport 80 redirect to :1339") || strings.Contains(rules, ":1338") ||
		!strings.Contains(rules, "ip6 daddr fd00:ec2::254 tcp dport 80 redirect to :1339") {
		t.Errorf("ruleset after up with another port:\n%s", rules)
	}
	if out := run(t, "ip", "-n", ns, "addr", "show", "dev", "lo"); !strings.Contains(out, "fd00:ec2::254") {
		t.Errorf("IPv6 address gone from lo:\n%s", out)
	}
	// Without a port, the recorded one stays.
	if changes, err := Up(ctx, Plan{Netns: []string{ns}}, dir); err != nil || len(changes) != 0 {
		t.Errorf("up without --port: %v %v, want no change", changes, err)
	}
	if _, err := Down(ctx, []string{ns}, dir); err != nil {
		t.Fatal(err)
	}
}

// bridgeLab is a "host" namespace with a bridge and a "container"
// namespace plugged into it.
type bridgeLab struct {
	host, ctr string
}

func newBridgeLab(t *testing.T) *bridgeLab {
	l := &bridgeLab{host: newNS(t, "h"), ctr: newNS(t, "c")}
	h, c := l.host, l.ctr
	run(t, "ip", "-n", h, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", h, "addr", "add", "10.214.7.1/24", "dev", "br0")
	run(t, "ip", "-n", h, "addr", "add", "fd00:214::1/64", "dev", "br0", "nodad")
	run(t, "ip", "-n", h, "link", "set", "br0", "up")
	run(t, "ip", "-n", h, "link", "add", "vh0", "type", "veth", "peer", "name", "eth0", "netns", c)
	run(t, "ip", "-n", h, "link", "set", "vh0", "master", "br0")
	run(t, "ip", "-n", h, "link", "set", "vh0", "up")
	run(t, "ip", "-n", c, "addr", "add", "10.214.7.2/24", "dev", "eth0")
	run(t, "ip", "-n", c, "addr", "add", "fd00:214::2/64", "dev", "eth0", "nodad")
	run(t, "ip", "-n", c, "link", "set", "eth0", "up")
	run(t, "ip", "-n", c, "route", "add", "default", "via", "10.214.7.1")
	run(t, "ip", "-n", c, "-6", "route", "add", "default", "via", "fd00:214::1")
	return l
}

func TestUpBridge(t *testing.T) {
	l := newBridgeLab(t)
	dir := t.TempDir()
	ctx := context.Background()
	port := testPort()
	before := snapshot(t, l.host)
	rec4 := serve(t, l.host, "10.214.7.1:"+strconv.Itoa(port), "i-bridge4")
	rec6 := serve(t, l.host, "[fd00:214::1]:"+strconv.Itoa(port), "i-bridge6")

	changes, err := Up(ctx, Plan{Port: port, Netns: []string{l.host}, Bridges: []string{"br0"}, IPv6: true}, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up: %v", changes)
	rules := run(t, "ip", "netns", "exec", l.host, "nft", "list", "ruleset")
	t.Logf("ruleset:\n%s", rules)
	for _, want := range []string{
		fmt.Sprintf(`iifname "br0" ip daddr 169.254.169.254 tcp dport 80 dnat ip to 10.214.7.1:%d`, port),
		fmt.Sprintf(`iifname "br0" ip6 daddr fd00:ec2::254 tcp dport 80 dnat ip6 to [fd00:214::1]:%d`, port),
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}

	body, err := curlIn(t, l.ctr, "http://169.254.169.254/latest/meta-data/instance-id")
	if err != nil || body != "i-bridge4" {
		t.Errorf("GET from the container: %q %v", body, err)
	}
	if s := rec4.seen(); len(s) != 1 || !strings.HasPrefix(s[0], "10.214.7.2:") {
		t.Errorf("server saw %v, want the container's 10.214.7.2", s)
	}
	body, err = curlIn(t, l.ctr, "http://[fd00:ec2::254]/latest/meta-data/instance-id")
	if err != nil || body != "i-bridge6" {
		t.Errorf("IPv6 GET from the container: %q %v", body, err)
	}
	if s := rec6.seen(); len(s) != 1 || !strings.HasPrefix(s[0], "[fd00:214::2]:") {
		t.Errorf("IPv6 server saw %v, want the container's fd00:214::2", s)
	}

	if changes, err := Up(ctx, Plan{Port: port, Netns: []string{l.host}, Bridges: []string{"br0"}, IPv6: true}, dir); err != nil || len(changes) != 0 {
		t.Errorf("second up: %v %v", changes, err)
	}
	if n := countRules(t, l.host); n != 4 {
		t.Errorf("%d rules, want 4", n)
	}
	if _, err := Down(ctx, []string{l.host}, dir); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, l.host); after != before {
		t.Errorf("after down:\n%s\nbefore up:\n%s", after, before)
	}
}

// TestUpAdditive is issue 13's trap: a second up with another bridge kept
// only the second one. Now bridges add up, a port moves every rule, a gone
// bridge is dropped and down --bridge removes one bridge only.
func TestUpAdditive(t *testing.T) {
	l := newBridgeLab(t)
	h := l.host
	ctr2 := newNS(t, "c2")
	run(t, "ip", "-n", h, "link", "add", "br1", "type", "bridge")
	run(t, "ip", "-n", h, "addr", "add", "10.214.9.1/24", "dev", "br1")
	run(t, "ip", "-n", h, "link", "set", "br1", "up")
	run(t, "ip", "-n", h, "link", "add", "vh1", "type", "veth", "peer", "name", "eth0", "netns", ctr2)
	run(t, "ip", "-n", h, "link", "set", "vh1", "master", "br1", "up")
	run(t, "ip", "-n", ctr2, "addr", "add", "10.214.9.2/24", "dev", "eth0")
	run(t, "ip", "-n", ctr2, "link", "set", "eth0", "up")
	run(t, "ip", "-n", ctr2, "route", "add", "default", "via", "10.214.9.1")
	before := snapshot(t, h)
	dir := t.TempDir()
	ctx := context.Background()
	port := testPort()
	serve(t, h, "0.0.0.0:"+strconv.Itoa(port), "i-additive")
	serve(t, h, "0.0.0.0:"+strconv.Itoa(port+1), "i-moved")
	up := func(plan Plan) []string {
		t.Helper()
		plan.Netns = []string{h}
		changes, err := Up(ctx, plan, dir)
		if err != nil {
			t.Fatalf("up %+v: %v", plan, err)
		}
		var out []string
		for _, c := range changes {
			out = append(out, c.What)
		}
		t.Logf("up %+v:\n%s", plan, strings.Join(out, "\n"))
		return out
	}
	reaches := func(ns, want string) {
		t.Helper()
		body, err := curlIn(t, ns, "http://169.254.169.254/latest/meta-data/instance-id")
		if want == "" {
			if err == nil {
				t.Errorf("%s still reaches the metadata address: %q", ns, body)
			}
			return
		}
		if err != nil || body != want {
			t.Errorf("GET from %s: %q %v, want %s", ns, body, err, want)
		}
	}
	p := strconv.Itoa(port)
	dnat := func(br, to string, port int) string {
		return fmt.Sprintf(`added rule iifname %q ip daddr 169.254.169.254 tcp dport 80 dnat to %s:%d`, br, to, port)
	}

	up(Plan{Port: port, Bridges: []string{"br0"}})
	got := up(Plan{Bridges: []string{"br1"}})
	if want := []string{dnat("br1", "10.214.9.1", port)}; !slices.Equal(got, want) {
		t.Errorf("second up with another bridge: %q, want %q", got, want)
	}
	reaches(l.ctr, "i-additive")
	reaches(ctr2, "i-additive")
	if got := up(Plan{Bridges: []string{"br0", "br1"}}); len(got) != 0 {
		t.Errorf("up again: %q, want no change", got)
	}

	got = up(Plan{Port: port + 1})
	if want := []string{fmt.Sprintf("moved every rule from port %d to port %d", port, port+1)}; !slices.Equal(got, want) {
		t.Errorf("up with another port: %q, want %q", got, want)
	}
	if rules := run(t, "ip", "netns", "exec", h, "nft", "list", "ruleset"); strings.Contains(rules, ":"+p+" ") || strings.Count(rules, ":"+strconv.Itoa(port+1)+" comment") != 3 {
		t.Errorf("ruleset after the port move:\n%s", rules)
	}
	reaches(l.ctr, "i-moved")
	reaches(ctr2, "i-moved")

	// A docker network removed: its bridge is gone, the next up drops it.
	run(t, "ip", "-n", h, "link", "del", "br1")
	got = up(Plan{Bridges: []string{"br0"}})
	if want := []string{"bridge br1 no longer exists: dropping its rules",
		fmt.Sprintf(`removed rule iifname "br1" ip daddr 169.254.169.254 tcp dport 80 dnat to 10.214.9.1:%d`, port+1)}; !slices.Equal(got, want) {
		t.Errorf("up after br1 is gone: %q, want %q", got, want)
	}
	reaches(l.ctr, "i-moved")

	// down --bridge removes one bridge; the host's redirect stays.
	changes, err := DownBridges(ctx, []string{h}, []string{"br0"}, dir)
	if err != nil || len(changes) != 1 || !strings.HasPrefix(changes[0].What, `removed rule iifname "br0" ip daddr 169.254.169.254`) {
		t.Errorf("down --bridge br0: %v %v", changes, err)
	}
	reaches(l.ctr, "")
	if rules := run(t, "ip", "netns", "exec", h, "nft", "list", "ruleset"); !strings.Contains(rules, "redirect to :"+strconv.Itoa(port+1)) || strings.Contains(rules, "iifname") {
		t.Errorf("ruleset after down --bridge br0:\n%s", rules)
	}
	if changes, err := DownBridges(ctx, []string{h}, []string{"br0"}, dir); err != nil || len(changes) != 0 {
		t.Errorf("second down --bridge br0: %v %v", changes, err)
	}
	if got := up(Plan{}); len(got) != 0 {
		t.Errorf("up after down --bridge: %q, want no change (the bridge stays removed)", got)
	}
	if _, err := Down(ctx, []string{h}, dir); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "-n", h, "link", "add", "br1", "type", "bridge")
	run(t, "ip", "-n", h, "addr", "add", "10.214.9.1/24", "dev", "br1")
	run(t, "ip", "-n", h, "link", "set", "br1", "up")
	if after := snapshot(t, h); after != before {
		t.Errorf("after down (and br1 put back):\n%s\nbefore up:\n%s", after, before)
	}
}

// A failed up (a new bridge without an address) leaves the earlier setup
// as it was.
func TestUpAdditiveInvalidKeepsSetup(t *testing.T) {
	l := newBridgeLab(t)
	run(t, "ip", "-n", l.host, "link", "add", "br1", "type", "bridge")
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := Up(ctx, Plan{Port: testPort(), Netns: []string{l.host}, Bridges: []string{"br0"}}, dir); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, l.host)
	state, _ := os.ReadFile(dir + "/" + stateName(l.host))
	if _, err := Up(ctx, Plan{Netns: []string{l.host}, Bridges: []string{"br1"}}, dir); err == nil || !strings.Contains(err.Error(), `bridge "br1" has no IPv4 address`) {
		t.Errorf("up with a bridge without an address: %v", err)
	}
	if after := snapshot(t, l.host); after != before {
		t.Errorf("after the failed up:\n%s\nbefore:\n%s", after, before)
	}
	if after, _ := os.ReadFile(dir + "/" + stateName(l.host)); string(after) != string(state) {
		t.Errorf("state file changed:\n%s\nwas:\n%s", after, state)
	}
	if _, err := Down(ctx, []string{l.host}, dir); err != nil {
		t.Fatal(err)
	}
}

func TestUpBadInput(t *testing.T) {
	l := newBridgeLab(t)
	run(t, "ip", "-n", l.host, "link", "add", "br1", "type", "bridge")
	run(t, "ip", "-n", l.host, "link", "add", "br2", "type", "bridge")
	run(t, "ip", "-n", l.host, "addr", "add", "10.214.8.1/24", "dev", "br2")
	other := newNS(t, "o")
	before, beforeOther := snapshot(t, l.host), snapshot(t, other)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		plan Plan
		want string
	}{
		{"unknown bridge", Plan{Netns: []string{other, l.host}, Bridges: []string{"nosuchbr"}}, `unknown bridge "nosuchbr"`},
		{"unknown netns", Plan{Netns: []string{other, l.host, nsPrefix + "nosuch"}}, `unknown network namespace "` + nsPrefix + `nosuch"`},
		{"bridge without IPv4", Plan{Netns: []string{l.host}, Bridges: []string{"br0", "br1"}}, `bridge "br1" has no IPv4 address`},
		{"bridge without IPv6", Plan{Netns: []string{l.host}, Bridges: []string{"br0", "br2"}, IPv6: true}, `bridge "br2" has no global or ULA IPv6 address`},
		{"port", Plan{Port: 70000, Netns: []string{l.host}}, "port 70000 out of range"},
		{"negative port", Plan{Port: -1, Netns: []string{l.host}}, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changes, err := Up(context.Background(), tc.plan, dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
			if len(changes) != 0 {
				t.Errorf("changes %v", changes)
			}
			if s := snapshot(t, l.host); s != before {
				t.Errorf("changed:\n%s", s)
			}
			if s := snapshot(t, other); s != beforeOther {
				t.Errorf("changed:\n%s", s)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("state files written: %v", entries)
	}
	if _, err := Down(context.Background(), []string{nsPrefix + "nosuch"}, dir); err == nil {
		t.Errorf("down in an unknown namespace: no error")
	}
}

func TestStatus(t *testing.T) {
	ns := newNS(t, "st")
	dir := t.TempDir()
	ctx := context.Background()
	port := testPort()
	diag := func(want string, ok bool) {
		t.Helper()
		r, err := Status(ctx, StatusOptions{Port: port, Netns: ns, StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("status:\n%s", r)
		if !strings.Contains(strings.Join(r.Diagnosis, "\n"), want) || r.OK != ok {
			t.Errorf("diagnosis %q (OK %v), want %q (OK %v)", r.Diagnosis, r.OK, want, ok)
		}
	}
	diag("address 169.254.169.254 missing on lo", false)
	diag("no redirect rule for port "+strconv.Itoa(port), false)
	if _, err := Up(ctx, Plan{Port: port, Netns: []string{ns}}, dir); err != nil {
		t.Fatal(err)
	}
	diag("nothing listening on port "+strconv.Itoa(port), false)
	serve(t, ns, "127.0.0.1:"+strconv.Itoa(port), "i-0status")
	diag("OK: metadata reachable (instance i-0status)", true)
	r, _ := Status(ctx, StatusOptions{Port: port + 1, Netns: ns, StateDir: dir})
	if r == nil || r.OK || !strings.Contains(strings.Join(r.Diagnosis, "\n"), "no redirect rule for port "+strconv.Itoa(port+1)) {
		t.Errorf("status for another port: %+v", r)
	}
	if _, err := Down(ctx, []string{ns}, dir); err != nil {
		t.Fatal(err)
	}
}

const permHelperEnv = "IMDSNET_PERM_HELPER_STATE_DIR"

// TestPermissionHelper is run by TestUpNotPermitted, inside its namespace
// and without CAP_NET_ADMIN; it prints Up's error.
func TestPermissionHelper(t *testing.T) {
	dir := os.Getenv(permHelperEnv)
	if dir == "" {
		t.Skip("helper of TestUpNotPermitted")
	}
	_, err := Up(context.Background(), Plan{Port: 1338}, dir)
	fmt.Printf("UPERROR: %v\n", err)
}

func TestUpNotPermitted(t *testing.T) {
	ns := newNS(t, "perm")
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, ns)
	cmd := exec.Command("ip", "netns", "exec", ns, "setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin",
		exe, "-test.run=^TestPermissionHelper$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), permHelperEnv+"="+t.TempDir(), "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "UPERROR: imds net up needs root or CAP_NET_ADMIN") {
		t.Errorf("helper without CAP_NET_ADMIN:\n%s", out)
	}
	if after := snapshot(t, ns); after != before {
		t.Errorf("changed:\n%s", after)
	}
}

// listenIn serves h on addr inside ns until the test ends.
func listenIn(t *testing.T, ns, addr string, h http.HandlerFunc) {
	t.Helper()
	var ln net.Listener
	if err := InNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listening on %s in %s: %v", addr, ns, err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// statusOf runs Status and returns its diagnosis as one string.
func statusOf(t *testing.T, ns, dir string) (string, bool) {
	t.Helper()
	r, err := Status(context.Background(), StatusOptions{Netns: ns, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status:\n%s", r)
	return strings.Join(r.Diagnosis, "\n"), r.OK
}

func wantStatus(t *testing.T, ns, dir string, wantOK bool, want ...string) {
	t.Helper()
	d, ok := statusOf(t, ns, dir)
	if ok != wantOK {
		t.Errorf("OK %v, want %v:\n%s", ok, wantOK, d)
	}
	for _, w := range want {
		if !strings.Contains(d, w) {
			t.Errorf("diagnosis lacks %q:\n%s", w, d)
		}
	}
}

// Issue 13: status said OK after up --ipv6 while the server listened on
// IPv4 only, and [fd00:ec2::254] was refused.
func TestStatusIPv6NotListening(t *testing.T) {
	ns := newNS(t, "s6")
	dir := t.TempDir()
	port := testPort()
	p := strconv.Itoa(port)
	if _, err := Up(context.Background(), Plan{Port: port, Netns: []string{ns}, IPv6: true}, dir); err != nil {
		t.Fatal(err)
	}
	serve(t, ns, "127.0.0.1:"+p, "i-0v4only")
	wantStatus(t, ns, dir, false,
		"lo 169.254.169.254:80: OK (instance i-0v4only)",
		"lo [fd00:ec2::254]:80: nothing listening on port "+p+" (recorded by imds net up) at [::1]:"+p+", where the redirect leads; run imds serve with --listen [::1]:"+p)
	if _, err := curlIn(t, ns, "http://[fd00:ec2::254]/latest/meta-data/instance-id"); err == nil {
		t.Errorf("curl [fd00:ec2::254] succeeded, the test setup is wrong")
	}
	serve(t, ns, "[::1]:"+p, "i-0v4only")
	wantStatus(t, ns, dir, true, "lo [fd00:ec2::254]:80: OK (instance i-0v4only)", "OK: metadata reachable (instance i-0v4only)")
}

// Issue 13: status said OK when the server did not listen on the bridge
// address, where the containers' requests go.
func TestStatusBridgeNotListening(t *testing.T) {
	l := newBridgeLab(t)
	dir := t.TempDir()
	port := testPort()
	p := strconv.Itoa(port)
	if _, err := Up(context.Background(), Plan{Port: port, Netns: []string{l.host}, Bridges: []string{"br0"}}, dir); err != nil {
		t.Fatal(err)
	}
	serve(t, l.host, "127.0.0.1:"+p, "i-0lo")
	wantStatus(t, l.host, dir, false,
		"lo 169.254.169.254:80: OK (instance i-0lo)",
		"bridge br0 169.254.169.254:80: nothing listening on 10.214.7.1:"+p+", where the DNAT of bridge br0 leads: containers and VMs behind br0 get no answer; run imds serve with --listen 10.214.7.1:"+p+" (or --listen 0.0.0.0:"+p+")")
	if _, err := curlIn(t, l.ctr, "http://169.254.169.254/latest/meta-data/instance-id"); err == nil {
		t.Errorf("the container reached the metadata address, the test setup is wrong")
	}
	rec := serve(t, l.host, "10.214.7.1:"+p, "i-0br")
	wantStatus(t, l.host, dir, true, "bridge br0 169.254.169.254:80: OK (instance i-0br)")
	// The probe asks as a container would: Host is the metadata address.
	if s := rec.seen(); len(s) == 0 {
		t.Errorf("the bridge's server saw no probe")
	}
	// A bridge that is gone is noted, not a failure.
	run(t, "ip", "-n", l.host, "link", "del", "br0")
	wantStatus(t, l.host, dir, true, "bridge br0 no longer exists: its rules are stale")
}

// Issue 13: an answer from imds itself with 404, because the probing host
// is not an instance, was reported as "not reachable" with exit 1.
func TestStatusImds404IsReachable(t *testing.T) {
	ns := newNS(t, "s404")
	dir := t.TempDir()
	port := testPort()
	if _, err := Up(context.Background(), Plan{Port: port, Netns: []string{ns}}, dir); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hosts, remotes []string
	listenIn(t, ns, "127.0.0.1:"+strconv.Itoa(port), func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts, remotes = append(hosts, r.Host), append(remotes, r.RemoteAddr)
		mu.Unlock()
		w.Header().Set("Server", "EC2ws")
		http.NotFound(w, r)
	})
	wantStatus(t, ns, dir, true,
		"lo 169.254.169.254:80: reachable: imds answered 404 because 169.254.169.254, the probe's source (this host), is not an instance; to give it one: imds instance add NAME --ip 169.254.169.254",
		"OK: every path reaches imds")
	mu.Lock()
	defer mu.Unlock()
	if len(hosts) == 0 || hosts[0] != "169.254.169.254" || !strings.HasPrefix(remotes[0], "169.254.169.254:") {
		t.Errorf("the server saw Host %v from %v, want 169.254.169.254 from 169.254.169.254", hosts, remotes)
	}
}

// Issue 13: in a namespace whose lo is down, status said only "i/o timeout".
func TestStatusLoDown(t *testing.T) {
	ns := newNS(t, "slo")
	dir := t.TempDir()
	port := testPort()
	if _, err := Up(context.Background(), Plan{Port: port, Netns: []string{ns}}, dir); err != nil {
		t.Fatal(err)
	}
	serve(t, ns, "127.0.0.1:"+strconv.Itoa(port), "i-0lodown")
	wantStatus(t, ns, dir, true, "OK: metadata reachable (instance i-0lodown)")
	run(t, "ip", "-n", ns, "link", "set", "lo", "down")
	d, ok := statusOf(t, ns, dir)
	if ok || !strings.Contains(d, "lo is down in netns "+ns+": nothing there reaches the metadata address; fix: ip -n "+ns+" link set lo up") || strings.Contains(d, "timeout") {
		t.Errorf("status with lo down (OK %v):\n%s", ok, d)
	}
}
