package registry

import (
	"context"
	"net/netip"
	"slices"
	"sort"

	"github.com/imdsdev/imds/internal/ec2"
)

// SetDiscovered replaces every instance that the discovery source origin
// (ec2.OriginDocker) found with those of specs, which the source owns: they
// are derived and validated like stored ones but kept only in memory, since
// the source tells them again after a restart, and a stored copy could only
// go stale. It returns, by name, why a spec is not served (invalid, or an
// address or name that another instance holds); the others are served.
func (r *Registry) SetDiscovered(ctx context.Context, origin string, specs []*ec2.Instance) map[string]error {
	errs := map[string]error{}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	x := r.idx.Load()
	// The source's instances are replaced in a copy of the index, which
	// copies only the shards they are in.
	next := x.edit()
	for _, old := range r.discovered[origin] {
		if cur := next.get(old.Name); cur != nil && cur.Origin == origin {
			next.remove(old.Name)
		}
	}
	var kept []*ec2.Instance
	names := map[string]bool{}
	for _, spec := range specs {
		if err := ec2.CheckName(spec.Name); err != nil {
			errs[spec.Name] = err
			continue
		}
		inst, err := r.derive(spec)
		if err == nil {
			inst.Origin = origin
			err = r.serve(next, inst)
		}
		if err != nil {
			errs[spec.Name] = err
			continue
		}
		kept = append(kept, inst)
		names[inst.Name] = true
	}
	if err := r.publish(next.done()); err != nil {
		for _, inst := range kept {
			errs[inst.Name] = err
		}
		return errs
	}
	// A name that goes loses its events and faults: a new container of the
	// same name is a new instance.
	for _, old := range r.discovered[origin] {
		if !names[old.Name] {
			delete(r.overlays, old.Name)
		}
	}
	if r.discovered == nil {
		r.discovered = map[string][]*ec2.Instance{}
	}
	r.discovered[origin] = kept
	return errs
}

// boundToMAC returns inst, whose address addr is, only if the neighbour
// table says addr is at the MAC of inst's interface with that address: on
// a shared bridge another container can take an address (it has NET_RAW
// and may answer ARP for it), but not its MAC as the engine reported it.
// The table is read afresh, not from the cache: a cached entry would let a
// thief in for as long as it is kept.
func (r *Registry) boundToMAC(ctx context.Context, inst *ec2.Instance, addr netip.Addr) (*ec2.Instance, error) {
	want := macFor(inst, addr)
	if r.Neighbours == nil {
		return nil, r.unknown(addr, "address "+addr.String()+" belongs to "+inst.Name+", which must also match by MAC, and this server reads no neighbour table")
	}
	table, err := r.Neighbours(ctx)
	if err != nil {
		r.Logger.Warn("reading the neighbour table failed", "err", err)
		return nil, ec2.Errorf(ec2.EUNAVAILABLE, "the neighbour table cannot be read")
	}
	got, ok := table[addr]
	switch {
	case !ok:
		return nil, r.unknown(addr, "address "+addr.String()+" belongs to "+inst.Name+", but the neighbour table has no MAC for it (is imds on the containers' network?)")
	case got != want:
		return nil, r.unknown(addr, "address "+addr.String()+" belongs to "+inst.Name+" at MAC "+want+", but the request came from MAC "+got)
	}
	return inst, nil
}

// macFor is the MAC of inst's interface that has addr, or the primary one.
func macFor(inst *ec2.Instance, addr netip.Addr) string {
	s := addr.String()
	for _, ni := range inst.Interfaces {
		if slices.Contains(ni.PrivateIPv4s, s) || slices.Contains(ni.IPv6s, s) {
			return ni.MAC
		}
	}
	return inst.Primary().MAC
}

// ownedError refuses to change an instance that a discovery source owns.
func ownedError(inst *ec2.Instance, verb string) error {
	if inst.Origin == ec2.OriginDocker {
		return ec2.Errorf(ec2.EFORBIDDEN, "instance %q is a container the Docker engine reports, and the engine owns it: it cannot be %s here; it goes when its container stops, and changes with the container's imds.* labels", inst.Name, verb)
	}
	return ec2.Errorf(ec2.EFORBIDDEN, "instance %q comes from %s discovery, which owns it: it cannot be %s here", inst.Name, inst.Origin, verb)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
