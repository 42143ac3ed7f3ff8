package registry

import (
	"context"
	"log/slog"
	"strings"
	"sync"
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

// syncLog is a log buffer the scheduling goroutines and the test may share.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.b.String(), s)
}

// poll waits (generously: a poll, not a measurement) until ok holds.
func poll(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 10 s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestSpotNoticeVisibility: what the instance serves and what the answer
// says for each way of issuing, replacing and clearing spot notices.
func TestSpotNoticeVisibility(t *testing.T) {
	ctx := context.Background()
	type env struct {
		r   *Registry
		clk *clock.Fake
		log *syncLog
	}
	spot := func(e env, action string, at time.Time) ec2.Events {
		t.Helper()
		created := e.clk.TimerCreated()
		ev, err := e.r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "spot", Action: action, At: at})
		if err != nil {
			t.Fatal(err)
		}
		if ev.SpotScheduled != nil {
			<-created
		}
		return ev
	}
	shown := func(e env) *ec2.SpotNotice { return current(t, e.r).Events.Spot }
	tests := []struct {
		name string
		run  func(t *testing.T, e env)
	}{
		{"a future notice is scheduled, not shown", func(t *testing.T, e env) {
			at := e.clk.Now().Add(time.Hour)
			ev := spot(e, "stop", at)
			if ev.Spot != nil || ev.SpotScheduled == nil || !ev.SpotScheduled.Notice.Equal(at.Add(-2*time.Minute)) || !ev.SpotScheduled.Time.Equal(at) {
				t.Fatalf("answer %+v / %+v, want stop scheduled with its notice 2m before %v", ev.Spot, ev.SpotScheduled, at)
			}
			inst := current(t, e.r)
			if inst.Events.Spot != nil || inst.LifeCycle != "spot" {
				t.Errorf("before the notice time the instance shows %+v (life cycle %s), want no notice on a spot instance", inst.Events.Spot, inst.LifeCycle)
			}
			e.clk.Advance(58 * time.Minute)
			poll(t, "shown at the notice time", func() bool { return shown(e) != nil })
			if sp := shown(e); sp.Action != "stop" || !sp.Time.Equal(at) || current(t, e.r).Events.SpotScheduled != nil {
				t.Errorf("at the notice time: %+v", sp)
			}
		}},
		{"an action sooner than the lead shows at once", func(t *testing.T, e env) {
			at := e.clk.Now().Add(30 * time.Second)
			ev := spot(e, "terminate", at)
			if ev.Spot == nil || ev.SpotScheduled != nil || !ev.Spot.Notice.Equal(e.clk.Now()) || shown(e) == nil {
				t.Errorf("answer %+v / %+v, instance %+v: want it shown now", ev.Spot, ev.SpotScheduled, shown(e))
			}
		}},
		{"a past time is refused", func(t *testing.T, e env) {
			_, err := e.r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "spot", At: e.clk.Now().Add(-time.Second)})
			if ec2.ErrorCode(err) != ec2.EINVALID || !strings.HasPrefix(ec2.ErrorMessage(err), "at: 2026-11-22T09:59:59Z is in the past") {
				t.Errorf("err = %v, want EINVALID naming at", err)
			}
			if inst := current(t, e.r); inst.Events.Spot != nil || inst.LifeCycle == "spot" {
				t.Errorf("the refused notice left %+v %s", inst.Events.Spot, inst.LifeCycle)
			}
		}},
		{"a scheduled notice replaces a shown one at once", func(t *testing.T, e env) {
			first := spot(e, "terminate", time.Time{})
			ev := spot(e, "hibernate", e.clk.Now().Add(time.Hour))
			if ev.SpotReplaced == nil || !ev.SpotReplaced.Time.Equal(first.Spot.Time) || ev.Spot != nil {
				t.Errorf("answer: replaced %+v, shown %+v; want the first replaced and nothing shown", ev.SpotReplaced, ev.Spot)
			}
			if shown(e) != nil {
				t.Errorf("the replaced notice is still shown: %+v", shown(e))
			}
		}},
		{"a shown notice replaces a scheduled one, which never appears", func(t *testing.T, e env) {
			old := spot(e, "stop", e.clk.Now().Add(10*time.Minute)).SpotScheduled
			ev := spot(e, "terminate", time.Time{})
			if ev.SpotReplaced == nil || ev.SpotReplaced.Action != "stop" || ev.SpotScheduled != nil || ev.Spot == nil {
				t.Fatalf("answer %+v", ev)
			}
			e.clk.Advance(time.Hour)
			poll(t, "dropping the replaced notice", func() bool { return e.log.has("scheduled spot notice not shown") })
			if sp := shown(e); sp == nil || sp.Action != "terminate" || sp.Time.Equal(old.Time) {
				t.Errorf("after the old notice time: %+v, want the terminate notice", sp)
			}
		}},
		{"clear withdraws a scheduled notice", func(t *testing.T, e env) {
			spot(e, "stop", e.clk.Now().Add(10*time.Minute))
			ev, err := e.r.TriggerEvent(ctx, "a", ec2.EventRequest{Type: "clear"})
			if err != nil || ev.SpotScheduled != nil || ev.Spot != nil {
				t.Fatalf("clear: %+v %v", ev, err)
			}
			e.clk.Advance(time.Hour)
			poll(t, "dropping the cleared notice", func() bool { return e.log.has("scheduled spot notice not shown") })
			if inst := current(t, e.r); inst.Events.Spot != nil || inst.LifeCycle != "on-demand" {
				t.Errorf("after clear and the notice time: %+v %s", inst.Events.Spot, inst.LifeCycle)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, clk := eventRegistry(t)
			log := &syncLog{}
			r.Logger = slog.New(slog.NewTextHandler(log, nil))
			tt.run(t, env{r, clk, log})
		})
	}
}

// TestEventAnswerShowsAutoscalingState: the answer of every event carries
// the target lifecycle state the instance shows, its own or an asg event's.
func TestEventAnswerShowsAutoscalingState(t *testing.T) {
	ctx := context.Background()
	r, _ := eventRegistry(t)
	own := configInstance("b", "10.0.0.3")
	own.AutoscalingState = "InService"
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("a", "10.0.0.2"), own}, Default{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		instance string
		req      ec2.EventRequest
		want     string
	}{
		{"a", ec2.EventRequest{Type: "rebalance"}, ""},
		{"b", ec2.EventRequest{Type: "rebalance"}, "InService"},
		{"b", ec2.EventRequest{Type: "asg", State: "Terminated"}, "Terminated"},
		{"b", ec2.EventRequest{Type: "spot"}, "Terminated"},
		{"b", ec2.EventRequest{Type: "clear"}, "InService"},
		{"a", ec2.EventRequest{Type: "asg", State: "Standby"}, "Standby"},
		{"a", ec2.EventRequest{Type: "clear"}, ""},
	}
	for i, tt := range tests {
		ev, err := r.TriggerEvent(ctx, tt.instance, tt.req)
		if err != nil || ev.AutoscalingState != tt.want {
			t.Errorf("step %d: %s on %s: state %q, %v; want %q", i, tt.req.Type, tt.instance, ev.AutoscalingState, err, tt.want)
		}
	}
}
