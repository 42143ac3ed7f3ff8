package registry

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

func pinned(s *ec2.Instance, host string) *ec2.Instance {
	s.Host = host
	return s
}

// TestPinnedInstances checks who answers an instance pinned to a host:
// that host only; an unpinned one every host. Pinned instances of two
// hosts may hold the same address, and each host finds its own.
func TestPinnedInstances(t *testing.T) {
	ctx := context.Background()
	insts := []*ec2.Instance{
		pinned(configInstance("vm-a", "192.168.122.10"), "hv-a"),
		pinned(configInstance("vm-b", "192.168.122.10"), "hv-b"),
		configInstance("shared", "10.0.0.5"),
	}
	for _, tt := range []struct {
		host string
		// want is who answers each address ("" for 404).
		want map[string]string
	}{
		{"hv-a", map[string]string{"192.168.122.10": "vm-a", "10.0.0.5": "shared"}},
		{"hv-b", map[string]string{"192.168.122.10": "vm-b", "10.0.0.5": "shared"}},
		{"hv-c", map[string]string{"192.168.122.10": "", "10.0.0.5": "shared"}},
	} {
		t.Run(tt.host, func(t *testing.T) {
			r, _ := openRegistry(t, "")
			r.Host = tt.host
			secret := []byte("0123456789abcdef-secret")
			proxy := netip.MustParseAddr("10.9.0.1")
			r.SetProxies([]netip.Prefix{netip.PrefixFrom(proxy, 32)}, secret)
			if err := r.SetConfig(ctx, insts, Default{}); err != nil {
				t.Fatal(err)
			}
			if n := r.Len(); n != 3 {
				t.Errorf("%d instances listed, want all 3 (pinned or not)", n)
			}
			if p := r.CountPins(); p.Unpinned != 1 || len(p.ByHost) != 2 || p.ByHost["hv-a"] != 1 || p.ByHost["hv-b"] != 1 {
				t.Errorf("CountPins = %+v, want 1 unpinned, 1 on hv-a, 1 on hv-b", p)
			}
			for addr, want := range tt.want {
				inst, err := locate(r, addr)
				switch {
				case want == "" && ec2.ErrorCode(err) != ec2.ENOTFOUND:
					t.Errorf("locate(%s) = %v, %v; want ENOTFOUND", addr, inst, err)
				case want != "" && (err != nil || inst.Name != want):
					t.Errorf("locate(%s) = %v, %v; want %s", addr, inst, err, want)
				}
			}
			// A trusted proxy naming another host's instance gets 404 too.
			for _, name := range []string{"vm-a", "vm-b"} {
				inst, err := r.LocateInstance(ctx, ec2.Requester{Addr: proxy, ProxiedInstance: name, ProxiedSignature: Sign(secret, name)})
				mine := "hv-"+name[len("vm-"):] == tt.host
				switch {
				case mine && (err != nil || inst.Name != name):
					t.Errorf("proxied %s: %v, %v; want it", name, inst, err)
				case !mine && ec2.ErrorCode(err) != ec2.ENOTFOUND:
					t.Errorf("proxied %s: %v, %v; want ENOTFOUND", name, inst, err)
				}
			}
		})
	}
	// Unpinned instances still clash with each other, and with a pinned
	// instance of this host.
	r, _ := openRegistry(t, "")
	r.Host = "hv-a"
	clash := []*ec2.Instance{insts[0], configInstance("other", "192.168.122.10")}
	if err := r.SetConfig(ctx, clash, Default{}); ec2.ErrorCode(err) != ec2.ECONFLICT {
		t.Errorf("an unpinned instance at a pinned one's address of this host: %v, want ECONFLICT", err)
	}
	// A default instance pinned elsewhere answers no one here.
	if err := r.SetConfig(ctx, insts, Default{Name: "vm-b"}); err != nil {
		t.Fatal(err)
	}
	if inst, err := locate(r, "10.1.1.1"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("default pinned to hv-b answered on hv-a: %v, %v", inst, err)
	}
}

// TestPinnedRegistration registers instances of two hosts at one address
// through one host, then pins and unpins: a change of host moves the
// instance in or out of this host's index.
func TestPinnedRegistration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "imds.db")
	r, _, db := openRegistryDB(t, path)
	r.Host = "hv-a"
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddInstance(ctx, pinned(spec("vm-b", "192.168.122.10"), "hv-b")); err != nil {
		t.Fatal(err)
	}
	if _, err := locate(r, "192.168.122.10"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("hv-a answered hv-b's instance: %v", err)
	}
	if _, err := r.AddInstance(ctx, pinned(spec("vm-a", "192.168.122.10"), "hv-a")); err != nil {
		t.Fatalf("hv-a's own instance at hv-b's instance's address: %v", err)
	}
	if inst, err := locate(r, "192.168.122.10"); err != nil || inst.Name != "vm-a" {
		t.Errorf("locate = %v, %v; want vm-a", inst, err)
	}
	// An event issued here to hv-b's instance re-derives it, still out of
	// this host's index.
	if _, err := r.TriggerEvent(ctx, "vm-b", ec2.EventRequest{Type: "spot"}); err != nil {
		t.Fatal(err)
	}
	if inst, err := locate(r, "192.168.122.10"); err != nil || inst.Name != "vm-a" {
		t.Errorf("after an event to vm-b: locate = %v, %v; want vm-a", inst, err)
	}
	// Unpinning vm-b would make two instances answer one address here.
	if _, err := r.UpdateInstance(ctx, "vm-b", ec2.InstanceUpdate{Host: ec2.Ptr("")}); ec2.ErrorCode(err) != ec2.ECONFLICT {
		t.Errorf("unpinning vm-b: %v, want ECONFLICT", err)
	}
	if _, err := r.UpdateInstance(ctx, "vm-a", ec2.InstanceUpdate{Host: ec2.Ptr("hv-c")}); err != nil {
		t.Fatal(err)
	}
	if _, err := locate(r, "192.168.122.10"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("vm-a moved to hv-c is still answered on hv-a: %v", err)
	}
	if _, err := r.UpdateInstance(ctx, "vm-a", ec2.InstanceUpdate{Host: ec2.Ptr("bad host")}); ec2.ErrorCode(err) != ec2.EINVALID {
		t.Errorf("host with a space: %v, want EINVALID", err)
	}
	r.Close()
	db.Close()

	// The pins are stored: hv-b's registry over the same store answers vm-b.
	b, _ := openRegistry(t, path)
	b.Host = "hv-b"
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if inst, err := locate(b, "192.168.122.10"); err != nil || inst.Name != "vm-b" {
		t.Errorf("hv-b: locate = %v, %v; want vm-b", inst, err)
	}
}
