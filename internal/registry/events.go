package registry

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

var _ ec2.EventService = (*Registry)(nil)

// overlay is the run-time state an instance has beyond its definition:
// issued events and what they changed.
type overlay struct {
	events ec2.Events
	asg    string     // autoscaling target lifecycle state, "" for the defined one
	spot   bool       // a spot notice made the instance a spot instance
	faults ec2.Faults // the instance's own faults
}

// withEvents returns inst with its overlay applied (inst itself if none).
// The copy shares inst's slices: both are immutable once in the index, and
// the index may keep inst too (as the base of the next change). Index it
// through serve, never add alone: without its base, the next change of its
// overlay could not undo this one.
// r.mu is held.
func (r *Registry) withEvents(inst *ec2.Instance) *ec2.Instance {
	ov := r.overlays[inst.Name]
	if ov == nil {
		if !r.allFaults.Active() {
			return inst
		}
		c := *inst
		c.Faults = r.allFaults
		return &c
	}
	cc := *inst
	c := &cc
	c.Faults = mergeFaults(r.allFaults, ov.faults)
	c.Events = ov.events.Clone()
	if ov.asg != "" {
		c.AutoscalingState = ov.asg
	}
	c.Events.AutoscalingState = c.AutoscalingState
	if ov.spot {
		c.LifeCycle = "spot"
	}
	return c
}

func copyNotice(n *ec2.SpotNotice) *ec2.SpotNotice {
	if n == nil {
		return nil
	}
	c := *n
	return &c
}

// maintenanceDescriptions are EC2's descriptions per event code.
var maintenanceDescriptions = map[string]string{
	"instance-reboot":     "scheduled reboot",
	"system-reboot":       "scheduled reboot",
	"system-maintenance":  "scheduled maintenance",
	"instance-retirement": "scheduled retirement",
	"instance-stop":       "scheduled stop",
}

// Defaults of event requests.
const (
	DefaultSpotLead            = 2 * time.Minute
	DefaultMaintenanceIn       = time.Hour
	DefaultMaintenanceDuration = 20 * time.Minute
)

// TriggerEvent implements ec2.EventService. A spot notice whose notice
// time is in the future is kept as SpotScheduled and shown then; everything
// else applies at once. Times are fixed when an event is issued, so pollers
// never see them move.
func (r *Registry) TriggerEvent(ctx context.Context, name string, req ec2.EventRequest) (ec2.Events, error) {
	if err := req.Validate(); err != nil {
		return ec2.Events{}, err
	}
	now := r.Clock.Now().UTC().Truncate(time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.idx.Load().byName.get(name) == nil {
		return ec2.Events{}, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	var next *overlay
	var pending, replaced *ec2.SpotNotice // a spot notice to show later, and the one a new notice replaces
	if st := r.storeFor(name); st != nil {
		// From the stored events, which another host may have changed a
		// moment ago, in one update: neither host's event is lost.
		if _, err := st.UpdateOverlay(ctx, name, func(cur ec2.Overlay) (ec2.Overlay, error) {
			var err error
			next, pending, replaced, err = nextEvents(showDue(fromStored(cur), now), name, req, now)
			if err != nil {
				return ec2.Overlay{}, err
			}
			return next.stored(), nil
		}); err != nil {
			return ec2.Events{}, err
		}
	} else {
		ov := r.overlays[name]
		if ov == nil {
			ov = &overlay{}
		}
		var err error
		if next, pending, replaced, err = nextEvents(ov, name, req, now); err != nil {
			return ec2.Events{}, err
		}
	}
	if err := r.apply(ctx, name, next); err != nil {
		return ec2.Events{}, err
	}
	if pending != nil {
		r.Logger.Info("event scheduled", "instance", name, "type", req.Type, "appears", pending.Notice.Format(time.RFC3339))
	} else {
		r.Logger.Info("event issued", "instance", name, "type", req.Type)
	}
	inst := r.idx.Load().byName.get(name)
	ev := inst.Events.Clone()
	ev.AutoscalingState, ev.SpotReplaced = inst.AutoscalingState, replaced
	return ev, nil
}

// nextEvents returns ov with req applied at now (ov is not changed), the
// spot notice to show later if req scheduled one, and the notice a new one
// replaced.
func nextEvents(ov *overlay, name string, req ec2.EventRequest, now time.Time) (_ *overlay, pending, replaced *ec2.SpotNotice, _ error) {
	next := *ov
	next.events.Maintenance = slices.Clone(ov.events.Maintenance)
	switch req.Type {
	case ec2.EventSpot:
		action := req.Action
		if action == "" {
			action = ec2.SpotTerminate
		}
		lead := req.Lead
		if lead == 0 {
			lead = DefaultSpotLead
		}
		at := req.At.UTC().Truncate(time.Second)
		if at.IsZero() {
			at = now.Add(lead)
		} else if at.Before(now) {
			return nil, nil, nil, ec2.Errorf(ec2.EINVALID, "at: %s is in the past (the server's time is %s); give a later time, or a lead alone",
				at.Format(time.RFC3339), now.Format(time.RFC3339))
		}
		n := &ec2.SpotNotice{Action: action, Time: at, Notice: at.Add(-lead)}
		if n.Notice.Before(now) {
			// An action due sooner than the lead: the notice shows at once.
			n.Notice = now
		}
		// The new notice replaces the old one at once, shown or scheduled:
		// an instance never shows a notice its operator has replaced.
		replaced = copyNotice(cmp.Or(ov.events.SpotScheduled, ov.events.Spot))
		next.events.Spot, next.events.SpotScheduled = nil, nil
		if n.Notice.After(now) {
			next.events.SpotScheduled, pending = n, n
		} else {
			next.events.Spot = n
		}
		// A spot instance from the moment it is to be interrupted, as
		// instance-life-cycle says of it on EC2 all along.
		next.spot = true
	case ec2.EventRebalance:
		next.events.Rebalance = now
	case ec2.EventMaintenance:
		code := req.Code
		if code == "" {
			code = "system-reboot"
		}
		desc := req.Description
		if desc == "" {
			desc = maintenanceDescriptions[code]
		}
		nb := req.NotBefore.UTC().Truncate(time.Second)
		if nb.IsZero() {
			nb = now.Add(DefaultMaintenanceIn)
		}
		dur := req.Duration
		if dur == 0 {
			dur = DefaultMaintenanceDuration
		}
		var id [8]byte
		rand.Read(id[:])
		next.events.Maintenance = append(next.events.Maintenance, ec2.MaintenanceEvent{
			ID: "instance-event-0" + hex.EncodeToString(id[:]), Code: code, Description: desc,
			State: ec2.MaintenanceActive, NotBefore: nb, NotAfter: nb.Add(dur),
		})
	case ec2.EventMaintenanceComplete, ec2.EventMaintenanceCancel:
		i := slices.IndexFunc(next.events.Maintenance, func(e ec2.MaintenanceEvent) bool { return e.ID == req.EventID })
		if i < 0 {
			return nil, nil, nil, ec2.Errorf(ec2.ENOTFOUND, "instance %s has no maintenance event %q", name, req.EventID)
		}
		e := &next.events.Maintenance[i]
		if e.State != ec2.MaintenanceActive {
			return nil, nil, nil, ec2.Errorf(ec2.ECONFLICT, "maintenance event %s is already %s", e.ID, e.State)
		}
		if req.Type == ec2.EventMaintenanceComplete {
			e.State, e.Description = ec2.MaintenanceCompleted, "[Completed] "+e.Description
		} else {
			e.State, e.Description = ec2.MaintenanceCanceled, "[Canceled] "+e.Description
		}
	case ec2.EventAutoscaling:
		next.asg = req.State
	case ec2.EventClear:
		next = overlay{faults: ov.faults} // clear ends events, not faults
	}
	return &next, pending, replaced, nil
}

// serve adds inst, derived, to next with its overlay applied. r.mu is held.
func (r *Registry) serve(next *indexEdit, inst *ec2.Instance) error {
	return next.serve(inst, r.withEvents(inst), r.overlays[inst.Name] != nil)
}

// reserve applies the overlays again to the named instances (nil: every
// instance) from their bases in the index, and swaps the index: a change of
// one instance's overlay costs that instance, not a list of the store and
// a derivation of every instance. Names not served are skipped (their
// overlay applies if they are served later). r.mu is held.
func (r *Registry) reserve(names []string) error {
	x := r.idx.Load()
	if names == nil {
		names = make([]string, 0, x.len())
		x.byName.all(func(n string, _ *ec2.Instance) bool {
			names = append(names, n)
			return true
		})
	}
	next := x.edit()
	for _, name := range names {
		base := next.base(name)
		if base == nil {
			continue
		}
		next.remove(name)
		// Its addresses and MAC were its own a moment ago: no clash.
		if err := r.serve(next, base); err != nil {
			return err
		}
	}
	return r.publish(next.done())
}

// apply installs an overlay and shows it on its instance, and schedules
// its spot notice for later if it holds one not scheduled yet (issued
// here, or by another host and read from the store with this change).
// r.mu is held.
func (r *Registry) apply(_ context.Context, name string, ov *overlay) error {
	prev := r.overlays[name]
	if ov.stored().Empty() {
		delete(r.overlays, name)
	} else {
		r.overlays[name] = ov
	}
	if err := r.reserve([]string{name}); err != nil {
		if prev != nil {
			r.overlays[name] = prev
		} else {
			delete(r.overlays, name)
		}
		return err
	}
	if n := ov.events.SpotScheduled; n != nil && (prev == nil || !sameNotice(prev.events.SpotScheduled, n)) {
		r.schedule(name, n)
	}
	return nil
}

// schedule shows the scheduled spot notice n when the clock reaches its
// notice time, unless it was replaced or cleared meanwhile (the overlay then
// no longer holds n itself) or the registry is closed first.
func (r *Registry) schedule(name string, n *ec2.SpotNotice) {
	t := r.Clock.NewTimer(n.Notice.Sub(r.Clock.Now()))
	go func() {
		select {
		case <-r.done:
			t.Stop()
			return
		case <-t.C():
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		cur := r.overlays[name]
		switch {
		case cur != nil && sameNotice(cur.events.Spot, n):
			return // shown already: the store's copy was loaded since, with its own timer
		case cur == nil || !sameNotice(cur.events.SpotScheduled, n):
			r.Logger.Info("scheduled spot notice not shown: replaced or cleared since", "instance", name, "action", n.Action,
				"time", n.Time.Format(time.RFC3339))
			return
		}
		// Shown here only, not written: every host sharing the store shows it
		// at the same time from the same record (see showDue), so no two
		// hosts race to write one change.
		next := showDue(cur, n.Notice)
		if err := r.apply(context.Background(), name, next); err != nil {
			r.Logger.Warn("scheduled event not issued", "instance", name, "err", ec2.ErrorMessage(err))
			return
		}
		r.Logger.Info("scheduled event issued", "instance", name)
	}()
}

// sameNotice tells whether a and b are one notice.
func sameNotice(a, b *ec2.SpotNotice) bool {
	return a != nil && b != nil && a.Action == b.Action && a.Time.Equal(b.Time) && a.Notice.Equal(b.Notice)
}

// showDue returns ov with its scheduled spot notice shown if its notice
// time is at or before now (ov itself otherwise).
func showDue(ov *overlay, now time.Time) *overlay {
	n := ov.events.SpotScheduled
	if n == nil || n.Notice.After(now) {
		return ov
	}
	next := *ov
	next.events.Maintenance = slices.Clone(ov.events.Maintenance)
	next.events.Spot, next.events.SpotScheduled = n, nil
	return &next
}

// stored is ov in the store's form.
func (ov *overlay) stored() ec2.Overlay {
	return ec2.Overlay{Events: ec2.Events{Spot: ov.events.Spot, SpotScheduled: ov.events.SpotScheduled,
		Rebalance: ov.events.Rebalance, Maintenance: ov.events.Maintenance},
		AutoscalingState: ov.asg, Spot: ov.spot, Faults: ov.faults}
}

// fromStored is the overlay o stored.
func fromStored(o ec2.Overlay) *overlay {
	return &overlay{events: ec2.Events{Spot: copyNotice(o.Events.Spot), SpotScheduled: copyNotice(o.Events.SpotScheduled),
		Rebalance: o.Events.Rebalance, Maintenance: slices.Clone(o.Events.Maintenance)},
		asg: o.AutoscalingState, spot: o.Spot, faults: o.Faults}
}

// overlayStore is the registry's store as an ec2.OverlayStore, nil if it
// keeps no events and faults (they then live in memory only).
func (r *Registry) overlayStore() ec2.OverlayStore {
	st, _ := r.Store.(ec2.OverlayStore)
	return st
}

// storeFor returns the store that keeps the events and faults of name ("":
// the faults of every instance), nil if they live in this registry's
// memory only. A store only this server writes (bolt) keeps them all; one
// several hosts share (etcd) keeps only those of the instances it stores:
// the config file's instances, the containers found and the faults of
// every instance are each host's own, and another host's instance of the
// same name must not get their events. r.mu is held.
func (r *Registry) storeFor(name string) ec2.OverlayStore {
	st := r.overlayStore()
	if st == nil {
		return nil
	}
	if sh, ok := st.(ec2.SharedStore); !ok || !sh.Shared() {
		return st
	}
	if name == "" {
		return nil
	}
	if inst := r.idx.Load().byName.get(name); inst != nil && inst.Origin != ec2.OriginAPI {
		return nil
	}
	return st
}

// persist writes the overlay of name ("" for the faults of every instance)
// to the store that keeps it, before the registry shows it: a write the
// store refuses changes nothing. r.mu is held.
func (r *Registry) persist(ctx context.Context, name string, ov *overlay) error {
	if st := r.storeFor(name); st != nil {
		return st.PutOverlay(ctx, name, ov.stored())
	}
	return nil
}

// forget deletes the stored events and faults of a removed instance, so
// that an instance registered later under its name starts with none. r.mu
// is held.
func (r *Registry) forget(ctx context.Context, name string) error {
	if st := r.overlayStore(); st != nil {
		return st.PutOverlay(ctx, name, ec2.Overlay{})
	}
	return nil
}

// LoadOverlays reads the events and faults the store keeps and shows them,
// replacing those in memory: at start-up, after Load, and whenever another
// host sharing the store changed them (etcd.Follower). A scheduled spot
// notice whose time has come is shown, one still ahead is scheduled here
// too. On an error (the store did not answer) nothing changes. A store
// that keeps none (not an ec2.OverlayStore) makes it a no-op.
func (r *Registry) LoadOverlays(ctx context.Context) error {
	st := r.overlayStore()
	if st == nil {
		return nil
	}
	stored, err := st.FindOverlays(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.Clock.Now()
	overlays := make(map[string]*overlay, len(stored))
	// What lives in memory only stays as it is.
	for name, ov := range r.overlays {
		if r.storeFor(name) == nil {
			overlays[name] = ov
		}
	}
	all := r.allFaults
	if r.storeFor("") != nil {
		all = stored[""].Faults
	}
	var pending []string
	for name, o := range stored {
		if name == "" || r.storeFor(name) == nil {
			continue
		}
		ov := showDue(fromStored(o), now)
		if ov.events.SpotScheduled != nil {
			pending = append(pending, name)
		}
		overlays[name] = ov
	}
	prevOverlays, prevAll := r.overlays, r.allFaults
	// Only the instances whose overlay may have changed are shown again,
	// unless the faults of every instance changed.
	var changed []string
	if all == prevAll {
		changed = make([]string, 0, len(prevOverlays)+len(overlays))
		for name := range prevOverlays {
			changed = append(changed, name)
		}
		for name := range overlays {
			if _, ok := prevOverlays[name]; !ok {
				changed = append(changed, name)
			}
		}
	}
	r.overlays, r.allFaults = overlays, all
	if err := r.reserve(changed); err != nil {
		r.overlays, r.allFaults = prevOverlays, prevAll
		return err
	}
	for _, name := range pending {
		if prev := prevOverlays[name]; prev == nil || !sameNotice(prev.events.SpotScheduled, overlays[name].events.SpotScheduled) {
			r.schedule(name, overlays[name].events.SpotScheduled)
		}
	}
	return nil
}

// ApplyOverlays applies changes that another writer made to the stored
// events and faults (an etcd Follower hands them over): the overlay of
// each name changed, nil for one deleted. Unlike LoadOverlays, it reads
// nothing and costs the instances it touches. A scheduled spot notice
// whose time has come is shown, one still ahead is scheduled, as
// LoadOverlays does. Overlays the store does not keep for this host (its
// config file's instances, the containers it found, the faults of every
// instance on a shared store) are left as they are.
func (r *Registry) ApplyOverlays(ctx context.Context, changed map[string]*ec2.Overlay) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.Clock.Now()
	prevAll := r.allFaults
	prev := make(map[string]*overlay, len(changed))
	names := make([]string, 0, len(changed))
	for name, o := range changed {
		if r.storeFor(name) == nil {
			continue
		}
		if name == "" {
			if o == nil {
				r.allFaults = ec2.Faults{}
			} else {
				r.allFaults = o.Faults
			}
			continue
		}
		prev[name] = r.overlays[name]
		names = append(names, name)
		if o == nil || o.Empty() {
			delete(r.overlays, name)
			continue
		}
		r.overlays[name] = showDue(fromStored(*o), now)
	}
	if r.allFaults != prevAll {
		names = nil // every instance
	}
	if err := r.reserve(names); err != nil {
		r.allFaults = prevAll
		for name, ov := range prev {
			if ov == nil {
				delete(r.overlays, name)
			} else {
				r.overlays[name] = ov
			}
		}
		return err
	}
	for name, p := range prev {
		if ov := r.overlays[name]; ov != nil && ov.events.SpotScheduled != nil &&
			(p == nil || !sameNotice(p.events.SpotScheduled, ov.events.SpotScheduled)) {
			r.schedule(name, ov.events.SpotScheduled)
		}
	}
	return nil
}

// Close stops pending scheduled events.
func (r *Registry) Close() {
	r.closeOnce.Do(func() { close(r.done) })
}
