package registry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

func eventRegistry(t *testing.T) (*Registry, *clock.Fake) {
	t.Helper()
	r, _ := openRegistry(t, "")
	clk := clock.NewFake(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) // fixed instant: starts a fake clock (internal/clock)
	r.Clock = clk
	t.Cleanup(r.Close)
	if err := r.SetConfig(context.Background(), []*ec2.Instance{configInstance("a", "10.0.0.2")}, Default{}); err != nil {
		t.Fatal(err)
	}
	return r, clk
}

func current(t *testing.T, r *Registry) *ec2.Instance {
	t.Helper()
	inst, err := locate(r, "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func TestSpotNotice(t *testing.T) {
	ctx := context.Background()
	r, clk := eventRegistry(t)
	if _, err := r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "spot"}); err != nil {
		t.Fatal(err)
	}
	inst := current(t, r)
	want := clk.Now().Add(2 * time.Minute)
	if inst.Events.Spot == nil || inst.Events.Spot.Action != "terminate" || !inst.Events.Spot.Time.Equal(want) || inst.LifeCycle != "spot" {
		t.Fatalf("after spot: %+v lifecycle %s", inst.Events.Spot, inst.LifeCycle)
	}
	clk.Advance(time.Minute)
	if got := current(t, r).Events.Spot.Time; !got.Equal(want) {
		t.Errorf("the action time moved from %v to %v", want, got)
	}
	if _, err := r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "clear"}); err != nil {
		t.Fatal(err)
	}
	if inst := current(t, r); inst.Events.Spot != nil || inst.LifeCycle != "on-demand" {
		t.Errorf("after clear: %+v %s", inst.Events.Spot, inst.LifeCycle)
	}
}

func TestScheduledSpotAppearsAtNoticeTime(t *testing.T) {
	ctx := context.Background()
	r, clk := eventRegistry(t)
	at := clk.Now().Add(time.Hour)
	created := clk.TimerCreated()
	if _, err := r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "spot", Action: "stop", At: at}); err != nil {
		t.Fatal(err)
	}
	<-created
	clk.Advance(57 * time.Minute)
	if current(t, r).Events.Spot != nil {
		t.Fatalf("the notice appeared 3 minutes before the action; want 2")
	}
	clk.Advance(time.Minute)
	deadline := time.Now().Add(10 * time.Second) // generous: a poll, not a measurement
	for current(t, r).Events.Spot == nil && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if sp := current(t, r).Events.Spot; sp == nil || sp.Action != "stop" || !sp.Time.Equal(at) {
		t.Errorf("at notice time: %+v, want stop at %v", sp, at)
	}
}

func TestMaintenanceAndRebalanceAndASG(t *testing.T) {
	ctx := context.Background()
	r, clk := eventRegistry(t)
	ev, err := r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "maintenance", Code: "instance-retirement"})
	if err != nil {
		t.Fatal(err)
	}
	m := ev.Maintenance[0]
	if m.State != "active" || m.Description != "scheduled retirement" || !m.NotBefore.Equal(clk.Now().Add(time.Hour)) ||
		m.NotAfter.Sub(m.NotBefore) != 20*time.Minute || !strings.HasPrefix(m.ID, "instance-event-0") || len(m.ID) != 32 {
		t.Errorf("maintenance event %+v", m)
	}
	ev, err = r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "maintenance-complete", EventID: m.ID})
	if err != nil || ev.Maintenance[0].State != "completed" || ev.Maintenance[0].Description != "[Completed] scheduled retirement" {
		t.Errorf("after complete: %+v %v", ev.Maintenance, err)
	}
	if _, err := r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "maintenance-cancel", EventID: m.ID}); ec2.ErrorCode(err) != ec2.ECONFLICT {
		t.Errorf("cancel of a completed event: %v, want ECONFLICT", err)
	}
	if _, err := r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "rebalance"}); err != nil || !current(t, r).Events.Rebalance.Equal(clk.Now()) {
		t.Errorf("rebalance: %v %v", current(t, r).Events.Rebalance, err)
	}
	if _, err := r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "asg", State: "Warmed:Stopped"}); err != nil || current(t, r).AutoscalingState != "Warmed:Stopped" {
		t.Errorf("asg: %q %v", current(t, r).AutoscalingState, err)
	}
	for _, tt := range []struct {
		req  ec2.EventRequest
		name string
		code string
	}{
		{ec2.EventRequest{Type: "spot"}, "nope", ec2.ENOTFOUND},
		{ec2.EventRequest{Type: "spot", Action: "explode"}, "a", ec2.EINVALID},
		{ec2.EventRequest{Type: "asg", State: "Sleeping"}, "a", ec2.EINVALID},
		{ec2.EventRequest{Type: "maintenance", Code: "reboot-please"}, "a", ec2.EINVALID},
		{ec2.EventRequest{Type: "maintenance-complete", EventID: "instance-event-0nope"}, "a", ec2.ENOTFOUND},
		{ec2.EventRequest{Type: "party"}, "a", ec2.EINVALID},
	} {
		if _, err := r.TriggerEvent(ctx, tt.name, tt.req); ec2.ErrorCode(err) != tt.code {
			t.Errorf("%+v: err=%v, want %s", tt.req, err, tt.code)
		}
	}
}
