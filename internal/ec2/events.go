package ec2

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Event types of an EventRequest: the one vocabulary of the admin API, the
// config file's schedule, the registry and the CLI.
const (
	EventSpot                = "spot"
	EventRebalance           = "rebalance"
	EventMaintenance         = "maintenance"
	EventMaintenanceComplete = "maintenance-complete"
	EventMaintenanceCancel   = "maintenance-cancel"
	EventAutoscaling         = "asg"
	EventClear               = "clear"
)

// EventTypes are the event types, in the order of messages.
var EventTypes = []string{EventSpot, EventRebalance, EventMaintenance, EventMaintenanceComplete,
	EventMaintenanceCancel, EventAutoscaling, EventClear}

// Spot interruption actions.
const (
	SpotTerminate = "terminate"
	SpotStop      = "stop"
	SpotHibernate = "hibernate"
)

// SpotActions are the actions of a spot interruption.
var SpotActions = []string{SpotTerminate, SpotStop, SpotHibernate}

// EventFields are the fields each event type takes besides the type, by
// the names of the admin API body (at, not_before, ...).
var EventFields = map[string][]string{
	EventSpot:                {"action", "at", "lead"},
	EventRebalance:           {},
	EventMaintenance:         {"code", "description", "not_before", "duration"},
	EventMaintenanceComplete: {"event_id"},
	EventMaintenanceCancel:   {"event_id"},
	EventAutoscaling:         {"state"},
	EventClear:               {},
}

// eventFieldOrder is every field but the type, in the order of messages.
var eventFieldOrder = []string{"action", "at", "lead", "code", "description", "not_before", "duration", "event_id", "state"}

// Maintenance event codes and states, as EC2 names them.
var (
	MaintenanceCodes = []string{"instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop"}
)

// Maintenance event states.
const (
	MaintenanceActive    = "active"
	MaintenanceCompleted = "completed"
	MaintenanceCanceled  = "canceled"
)

// Events is the simulated life of an instance: what spot/,
// events/recommendations/ and events/maintenance/ show. Times are fixed when
// an event is issued, so they do not move between polls.
type Events struct {
	// Spot is the spot interruption notice the instance shows at
	// spot/instance-action; nil until one is issued and its notice time has
	// come.
	Spot *SpotNotice
	// SpotScheduled is a notice issued for later. As on EC2, the instance
	// sees nothing of it (spot/ answers 404) until its Notice time, when it
	// becomes Spot. A new spot notice replaces both.
	SpotScheduled *SpotNotice
	// Rebalance is the noticeTime of the rebalance recommendation; zero
	// until one is issued.
	Rebalance time.Time
	// Maintenance holds scheduled events (State active) and past ones
	// (completed or canceled), which events/maintenance/history shows.
	Maintenance []MaintenanceEvent
	// AutoscalingState is what autoscaling/target-lifecycle-state shows
	// ("" for nothing): the state an asg event set, else the instance's
	// own. EventService fills it in its answer, so that the event output
	// shows it; on an Instance, Instance.AutoscalingState is the one to read.
	AutoscalingState string
	// SpotReplaced is, in EventService's answer to a spot request, the
	// notice (shown or scheduled) that the new one replaced; nil otherwise.
	SpotReplaced *SpotNotice
}

// Clone returns a deep copy of e: a caller may change it (or what its
// notices point at) without racing readers of e.
func (e Events) Clone() Events {
	e.Spot, e.SpotScheduled, e.SpotReplaced = clonePtr(e.Spot), clonePtr(e.SpotScheduled), clonePtr(e.SpotReplaced)
	e.Maintenance = slices.Clone(e.Maintenance)
	return e
}

// clonePtr returns a pointer to a copy of *p, nil for nil.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// SpotNotice is an issued spot interruption.
type SpotNotice struct {
	Action string    // terminate, stop or hibernate
	Time   time.Time // when the action happens
	// Notice is when spot/instance-action starts to show it: Time minus
	// the lead.
	Notice time.Time
}

// Paths are the metadata paths that show the notice: spot/instance-action,
// and spot/termination-time too for a termination.
func (n SpotNotice) Paths() []string {
	if n.Action == SpotTerminate {
		return []string{"spot/instance-action", "spot/termination-time"}
	}
	return []string{"spot/instance-action"}
}

// MaintenanceEvent is one scheduled maintenance event.
type MaintenanceEvent struct {
	ID          string // instance-event-0123456789abcdef0
	Code        string
	Description string
	State       string
	NotBefore   time.Time
	NotAfter    time.Time
}

// EventRequest asks for an event on an instance, through the admin API or
// the config file's schedule.
type EventRequest struct {
	// Type is spot, rebalance, maintenance, maintenance-complete,
	// maintenance-cancel, asg or clear.
	Type string
	// Spot: Action, and when the action happens (At, or now + Lead; Lead
	// defaults to two minutes). The notice appears Lead before the action,
	// and replaces any earlier one at once. At must not be in the past.
	Action string
	At     time.Time
	Lead   time.Duration
	// Maintenance: Code, Description, NotBefore (default now + 1h) and
	// Duration (default 20 minutes); EventID for complete and cancel.
	Code        string
	Description string
	NotBefore   time.Time
	Duration    time.Duration
	EventID     string
	// Asg: the new target lifecycle state.
	State string
}

// given returns the fields of r that are set, by EventFields name.
func (r EventRequest) given() map[string]bool {
	return map[string]bool{
		"action": r.Action != "", "at": !r.At.IsZero(), "lead": r.Lead != 0, "code": r.Code != "",
		"description": r.Description != "", "not_before": !r.NotBefore.IsZero(), "duration": r.Duration != 0,
		"event_id": r.EventID != "", "state": r.State != "",
	}
}

// Validate checks r on its own (whether the instance or the maintenance
// event exists is the registry's to say). Returns EINVALID naming the
// field, by its admin API name.
func (r EventRequest) Validate() error {
	if r.Type == "" {
		return Errorf(EINVALID, "type: required, one of %s", strings.Join(EventTypes, ", "))
	}
	allowed, ok := EventFields[r.Type]
	if !ok {
		return Errorf(EINVALID, "type: must be one of %s, got %q", strings.Join(EventTypes, ", "), r.Type)
	}
	given := r.given()
	for _, f := range eventFieldOrder {
		if given[f] && !slices.Contains(allowed, f) {
			if len(allowed) == 0 {
				return Errorf(EINVALID, "%s: not used by type %s, which takes no other field", f, r.Type)
			}
			return Errorf(EINVALID, "%s: not used by type %s (its fields: %s)", f, r.Type, strings.Join(allowed, ", "))
		}
	}
	switch {
	case r.Action != "" && !slices.Contains(SpotActions, r.Action):
		return Errorf(EINVALID, "action: must be one of %s, got %q", strings.Join(SpotActions, ", "), r.Action)
	case r.Code != "" && !slices.Contains(MaintenanceCodes, r.Code):
		return Errorf(EINVALID, "code: must be one of %s, got %q", strings.Join(MaintenanceCodes, ", "), r.Code)
	case r.Type == EventAutoscaling && r.State == "":
		return Errorf(EINVALID, "state: required for type asg, one of %s", strings.Join(AutoscalingStates, ", "))
	case r.State != "" && !slices.Contains(AutoscalingStates, r.State):
		return Errorf(EINVALID, "state: must be one of %s, got %q", strings.Join(AutoscalingStates, ", "), r.State)
	case (r.Type == EventMaintenanceComplete || r.Type == EventMaintenanceCancel) && r.EventID == "":
		return Errorf(EINVALID, "event_id: required for type %s", r.Type)
	case r.Lead < 0:
		return Errorf(EINVALID, "lead: must not be negative, got %s", r.Lead)
	case r.Duration < 0:
		return Errorf(EINVALID, "duration: must not be negative, got %s", r.Duration)
	}
	return nil
}

// EventService triggers events on instances.
type EventService interface {
	// TriggerEvent applies req to the named instance and returns its events
	// afterwards. Returns ENOTFOUND for an unknown instance (or maintenance
	// event) and EINVALID for a bad request.
	TriggerEvent(ctx context.Context, name string, req EventRequest) (Events, error)
}
