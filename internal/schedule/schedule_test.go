package schedule

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
)

// TestRunner issues one event after a delay, one at a time already past
// (at once) and one that never comes, on a fake clock.
func TestRunner(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) // fixed instant: starts a fake clock (internal/clock)
	clk := clock.NewFake(start)
	issued := make(chan string, 3)
	log := &lockedLog{}
	r := &Runner{Clock: clk, Logger: slog.New(slog.NewTextHandler(log, nil)),
		Trigger: func(_ context.Context, name string, req ec2.EventRequest) (ec2.Events, error) {
			issued <- name + ":" + req.Type
			return ec2.Events{}, nil
		}}
	ctx, cancel := context.WithCancel(t.Context())
	r.Start(ctx, []config.InstanceSchedule{
		{Instance: "a", Events: []config.ScheduledEvent{{After: time.Minute, Request: ec2.EventRequest{Type: "spot"}}}},
		{Instance: "b", Events: []config.ScheduledEvent{
			{At: start.Add(-time.Hour), Request: ec2.EventRequest{Type: "rebalance"}},
			{After: time.Hour, Request: ec2.EventRequest{Type: "maintenance"}},
		}},
	})
	wait := func(want string) {
		t.Helper()
		select {
		case got := <-issued:
			if got != want {
				t.Errorf("issued %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never issued", want)
		}
	}
	if want := `msg="scheduled event's time has passed: issuing it now" instance=b event=rebalance at=2029-12-31T23:00:00Z`; !strings.Contains(log.String(), want) {
		t.Errorf("log lacks the warning about the past time:\n%s", log.String())
	}
	wait("b:rebalance")
	clk.Advance(time.Minute)
	wait("a:spot")
	cancel()
	r.Wait()
	select {
	case got := <-issued:
		t.Errorf("issued %s after cancel", got)
	default:
	}
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestUpdate: a reload keeps what it still has (issued once, never again),
// cancels what it dropped, and counts a new entry's After from the reload.
func TestUpdate(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) // fixed instant: starts a fake clock (internal/clock)
	clk := clock.NewFake(start)
	issued := make(chan string, 8)
	r := &Runner{Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Trigger: func(_ context.Context, name string, req ec2.EventRequest) (ec2.Events, error) {
			issued <- name + ":" + req.Type
			return ec2.Events{}, nil
		}}
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); r.Wait() }()
	spot := config.ScheduledEvent{After: time.Minute, Request: ec2.EventRequest{Type: "spot"}}
	rebalance := config.ScheduledEvent{After: time.Hour, Request: ec2.EventRequest{Type: "rebalance"}}
	maint := config.ScheduledEvent{After: 10 * time.Minute, Request: ec2.EventRequest{Type: "maintenance"}}
	r.Start(ctx, []config.InstanceSchedule{{Instance: "a", Events: []config.ScheduledEvent{spot, rebalance}}})
	clk.Advance(time.Minute)
	if got := next(t, issued); got != "a:spot" {
		t.Fatalf("issued %s, want a:spot", got)
	}
	// Reload: spot kept (already issued), rebalance dropped, maintenance
	// added in front of them.
	clk.Advance(5 * time.Minute)
	added, cancelled := r.Update([]config.InstanceSchedule{{Instance: "a", Events: []config.ScheduledEvent{maint, spot}}})
	if added != 1 || cancelled != 1 {
		t.Errorf("Update added %d, cancelled %d; want 1, 1", added, cancelled)
	}
	clk.Advance(10 * time.Minute) // 10m after the reload, 16m after start
	if got := next(t, issued); got != "a:maintenance" {
		t.Fatalf("issued %s, want a:maintenance", got)
	}
	clk.Advance(2 * time.Hour)
	r.Update([]config.InstanceSchedule{{Instance: "a", Events: []config.ScheduledEvent{maint, spot}}})
	clk.Advance(2 * time.Hour)
	select {
	case got := <-issued:
		t.Errorf("issued %s again (or the dropped rebalance)", got)
	case <-time.After(50 * time.Millisecond):
	}
}

func next(t *testing.T, issued chan string) string {
	t.Helper()
	select {
	case got := <-issued:
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("nothing issued")
		return ""
	}
}
