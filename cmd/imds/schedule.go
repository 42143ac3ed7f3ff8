package main

import (
	"context"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
)

// startSchedules issues the events the config file schedules, each after its
// delay from start-up or at its time, until ctx is done. Schedules are read
// once at start-up; a reload does not change them.
func (d *daemon) startSchedules(ctx context.Context, file *config.File, clk clock.Clock) {
	start := clk.Now()
	for _, s := range file.Schedules() {
		for _, se := range s.Events {
			delay := se.After
			if !se.At.IsZero() {
				delay = se.At.Sub(start)
			}
			name, req := s.Instance, se.Request
			t := clk.NewTimer(max(delay, 0))
			go func() {
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C():
				}
				if _, err := d.registry.TriggerEvent(ctx, name, req); err != nil {
					d.log.Warn("scheduled event failed", "instance", name, "event", req.Type, "err", err)
					return
				}
				d.log.Info("scheduled event issued", "instance", name, "event", req.Type, "after", time.Duration(clk.Now().Sub(start)).Round(time.Second))
			}()
		}
	}
}
