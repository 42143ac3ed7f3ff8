// Package schedule issues the events a config file schedules (`schedule:`
// of an instance), each after its delay or at its time, on an injected
// clock, and follows the schedules of a reloaded file.
package schedule

import (
	"context"
	"fmt"
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

// Runner runs schedules until its context is done. An entry's After counts
// from the moment the entry first appears: start-up, or the reload
// (Update) that adds it. An entry is issued once: a reload that keeps it
// neither issues it again nor moves it.
type Runner struct {
	Clock   clock.Clock
	Trigger Trigger
	Logger  *slog.Logger

	wg      sync.WaitGroup
	mu      sync.Mutex
	ctx     context.Context
	entries map[string]*entry // by key (see entryKeys)
}

type entry struct {
	cancel context.CancelFunc
	done   bool // issued (or failed): nothing to cancel
}

// Start starts the schedules, counting delays from now.
func (r *Runner) Start(ctx context.Context, schedules []config.InstanceSchedule) {
	r.mu.Lock()
	r.ctx, r.entries = ctx, map[string]*entry{}
	r.mu.Unlock()
	r.Update(schedules)
}

// Update follows a reloaded file: entries it no longer has are cancelled
// if still pending, new ones start now. It returns how many were added and
// cancelled.
func (r *Runner) Update(schedules []config.InstanceSchedule) (added, cancelled int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		return 0, 0 // not started
	}
	now := r.Clock.Now()
	keep := map[string]bool{}
	for _, s := range schedules {
		seen := map[string]int{}
		for _, se := range s.Events {
			key := entryKey(s.Instance, se)
			seen[key]++
			key += fmt.Sprintf("#%d", seen[key]) // the same entry twice is two entries
			keep[key] = true
			if r.entries[key] != nil {
				continue
			}
			added++
			delay := se.After
			if !se.At.IsZero() {
				if delay = se.At.Sub(now); delay < 0 {
					// Said once, so that a stale date in a config file is noticed.
					r.Logger.Warn("scheduled event's time has passed: issuing it now", "instance", s.Instance, "event", se.Request.Type,
						"at", se.At.UTC().Format(time.RFC3339), "line", se.Line)
				}
			}
			ctx, cancel := context.WithCancel(r.ctx)
			e := &entry{cancel: cancel}
			r.entries[key] = e
			r.run(ctx, e, s.Instance, se.Request, max(delay, 0), now)
		}
	}
	for key, e := range r.entries {
		if !keep[key] {
			if !e.done {
				cancelled++
			}
			e.cancel()
			delete(r.entries, key)
		}
	}
	return added, cancelled
}

// run issues req to name after delay, unless ctx ends first.
func (r *Runner) run(ctx context.Context, e *entry, name string, req ec2.EventRequest, delay time.Duration, from time.Time) {
	t := r.Clock.NewTimer(delay)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		r.mu.Lock()
		e.done = true
		r.mu.Unlock()
		if _, err := r.Trigger(ctx, name, req); err != nil {
			r.Logger.Warn("scheduled event failed", "instance", name, "event", req.Type, "err", err)
			return
		}
		r.Logger.Info("scheduled event issued", "instance", name, "event", req.Type, "after", r.Clock.Now().Sub(from).Round(time.Second))
	}()
}

// entryKey identifies a schedule entry across reloads by what it says,
// not by its line or position, which an edit elsewhere moves.
func entryKey(instance string, se config.ScheduledEvent) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%+v", instance, se.After, se.At.UTC().Format(time.RFC3339Nano), se.Request)
}

// Wait waits for the goroutines Start started; cancel their context first.
func (r *Runner) Wait() { r.wg.Wait() }
