//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
)

// clusterDeadline bounds every wait for a change to reach a host in
// TestThreeHosts: generous, for a loaded two-core machine; the figures are
// logged, not asserted.
const clusterDeadline = 10 * time.Second

// clusterHost is one imds server of TestThreeHosts: a process in a network
// namespace of its own, listening on the namespace's loopback, with its
// clients in the same namespace.
type clusterHost struct {
	name  string
	ns    *netnsHost
	h     netns.NsHandle
	sock  string
	admin *admin.Client
	log   *syncBuffer
}

// dialIn returns a dial function whose sockets are made inside the
// namespace h, bound to src: a socket keeps the namespace it was made in,
// so only its creation needs the thread switched there.
func dialIn(h netns.NsHandle, src netip.Addr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 2 * time.Second}
		c, derr := d.DialContext(ctx, network, addr)
		if err := netns.Set(orig); err != nil {
			// The thread stays in h: left locked, it ends with this goroutine.
			if c != nil {
				c.Close()
			}
			return nil, err
		}
		runtime.UnlockOSThread()
		return c, derr
	}
}

// vmClient is the HTTP client of the VM at src on host h.
func (h *clusterHost) vmClient(src netip.Addr) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DialContext: dialIn(h.h, src), MaxIdleConnsPerHost: 1}}
}

// get asks h's metadata server for path as the VM of c; "" unless 200.
func (h *clusterHost) get(c *http.Client, path string) string {
	resp, err := c.Get("http://127.0.0.1:1338/latest/" + path)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

// waitGet polls h until path, asked as the VM of c, answers with ok, and
// returns how long that took.
func (h *clusterHost) waitGet(t *testing.T, c *http.Client, path, what string, ok func(string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok(h.get(c, path)) {
		if time.Since(start) > clusterDeadline {
			t.Fatalf("host %s: %s not seen within %s (last answer %q)\nits log:\n%s", h.name, what, clusterDeadline, h.get(c, path), h.log.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// addRetry registers spec through h, retrying while etcd elects a leader
// (a write caught by an election fails with its outcome unknown).
func (h *clusterHost) addRetry(t *testing.T, spec *ec2.Instance) *ec2.Instance {
	t.Helper()
	deadline := time.Now().Add(clusterDeadline)
	for {
		inst, err := h.admin.AddInstance(t.Context(), spec)
		if err == nil {
			return inst
		}
		if ec2.ErrorCode(err) == ec2.ECONFLICT {
			if inst, gerr := h.admin.GetInstance(t.Context(), spec.Name); gerr == nil {
				return inst // applied before the answer was lost
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registering %s through %s still fails: %v", spec.Name, h.name, err)
		}
		t.Logf("registering %s through %s, retried: %s", spec.Name, h.name, ec2.ErrorMessage(err))
		time.Sleep(100 * time.Millisecond)
	}
}

func vmAddr(block, i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, byte(block), byte(i)}) }

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// TestThreeHosts is the cluster of docs/cluster.md for real: a three-member
// etcd (separate processes) and three imds servers, each in a network
// namespace of its own with its VMs' clients in it. A VM registered on A
// is served on B and C; an event issued through A shows on C; one member
// killed, everything works; two killed, every host still serves metadata
// and credentials while writes fail naming the endpoints, and after the
// members return nothing acknowledged is missing; a host whose link is cut
// keeps serving and catches up once it is back.
func TestThreeHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("three imds servers and three etcd members")
	}
	if err := etcdtest.Available(); err != nil {
		t.Skipf("no etcd server to test against: %v", err)
	}
	lab := newNetnsLab(t, 3) // skips unless root
	members := etcdtest.StartClusterOn(t, 3, lab.HostIP.String())
	endpoints := etcdtest.Endpoints(members...)
	dir := t.TempDir()
	hosts := make([]*clusterHost, 3)
	for i, nsHost := range lab.Hosts {
		h := &clusterHost{name: "hv-" + string(rune('a'+i)), ns: nsHost, sock: shortSocketPath(t), log: &syncBuffer{}}
		conf := filepath.Join(dir, h.name+".yaml")
		doc := fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    prefix: /three/\n    host: %s\n    dial_timeout: 2s\n", strings.Join(endpoints, ", "), h.name)
		if err := os.WriteFile(conf, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		if h.h, err = netns.GetFromName(nsHost.NS); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.h.Close() })
		h.admin = serveInNetns(t, nsHost.NS, h.sock, h.log, "--config", conf, "--data-dir", filepath.Join(dir, h.name),
			"--listen", "127.0.0.1:1338", "--log-level", "warn")
		hosts[i] = h
	}
	a, b, c := hosts[0], hosts[1], hosts[2]
	role := &ec2.Role{Name: "app"}
	var acked []string // every registration acknowledged, whatever happened after

	// 1. 200 VMs registered on A, each served on B and C.
	const n = 200
	var onB, onC []time.Duration
	for i := range n {
		src := vmAddr(1, i+1)
		inst := a.addRetry(t, &ec2.Instance{Name: fmt.Sprintf("vm-%03d", i), SourceAddrs: []string{src.String()}, Role: role})
		acked = append(acked, inst.Name)
		isID := func(s string) bool { return s == inst.ID }
		cb, cc := b.vmClient(src), c.vmClient(src)
		onB = append(onB, b.waitGet(t, cb, "meta-data/instance-id", "the instance "+inst.Name+" registered on A", isID))
		onC = append(onC, c.waitGet(t, cc, "meta-data/instance-id", "the instance "+inst.Name+" registered on A", isID))
		cb.CloseIdleConnections()
		cc.CloseIdleConnections()
	}
	slices.Sort(onB)
	slices.Sort(onC)
	t.Logf("registered on A, served on B: %d registrations, p50 %s, p99 %s, max %s", n, pct(onB, 0.5), pct(onB, 0.99), onB[n-1])
	t.Logf("registered on A, served on C: p50 %s, p99 %s, max %s", pct(onC, 0.5), pct(onC, 0.99), onC[n-1])

	// 2. imds event spot vm-003 through A shows in vm-003's metadata on C.
	vm3 := c.vmClient(vmAddr(1, 4))
	start := time.Now()
	mustRunCLI(t, "event", "spot", "vm-003", "--action", "stop", "--admin-socket", a.sock)
	took := c.waitGet(t, vm3, "meta-data/spot/instance-action", "the spot notice issued through A", func(s string) bool { return strings.Contains(s, `"stop"`) })
	t.Logf("imds event spot through A, shown on C after %s (the CLI included: %s)", took, time.Since(start))

	// 3. One member killed: registrations and events still go through.
	members[0].Stop()
	src := vmAddr(2, 1)
	inst := b.addRetry(t, &ec2.Instance{Name: "vm-one-down", SourceAddrs: []string{src.String()}, Role: role})
	acked = append(acked, inst.Name)
	for _, h := range []*clusterHost{a, c} {
		h.waitGet(t, h.vmClient(src), "meta-data/instance-id", "the instance registered with one member down", func(s string) bool { return s == inst.ID })
	}
	mustRunCLI(t, "event", "rebalance", "vm-one-down", "--admin-socket", c.sock)
	a.waitGet(t, a.vmClient(src), "meta-data/events/recommendations/rebalance", "the rebalance issued through C with one member down",
		func(s string) bool { return strings.Contains(s, "noticeTime") })

	// 4. Two members killed: no quorum. Every host serves metadata and
	// credentials; writes fail naming the endpoints.
	members[1].Stop()
	for _, h := range hosts {
		vm := h.vmClient(vmAddr(1, 51))
		h.waitGet(t, vm, "meta-data/instance-id", "vm-050 with no quorum", func(s string) bool { return strings.HasPrefix(s, "i-") })
		h.waitGet(t, vm, "meta-data/iam/security-credentials/app", "vm-050's credentials with no quorum", func(s string) bool { return strings.Contains(s, `"Success"`) })
	}
	_, err := a.admin.AddInstance(t.Context(), &ec2.Instance{Name: "vm-no-quorum", SourceAddrs: []string{vmAddr(2, 2).String()}})
	if ec2.ErrorCode(err) != ec2.EUNAVAILABLE || !strings.Contains(ec2.ErrorMessage(err), members[2].ClientURL) {
		t.Errorf("a registration with no quorum: %v, want EUNAVAILABLE naming the endpoints", err)
	}
	_, stderr, code := runCLI(t, "event", "rebalance", "vm-000", "--admin-socket", b.sock)
	if code == 0 || !strings.Contains(stderr, members[2].ClientURL) {
		t.Errorf("an event with no quorum: exit %d, %s", code, stderr)
	}
	deadline := time.Now().Add(clusterDeadline)
	for {
		out, _, code := runCLI(t, "status", "--admin-socket", c.sock)
		if code == 1 && strings.Contains(out, "DOES NOT ANSWER") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("imds status on C with no quorum: exit %d\n%s", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// 5. The members back: nothing acknowledged is missing, anywhere, and
	// writes go through again.
	start = time.Now()
	members[0].Launch()
	members[1].Launch()
	members[0].WaitReady()
	members[1].WaitReady()
	src = vmAddr(2, 3)
	inst = a.addRetry(t, &ec2.Instance{Name: "vm-after", SourceAddrs: []string{src.String()}, Role: role})
	acked = append(acked, inst.Name)
	t.Logf("members restarted: a registration acknowledged %s after their start", time.Since(start))
	for _, h := range hosts {
		h.waitGet(t, h.vmClient(src), "meta-data/instance-id", "the instance registered after the members returned", func(s string) bool { return s == inst.ID })
		list, err := h.admin.ListInstances(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, inst := range list {
			have[inst.Name] = true
		}
		for _, name := range acked {
			if !have[name] {
				t.Errorf("host %s lacks %s, acknowledged earlier", h.name, name)
			}
		}
	}

	// 6. C's link cut: C serves what it had while A registers and issues
	// events, then catches up with both once the link is back.
	mustIP(t, "-n", c.ns.NS, "link", "set", "eth0", "down")
	vm0 := c.vmClient(vmAddr(1, 1))
	src = vmAddr(2, 4)
	inst = a.addRetry(t, &ec2.Instance{Name: "vm-while-away", SourceAddrs: []string{src.String()}, Role: role})
	mustRunCLI(t, "event", "spot", "vm-000", "--admin-socket", a.sock)
	// Until C's probe finds etcd gone, it serves what it had and nothing of
	// what A changed.
	deadline = time.Now().Add(clusterDeadline)
	for {
		if id := c.get(vm0, "meta-data/instance-id"); !strings.HasPrefix(id, "i-") {
			t.Fatalf("host C cut off stopped serving vm-000: %q", id)
		}
		if c.get(c.vmClient(src), "meta-data/instance-id") != "" || c.get(vm0, "meta-data/spot/instance-action") != "" {
			t.Fatal("host C, cut off, serves a change made on A: the link was not cut")
		}
		out, _, code := runCLI(t, "status", "--admin-socket", c.sock)
		if code == 1 && strings.Contains(out, "DOES NOT ANSWER") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("imds status on C cut off: exit %d\n%s", code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustIP(t, "-n", c.ns.NS, "link", "set", "eth0", "up")
	start = time.Now()
	c.waitGet(t, c.vmClient(src), "meta-data/instance-id", "the instance registered while C was cut off", func(s string) bool { return s == inst.ID })
	c.waitGet(t, vm0, "meta-data/spot/instance-action", "the spot notice issued while C was cut off", func(s string) bool { return strings.Contains(s, "terminate") })
	t.Logf("C's link back: it served what changed while it was away %s later", time.Since(start))
}
