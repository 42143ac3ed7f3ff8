package registry

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/bolt"
)

// restart opens a registry on the bolt file at path, as imds serve does
// (config, stored instances, then their events and faults), on clk. Close
// the DB before the next restart.
func restart(t *testing.T, path string, clk clock.Clock) (*Registry, *bolt.DB) {
	t.Helper()
	r, _, db := openRegistryDB(t, path)
	r.Clock = clk
	t.Cleanup(r.Close)
	ctx := context.Background()
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("a", "10.0.0.2")}, Default{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.LoadOverlays(ctx); err != nil {
		t.Fatalf("LoadOverlays: %v", err)
	}
	return r, db
}

// TestEventsSurviveRestart: events and faults issued through one registry
// are shown by the next one on the same bolt file, as they were; cleared,
// they are gone from the file.
func TestEventsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "imds.db")
	clk := clock.NewFake(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) // fixed instant: starts a fake clock (internal/clock)
	r, db := restart(t, path, clk)
	for _, req := range []ec2.EventRequest{{Type: "spot", Action: "stop"}, {Type: "rebalance"}, {Type: "maintenance"}, {Type: "asg", State: "Terminated"}} {
		if _, err := r.TriggerEvent(ctx, "a", req); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.SetFaults(ctx, "a", ec2.Faults{Latency: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetFaults(ctx, "", ec2.Faults{ErrorRate: 0.5}); err != nil {
		t.Fatal(err)
	}
	before := current(t, r)
	r.Close()
	db.Close()

	r, db = restart(t, path, clk)
	after := current(t, r)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("the instance after a restart (-before +after):\n%s", diff)
	}
	if f, _ := r.GetFaults(ctx, ""); f.ErrorRate != 0.5 {
		t.Errorf("faults of every instance after a restart: %+v", f)
	}

	if _, err := r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "clear"}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetFaults(ctx, "a", ec2.Faults{}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetFaults(ctx, "", ec2.Faults{}); err != nil {
		t.Fatal(err)
	}
	if left, err := db.Instances().FindOverlays(ctx); err != nil || len(left) != 0 {
		t.Errorf("after clear: the file keeps %v (%v)", left, err)
	}
}

// TestScheduledSpotAcrossRestart: a notice scheduled before a restart
// appears at its time after it; one whose time passed meanwhile shows at
// once.
func TestScheduledSpotAcrossRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "imds.db")
	clk := clock.NewFake(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) // fixed instant: starts a fake clock (internal/clock)
	r, db := restart(t, path, clk)
	if _, err := r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "spot", At: clk.Now().Add(12 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	db.Close()

	r, db = restart(t, path, clk)
	if sp := current(t, r).Events.Spot; sp != nil {
		t.Fatalf("shown before its notice time after a restart: %+v", sp)
	}
	clk.Advance(10 * time.Minute)
	poll(t, "shown at its notice time after a restart", func() bool { return current(t, r).Events.Spot != nil })
	r.Close()
	db.Close()

	clk.Advance(time.Hour)
	r, _ = restart(t, path, clk)
	if sp := current(t, r).Events.Spot; sp == nil || sp.Action != "terminate" {
		t.Errorf("a notice due while imds was stopped: %+v, want it shown at once", sp)
	}
}

// TestRemovedInstanceForgetsEvents: removing an instance deletes its
// stored events, so that one registered again under its name has none.
func TestRemovedInstanceForgetsEvents(t *testing.T) {
	ctx := context.Background()
	r, _, db := openRegistryDB(t, "")
	t.Cleanup(r.Close)
	if _, err := r.AddInstance(ctx, spec("vm", "10.0.0.9")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.TriggerEvent(ctx, "vm", ec2.EventRequest{Type: "rebalance"}); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveInstance(ctx, "vm"); err != nil {
		t.Fatal(err)
	}
	if left, err := db.Instances().FindOverlays(ctx); err != nil || len(left) != 0 {
		t.Errorf("after removal: the file keeps %v (%v)", left, err)
	}
	if _, err := r.AddInstance(ctx, spec("vm", "10.0.0.9")); err != nil {
		t.Fatal(err)
	}
	if err := r.LoadOverlays(ctx); err != nil {
		t.Fatal(err)
	}
	if inst, _ := r.GetInstance(ctx, "vm"); !inst.Events.Rebalance.IsZero() {
		t.Errorf("the instance registered again shows the old one's rebalance: %v", inst.Events.Rebalance)
	}
}
