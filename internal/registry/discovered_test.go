package registry

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

func container(name, addr, mac string) *ec2.Instance {
	return &ec2.Instance{Name: name, SourceAddrs: []string{addr},
		Interfaces: []ec2.NetworkInterface{{MAC: mac, PrivateIPv4s: []string{addr}}}}
}

func TestDiscoveredInstances(t *testing.T) {
	ctx := context.Background()
	r, _ := openRegistry(t, "")
	neigh := map[netip.Addr]string{
		netip.MustParseAddr("172.20.0.2"): "02:42:ac:14:00:02",
		netip.MustParseAddr("172.20.0.3"): "02:42:ac:14:00:99", // someone else's MAC
	}
	r.Neighbours = func(context.Context) (map[netip.Addr]string, error) { return neigh, nil }
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("cfg", "10.0.0.2")}, Default{}); err != nil {
		t.Fatal(err)
	}
	errs := r.SetDiscovered(ctx, ec2.OriginDocker, []*ec2.Instance{
		container("web", "172.20.0.2", "02:42:ac:14:00:02"),
		container("db", "172.20.0.3", "02:42:ac:14:00:03"),
		container("clash", "10.0.0.2", "02:42:ac:14:00:04"),
		container("-bad", "172.20.0.5", "02:42:ac:14:00:05"),
	})
	if len(errs) != 2 || errs["clash"] == nil || errs["-bad"] == nil {
		t.Fatalf("SetDiscovered errors = %v, want clash and -bad", errs)
	}
	inst, err := locate(r, "172.20.0.2")
	if err != nil || inst.Name != "web" || inst.Origin != ec2.OriginDocker {
		t.Fatalf("locate(web) = %v, %v; want web from docker", inst, err)
	}
	if _, err := locate(r, "172.20.0.3"); ec2.ErrorCode(err) != ec2.ENOTFOUND || !strings.Contains(err.Error(), "02:42:ac:14:00:99") {
		t.Errorf("address at another MAC: err=%v, want ENOTFOUND naming the MAC", err)
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"rm", r.RemoveInstance(ctx, "web")},
		{"update", func() error { _, err := r.UpdateInstance(ctx, "web", ec2.InstanceUpdate{}); return err }()},
		{"set", func() error { _, err := r.SetInstance(ctx, spec("web", "172.20.0.9")); return err }()},
	} {
		if ec2.ErrorCode(tc.err) != ec2.EFORBIDDEN || !strings.Contains(tc.err.Error(), "Docker engine") {
			t.Errorf("%s of a discovered instance: err=%v, want EFORBIDDEN naming the Docker engine", tc.name, tc.err)
		}
	}
	if _, err := r.AddInstance(ctx, spec("thief", "172.20.0.2")); ec2.ErrorCode(err) != ec2.ECONFLICT {
		t.Errorf("AddInstance on a container's address: err=%v, want ECONFLICT", err)
	}
	// A fresh list replaces the old one: no stale instance, no duplicate.
	if errs := r.SetDiscovered(ctx, ec2.OriginDocker, []*ec2.Instance{container("db", "172.20.0.3", "02:42:ac:14:00:03")}); len(errs) != 0 {
		t.Fatal(errs)
	}
	list, _ := r.ListInstances(ctx)
	var names []string
	for _, inst := range list {
		names = append(names, inst.Name+"/"+inst.Origin)
	}
	if got, want := strings.Join(names, " "), "cfg/config db/docker"; got != want {
		t.Errorf("instances = %s, want %s", got, want)
	}
	if _, err := locate(r, "172.20.0.2"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("removed container still located: %v", err)
	}
}
