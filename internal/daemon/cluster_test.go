package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
	"github.com/imdsdev/imds/internal/registry"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// pollDeadline bounds every wait for a change to reach another host:
// generous, for a loaded two-core machine; the figures are logged, not
// asserted.
const pollDeadline = 10 * time.Second

// sourceClient is an HTTP client whose connections come from addr, a
// loopback address, so that a metadata server on 127.0.0.1 sees that
// requester.
func sourceClient(addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 2 * time.Second}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1}}
}

// instanceID asks d's metadata server for the instance ID of the requester
// at addr; "" unless it answers 200.
func instanceID(c *http.Client, d *Daemon) string { return metadata(c, d, "instance-id") }

// metadata is what d's metadata server answers the requester of c at
// latest/meta-data/path, "" unless 200.
func metadata(c *http.Client, d *Daemon, path string) string {
	resp, err := c.Get(d.URL() + "/latest/meta-data/" + path)
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

// waitServed polls d until the requester at c is served as id, and returns
// how long that took.
func waitServed(t *testing.T, c *http.Client, d *Daemon, id string) time.Duration {
	t.Helper()
	start := time.Now()
	for instanceID(c, d) != id {
		if time.Since(start) > pollDeadline {
			t.Fatalf("host %s did not serve %s within %s", d.URL(), id, pollDeadline)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// TestHostsShareOneRegistry runs three imds hosts on one etcd: 200
// instances registered through host A are each served by hosts B and C,
// and the delay from A's acknowledgement to B serving it is measured.
func TestHostsShareOneRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("200 registrations across hosts")
	}
	srv := etcdtest.Start(t)
	hosts := make([]*Daemon, 3)
	for i := range hosts {
		hosts[i] = mustOpen(t, etcdConfig(t, "/share/", srv.ClientURL))
	}
	a, b, c := hosts[0], hosts[1], hosts[2]

	const n = 200
	delays := make([]time.Duration, 0, n)
	for i := range n {
		addr := fmt.Sprintf("127.0.1.%d", i+1)
		inst, err := a.Registry.AddInstance(t.Context(), &ec2.Instance{Name: fmt.Sprintf("vm-%03d", i), SourceAddrs: []string{addr}})
		if err != nil {
			t.Fatalf("AddInstance on host A: %v", err)
		}
		client := sourceClient(addr)
		delays = append(delays, waitServed(t, client, b, inst.ID))
		waitServed(t, client, c, inst.ID)
		client.CloseIdleConnections()
	}
	slices.Sort(delays)
	t.Logf("A registers, B serves: %d registrations, p50 %s, p99 %s, max %s", n,
		percentile(delays, 0.50), percentile(delays, 0.99), delays[len(delays)-1])

	// A change and a removal travel the same way.
	if _, err := b.Registry.UpdateInstance(t.Context(), "vm-000", ec2.InstanceUpdate{Tags: []ec2.TagEdit{{Key: "env", Value: "prod"}}}); err != nil {
		t.Fatalf("UpdateInstance on host B: %v", err)
	}
	waitFor(t, "host A to see the tag set on B", func() bool {
		inst, err := a.Registry.GetInstance(t.Context(), "vm-000")
		return err == nil && slices.Contains(inst.Tags, ec2.Tag{Key: "env", Value: "prod"})
	})
	if err := c.Registry.RemoveInstance(t.Context(), "vm-001"); err != nil {
		t.Fatalf("RemoveInstance on host C: %v", err)
	}
	waitFor(t, "host A to drop the instance removed on C", func() bool { return !a.Registry.Has("vm-001") })
	for _, h := range hosts {
		if h.Follower.Resyncs() != 0 {
			t.Errorf("host %s listed again %d times with etcd up all along", h.URL(), h.Follower.Resyncs())
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(pollDeadline)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", pollDeadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEtcdOutage stops etcd under two hosts: both keep serving what they
// had, writes fail naming the endpoints, each host says so once however
// many requests it serves, and when etcd returns they resync and follow
// again.
func TestEtcdOutage(t *testing.T) {
	srv := etcdtest.Start(t)
	cfgA, cfgB := etcdConfig(t, "/outage/", srv.ClientURL), etcdConfig(t, "/outage/", srv.ClientURL)
	a, b := mustOpen(t, cfgA), mustOpen(t, cfgB)
	inst, err := a.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-1", SourceAddrs: []string{"127.0.2.1"}})
	if err != nil {
		t.Fatal(err)
	}
	client := sourceClient("127.0.2.1")
	defer client.CloseIdleConnections()
	waitServed(t, client, b, inst.ID)

	srv.Stop()
	waitFor(t, "host B to notice etcd is gone", func() bool { return !b.Follower.Online() })
	for range 50 {
		if got := instanceID(client, b); got != inst.ID {
			t.Fatalf("with etcd down host B serves %q, want %s", got, inst.ID)
		}
	}
	if got := instanceID(client, a); got != inst.ID {
		t.Errorf("with etcd down host A serves %q, want %s", got, inst.ID)
	}
	_, err = a.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-2", SourceAddrs: []string{"127.0.2.2"}})
	if ec2.ErrorCode(err) != ec2.EUNAVAILABLE || !strings.Contains(ec2.ErrorMessage(err), srv.ClientURL) {
		t.Errorf("AddInstance with etcd down: %v; want EUNAVAILABLE naming %s", err, srv.ClientURL)
	}
	t.Logf("a write with etcd down: %s", ec2.ErrorMessage(err))
	if a.Registry.Has("vm-2") {
		t.Error("the refused instance is served")
	}
	// What changes the registry without writing to the store (a config
	// reload, a container found) still applies while etcd is away.
	cfgInst := ec2.NewDefaultInstance()
	cfgInst.Name, cfgInst.SourceAddrs = "from-config", []string{"127.0.2.9"}
	ec2.Derive(cfgInst, ec2.DeriveOptions{Seed: []byte("test")})
	cfgInst.Origin = ec2.OriginConfig
	if err := b.Registry.SetConfig(t.Context(), []*ec2.Instance{cfgInst}, registry.Default{}); err != nil {
		t.Errorf("a config change with etcd down: %v", err)
	}
	if !b.Registry.Has("from-config") || !b.Registry.Has("vm-1") {
		t.Error("after a config change with etcd down, host B lacks the config instance or vm-1")
	}

	// The server status of the admin API says so too.
	st, err := admin.NewClient(b.Admin.SocketPath).Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Store == nil || st.Store.Backend != "etcd" || st.Store.Online == nil || *st.Store.Online || st.Store.Revision == 0 {
		t.Errorf("server status with etcd down: store %+v; want etcd, not online, a revision", st.Store)
	}

	srv.Start()
	waitFor(t, "both hosts to resync", func() bool { return a.Follower.Online() && b.Follower.Online() })
	inst2, err := a.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-2", SourceAddrs: []string{"127.0.2.2"}})
	if err != nil {
		t.Fatalf("AddInstance after etcd returned: %v", err)
	}
	client2 := sourceClient("127.0.2.2")
	defer client2.CloseIdleConnections()
	waitServed(t, client2, b, inst2.ID)

	b.Flush()
	log := cfgB.Stderr.(*lockedBuffer).String()
	if n := strings.Count(log, "etcd does not answer"); n != 1 {
		t.Errorf("host B said etcd does not answer %d times, want once:\n%s", n, log)
	}
	if n := strings.Count(log, "etcd answers again"); n != 1 {
		t.Errorf("host B said etcd answers again %d times, want once:\n%s", n, log)
	}
}

// TestHostsShareAddresses: two hosts with one vm_network on one etcd
// register VMs by MAC at the same time; no address is handed out twice,
// and a VM removed on one host and registered on the other keeps its
// address.
func TestHostsShareAddresses(t *testing.T) {
	srv := etcdtest.Start(t)
	vmConfig := func() Config {
		cfg := etcdConfig(t, "/vms/", srv.ClientURL)
		doc, err := os.ReadFile(cfg.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		doc = append(doc, "vm_network:\n  bridge: imdsbr-test\n  subnet: 192.168.77.0/24\n  gateway: 192.168.77.1\n  dnsmasq: config-only\n"...)
		if err := os.WriteFile(cfg.ConfigPath, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	a, b := mustOpen(t, vmConfig()), mustOpen(t, vmConfig())
	const each = 40
	addrs := make([][]string, 2)
	var wg sync.WaitGroup
	for h, d := range []*Daemon{a, b} {
		addrs[h] = make([]string, each)
		wg.Go(func() {
			for i := range each {
				inst, err := d.Registry.AddInstance(t.Context(), &ec2.Instance{Name: fmt.Sprintf("vm-%d-%02d", h, i),
					Interfaces: []ec2.NetworkInterface{{MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", h, i)}}})
				if err != nil {
					t.Errorf("host %d: AddInstance: %v", h, err)
					return
				}
				addrs[h][i] = inst.SourceAddrs[0]
			}
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for h := range addrs {
		for i, addr := range addrs[h] {
			name := fmt.Sprintf("vm-%d-%02d", h, i)
			if addr == "" {
				continue // its AddInstance failed, and said so
			}
			if other, dup := seen[addr]; dup {
				t.Errorf("address %s given to %s and %s", addr, other, name)
			}
			seen[addr] = name
		}
	}
	if err := a.Registry.RemoveInstance(t.Context(), "vm-0-00"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "host B to drop vm-0-00", func() bool { return !b.Registry.Has("vm-0-00") })
	inst, err := b.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-0-00",
		Interfaces: []ec2.NetworkInterface{{MAC: "52:54:00:00:00:00"}}})
	if err != nil {
		t.Fatal(err)
	}
	if inst.SourceAddrs[0] != addrs[0][0] {
		t.Errorf("vm-0-00 registered again on host B got %s, had %s on host A", inst.SourceAddrs[0], addrs[0][0])
	}
}

// addRetrying registers spec on d, retrying while etcd elects a leader: a
// write caught by an election may time out with its outcome unknown, and
// is then found already there.
func addRetrying(t *testing.T, d *Daemon, spec *ec2.Instance) *ec2.Instance {
	t.Helper()
	deadline := time.Now().Add(3 * pollDeadline)
	for {
		inst, err := d.Registry.AddInstance(t.Context(), spec)
		if err == nil {
			return inst
		}
		if ec2.ErrorCode(err) == ec2.ECONFLICT {
			if inst, gerr := d.Registry.GetInstance(t.Context(), spec.Name); gerr == nil {
				return inst
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("AddInstance(%s) still fails: %v", spec.Name, err)
		}
		t.Logf("AddInstance(%s), retried: %s", spec.Name, ec2.ErrorMessage(err))
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHostCutOff runs a three-member etcd with host B talking only to
// member 0 and host A to the two others. Member 0 stopped cuts B off: B
// keeps serving what it had while A goes on registering, and B catches up
// with what it missed when member 0 returns. Then two members of three
// stopped: no quorum, both hosts still serve, writes fail naming the
// endpoints; once they return nothing acknowledged is lost.
func TestHostCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-member etcd, stopped and started")
	}
	m := etcdtest.StartCluster(t, 3)
	a := mustOpen(t, etcdConfig(t, "/cut/", m[1].ClientURL, m[2].ClientURL))
	cfgB := etcdConfig(t, "/cut/", m[0].ClientURL)
	b := mustOpen(t, cfgB)

	vm1 := addRetrying(t, a, &ec2.Instance{Name: "vm-1", SourceAddrs: []string{"127.0.3.1"}})
	c1, c2 := sourceClient("127.0.3.1"), sourceClient("127.0.3.2")
	defer c1.CloseIdleConnections()
	defer c2.CloseIdleConnections()
	waitServed(t, c1, b, vm1.ID)

	m[0].Stop()
	waitFor(t, "host B to notice it is cut off", func() bool { return !b.Follower.Online() })
	vm2 := addRetrying(t, a, &ec2.Instance{Name: "vm-2", SourceAddrs: []string{"127.0.3.2"}})
	waitServed(t, c2, a, vm2.ID)
	if got := instanceID(c1, b); got != vm1.ID {
		t.Errorf("cut off, host B serves vm-1 as %q, want %s", got, vm1.ID)
	}
	if got := instanceID(c2, b); got == vm2.ID {
		t.Error("cut off, host B serves vm-2, registered after it was cut off")
	}

	m[0].Start()
	start := time.Now()
	waitServed(t, c2, b, vm2.ID)
	t.Logf("host B caught up %s after its etcd member answered again", time.Since(start).Round(time.Millisecond))

	// Two of three down: no quorum anywhere.
	m[1].Stop()
	m[2].Stop()
	waitFor(t, "host B to notice the quorum is gone", func() bool { return !b.Follower.Online() })
	for _, h := range []*Daemon{a, b} {
		if got := instanceID(c1, h); got != vm1.ID {
			t.Errorf("without quorum host %s serves vm-1 as %q", h.URL(), got)
		}
		if got := instanceID(c2, h); got != vm2.ID {
			t.Errorf("without quorum host %s serves vm-2 as %q", h.URL(), got)
		}
	}
	_, err := a.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-3", SourceAddrs: []string{"127.0.3.3"}})
	if ec2.ErrorCode(err) != ec2.EUNAVAILABLE || !strings.Contains(ec2.ErrorMessage(err), m[1].ClientURL) {
		t.Errorf("AddInstance without quorum: %v; want EUNAVAILABLE naming the endpoints", err)
	}
	t.Logf("a write without quorum: %s", ec2.ErrorMessage(err))

	m[1].Launch()
	m[2].Launch()
	m[1].WaitReady()
	m[2].WaitReady()
	waitFor(t, "both hosts to follow again", func() bool { return a.Follower.Online() && b.Follower.Online() })
	vm3 := addRetrying(t, a, &ec2.Instance{Name: "vm-3", SourceAddrs: []string{"127.0.3.3"}})
	c3 := sourceClient("127.0.3.3")
	defer c3.CloseIdleConnections()
	waitServed(t, c3, b, vm3.ID)
	for _, h := range []*Daemon{a, b} {
		for _, name := range []string{"vm-1", "vm-2", "vm-3"} {
			if !h.Registry.Has(name) {
				t.Errorf("after the outage host %s lost %s", h.URL(), name)
			}
		}
	}
}

// TestNoSecretsInEtcd: credentials stay with the host that serves them.
// After two hosts have handed out a role's credentials (and a session
// token) for an instance registered through one of them, no key or value
// under any prefix in etcd holds the secret key, the session token or the
// token's name.
func TestNoSecretsInEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := mustOpen(t, etcdConfig(t, "/secrets/", srv.ClientURL)), mustOpen(t, etcdConfig(t, "/secrets/", srv.ClientURL))
	inst, err := a.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-1", SourceAddrs: []string{"127.0.2.1"},
		Role: &ec2.Role{Name: ec2.DefaultRoleName}})
	if err != nil {
		t.Fatal(err)
	}
	if inst.Role == nil {
		t.Fatal("the registered instance has no role to hand out credentials for")
	}
	client := sourceClient("127.0.2.1")
	defer client.CloseIdleConnections()
	waitServed(t, client, b, inst.ID)
	var secrets []string
	for _, d := range []*Daemon{a, b} {
		resp, err := client.Get(d.URL() + "/latest/meta-data/iam/security-credentials/" + inst.Role.Name)
		if err != nil {
			t.Fatal(err)
		}
		var creds struct{ SecretAccessKey, Token string }
		err = json.NewDecoder(resp.Body).Decode(&creds)
		resp.Body.Close()
		if err != nil || creds.SecretAccessKey == "" || creds.Token == "" {
			t.Fatalf("credentials from %s: %+v (%v)", d.URL(), creds, err)
		}
		secrets = append(secrets, creds.SecretAccessKey, creds.Token)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	all, err := cli.Get(t.Context(), "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Kvs) == 0 {
		t.Fatal("etcd holds nothing: the test reads the wrong cluster")
	}
	for _, kv := range all.Kvs {
		for _, s := range append(secrets, "SecretAccessKey") {
			if strings.Contains(string(kv.Key), s) || strings.Contains(string(kv.Value), s) {
				t.Errorf("etcd key %s holds a secret (%.8s…)", kv.Key, s)
			}
		}
	}
	t.Logf("%d keys in etcd, none with a secret", len(all.Kvs))
}
