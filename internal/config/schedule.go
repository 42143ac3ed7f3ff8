package config

import (
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/ec2"
)

// ScheduledEvent is one entry of an instance's schedule: an event issued
// After the server starts, or At a time.
type ScheduledEvent struct {
	Line    int
	After   time.Duration
	At      time.Time
	Request ec2.EventRequest
}

// InstanceSchedule is the schedule of one instance of the file.
type InstanceSchedule struct {
	Instance string
	Events   []ScheduledEvent
}

// Schedules returns the schedules of the file's instances.
func (f *File) Schedules() []InstanceSchedule {
	var out []InstanceSchedule
	defs := f.Instances
	if f.Instance != nil {
		defs = append([]*Instance{f.Instance}, defs...)
	}
	for _, ci := range defs {
		if len(ci.schedule) > 0 {
			name := ci.base.Name
			if name == "" {
				name = ec2.DefaultInstanceName
			}
			out = append(out, InstanceSchedule{Instance: name, Events: ci.schedule})
		}
	}
	return out
}

// scheduleList decodes schedule: a list of {event, after | at, and the
// event's own keys}.
func (d *decoder) scheduleList(path string, line int, v *yaml.Node) []ScheduledEvent {
	var out []ScheduledEvent
	d.list(path, line, v, func(_ int, p string, l int, item *yaml.Node) {
		se := ScheduledEvent{Line: l}
		var hasAfter, hasAt, hasEvent bool
		ok := d.mapping(p, l, item, schema{
			"event": func(p string, l int, v *yaml.Node) {
				if s, ok := d.enum(p, l, v, ec2.EventSpot, ec2.EventRebalance, ec2.EventMaintenance, ec2.EventAutoscaling); ok {
					se.Request.Type, hasEvent = s, true
				}
			},
			"after": func(p string, l int, v *yaml.Node) {
				if dur, ok := d.duration(p, l, v, 0, 365*24*time.Hour); ok {
					se.After, hasAfter = dur, true
				}
			},
			"at": func(p string, l int, v *yaml.Node) {
				if s, ok := d.str(p, l, v); ok {
					t, err := time.Parse(time.RFC3339, s)
					if err != nil {
						d.errorf(l, p, "must be an RFC 3339 time like 2026-11-22T18:00:00Z, got %q", s)
						return
					}
					se.At, hasAt = t, true
				}
			},
			"action": func(p string, l int, v *yaml.Node) {
				if s, ok := d.enum(p, l, v, ec2.SpotActions...); ok {
					se.Request.Action = s
				}
			},
			"lead": func(p string, l int, v *yaml.Node) {
				if dur, ok := d.duration(p, l, v, 0, 24*time.Hour); ok {
					se.Request.Lead = dur
				}
			},
			"code": func(p string, l int, v *yaml.Node) {
				if s, ok := d.enum(p, l, v, ec2.MaintenanceCodes...); ok {
					se.Request.Code = s
				}
			},
			"description": d.into(&se.Request.Description),
			"duration": func(p string, l int, v *yaml.Node) {
				if dur, ok := d.duration(p, l, v, time.Minute, 30*24*time.Hour); ok {
					se.Request.Duration = dur
				}
			},
			"state": func(p string, l int, v *yaml.Node) {
				if s, ok := d.enum(p, l, v, ec2.AutoscalingStates...); ok {
					se.Request.State = s
				}
			},
		})
		if !ok {
			return
		}
		switch {
		case !hasEvent:
			d.errorf(l, p+".event", "is required (spot, rebalance, maintenance or asg)")
		case hasAfter == hasAt:
			d.errorf(l, p, "needs exactly one of after (a delay from start-up) and at (a time)")
		case se.Request.Type == ec2.EventAutoscaling && se.Request.State == "":
			d.errorf(l, p+".state", "is required for an asg event")
		case se.Request.Type != ec2.EventSpot && (se.Request.Action != "" || se.Request.Lead != 0):
			d.errorf(l, p, "action and lead only apply to spot events")
		case se.Request.Type != ec2.EventMaintenance && (se.Request.Code != "" || se.Request.Duration != 0 || se.Request.Description != ""):
			d.errorf(l, p, "code, description and duration only apply to maintenance events")
		default:
			if err := se.Request.Validate(); err != nil {
				d.errorf(l, p, "%s", ec2.ErrorMessage(err))
				return
			}
			out = append(out, se)
		}
	})
	return slices.Clip(out)
}
