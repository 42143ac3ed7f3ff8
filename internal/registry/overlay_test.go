package registry

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

// TestOverlayChangesOneInstance: an event or a fault on one instance
// replaces that instance in the index and no other (the others are the
// very same values), and once cleared the instance is again exactly as
// defined, whatever the events changed (life cycle, autoscaling state),
// for config, registered and discovered instances alike.
func TestOverlayChangesOneInstance(t *testing.T) {
	ctx := context.Background()
	r, _ := openRegistry(t, "")
	r.Clock = clock.NewFake(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) // fixed instant: starts a fake clock (internal/clock)
	t.Cleanup(r.Close)
	cfg := configInstance("c", "10.0.0.2")
	cfg.AutoscalingState = "InService"
	cfg.Faults = ec2.Faults{DropRate: 0.1} // a config file may declare faults
	if err := r.SetConfig(ctx, []*ec2.Instance{cfg}, Default{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*ec2.Instance{spec("a", "10.0.0.3"), spec("b", "10.0.0.4")} {
		if _, err := r.AddInstance(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if errs := r.SetDiscovered(ctx, ec2.OriginDocker, []*ec2.Instance{container("d", "172.20.0.2", "02:42:ac:14:00:02")}); len(errs) > 0 {
		t.Fatal(errs)
	}
	served := func() map[string]*ec2.Instance {
		m := map[string]*ec2.Instance{}
		r.Each(func(i *ec2.Instance) bool { m[i.Name] = i; return true })
		return m
	}
	tests := []struct {
		name   string
		change func(name string) error
	}{
		{"spot", func(n string) error {
			_, err := r.TriggerEvent(ctx, n, ec2.EventRequest{Type: ec2.EventSpot})
			return err
		}},
		{"asg", func(n string) error {
			_, err := r.TriggerEvent(ctx, n, ec2.EventRequest{Type: ec2.EventAutoscaling, State: "Terminated"})
			return err
		}},
		{"maintenance", func(n string) error {
			_, err := r.TriggerEvent(ctx, n, ec2.EventRequest{Type: ec2.EventMaintenance})
			return err
		}},
		{"faults", func(n string) error { return r.SetFaults(ctx, n, ec2.Faults{ErrorRate: 0.5}) }},
	}
	clear := func(n string) {
		t.Helper()
		if _, err := r.TriggerEvent(ctx, n, ec2.EventRequest{Type: ec2.EventClear}); err != nil {
			t.Fatal(err)
		}
		if err := r.SetFaults(ctx, n, ec2.Faults{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range []string{"c", "a", "d"} {
		for _, tt := range tests {
			t.Run(target+"/"+tt.name, func(t *testing.T) {
				before := served()
				if err := tt.change(target); err != nil {
					t.Fatal(err)
				}
				after := served()
				for n, inst := range before {
					if n != target && after[n] != inst {
						t.Errorf("instance %s was replaced by a change of %s", n, target)
					}
				}
				if after[target] == before[target] {
					t.Errorf("instance %s was not replaced", target)
				}
				if got := r.idx.Load().byAddr.get(netip.MustParseAddr(before[target].SourceAddrs[0])); got != after[target] {
					t.Errorf("the address of %s is indexed to %v, not to the changed instance", target, got)
				}
				clear(target)
				if diff := cmp.Diff(before[target], served()[target]); diff != "" {
					t.Errorf("%s after clearing differs from before (-before +after):\n%s", target, diff)
				}
			})
		}
	}

	// An instance put again while it has events (a container found again,
	// a stored spec written) keeps its definition apart from them.
	defined := served()
	for _, target := range []string{"d", "a"} {
		if _, err := r.TriggerEvent(ctx, target, ec2.EventRequest{Type: ec2.EventSpot}); err != nil {
			t.Fatal(err)
		}
	}
	if errs := r.SetDiscovered(ctx, ec2.OriginDocker, []*ec2.Instance{container("d", "172.20.0.2", "02:42:ac:14:00:02")}); len(errs) > 0 {
		t.Fatal(errs)
	}
	if _, err := r.UpdateInstance(ctx, "a", ec2.InstanceUpdate{}); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"d", "a"} {
		if got := served()[target]; got.LifeCycle != "spot" {
			t.Errorf("%s put again lost its spot notice: life cycle %q", target, got.LifeCycle)
		}
		clear(target)
		if diff := cmp.Diff(defined[target], served()[target]); diff != "" {
			t.Errorf("%s put again, then cleared, differs from as defined (-want +got):\n%s", target, diff)
		}
	}

	// The faults of every instance change every instance, and leave
	// their own overlays as they were.
	if err := r.SetFaults(ctx, "a", ec2.Faults{Latency: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetFaults(ctx, "", ec2.Faults{ErrorRate: 0.25}); err != nil {
		t.Fatal(err)
	}
	for n, inst := range served() {
		want := ec2.Faults{ErrorRate: 0.25}
		if n == "a" {
			want.Latency = time.Second
		}
		if inst.Faults != want {
			t.Errorf("faults of %s = %+v, want %+v", n, inst.Faults, want)
		}
	}
	// Events come and go while they are set; once they are cleared too,
	// every instance is as defined again, its declared faults included.
	for _, target := range []string{"c", "d"} {
		if _, err := r.TriggerEvent(ctx, target, ec2.EventRequest{Type: ec2.EventSpot}); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range []string{"a", "c", "d"} {
		clear(target)
	}
	if err := r.SetFaults(ctx, "", ec2.Faults{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(defined, served()); diff != "" {
		t.Errorf("after clearing everything, the instances differ from as defined (-want +got):\n%s", diff)
	}
}

// TestApplyOverlays: the overlays another host changed, handed over one
// by one, show as LoadOverlays would show them; a deletion clears; a
// spot notice already due shows at once.
func TestApplyOverlays(t *testing.T) {
	ctx := context.Background()
	r, _ := openRegistry(t, "")
	clk := clock.NewFake(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) // fixed instant: starts a fake clock (internal/clock)
	r.Clock = clk
	t.Cleanup(r.Close)
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*ec2.Instance{spec("a", "10.0.0.3"), spec("b", "10.0.0.4")} {
		if _, err := r.AddInstance(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	defined, _ := r.GetInstance(ctx, "a")
	now := clk.Now().UTC()
	due := &ec2.SpotNotice{Action: ec2.SpotTerminate, Time: now.Add(time.Minute), Notice: now.Add(-time.Minute)}
	err := r.ApplyOverlays(ctx, map[string]*ec2.Overlay{
		"a":    {Events: ec2.Events{SpotScheduled: due}, Spot: true, Faults: ec2.Faults{ErrorRate: 0.5}},
		"gone": {Events: ec2.Events{Rebalance: now}}, // not served here: kept for when it is
	})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := r.GetInstance(ctx, "a")
	if a.Events.Spot == nil || a.Events.SpotScheduled != nil || a.LifeCycle != "spot" || a.Faults.ErrorRate != 0.5 {
		t.Errorf("a after ApplyOverlays: spot %v, scheduled %v, life cycle %q, faults %+v; want the due notice shown, spot, error rate 0.5",
			a.Events.Spot, a.Events.SpotScheduled, a.LifeCycle, a.Faults)
	}
	if b, _ := r.GetInstance(ctx, "b"); b.Events.Spot != nil || b.Faults.Active() {
		t.Errorf("b changed with a's overlay: %+v %+v", b.Events, b.Faults)
	}
	if err := r.ApplyOverlays(ctx, map[string]*ec2.Overlay{"a": nil}); err != nil {
		t.Fatal(err)
	}
	a, _ = r.GetInstance(ctx, "a")
	if diff := cmp.Diff(defined, a); diff != "" {
		t.Errorf("a after its overlay was deleted differs from as defined (-want +got):\n%s", diff)
	}
}
