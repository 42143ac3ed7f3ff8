//go:build linux

package dnsmasq

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ipam"
)

// e2eEnv is a server namespace with a bridge and client namespaces attached
// to it by veth pairs. Everything lives in namespaces named imdsdhcp-<pid>-*;
// the host's own network is never touched.
type e2eEnv struct {
	t      *testing.T
	prefix string
	srv    string
}

func requireE2E(t *testing.T) (dnsmasqBin string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/dnsmasq"); err2 != nil {
			t.Skipf("needs dnsmasq: %v", err)
		}
		bin = "/usr/sbin/dnsmasq"
	}
	return bin
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func newEnv(t *testing.T, name string) *e2eEnv {
	e := &e2eEnv{t: t, prefix: fmt.Sprintf("imdsdhcp-%d-%s", os.Getpid(), name)}
	e.srv = e.prefix + "-srv"
	e.addNS(e.srv)
	run(t, "ip", "-n", e.srv, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", e.srv, "addr", "add", "10.217.0.1/24", "dev", "br0")
	run(t, "ip", "-n", e.srv, "link", "set", "br0", "up")
	return e
}

func (e *e2eEnv) addNS(ns string) {
	run(e.t, "ip", "netns", "add", ns)
	e.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(e.t, "ip", "-n", ns, "link", "set", "lo", "up")
}

// addVM creates namespace <prefix>-<name> with eth0 (mac) bridged to br0.
func (e *e2eEnv) addVM(name, mac string, idx int) string {
	ns := e.prefix + "-" + name
	e.addNS(ns)
	veth := fmt.Sprintf("veth%d", idx)
	run(e.t, "ip", "-n", e.srv, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	run(e.t, "ip", "-n", e.srv, "link", "set", veth, "master", "br0", "up")
	run(e.t, "ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
	return ns
}

const udhcpcScript = `#!/bin/sh
# udhcpc event script for the tests: applies the lease and option 121.
OUT=%q
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	if [ -n "$staticroutes" ]; then
		set -- $staticroutes
		while [ $# -ge 2 ]; do
			if [ "$2" = "0.0.0.0" ]; then
				ip route replace "$1" dev "$interface"
			else
				ip route replace "$1" via "$2" dev "$interface"
			fi
			shift 2
		done
	elif [ -n "$router" ]; then
		for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
	fi
	env > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
	;;
esac
exit 0
`

// dhcp runs udhcpc in ns and returns the variables it received.
func dhcp(t *testing.T, ns, dir string) map[string]string {
	t.Helper()
	out := filepath.Join(dir, ns+".env")
	script := filepath.Join(dir, ns+".sh")
	if err := os.WriteFile(script, fmt.Appendf(nil, udhcpcScript, out), 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1",
		"-O", "staticroutes", "-s", script)
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("udhcpc wrote no result: %v", err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	return vars
}

func nslookup(ns, query string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "busybox", "nslookup", query, "10.217.0.1").CombinedOutput()
	return string(out), err
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func TestEndToEnd(t *testing.T) {
	bin := requireE2E(t)
	e := newEnv(t, "e2e")
	vm1 := e.addVM("vm1", "02:00:00:00:00:01", 1)
	vm2 := e.addVM("vm2", "02:00:00:00:00:02", 2)
	dir := t.TempDir()

	subnet := netip.MustParsePrefix("10.217.0.0/24")
	gw := netip.MustParseAddr("10.217.0.1")
	alloc, err := ipam.Open(filepath.Join(dir, "ipam.json"), subnet, gw)
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	// Take a few addresses first so the VMs do not simply get .2 and .3.
	for i := range 3 {
		if _, err := alloc.Allocate(fmt.Sprintf("02:00:00:00:ff:%02x", i), fmt.Sprint("other-", i)); err != nil {
			t.Fatal(err)
		}
	}
	addr1, err := alloc.Allocate("02:00:00:00:00:01", "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	addr2, err := alloc.Allocate("02:00:00:00:00:02", "vm-2")
	if err != nil {
		t.Fatal(err)
	}
	hosts := func() []Host {
		var hs []Host
		for _, l := range alloc.Leases() {
			if strings.HasPrefix(l.Name, "vm-") {
				hs = append(hs, Host{Name: l.Name, MAC: l.MAC, Addr: l.Addr})
			}
		}
		return hs
	}

	s := New(Config{
		Binary:     bin,
		Netns:      e.srv,
		Dir:        filepath.Join(dir, "dnsmasq"),
		Interface:  "br0",
		Subnet:     subnet,
		Gateway:    gw,
		Domain:     "vm.internal",
		LogQueries: true,
	}, testLogger(t))
	if err := s.SetHosts(hosts()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	for _, c := range []struct {
		ns   string
		want netip.Addr
	}{{vm1, addr1}, {vm2, addr2}} {
		vars := dhcp(t, c.ns, dir)
		if vars["ip"] != c.want.String() {
			t.Errorf("%s got ip %q, want %v (vars %v)", c.ns, vars["ip"], c.want, vars)
		}
		if vars["staticroutes"] != "169.254.169.254/32 10.217.0.1 0.0.0.0/0 10.217.0.1" {
			t.Errorf("%s staticroutes = %q", c.ns, vars["staticroutes"])
		}
		if vars["domain"] != "vm.internal" {
			t.Errorf("%s domain = %q", c.ns, vars["domain"])
		}
		routes := run(t, "ip", "-n", c.ns, "route", "get", "169.254.169.254")
		if !strings.Contains(routes, "via 10.217.0.1") {
			t.Errorf("%s: route to metadata: %s", c.ns, routes)
		}
		addrs := run(t, "ip", "-n", c.ns, "-4", "addr", "show", "dev", "eth0")
		if !strings.Contains(addrs, "inet "+c.want.String()+"/24") {
			t.Errorf("%s: addresses: %s", c.ns, addrs)
		}
	}

	// Forward and reverse DNS from vm1.
	out, err := nslookup(vm1, "vm-2.vm.internal")
	if err != nil || !strings.Contains(out, addr2.String()) {
		t.Fatalf("nslookup vm-2.vm.internal: %v\n%s", err, out)
	}
	out, err = nslookup(vm1, addr2.String())
	if err != nil || !strings.Contains(out, "vm-2.vm.internal") {
		t.Fatalf("reverse lookup of %v: %v\n%s", addr2, err, out)
	}

	// Adding a host: SIGHUP, same PID.
	pid := s.PID()
	if err := s.SetHosts(append(hosts(), Host{Name: "vm-9", MAC: "02:00:00:00:00:09", Addr: netip.MustParseAddr("10.217.0.99")})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "vm-9 to resolve", func() bool {
		out, err := nslookup(vm1, "vm-9.vm.internal")
		return err == nil && strings.Contains(out, "10.217.0.99")
	})
	if s.PID() != pid {
		t.Errorf("adding a host restarted dnsmasq (pid %d -> %d)", pid, s.PID())
	}

	// Remove vm-2: the name must go away.
	if err := alloc.Release("02:00:00:00:00:02"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHosts(hosts()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "vm-2 to stop resolving", func() bool {
		out, err := nslookup(vm1, "vm-2.vm.internal")
		return err != nil || !strings.Contains(out, addr2.String())
	})
	if out, err := nslookup(vm1, "vm-1.vm.internal"); err != nil || !strings.Contains(out, addr1.String()) {
		t.Errorf("vm-1 no longer resolves: %v\n%s", err, out)
	}

	// Re-add vm-2: same address from ipam, DHCP and DNS again.
	again, err := alloc.Allocate("02:00:00:00:00:02", "vm-2")
	if err != nil {
		t.Fatal(err)
	}
	if again != addr2 {
		t.Fatalf("re-added vm-2 got %v, want %v", again, addr2)
	}
	if err := s.SetHosts(hosts()); err != nil {
		t.Fatal(err)
	}
	if vars := dhcp(t, vm2, dir); vars["ip"] != addr2.String() {
		t.Errorf("re-added vm-2 got ip %q, want %v", vars["ip"], addr2)
	}
	waitFor(t, "vm-2 to resolve again", func() bool {
		out, err := nslookup(vm1, "vm-2.vm.internal")
		return err == nil && strings.Contains(out, addr2.String())
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSupervisionRestarts(t *testing.T) {
	bin := requireE2E(t)
	e := newEnv(t, "sup")
	vm1 := e.addVM("vm1", "02:00:00:00:00:01", 1)
	dir := t.TempDir()
	s := New(Config{
		Binary:    bin,
		Netns:     e.srv,
		Dir:       filepath.Join(dir, "dnsmasq"),
		Interface: "br0",
		Subnet:    netip.MustParsePrefix("10.217.0.0/24"),
		Gateway:   netip.MustParseAddr("10.217.0.1"),
		Domain:    "vm.internal",
	}, testLogger(t))
	if err := s.SetHosts([]Host{{Name: "vm-1", MAC: "02:00:00:00:00:01", Addr: netip.MustParseAddr("10.217.0.10")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	pid := s.PID()
	if pid == 0 {
		t.Fatal("no pid")
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), "--conf-file="+s.ConfigFile()) {
		t.Fatalf("pid %d is not our dnsmasq: %q", pid, cmdline)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dnsmasq to be restarted", func() bool {
		p := s.PID()
		return p != 0 && p != pid
	})
	waitFor(t, "restarted dnsmasq to answer", func() bool {
		out, err := exec.Command("ip", "netns", "exec", e.srv, "busybox", "nslookup", "vm-1.vm.internal", "10.217.0.1").CombinedOutput()
		return err == nil && strings.Contains(string(out), "10.217.0.10")
	})
	if vars := dhcp(t, vm1, dir); vars["ip"] != "10.217.0.10" {
		t.Errorf("after restart DHCP gave %q", vars["ip"])
	}
	if crashes, requested := s.Restarts(); crashes != 1 || requested != 0 {
		t.Errorf("Restarts() = %d crashes, %d requested; want 1, 0", crashes, requested)
	}
	newPID := s.PID()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(newPID, 0) == nil {
		t.Errorf("dnsmasq %d still running after Stop", newPID)
	}
	if s.PID() != 0 {
		t.Error("PID after Stop")
	}
}

func TestStartFailureReported(t *testing.T) {
	bin := requireE2E(t)
	e := newEnv(t, "fail")
	s := New(Config{
		Binary:    bin,
		Netns:     e.srv,
		Dir:       filepath.Join(t.TempDir(), "dnsmasq"),
		Interface: "nosuch0",
		Subnet:    netip.MustParsePrefix("10.217.0.0/24"),
		Gateway:   netip.MustParseAddr("10.217.0.1"),
		Domain:    "vm.internal",
	}, testLogger(t))
	err := s.Start(t.Context())
	if err == nil {
		s.Stop()
		t.Fatal("Start on a missing interface succeeded")
	}
	t.Log(err)
}
