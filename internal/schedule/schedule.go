// Package schedule issues the events a config file schedules (`schedule:`
// of an instance), each after its delay from start-up or at its time, on an
// injected clock.
package schedule

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
)

// Trigger issues an event to the named instance; the registry's
// TriggerEvent is one.
type Trigger func(ctx context.Context, name string, req ec2.EventRequest) (ec2.Events, error)

// Runner runs schedules until its context is done. Schedules are read once
// at start-up; a reload of the config does not change them.
type Runner struct {
	Clock   clock.Clock
	Trigger Trigger
	Logger  *slog.Logger

	wg sync.WaitGroup
}

// Start starts a goroutine per scheduled event, counting delays from now.
func (r *Runner) Start(ctx context.Context, schedules []config.InstanceSchedule) {
	start := r.Clock.Now()
	for _, s := range schedules {
		for _, se := range s.Events {
			delay := se.After
			name, req := s.Instance, se.Request
			if !se.At.IsZero() {
				delay = se.At.Sub(start)
				if delay < 0 {
					// Said once, so that a stale date in a config file is noticed.
					r.Logger.Warn("scheduled event's time has passed: issuing it now", "instance", name, "event", req.Type,
						"at", se.At.UTC().Format(time.RFC3339), "line", se.Line)
				}
			}
			t := r.Clock.NewTimer(max(delay, 0))
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C():
				}
				if _, err := r.Trigger(ctx, name, req); err != nil {
					r.Logger.Warn("scheduled event failed", "instance", name, "event", req.Type, "err", err)
					return
				}
				r.Logger.Info("scheduled event issued", "instance", name, "event", req.Type, "after", r.Clock.Now().Sub(start).Round(time.Second))
			}()
		}
	}
}

// Wait waits for the goroutines Start started; cancel their context first.
func (r *Runner) Wait() { r.wg.Wait() }
