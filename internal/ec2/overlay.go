package ec2

import "context"

// Overlay is an instance's run-time state beyond its definition: the events
// issued to it, what they changed, and its faults. A store that implements
// OverlayStore keeps it apart from the instance's record, so that it
// survives a restart and every host sharing the store shows it, while a
// document written through the admin API never touches it.
type Overlay struct {
	// Events holds Spot, SpotScheduled, Rebalance and Maintenance;
	// AutoscalingState and SpotReplaced belong to EventService's answers
	// and are not kept.
	Events Events
	// AutoscalingState is the target lifecycle state an asg event set, ""
	// for the instance's own.
	AutoscalingState string
	// Spot tells that a spot notice made the instance a spot instance.
	Spot bool
	// Faults are the instance's own faults (or, under the name "", those of
	// every instance).
	Faults Faults
}

// Empty tells whether o holds nothing: a store deletes an empty overlay
// rather than keeping it.
func (o Overlay) Empty() bool {
	e := o.Events
	return e.Spot == nil && e.SpotScheduled == nil && e.Rebalance.IsZero() && len(e.Maintenance) == 0 &&
		o.AutoscalingState == "" && !o.Spot && !o.Faults.Active()
}

// OverlayStore keeps overlays by instance name; the name "" holds the
// faults set for every instance. An InstanceStore that implements it keeps
// events and faults across restarts (and, shared, across hosts).
type OverlayStore interface {
	// PutOverlay replaces the overlay of name; an empty one is deleted.
	PutOverlay(ctx context.Context, name string, o Overlay) error
	// UpdateOverlay applies change to the stored overlay of name (the zero
	// Overlay if none) and stores what it returns (deleting an empty one)
	// with no other write of that overlay in between, so that two hosts
	// issuing events to one instance at once lose neither. change may run
	// more than once (a store retries when another writer came first); an
	// error from it is returned as is, with nothing stored.
	UpdateOverlay(ctx context.Context, name string, change func(Overlay) (Overlay, error)) (Overlay, error)
	// FindOverlays returns every stored overlay by name.
	FindOverlays(ctx context.Context) (map[string]Overlay, error)
}

// SharedStore is implemented by a store several hosts share (etcd). It
// keeps the events and faults of the instances it stores only: those of a
// host's own instances (its config file's, the containers it found) and
// the faults of every instance stay in that host's memory.
type SharedStore interface {
	Shared() bool
}
