//go:build linux

package main

// Network namespace tests: several "instances" on one host, each a network
// namespace with its own address on a bridge, read one imds server listening
// on the bridge. The server tells them apart by source address, as it does
// for VMs or containers in real use.
//
// Everything is created with names starting with netnsPrefix and removed by
// t.Cleanup; leftovers of a crashed run (whose process is gone) are removed
// before a new lab is built. Nothing of the host's own interfaces, addresses
// or routes is touched, and nothing is sent anywhere but to the addresses
// the lab assigns itself (the namespaces have no route beyond the bridge).
//
// The tests skip unless they run as root with iproute2's ip.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// netnsPrefix starts the name of every namespace, bridge and veth the
	// tests create: imdst-<pid base 36>-<lab>.
	netnsPrefix = "imdst-"
	// netnsCmdTimeout bounds every command the tests run.
	netnsCmdTimeout = 30 * time.Second
)

// netnsLab is a bridge on the host (10.213.X.1/24) and namespaces plugged
// into it by veth pairs (10.213.X.11, .12, ...).
type netnsLab struct {
	base   string // name prefix of everything in this lab
	Bridge string
	HostIP netip.Addr // the bridge's address: where servers listen
	Subnet netip.Prefix
	Hosts  []*netnsHost
}

// netnsHost is one namespace of a lab.
type netnsHost struct {
	NS       string     // namespace name, for ip netns exec
	Addr     netip.Addr // its address on the bridge
	hostVeth string     // the veth end on the host, a port of the bridge
}

var (
	netnsMu       sync.Mutex
	netnsLabCount int
	netnsActive   = map[string]bool{}                                     // bases of this process's live labs
	netnsSubnets  = map[netip.Prefix]bool{}                               // subnets of this process's live labs
	netnsNameRE   = regexp.MustCompile(`^imdst-([0-9a-z]{1,6})-[0-9a-z]`) // owner pid, base 36
)

// requireNetns skips the test unless network namespaces can be created:
// root and iproute2's ip.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root (ip netns add, veth and bridge creation); CI runs them as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespace tests need iproute2's ip (apt-get install iproute2)")
	}
}

// ipCmd runs ip with args and returns its combined output.
func ipCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), netnsCmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// newNetnsLab builds a bridge and n namespaces on it. Everything is removed,
// and its removal checked, when the test ends, whether or not setup worked.
func newNetnsLab(t *testing.T, n int) *netnsLab {
	t.Helper()
	requireNetns(t)
	removeStaleNetnsObjects(t)

	netnsMu.Lock()
	netnsLabCount++
	lab := &netnsLab{base: netnsPrefix + strconv.FormatInt(int64(os.Getpid()), 36) + "-" + strconv.FormatInt(int64(netnsLabCount%36), 36)}
	netnsActive[lab.base] = true
	netnsMu.Unlock()
	lab.Bridge = lab.base + "b" // at most 14 characters: IFNAMSIZ allows 15
	t.Cleanup(func() { lab.teardown(t) })

	subnet, err := pickNetnsSubnet()
	if err != nil {
		t.Fatal(err)
	}
	lab.Subnet = subnet
	lab.HostIP = subnet.Addr().Next()

	if _, err := ipCmd("netns", "add", lab.base+"-probe"); err != nil {
		if strings.Contains(err.Error(), "not permitted") || strings.Contains(err.Error(), "ermission denied") {
			t.Skipf("cannot create network namespaces here: %v", err)
		}
		t.Fatal(err)
	}
	if _, err := ipCmd("netns", "del", lab.base+"-probe"); err != nil {
		t.Fatal(err)
	}

	must := func(args ...string) {
		t.Helper()
		if _, err := ipCmd(args...); err != nil {
			t.Fatalf("setting up the namespaces: %v", err)
		}
	}
	must("link", "add", lab.Bridge, "type", "bridge")
	must("addr", "add", netip.PrefixFrom(lab.HostIP, subnet.Bits()).String(), "dev", lab.Bridge)
	must("link", "set", lab.Bridge, "up")
	addr := subnet.Addr()
	for range 11 {
		addr = addr.Next()
	}
	for i := range n {
		h := &netnsHost{
			NS:       lab.base + "-" + string(rune('a'+i)),
			Addr:     addr,
			hostVeth: lab.base + "h" + strconv.Itoa(i),
		}
		addr = addr.Next()
		lab.Hosts = append(lab.Hosts, h)
		must("netns", "add", h.NS)
		must("-n", h.NS, "link", "set", "lo", "up")
		must("link", "add", h.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
		must("link", "set", h.hostVeth, "master", lab.Bridge)
		must("link", "set", h.hostVeth, "up")
		must("-n", h.NS, "addr", "add", netip.PrefixFrom(h.Addr, subnet.Bits()).String(), "dev", "eth0")
		must("-n", h.NS, "link", "set", "eth0", "up")
	}
	t.Logf("netns lab %s: bridge %s %s, namespaces %s", lab.base, lab.Bridge, lab.HostIP, lab.describe())
	return lab
}

func (lab *netnsLab) describe() string {
	var s []string
	for _, h := range lab.Hosts {
		s = append(s, h.NS+"="+h.Addr.String())
	}
	return strings.Join(s, " ")
}

// teardown removes the lab and checks that nothing of it is left.
func (lab *netnsLab) teardown(t *testing.T) {
	t.Helper()
	var errs []error
	del := func(args ...string) {
		if _, err := ipCmd(args...); err != nil && !isNotFound(err) {
			errs = append(errs, err)
		}
	}
	// Deleting the host end removes the pair at once; a deleted namespace
	// only goes away when the kernel gets round to it.
	for i := range lab.Hosts {
		del("link", "del", lab.base+"h"+strconv.Itoa(i))
	}
	for _, ns := range netnsNames(t) {
		if strings.HasPrefix(ns, lab.base+"-") {
			del("netns", "del", ns)
		}
	}
	del("link", "del", lab.Bridge)
	netnsMu.Lock()
	delete(netnsActive, lab.base)
	if lab.Subnet.IsValid() {
		delete(netnsSubnets, lab.Subnet)
	}
	netnsMu.Unlock()
	if err := errors.Join(errs...); err != nil {
		t.Errorf("removing netns lab %s: %v", lab.base, err)
	}
	if left := lab.leftovers(t, 5*time.Second); left != "" {
		t.Errorf("netns lab %s not fully removed:\n%s", lab.base, left)
	}
}

// leftovers waits up to wait for every object of the lab to be gone and
// returns what is left: lines of ip netns list, ip link and ip addr.
func (lab *netnsLab) leftovers(t *testing.T, wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		var left []string
		for _, args := range [][]string{{"netns", "list"}, {"-o", "link", "show"}, {"-o", "addr", "show"}} {
			out, err := ipCmd(args...)
			if err != nil {
				t.Errorf("checking the cleanup: %v", err)
				return ""
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, lab.base) {
					left = append(left, "ip "+strings.Join(args, " ")+": "+line)
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return strings.Join(left, "\n")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func isNotFound(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find device") || strings.Contains(s, "No such file") || strings.Contains(s, "does not exist")
}

// netnsNames lists the network namespaces ip netns knows.
func netnsNames(t *testing.T) []string {
	t.Helper()
	out, err := ipCmd("netns", "list")
	if err != nil {
		t.Errorf("ip netns list: %v", err)
		return nil
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// netnsOwnerGone tells whether an object named by a lab belongs to no
// running test: its process is gone (or is not a Go test binary any more),
// or it is this process but not one of its live labs.
func netnsOwnerGone(name string) bool {
	m := netnsNameRE.FindStringSubmatch(name)
	if m == nil {
		return false // not ours: never touched
	}
	pid, err := strconv.ParseInt(m[1], 36, 64)
	if err != nil {
		return false
	}
	if int(pid) == os.Getpid() {
		base := name[:len(netnsPrefix)+len(m[1])+2]
		netnsMu.Lock()
		defer netnsMu.Unlock()
		return !netnsActive[base]
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err != nil || !strings.HasSuffix(strings.TrimSpace(string(comm)), ".test")
}

// removeStaleNetnsObjects deletes what crashed runs of these tests left:
// links and namespaces named netnsPrefix... whose process is gone.
func removeStaleNetnsObjects(t *testing.T) {
	t.Helper()
	out, err := ipCmd("-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	for _, line := range strings.Split(out, "\n") {
		// "7: imdst-xyz-1h0@if2: <...> ..."
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, netnsPrefix) && netnsOwnerGone(name) {
			links = append(links, name)
		}
	}
	// veths first (each takes its peer along), bridges last.
	for _, bridges := range []bool{false, true} {
		for _, name := range links {
			if strings.HasSuffix(name, "b") == bridges {
				if _, err := ipCmd("link", "del", name); err != nil && !isNotFound(err) {
					t.Errorf("removing the leftover %s: %v", name, err)
				} else {
					t.Logf("removed the leftover link %s of an earlier run", name)
				}
			}
		}
	}
	for _, ns := range netnsNames(t) {
		if strings.HasPrefix(ns, netnsPrefix) && netnsOwnerGone(ns) {
			if _, err := ipCmd("netns", "del", ns); err != nil && !isNotFound(err) {
				t.Errorf("removing the leftover namespace %s: %v", ns, err)
			} else {
				t.Logf("removed the leftover namespace %s of an earlier run", ns)
			}
		}
	}
}

// pickNetnsSubnet returns a free 10.213.X.0/24: one that overlaps no address
// or route of the host (the default route aside) nor another lab.
func pickNetnsSubnet() (netip.Prefix, error) {
	var used []netip.Prefix
	out, err := ipCmd("-j", "-4", "addr", "show")
	if err != nil {
		return netip.Prefix{}, err
	}
	var ifaces []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &ifaces); err != nil {
		return netip.Prefix{}, fmt.Errorf("ip -j addr: %v", err)
	}
	for _, i := range ifaces {
		for _, a := range i.AddrInfo {
			if ip, err := netip.ParseAddr(a.Local); err == nil {
				used = append(used, netip.PrefixFrom(ip, a.PrefixLen).Masked(), netip.PrefixFrom(ip, 32))
			}
		}
	}
	out, err = ipCmd("-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return netip.Prefix{}, err
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		return netip.Prefix{}, fmt.Errorf("ip -j route: %v", err)
	}
	for _, r := range routes {
		if p, err := netip.ParsePrefix(r.Dst); err == nil && p.Bits() > 0 {
			used = append(used, p.Masked())
		} else if ip, err := netip.ParseAddr(r.Dst); err == nil {
			used = append(used, netip.PrefixFrom(ip, 32))
		}
	}
	netnsMu.Lock()
	defer netnsMu.Unlock()
	start := os.Getpid() % 254
	for i := range 254 {
		x := 1 + (start+i)%254
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(x), 0}), 24)
		free := !netnsSubnets[cand]
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			netnsSubnets[cand] = true
			return cand, nil
		}
	}
	return netip.Prefix{}, errors.New("no free /24 in 10.213.0.0/16 for the network namespace tests")
}

// netnsEnv is the environment of commands run in a namespace: the test's,
// without AWS settings or proxies.
func netnsEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		u := strings.ToUpper(k)
		if strings.HasPrefix(u, "AWS_") || strings.HasSuffix(u, "_PROXY") || strings.HasPrefix(u, "IMDS_") || u == "GORACE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// runInNetns runs argv inside the namespace with ip netns exec.
func runInNetns(t *testing.T, h *netnsHost, argv ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	return runInNetnsEnv(t, h, nil, argv...)
}

func runInNetnsEnv(t *testing.T, h *netnsHost, env []string, argv ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), netnsCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, argv...)...)
	cmd.Env = netnsEnv(env...)
	cmd.Stdin = nil
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err = cmd.Run()
	t.Logf("[%s] %s: %v in %s", h.NS, strings.Join(argv, " "), err, time.Since(start).Round(time.Millisecond))
	return o.Bytes(), e.Bytes(), err
}

// goHelper re-executes the test binary inside the namespace to run job with
// the Go SDK (TestNetnsGoSDKHelper) and returns what it saw.
func goHelper(t *testing.T, h *netnsHost, job netnsHelperJob) *netnsHelperResult {
	t.Helper()
	exe, err := os.Executable() // not /proc/self/exe: ip would resolve that to itself
	if err != nil {
		t.Fatal(err)
	}
	spec, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "result.json")
	// Under -race, a binary sleeps a second before exiting unless told not to.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	env := []string{netnsHelperJobEnv + "=" + string(spec), netnsHelperOutEnv + "=" + out, "GORACE=" + gorace}
	stdout, stderr, err := runInNetnsEnv(t, h, env,
		exe, "-test.run=^"+netnsHelperTest+"$", "-test.count=1", "-test.timeout=30s")
	if err != nil {
		t.Fatalf("Go helper in %s: %v\nstdout:\n%s\nstderr:\n%s", h.NS, err, stdout, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("Go helper in %s wrote no result (%v)\nstdout:\n%s\nstderr:\n%s", h.NS, err, stdout, stderr)
	}
	var res netnsHelperResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("Go helper result %s: %v", b, err)
	}
	return &res
}

// botocoreInNetns runs testdata/clients/botocore_client.py against url
// inside the namespace and decodes its JSON.
func botocoreInNetns(t *testing.T, h *netnsHost, url string) map[string]any {
	t.Helper()
	requirePythonModule(t, "botocore", "python3-botocore")
	script, err := filepath.Abs(filepath.Join("testdata", "clients", "botocore_client.py"))
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runInNetnsEnv(t, h, []string{"PYTHONDONTWRITEBYTECODE=1"}, systemPython, script, url)
	if err != nil {
		t.Fatalf("botocore_client.py in %s: %v\nstderr:\n%s", h.NS, err, stderr)
	}
	var out map[string]any
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("botocore_client.py in %s printed no JSON object: %v\n%s", h.NS, err, stdout)
	}
	return out
}

// curlStatus runs curl inside the namespace and returns the HTTP status it
// got; ok is false when curl is not installed.
func curlStatus(t *testing.T, h *netnsHost, method, url string, header map[string]string) (status int, ok bool) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		return 0, false
	}
	argv := []string{"curl", "-s", "--noproxy", "*", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "-X", method}
	for k, v := range header {
		argv = append(argv, "-H", k+": "+v)
	}
	stdout, stderr, err := runInNetns(t, h, append(argv, url)...)
	if err != nil {
		t.Fatalf("curl in %s: %v\n%s", h.NS, err, stderr)
	}
	status, err = strconv.Atoi(strings.TrimSpace(string(stdout)))
	if err != nil {
		t.Fatalf("curl in %s printed %q, not a status", h.NS, stdout)
	}
	return status, true
}

// hostGet is a request from the host itself (not from a namespace).
func hostGet(t *testing.T, url string, header map[string]string) (int, string) {
	t.Helper()
	resp := netnsDo(context.Background(), netnsHTTPClient(), url, netnsHTTPRequest{Method: http.MethodGet, Header: header})
	if resp.Err != "" {
		t.Fatalf("GET %s: %s", url, resp.Err)
	}
	return resp.Status, resp.Body
}

// TestNetnsHarness checks the lab itself, with no imds feature involved: a
// plain HTTP server on the bridge sees each namespace's own address, the
// namespaces do not share the host's loopback, and everything is gone once
// the lab's test ends.
func TestNetnsHarness(t *testing.T) {
	requireNetns(t)
	var lab *netnsLab
	t.Run("lab", func(t *testing.T) {
		lab = newNetnsLab(t, 3)
		ln, err := net.Listen("tcp", net.JoinHostPort(lab.HostIP.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.RemoteAddr)
		}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		url := "http://" + ln.Addr().String()

		// Only reachable from the host's own loopback.
		lo, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		loSrv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 5 * time.Second}
		go loSrv.Serve(lo)
		t.Cleanup(func() { loSrv.Close() })

		for _, h := range lab.Hosts {
			res := goHelper(t, h, netnsHelperJob{URL: url, Requests: []netnsHTTPRequest{{Method: "GET", Path: "/who"}}})
			if len(res.Responses) != 1 || res.Responses[0].Status != 200 {
				t.Fatalf("GET %s from %s: %+v", url, h.NS, res.Responses)
			}
			if ap, err := netip.ParseAddrPort(res.Responses[0].Body); err != nil || ap.Addr() != h.Addr {
				t.Errorf("the server saw %s from %s, want address %s", res.Responses[0].Body, h.NS, h.Addr)
			}
			if st, ok := curlStatus(t, h, "GET", url+"/who", nil); ok && st != 200 {
				t.Errorf("curl from %s: status %d", h.NS, st)
			}
			res = goHelper(t, h, netnsHelperJob{URL: "http://" + lo.Addr().String(), Requests: []netnsHTTPRequest{{Method: "GET", Path: "/"}}})
			if len(res.Responses) != 1 || res.Responses[0].Err == "" {
				t.Errorf("%s reached the host's loopback server: %+v", h.NS, res.Responses)
			}
			stdout, stderr, err := runInNetns(t, h, "ip", "-o", "-4", "addr", "show")
			if err != nil {
				t.Fatalf("%v: %s", err, stderr)
			}
			if !strings.Contains(string(stdout), " "+h.Addr.String()+"/") || strings.Contains(string(stdout), lab.HostIP.String()+"/") {
				t.Errorf("addresses in %s:\n%s", h.NS, stdout)
			}
		}
	})
	if lab == nil {
		return
	}
	if left := lab.leftovers(t, 0); left != "" {
		t.Errorf("after the lab's test:\n%s", left)
	}
}

// netnsInstance is an instance of the config the imds tests serve, bound to
// a namespace of the lab.
type netnsInstance struct {
	Name, Tag, UserData, Role string
	Host                      *netnsHost
}

func netnsInstances(lab *netnsLab) []netnsInstance {
	var out []netnsInstance
	for i, h := range lab.Hosts {
		l := string(rune('a' + i))
		out = append(out, netnsInstance{
			Name:     "ns-" + l,
			Tag:      "web-" + l,
			UserData: "#!/bin/sh\necho instance " + l + "\n",
			Role:     "role-" + l,
			Host:     h,
		})
	}
	return out
}

// netnsConfig declares insts under instances:, each recognised by its
// namespace's address, with fake credentials for their roles. A non-empty
// secret adds identity: with the bridge address (the host itself, when it
// connects to the bridge) as the only trusted proxy.
func netnsConfig(lab *netnsLab, insts []netnsInstance, secret string) string {
	var b strings.Builder
	b.WriteString("roles:\n")
	for _, in := range insts {
		fmt.Fprintf(&b, "  %s: {source: fake}\n", in.Role)
	}
	if secret != "" {
		fmt.Fprintf(&b, "identity:\n  trusted_proxies: [%q]\n  proxy_secret: %q\n", netip.PrefixFrom(lab.HostIP, 32).String(), secret)
	}
	b.WriteString("instances:\n")
	for _, in := range insts {
		fmt.Fprintf(&b, "  - name: %s\n", in.Name)
		b.WriteString("    region: eu-west-1\n")
		fmt.Fprintf(&b, "    source_addresses: [%q]\n", in.Host.Addr.String())
		b.WriteString("    tags_in_metadata: true\n")
		fmt.Fprintf(&b, "    tags: {Name: %q}\n", in.Tag)
		fmt.Fprintf(&b, "    user_data: %q\n", in.UserData)
		fmt.Fprintf(&b, "    role: %s\n", in.Role)
	}
	return b.String()
}

// netnsServer is an `imds serve` listening on a lab's bridge and on
// loopback.
type netnsServer struct {
	BridgeURL string // http://10.213.X.1:PORT, what the namespaces use
	LoopURL   string // http://127.0.0.1:PORT, for the host (not an instance)
	AdminSock string // the admin API's Unix socket
	logs      *syncBuffer
}

// startMultiInstanceServer starts `imds serve` with configYAML (none when
// empty: zero configuration) listening on the lab's bridge address and on
// 127.0.0.1.
func startMultiInstanceServer(t *testing.T, lab *netnsLab, configYAML string) *netnsServer {
	t.Helper()
	srv := startServer(t, configYAML, listen(net.JoinHostPort(lab.HostIP.String(), "0"), "127.0.0.1:0"))
	d, logs := srv.d, srv.logs
	s := &netnsServer{logs: logs, AdminSock: d.Admin.SocketPath}
	for _, a := range d.Addrs() {
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			t.Fatal(err)
		}
		switch ap.Addr() {
		case lab.HostIP:
			s.BridgeURL = "http://" + a.String()
		case netip.MustParseAddr("127.0.0.1"):
			s.LoopURL = "http://" + a.String()
		}
	}
	if s.BridgeURL == "" || s.LoopURL == "" {
		t.Fatalf("server listens on %v, want %s and 127.0.0.1", d.Addrs(), lab.HostIP)
	}
	return s
}

// proxySignature is X-Instance-ID-Signature for name: hex HMAC-SHA256.
func proxySignature(secret, name string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))
}

// accessLogInstances returns, for each remote address, the set of instance
// names the access log attributed its requests to.
func accessLogInstances(logs string) map[netip.Addr]map[string]bool {
	remoteRE := regexp.MustCompile(`\bremote=(\S+)`)
	instRE := regexp.MustCompile(`\binstance=("[^"]*"|\S*)`)
	out := map[netip.Addr]map[string]bool{}
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "msg=request") {
			continue
		}
		rm := remoteRE.FindStringSubmatch(line)
		if rm == nil {
			continue
		}
		ap, err := netip.ParseAddrPort(rm[1])
		if err != nil {
			continue
		}
		name := ""
		if im := instRE.FindStringSubmatch(line); im != nil {
			name = strings.Trim(im[1], `"`)
		}
		if out[ap.Addr()] == nil {
			out[ap.Addr()] = map[string]bool{}
		}
		out[ap.Addr()][name] = true
	}
	return out
}

const netnsProxySecret = "netns-test-proxy-secret"

// TestNetnsThreeInstances serves three instances to three namespaces from
// one server: each namespace reads its own instance with the Go SDK and
// botocore, and nothing of the others'.
func TestNetnsThreeInstances(t *testing.T) {
	lab := newNetnsLab(t, 3)
	insts := netnsInstances(lab)
	srv := startMultiInstanceServer(t, lab, netnsConfig(lab, insts, netnsProxySecret))

	// What the server says each instance is: asked from the host, the
	// trusted proxy, on the instance's behalf (needs identity:).
	type view struct{ InstanceID, AccessKeyID string }
	want := map[string]view{}
	t.Run("trusted-proxy", func(t *testing.T) {
		for _, in := range insts {
			sig := map[string]string{"X-Instance-ID": in.Name, "X-Instance-ID-Signature": proxySignature(netnsProxySecret, in.Name)}
			st, id := hostGet(t, srv.BridgeURL+"/latest/meta-data/instance-id", sig)
			if st != 200 || !strings.HasPrefix(id, "i-") {
				t.Errorf("signed proxy request for %s: %d %q, want 200 and an instance ID", in.Name, st, id)
				continue
			}
			st, body := hostGet(t, srv.BridgeURL+"/latest/meta-data/iam/security-credentials/"+in.Role, sig)
			var c struct{ AccessKeyId string }
			if err := json.Unmarshal([]byte(body), &c); st != 200 || err != nil || c.AccessKeyId == "" {
				t.Errorf("signed proxy request for %s's credentials: %d %q", in.Name, st, body)
			}
			want[in.Name] = view{InstanceID: id, AccessKeyID: c.AccessKeyId}

			if st, body := hostGet(t, srv.BridgeURL+"/latest/meta-data/instance-id", map[string]string{"X-Instance-ID": in.Name}); st != 403 {
				t.Errorf("unsigned X-Instance-ID %s from the trusted proxy: %d %q, want 403", in.Name, st, body)
			}
			bad := map[string]string{"X-Instance-ID": in.Name, "X-Instance-ID-Signature": proxySignature("wrong-secret", in.Name)}
			if st, body := hostGet(t, srv.BridgeURL+"/latest/meta-data/instance-id", bad); st != 403 {
				t.Errorf("badly signed X-Instance-ID %s from the trusted proxy: %d %q, want 403", in.Name, st, body)
			}
		}
	})

	var mu sync.Mutex
	seenIDs, seenKeys := map[string]string{}, map[string]string{}
	t.Run("clients", func(t *testing.T) {
		for i, in := range insts {
			other := insts[(i+1)%len(insts)]
			t.Run(in.Name, func(t *testing.T) {
				t.Parallel()
				var foreign []string
				for _, o := range insts {
					if o.Name != in.Name {
						foreign = append(foreign, "iam/security-credentials/"+o.Role)
					}
				}
				res := goHelper(t, in.Host, netnsHelperJob{
					URL:          srv.BridgeURL,
					SDK:          true,
					ForeignPaths: foreign,
					Requests: []netnsHTTPRequest{
						// Identity headers from an untrusted peer are ignored,
						// unsigned or even correctly signed.
						{Method: "GET", Path: "/latest/meta-data/instance-id", Header: map[string]string{"X-Instance-ID": other.Name}},
						{Method: "GET", Path: "/latest/meta-data/instance-id", Header: map[string]string{
							"X-Instance-ID": other.Name, "X-Instance-ID-Signature": proxySignature(netnsProxySecret, other.Name)}},
						{Method: "GET", Path: "/latest/meta-data/iam/security-credentials/" + other.Role},
						{Method: "GET", Path: "/latest/meta-data/local-ipv4"},
					},
				})
				for _, e := range res.SDKError {
					t.Errorf("Go SDK in %s: %s", in.Host.NS, e)
				}
				w := want[in.Name]
				if !strings.HasPrefix(res.InstanceID, "i-") || (w.InstanceID != "" && res.InstanceID != w.InstanceID) {
					t.Errorf("Go SDK instance-id %q, the server says %q for %s", res.InstanceID, w.InstanceID, in.Name)
				}
				if res.NameTag != in.Tag {
					t.Errorf("Go SDK tags/instance/Name %q, want %q", res.NameTag, in.Tag)
				}
				if res.UserData != in.UserData {
					t.Errorf("Go SDK user-data %q, want %q", res.UserData, in.UserData)
				}
				if res.RoleName != in.Role {
					t.Errorf("Go SDK iam/security-credentials/ lists %q, want %q", res.RoleName, in.Role)
				}
				if !strings.HasPrefix(res.AccessKeyID, "ASIA") || (w.AccessKeyID != "" && res.AccessKeyID != w.AccessKeyID) {
					t.Errorf("Go SDK access key %q, the server says %q for %s", res.AccessKeyID, w.AccessKeyID, in.Role)
				}
				if res.Token == "" {
					t.Errorf("the Go SDK sent no session token")
				}
				for _, p := range foreign {
					if st := res.ForeignStatus[p]; st != 404 {
						t.Errorf("Go SDK GetMetadata %s from %s: status %d, want 404", p, in.Name, st)
					}
				}
				if len(res.Responses) != 4 {
					t.Fatalf("helper responses: %+v", res.Responses)
				}
				for i, r := range res.Responses[:2] {
					if r.Status != 200 || r.Body != res.InstanceID {
						t.Errorf("instance-id with X-Instance-ID: %s (signed: %v) from %s: %d %q, want 200 and its own %q",
							other.Name, i == 1, in.Name, r.Status, r.Body, res.InstanceID)
					}
				}
				if r := res.Responses[2]; r.Status != 404 {
					t.Errorf("%s's credentials from %s: %d %q, want 404", other.Role, in.Name, r.Status, r.Body)
				}
				if r := res.Responses[3]; r.Status != 200 || r.Body != in.Host.Addr.String() {
					t.Errorf("local-ipv4 of %s: %d %q, want its source address %s", in.Name, r.Status, r.Body, in.Host.Addr)
				}

				t.Run("botocore", func(t *testing.T) {
					out := botocoreInNetns(t, in.Host, srv.BridgeURL)
					if out["role_name"] != in.Role || out["method"] != "iam-role" {
						t.Errorf("botocore in %s: role %v via %v, want %s via iam-role", in.Host.NS, out["role_name"], out["method"], in.Role)
					}
					key, _ := out["access_key_id"].(string)
					if !strings.HasPrefix(key, "ASIA") || key != res.AccessKeyID {
						t.Errorf("botocore access key %q, the Go SDK got %q", key, res.AccessKeyID)
					}
				})

				mu.Lock()
				seenIDs[in.Name], seenKeys[in.Name] = res.InstanceID, res.AccessKeyID
				mu.Unlock()
			})
		}
	})

	ids, keys := map[string]string{}, map[string]string{}
	for _, in := range insts {
		if id := seenIDs[in.Name]; id != "" {
			if prev, dup := ids[id]; dup {
				t.Errorf("%s and %s got the same instance ID %s", prev, in.Name, id)
			}
			ids[id] = in.Name
		}
		if k := seenKeys[in.Name]; k != "" {
			if prev, dup := keys[k]; dup {
				t.Errorf("%s and %s got the same access key %s", prev, in.Name, k)
			}
			keys[k] = in.Name
		}
	}

	// The host's loopback is no instance's address.
	if st, body := hostGet(t, srv.LoopURL+"/latest/meta-data/instance-id", nil); st != 404 {
		t.Errorf("instance-id from 127.0.0.1 (not declared): %d %q, want 404", st, body)
	}
	logs := srv.logs.String()
	named := false
	for _, line := range strings.Split(logs, "\n") {
		// Not the access log line (remote=127.0.0.1:PORT), nor the start-up line.
		if strings.Contains(line, "127.0.0.1") && !strings.Contains(line, "msg=request") && !strings.Contains(line, "listen=") {
			named = true
		}
	}
	if !named {
		t.Errorf("no log line names the unknown requester 127.0.0.1:\n%s", logs)
	}

	// The access log attributes each namespace's requests to its instance only.
	seen := accessLogInstances(logs)
	for _, in := range insts {
		got := seen[in.Host.Addr]
		if !got[in.Name] || len(got) != 1 {
			t.Errorf("access log attributes the requests from %s to %v, want only %s", in.Host.Addr, got, in.Name)
		}
	}
}

// TestNetnsTokenBoundToInstance: a session token is good only for the
// instance it was issued to, even when another instance presents it.
func TestNetnsTokenBoundToInstance(t *testing.T) {
	lab := newNetnsLab(t, 2)
	insts := netnsInstances(lab)
	srv := startMultiInstanceServer(t, lab, netnsConfig(lab, insts, ""))
	a, b := insts[0], insts[1]

	tokenPut := netnsHTTPRequest{Method: "PUT", Path: "/latest/api/token", Header: map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"}}
	res := goHelper(t, a.Host, netnsHelperJob{URL: srv.BridgeURL, SDK: true, Requests: []netnsHTTPRequest{tokenPut}})
	for _, e := range res.SDKError {
		t.Errorf("Go SDK in %s: %s", a.Host.NS, e)
	}
	if len(res.Responses) != 1 || res.Responses[0].Status != 200 || res.Responses[0].Body == "" {
		t.Fatalf("PUT /latest/api/token from %s: %+v", a.Name, res.Responses)
	}
	tokA, sdkTokA, idA := res.Responses[0].Body, res.Token, res.InstanceID
	if sdkTokA == "" {
		t.Errorf("the Go SDK in %s sent no token", a.Name)
	}

	withToken := func(tok string) netnsHTTPRequest {
		return netnsHTTPRequest{Method: "GET", Path: "/latest/meta-data/instance-id", Header: map[string]string{"X-aws-ec2-metadata-token": tok}}
	}
	url := srv.BridgeURL + "/latest/meta-data/instance-id"
	hdr := map[string]string{"X-aws-ec2-metadata-token": tokA}
	if st, ok := curlStatus(t, b.Host, "GET", url, hdr); !ok {
		t.Log("curl is not installed: the Go helper alone presents the tokens")
	} else if st != 401 {
		t.Errorf("curl in %s with %s's token: status %d, want 401", b.Name, a.Name, st)
	}
	if st, ok := curlStatus(t, a.Host, "GET", url, hdr); ok && st != 200 {
		t.Errorf("curl in %s with its own token: status %d, want 200", a.Name, st)
	}

	res = goHelper(t, b.Host, netnsHelperJob{URL: srv.BridgeURL, Requests: []netnsHTTPRequest{withToken(tokA), withToken(sdkTokA), tokenPut}})
	if len(res.Responses) != 3 {
		t.Fatalf("helper responses: %+v", res.Responses)
	}
	for i, r := range res.Responses[:2] {
		if r.Status != 401 {
			t.Errorf("%s presenting %s's token (from the SDK: %v): %d %q, want 401", b.Name, a.Name, i == 1, r.Status, r.Body)
		}
	}
	tokB := res.Responses[2].Body
	if res.Responses[2].Status != 200 || tokB == "" {
		t.Fatalf("PUT /latest/api/token from %s: %+v", b.Name, res.Responses[2])
	}

	res = goHelper(t, a.Host, netnsHelperJob{URL: srv.BridgeURL, Requests: []netnsHTTPRequest{withToken(tokA), withToken(sdkTokA), withToken(tokB)}})
	if len(res.Responses) != 3 {
		t.Fatalf("helper responses: %+v", res.Responses)
	}
	for i, r := range res.Responses[:2] {
		if r.Status != 200 || r.Body != idA {
			t.Errorf("%s presenting its own token (from the SDK: %v): %d %q, want 200 %q", a.Name, i == 1, r.Status, r.Body, idA)
		}
	}
	if r := res.Responses[2]; r.Status != 401 {
		t.Errorf("%s presenting %s's token: %d %q, want 401", a.Name, b.Name, r.Status, r.Body)
	}

	// ns-b's own token works for ns-b: the 401 above is the binding, not a
	// broken namespace.
	if st, ok := curlStatus(t, b.Host, "GET", url, map[string]string{"X-aws-ec2-metadata-token": tokB}); ok && st != 200 {
		t.Errorf("curl in %s with its own token: status %d, want 200", b.Name, st)
	}
}
