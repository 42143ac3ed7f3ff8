package registry

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/bolt"
)

var opt = ec2.DeriveOptions{Seed: []byte("registry-test")}

func configInstance(name string, addrs ...string) *ec2.Instance {
	inst := ec2.NewDefaultInstance()
	inst.Name = name
	inst.SourceAddrs = addrs
	ec2.Derive(inst, opt)
	inst.Origin = ec2.OriginConfig
	return inst
}

func openRegistry(t testing.TB, path string) (*Registry, *bytes.Buffer) {
	r, log, _ := openRegistryDB(t, path)
	return r, log
}

func openRegistryDB(t testing.TB, path string) (*Registry, *bytes.Buffer, *bolt.DB) {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "imds.db")
	}
	db, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := New(db.Instances(), opt)
	var log bytes.Buffer
	r.Logger = slog.New(slog.NewTextHandler(&log, nil))
	return r, &log, db
}

func locate(r *Registry, addr string) (*ec2.Instance, error) {
	return r.LocateInstance(context.Background(), ec2.Requester{Addr: netip.MustParseAddr(addr)})
}

func TestLocateByAddressAndDefault(t *testing.T) {
	ctx := context.Background()
	r, log := openRegistry(t, "")
	a, b := configInstance("a", "10.0.0.2"), configInstance("b", "10.0.0.3", "fd00::3")
	if err := r.SetConfig(ctx, []*ec2.Instance{a, b}, Default{}); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"10.0.0.2": "a", "10.0.0.3": "b", "fd00::3": "b"} {
		if inst, err := locate(r, addr); err != nil || inst.Name != want {
			t.Errorf("locate(%s)=%v, %v; want %s", addr, inst, err, want)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := locate(r, "10.0.0.99"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
			t.Errorf("unknown address: err=%v, want ENOTFOUND", err)
		}
	}
	if n := strings.Count(log.String(), "unknown requester"); n != 1 || !strings.Contains(log.String(), "10.0.0.99") {
		t.Errorf("%d log lines for an unknown address, want 1 naming it:\n%s", n, log.String())
	}
	if err := r.SetConfig(ctx, []*ec2.Instance{a, b}, Default{Name: "b"}); err != nil {
		t.Fatal(err)
	}
	if inst, err := locate(r, "10.0.0.99"); err != nil || inst.Name != "b" {
		t.Errorf("with default b: %v, %v", inst, err)
	}
	if err := r.SetConfig(ctx, []*ec2.Instance{a}, Default{Name: "zz"}); err == nil {
		t.Errorf("a default that does not exist was accepted")
	}
	if inst, _ := locate(r, "10.0.0.3"); inst == nil || inst.Name != "b" {
		t.Errorf("a failed SetConfig changed what is served")
	}
}

func spec(name string, addrs ...string) *ec2.Instance {
	s := ec2.NewDefaultInstance()
	s.Name = name
	s.SourceAddrs = addrs
	return s
}

func TestRegisterAtRunTime(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "imds.db")
	r, _, db := openRegistryDB(t, path)
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("cfg", "10.0.0.2")}, Default{}); err != nil {
		t.Fatal(err)
	}
	vm, err := r.AddInstance(ctx, spec("vm-1", "10.0.1.5"))
	if err != nil {
		t.Fatal(err)
	}
	if vm.Origin != ec2.OriginAPI || vm.Primary().PrivateIPv4s[0] != "10.0.1.5" || vm.PendingTime.IsZero() {
		t.Errorf("registered %+v", vm)
	}
	if inst, err := locate(r, "10.0.1.5"); err != nil || inst.ID != vm.ID {
		t.Errorf("locate after add: %v %v", inst, err)
	}
	for _, tt := range []struct {
		name string
		err  error
		code string
	}{
		{"same name", func() error { _, e := r.AddInstance(ctx, spec("vm-1")); return e }(), ec2.ECONFLICT},
		{"config name", func() error { _, e := r.AddInstance(ctx, spec("cfg")); return e }(), ec2.ECONFLICT},
		{"taken address", func() error { _, e := r.AddInstance(ctx, spec("vm-2", "10.0.0.2")); return e }(), ec2.ECONFLICT},
		{"invalid", func() error {
			s := spec("vm-3")
			s.Metadata.HTTPTokens = "never"
			_, e := r.AddInstance(ctx, s)
			return e
		}(), ec2.EINVALID},
		// Refused by the name grammar, not named "default" by derivation.
		{"empty name", func() error { _, e := r.AddInstance(ctx, spec("")); return e }(), ec2.EINVALID},
		{"dot", func() error { _, e := r.AddInstance(ctx, spec(".")); return e }(), ec2.EINVALID},
		{"bidi", func() error { _, e := r.AddInstance(ctx, spec("a\u202eb")); return e }(), ec2.EINVALID},
		{"set config instance", func() error { _, e := r.SetInstance(ctx, spec("cfg")); return e }(), ec2.EFORBIDDEN},
		{"set missing", func() error { _, e := r.SetInstance(ctx, spec("nope")); return e }(), ec2.ENOTFOUND},
		{"remove config instance", r.RemoveInstance(ctx, "cfg"), ec2.EFORBIDDEN},
		{"remove missing", r.RemoveInstance(ctx, "nope"), ec2.ENOTFOUND},
	} {
		if got := ec2.ErrorCode(tt.err); got != tt.code {
			t.Errorf("%s: code=%q (%v), want %q", tt.name, got, tt.err, tt.code)
		}
	}
	// set: a new address moves the instance and its derived private IP.
	s, err := r.GetInstanceSpec(ctx, "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	s.SourceAddrs = []string{"10.0.1.6"}
	if _, err := r.SetInstance(ctx, s); err != nil {
		t.Fatal(err)
	}
	if inst, err := locate(r, "10.0.1.6"); err != nil || inst.Primary().PrivateIPv4s[0] != "10.0.1.6" || inst.ID != vm.ID {
		t.Errorf("after set: %+v %v", inst, err)
	}
	if _, err := locate(r, "10.0.1.5"); err == nil {
		t.Errorf("the old address still matches")
	}

	// A new registry over the same file finds it.
	db.Close()
	r2, _ := openRegistry(t, path)
	if err := r2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if inst, err := locate(r2, "10.0.1.6"); err != nil || inst.ID != vm.ID || !inst.PendingTime.Equal(vm.PendingTime) {
		t.Errorf("after reopening: %v %v", inst, err)
	}
	if err := r2.RemoveInstance(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := locate(r2, "10.0.1.6"); err == nil {
		t.Errorf("a removed instance still matches")
	}
}

func TestProxyHeaders(t *testing.T) {
	ctx := context.Background()
	r, _ := openRegistry(t, "")
	secret := []byte("0123456789abcdef-secret")
	r.SetProxies([]netip.Prefix{netip.MustParsePrefix("10.9.0.1/32")}, secret)
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("a", "10.0.0.2"), configInstance("b", "10.0.0.3")}, Default{}); err != nil {
		t.Fatal(err)
	}
	proxy, stranger := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.0.0.2")
	for _, tt := range []struct {
		name     string
		req      ec2.Requester
		want     string
		wantCode string
	}{
		{"signed by trusted proxy", ec2.Requester{Addr: proxy, ProxiedInstance: "b", ProxiedSignature: Sign(secret, "b")}, "b", ""},
		{"unsigned from trusted proxy", ec2.Requester{Addr: proxy, ProxiedInstance: "b"}, "", ec2.EFORBIDDEN},
		{"signed for another name", ec2.Requester{Addr: proxy, ProxiedInstance: "b", ProxiedSignature: Sign(secret, "a")}, "", ec2.EFORBIDDEN},
		{"wrong secret", ec2.Requester{Addr: proxy, ProxiedInstance: "b", ProxiedSignature: Sign([]byte("other"), "b")}, "", ec2.EFORBIDDEN},
		{"signed, unknown instance", ec2.Requester{Addr: proxy, ProxiedInstance: "zz", ProxiedSignature: Sign(secret, "zz")}, "", ec2.ENOTFOUND},
		{"headers from an untrusted peer are ignored", ec2.Requester{Addr: stranger, ProxiedInstance: "b", ProxiedSignature: Sign(secret, "b")}, "a", ""},
	} {
		inst, err := r.LocateInstance(ctx, tt.req)
		switch {
		case tt.wantCode != "" && ec2.ErrorCode(err) != tt.wantCode:
			t.Errorf("%s: err=%v, want %s", tt.name, err, tt.wantCode)
		case tt.wantCode == "" && (err != nil || inst.Name != tt.want):
			t.Errorf("%s: %v, %v; want %s", tt.name, inst, err, tt.want)
		}
	}
}

func TestMatchByMAC(t *testing.T) {
	ctx := context.Background()
	r, _ := openRegistry(t, "")
	calls := 0
	r.Neighbours = func(context.Context) (map[netip.Addr]string, error) {
		calls++
		return map[netip.Addr]string{netip.MustParseAddr("10.5.0.77"): "02:00:00:00:00:0b"}, nil
	}
	s := spec("by-mac")
	s.MatchMAC = true
	s.Interfaces = []ec2.NetworkInterface{{MAC: "02:00:00:00:00:0b"}}
	if _, err := r.AddInstance(ctx, s); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if inst, err := locate(r, "10.5.0.77"); err != nil || inst.Name != "by-mac" {
			t.Fatalf("locate by MAC: %v %v", inst, err)
		}
	}
	if calls != 1 {
		t.Errorf("neighbour table read %d times for 5 requests, want 1 (cached)", calls)
	}
	dup := spec("other")
	dup.MatchMAC = true
	dup.Interfaces = []ec2.NetworkInterface{{MAC: "02:00:00:00:00:0b"}}
	if _, err := r.AddInstance(ctx, dup); ec2.ErrorCode(err) != ec2.ECONFLICT {
		t.Errorf("a second instance with the same MAC: err=%v, want ECONFLICT", err)
	}
}

// TestConcurrentChangesAndLookups: lookups never fail or block while other
// instances are added and removed.
func TestConcurrentChangesAndLookups(t *testing.T) {
	ctx := context.Background()
	r, _ := openRegistry(t, "")
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("steady", "10.0.0.2")}, Default{}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad sync.Map
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if inst, err := locate(r, "10.0.0.2"); err != nil || inst.Name != "steady" {
					bad.Store(fmt.Sprint(err), true)
				}
			}
		}()
	}
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("vm-%d", i)
		if _, err := r.AddInstance(ctx, spec(name, fmt.Sprintf("10.1.%d.%d", i/200, i%200+1))); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := r.RemoveInstance(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	bad.Range(func(k, _ any) bool { t.Errorf("lookup failed during changes: %v", k); return true })
	list, _ := r.ListInstances(ctx)
	if len(list) != 21 {
		t.Errorf("%d instances, want 21", len(list))
	}
}

// BenchmarkLocate shows that identifying a requester costs the same with 10
// or 10,000 instances.
func BenchmarkLocate(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			r := New(nil, opt)
			insts := make([]*ec2.Instance, n)
			for i := range insts {
				inst := ec2.NewDefaultInstance()
				inst.Name = fmt.Sprintf("i%d", i)
				inst.SourceAddrs = []string{fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256)}
				ec2.Derive(inst, opt)
				insts[i] = inst
			}
			if err := r.SetConfig(context.Background(), insts, Default{}); err != nil {
				b.Fatal(err)
			}
			req := ec2.Requester{Addr: netip.MustParseAddr(insts[n/2].SourceAddrs[0])}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := r.LocateInstance(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestImplicitDefault: the zero-configuration (or instance:) default answers
// unmatched requesters only while it is the only instance, says so when that
// changes, and an explicit default answers them whatever else is registered.
func TestImplicitDefault(t *testing.T) {
	ctx := context.Background()
	r, log := openRegistry(t, "")
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("default")}, Default{Name: "default", Implicit: true}); err != nil {
		t.Fatal(err)
	}
	whoAnswers := func(addr string) string {
		t.Helper()
		inst, err := locate(r, addr)
		if err != nil {
			if ec2.ErrorCode(err) != ec2.ENOTFOUND {
				t.Fatalf("locate(%s): %v", addr, err)
			}
			return "404: " + ec2.ErrorMessage(err)
		}
		return inst.Name
	}
	if got := whoAnswers("10.0.0.99"); got != "default" {
		t.Errorf("alone, an unknown requester gets %q, want the default instance", got)
	}
	for _, s := range []*ec2.Instance{spec("vm1", "10.0.0.11"), spec("vm2", "10.0.0.12")} {
		if _, err := r.AddInstance(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if got := whoAnswers("10.0.0.99"); !strings.HasPrefix(got, "404: ") || !strings.Contains(got, "only while it is the only instance") {
		t.Errorf("with vm1 and vm2 registered, an unknown requester gets %q, want 404 saying why", got)
	}
	if n := strings.Count(log.String(), "now get 404"); n != 1 {
		t.Errorf("%d log lines say unknown requesters now get 404, want 1 (at the first registration):\n%s", n, log.String())
	}
	if got := whoAnswers("10.0.0.11"); got != "vm1" {
		t.Errorf("10.0.0.11 gets %q, want vm1", got)
	}
	if err := r.RemoveInstance(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	if got := whoAnswers("10.0.0.11"); !strings.HasPrefix(got, "404: ") {
		t.Errorf("removed vm1's address gets %q, want 404", got)
	}
	if err := r.RemoveInstance(ctx, "vm2"); err != nil {
		t.Fatal(err)
	}
	if got := whoAnswers("10.0.0.12"); got != "default" {
		t.Errorf("alone again, an unknown requester gets %q, want the default instance", got)
	}
	if !strings.Contains(log.String(), "answers every requester again") {
		t.Errorf("no log line says the default answers everyone again:\n%s", log.String())
	}

	// An explicit default keeps answering.
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("default")}, Default{Name: "default"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddInstance(ctx, spec("vm3", "10.0.0.13")); err != nil {
		t.Fatal(err)
	}
	if got := whoAnswers("10.0.0.99"); got != "default" {
		t.Errorf("with default_instance named, an unknown requester gets %q, want the default instance", got)
	}
}
