package registry

import (
	"context"

	"github.com/imdsdev/imds/internal/ec2"
)

var _ ec2.FaultService = (*Registry)(nil)

// mergeFaults lays an instance's own faults over those set for every
// instance: each fault the instance sets wins.
func mergeFaults(all, own ec2.Faults) ec2.Faults {
	f := all
	if own.Latency != 0 || own.LatencyMax != 0 {
		f.Latency, f.LatencyMax = own.Latency, own.LatencyMax
	}
	if own.ErrorRate != 0 {
		f.ErrorRate, f.ErrorStatus = own.ErrorRate, own.ErrorStatus
	}
	if own.RateLimit != 0 {
		f.RateLimit, f.Burst = own.RateLimit, own.Burst
	}
	if own.Token != "" {
		f.Token = own.Token
	}
	if own.ExpiredCredentials {
		f.ExpiredCredentials = true
	}
	if own.DropRate != 0 {
		f.DropRate = own.DropRate
	}
	return f
}

// SetFaults implements ec2.FaultService.
func (r *Registry) SetFaults(ctx context.Context, name string, f ec2.Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "" {
		if err := r.persist(ctx, "", &overlay{faults: f}); err != nil {
			return err
		}
		prev := r.allFaults
		r.allFaults = f
		// Every instance changes, but from its base in the index: no
		// list of the store, no derivation.
		if err := r.reserve(nil); err != nil {
			r.allFaults = prev
			return err
		}
		r.Logger.Info("faults set for every instance", "faults", f.String())
		return nil
	}
	if r.idx.Load().byName.get(name) == nil {
		return ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	next := &overlay{}
	if ov := r.overlays[name]; ov != nil {
		c := *ov
		next = &c
	}
	if st := r.storeFor(name); st != nil {
		// The faults alone change: the events are the store's, which
		// another host may have changed a moment ago.
		stored, err := st.UpdateOverlay(ctx, name, func(cur ec2.Overlay) (ec2.Overlay, error) {
			cur.Faults = f
			return cur, nil
		})
		if err != nil {
			return err
		}
		next = showDue(fromStored(stored), r.Clock.Now())
	}
	next.faults = f
	if err := r.apply(ctx, name, next); err != nil {
		return err
	}
	r.Logger.Info("faults set", "instance", name, "faults", f.String())
	return nil
}

// GetFaults implements ec2.FaultService: the faults set for the instance
// itself (use GetInstance for what applies after merging).
func (r *Registry) GetFaults(_ context.Context, name string) (ec2.Faults, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "" {
		return r.allFaults, nil
	}
	if r.idx.Load().byName.get(name) == nil {
		return ec2.Faults{}, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	if ov := r.overlays[name]; ov != nil {
		return ov.faults, nil
	}
	return ec2.Faults{}, nil
}
