package ec2

import (
	"context"
	"time"
)

// Spot interruption actions.
const (
	SpotTerminate = "terminate"
	SpotStop      = "stop"
	SpotHibernate = "hibernate"
)

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
	// Spot is the spot interruption notice; nil until one is issued.
	Spot *SpotNotice
	// Rebalance is the noticeTime of the rebalance recommendation; zero
	// until one is issued.
	Rebalance time.Time
	// Maintenance holds scheduled events (State active) and past ones
	// (completed or canceled), which events/maintenance/history shows.
	Maintenance []MaintenanceEvent
}

// SpotNotice is an issued spot interruption.
type SpotNotice struct {
	Action string    // terminate, stop or hibernate
	Time   time.Time // when the action happens
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
	// defaults to two minutes). The notice appears Lead before the action.
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

// EventService triggers events on instances.
type EventService interface {
	// TriggerEvent applies req to the named instance and returns its events
	// afterwards. Returns ENOTFOUND for an unknown instance (or maintenance
	// event) and EINVALID for a bad request.
	TriggerEvent(ctx context.Context, name string, req EventRequest) (Events, error)
}
