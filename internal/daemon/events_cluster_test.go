package daemon

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
	"github.com/imdsdev/imds/internal/store/etcd"
)

// spotAction is what d's metadata server answers the requester of c at
// spot/instance-action, "" unless 200.
func spotAction(c *http.Client, d *Daemon) string { return metadata(c, d, "spot/instance-action") }

// TestEventsAcrossHosts: an event issued through host A shows in the
// instance's metadata on host C, faults set on B apply on A, a host opened
// later finds both, removing the instance removes them from etcd, and
// while etcd is away an event is refused naming the endpoints.
func TestEventsAcrossHosts(t *testing.T) {
	ctx := t.Context()
	srv := etcdtest.Start(t)
	a := mustOpen(t, etcdConfig(t, "/events/", srv.ClientURL))
	b := mustOpen(t, etcdConfig(t, "/events/", srv.ClientURL))
	c := mustOpen(t, etcdConfig(t, "/events/", srv.ClientURL))
	const addr = "127.0.2.3"
	inst, err := a.Registry.AddInstance(ctx, &ec2.Instance{Name: "vm-3", SourceAddrs: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	client := sourceClient(addr)
	waitServed(t, client, c, inst.ID)

	start := time.Now()
	if _, err := a.Registry.TriggerEvent(ctx, "vm-3", ec2.EventRequest{Type: ec2.EventSpot, Action: ec2.SpotStop}); err != nil {
		t.Fatalf("spot through host A: %v", err)
	}
	waitFor(t, "host C to show the spot notice issued through A", func() bool { return strings.Contains(spotAction(client, c), `"action": "stop"`) })
	t.Logf("spot through A, shown by C after %s", time.Since(start))
	if got, want := spotAction(client, c), spotAction(client, a); got != want {
		t.Errorf("host C shows %s, host A %s", got, want)
	}

	if err := b.Registry.SetFaults(ctx, "vm-3", ec2.Faults{ErrorRate: 0.5}); err != nil {
		t.Fatalf("faults through host B: %v", err)
	}
	waitFor(t, "host A to apply the faults set on B", func() bool {
		inst, err := a.Registry.GetInstance(ctx, "vm-3")
		return err == nil && inst.Faults.ErrorRate == 0.5
	})

	// A host that starts now finds both.
	d := mustOpen(t, etcdConfig(t, "/events/", srv.ClientURL))
	got, err := d.Registry.GetInstance(ctx, "vm-3")
	if err != nil || got.Events.Spot == nil || got.Events.Spot.Action != ec2.SpotStop || got.Faults.ErrorRate != 0.5 || got.LifeCycle != "spot" {
		t.Errorf("a host opened later: %+v %v", got, err)
	}

	// Cleared and removed: nothing is left in etcd.
	if _, err := c.Registry.TriggerEvent(ctx, "vm-3", ec2.EventRequest{Type: ec2.EventClear}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "host A to drop the notice cleared on C", func() bool { return spotAction(client, a) == "" })
	if err := c.Registry.RemoveInstance(ctx, "vm-3"); err != nil {
		t.Fatal(err)
	}
	direct, err := etcd.Open(ctx, etcd.Config{Endpoints: []string{srv.ClientURL}, Prefix: "/events/"})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	left, err := direct.Instances().FindOverlays(ctx)
	if err != nil || len(left) != 0 {
		t.Errorf("after clear and removal, etcd keeps %v (%v)", left, err)
	}

	// etcd away: an event is refused, naming the endpoints, and nothing
	// changes.
	if _, err := a.Registry.AddInstance(ctx, &ec2.Instance{Name: "vm-4", SourceAddrs: []string{"127.0.2.4"}}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err = a.Registry.TriggerEvent(ctx, "vm-4", ec2.EventRequest{Type: ec2.EventRebalance})
	if ec2.ErrorCode(err) != ec2.EUNAVAILABLE || !strings.Contains(ec2.ErrorMessage(err), srv.ClientURL) {
		t.Errorf("an event with etcd away: %v, want EUNAVAILABLE naming %s", err, srv.ClientURL)
	}
	if inst, _ := a.Registry.GetInstance(ctx, "vm-4"); !inst.Events.Rebalance.IsZero() {
		t.Errorf("the refused event shows: %v", inst.Events.Rebalance)
	}
	srv.Start() // so that the hosts close without waiting on it
}

// TestEventsFromTwoHostsAtOnce: two hosts adding maintenance events to one
// instance at the same time lose none; every host shows them all.
func TestEventsFromTwoHostsAtOnce(t *testing.T) {
	ctx := t.Context()
	srv := etcdtest.Start(t)
	a := mustOpen(t, etcdConfig(t, "/together/", srv.ClientURL))
	b := mustOpen(t, etcdConfig(t, "/together/", srv.ClientURL))
	if _, err := a.Registry.AddInstance(ctx, &ec2.Instance{Name: "vm", SourceAddrs: []string{"127.0.2.9"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "host B to see vm", func() bool { return b.Registry.Has("vm") })
	const each = 10
	errs := make(chan error, 2*each)
	var wg sync.WaitGroup
	for _, d := range []*Daemon{a, b} {
		wg.Go(func() {
			for range each {
				if _, err := d.Registry.TriggerEvent(ctx, "vm", ec2.EventRequest{Type: ec2.EventMaintenance}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("TriggerEvent: %v", err)
	}
	for _, d := range []*Daemon{a, b} {
		waitFor(t, "every maintenance event on "+d.URL(), func() bool {
			inst, err := d.Registry.GetInstance(ctx, "vm")
			return err == nil && len(inst.Events.Maintenance) == 2*each
		})
	}
}

// TestHostsOwnEventsStayLocal: on etcd, the events of a host's own
// instances (its config's, here the zero-configuration "default" every
// host has) and the faults of every instance stay on that host: another
// host's instance of that name gets none, and etcd holds none.
func TestHostsOwnEventsStayLocal(t *testing.T) {
	ctx := t.Context()
	srv := etcdtest.Start(t)
	a := mustOpen(t, etcdConfig(t, "/local/", srv.ClientURL))
	b := mustOpen(t, etcdConfig(t, "/local/", srv.ClientURL))
	if _, err := a.Registry.TriggerEvent(ctx, "default", ec2.EventRequest{Type: ec2.EventRebalance}); err != nil {
		t.Fatal(err)
	}
	if err := a.Registry.SetFaults(ctx, "", ec2.Faults{ErrorRate: 0.5}); err != nil {
		t.Fatal(err)
	}
	// A change B follows, so that B has read the overlays since.
	if _, err := a.Registry.AddInstance(ctx, &ec2.Instance{Name: "vm", SourceAddrs: []string{"127.0.2.10"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Registry.TriggerEvent(ctx, "vm", ec2.EventRequest{Type: ec2.EventRebalance}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "host B to show vm's rebalance", func() bool {
		inst, err := b.Registry.GetInstance(ctx, "vm")
		return err == nil && !inst.Events.Rebalance.IsZero()
	})
	if inst, _ := b.Registry.GetInstance(ctx, "default"); !inst.Events.Rebalance.IsZero() || inst.Faults.Active() {
		t.Errorf("host B's default got host A's: rebalance %v, faults %s", inst.Events.Rebalance, inst.Faults)
	}
	if inst, _ := a.Registry.GetInstance(ctx, "default"); inst.Events.Rebalance.IsZero() || inst.Faults.ErrorRate != 0.5 {
		t.Errorf("host A's default lost its own: rebalance %v, faults %s", inst.Events.Rebalance, inst.Faults)
	}
	direct, err := etcd.Open(ctx, etcd.Config{Endpoints: []string{srv.ClientURL}, Prefix: "/local/"})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	stored, err := direct.Instances().FindOverlays(ctx)
	if err != nil || len(stored) != 1 || stored["vm"].Events.Rebalance.IsZero() {
		t.Errorf("etcd holds %v (%v), want vm's events alone", stored, err)
	}
}
