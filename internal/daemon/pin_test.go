package daemon

import (
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
)

// TestPinnedToHost runs two hosts on one etcd. A VM registered through A
// and pinned to B is answered by B only; then each host has a VM of its
// own at the same address, and each answers its own.
func TestPinnedToHost(t *testing.T) {
	srv := etcdtest.Start(t)
	a := mustOpen(t, etcdConfig(t, "/pin/", srv.ClientURL))
	b := mustOpen(t, etcdConfig(t, "/pin/", srv.ClientURL))
	const addr = "127.0.2.10"
	client := sourceClient(addr)
	defer client.CloseIdleConnections()

	vmB, err := a.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-b", SourceAddrs: []string{addr}, Host: b.Registry.Host})
	if err != nil {
		t.Fatalf("AddInstance on host A, pinned to B: %v", err)
	}
	waitServed(t, client, b, vmB.ID)
	if id := instanceID(client, a); id != "" {
		t.Errorf("host A answered %s, an instance pinned to host B", id)
	}
	waitFor(t, "host A to list vm-b", func() bool { return a.Registry.Has("vm-b") })

	// A VM of A's own at the same address: B's pin keeps it free on A.
	vmA, err := b.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-a", SourceAddrs: []string{addr}, Host: a.Registry.Host})
	if err != nil {
		t.Fatalf("AddInstance on host B, pinned to A at B's VM's address: %v", err)
	}
	waitServed(t, client, a, vmA.ID)
	if id := instanceID(client, b); id != vmB.ID {
		t.Errorf("host B answers %q, want its own vm-b %s", id, vmB.ID)
	}

	// Unpinned, vm-b would clash with vm-a on A: A refuses the change.
	if _, err := a.Registry.UpdateInstance(t.Context(), "vm-b", ec2.InstanceUpdate{Host: ec2.Ptr("")}); ec2.ErrorCode(err) != ec2.ECONFLICT {
		t.Errorf("unpinning vm-b through A: %v, want ECONFLICT", err)
	}
	// Through B, which sees no clash, the change is stored; A keeps
	// serving its own vm-a and leaves vm-b out, as any stored clash.
	if _, err := b.Registry.UpdateInstance(t.Context(), "vm-b", ec2.InstanceUpdate{Host: ec2.Ptr("")}); err != nil {
		t.Fatalf("unpinning vm-b through B: %v", err)
	}
	waitFor(t, "host A to leave out the unpinned vm-b", func() bool { return !a.Registry.Has("vm-b") })
	if id := instanceID(client, a); id != vmA.ID {
		t.Errorf("host A answers %q after the clash, want its own vm-a %s", id, vmA.ID)
	}
	if id := instanceID(client, b); id != vmB.ID {
		t.Errorf("host B answers %q, want vm-b %s, unpinned", id, vmB.ID)
	}
}
