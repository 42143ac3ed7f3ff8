// Package registry is the set of instances one server serves: those declared
// in the config file and those registered at run time through the admin API
// (kept in an ec2.InstanceStore), indexed by name, source address and MAC.
//
// Lookups read an immutable index through an atomic pointer, so identifying
// a requester takes no lock and costs the same whatever the number of
// instances; a change builds a new index and swaps it in, and never blocks
// requests for other instances.
package registry

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

// Registry implements ec2.InstanceLocator for the metadata server and
// ec2.InstanceService for the admin API.
type Registry struct {
	// Store keeps instances registered at run time; nil refuses registration.
	Store ec2.InstanceStore
	// Derive makes derived values stable (machine seed).
	Derive ec2.DeriveOptions
	Logger *slog.Logger

	// Neighbours returns the kernel neighbour table (address → MAC); nil
	// disables matching by MAC.
	Neighbours func(ctx context.Context) (map[netip.Addr]string, error)

	// Clock tells the time (launch times, event times) and drives scheduled
	// events.
	Clock clock.Clock

	// Addresses, if set, gives an address to instances registered with a MAC
	// but no address (VMs whose address imds assigns over DHCP), and takes it
	// back when they are removed.
	Addresses AddressAllocator
	// OnChange, if set, is called with every instance after each change
	// (under the registry's lock: it must not call back into the registry).
	OnChange func([]*ec2.Instance)

	mu sync.Mutex // serialises changes
	// writeMu serialises the writers of specs, so that UpdateInstance's
	// read, change and write sees no other writer in between.
	writeMu sync.Mutex
	idx     atomic.Pointer[index]
	config  []*ec2.Instance
	// discovered are the instances each discovery source (by origin)
	// found, derived; see SetDiscovered.
	discovered map[string][]*ec2.Instance
	def        Default
	answering  bool                // the implicit default answered unknown requesters at the last change
	built      bool                // the index was built at least once
	overlays   map[string]*overlay // run-time events and faults per instance name
	allFaults  ec2.Faults          // faults of every instance
	done       chan struct{}
	closeOnce  sync.Once

	proxies     atomic.Pointer[proxyTrust] // see SetProxies
	neigh       atomic.Pointer[neighCache]
	neighMu     sync.Mutex
	unknownSeen sync.Map // netip.Addr → time.Time of the last log line
}

var (
	_ ec2.InstanceLocator = (*Registry)(nil)
	_ ec2.InstanceService = (*Registry)(nil)
)

// Default says who answers requesters that no instance matches.
type Default struct {
	// Name is the instance that answers them; empty: none does (404).
	Name string
	// Implicit marks the one instance of a configuration without
	// instances: (zero configuration, or instance:). It answers unmatched
	// requesters only while it is the only instance: once others are
	// registered, a requester that is none of them must not get its
	// metadata and credentials. An explicit default_instance always answers.
	Implicit bool
	// ZeroConfig marks the zero-configuration instance: no config file
	// declares instance: or instances:, so there is no file to change it in.
	ZeroConfig bool
}

// AddressAllocator assigns addresses by MAC (see internal/ipam).
type AddressAllocator interface {
	Allocate(mac, name string) (netip.Addr, error)
	Release(mac string) error
}

// index is an immutable view of every instance.
type index struct {
	byName map[string]*ec2.Instance // derived
	specs  map[string]*ec2.Instance // as registered (API instances only)
	byAddr map[netip.Addr]*ec2.Instance
	byMAC  map[string]*ec2.Instance
	def    *ec2.Instance
	// displaced names the implicit default while others keep it from
	// answering unmatched requesters.
	displaced string
	names     []string
}

type neighCache struct {
	at    time.Time
	table map[netip.Addr]string
}

// New returns an empty Registry.
func New(store ec2.InstanceStore, opt ec2.DeriveOptions) *Registry {
	r := &Registry{Store: store, Derive: opt, Logger: slog.New(slog.DiscardHandler), Clock: clock.Real{},
		overlays: map[string]*overlay{}, done: make(chan struct{})}
	r.idx.Store(&index{byName: map[string]*ec2.Instance{}, specs: map[string]*ec2.Instance{},
		byAddr: map[netip.Addr]*ec2.Instance{}, byMAC: map[string]*ec2.Instance{}})
	return r
}

// Load reads the stored instances. Call it once before serving, after
// SetConfig if there is a config.
func (r *Registry) Load(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rebuild(ctx)
}

// Reload reads the stored instances again and swaps in the index they
// make, for a store that other servers change (etcd): the caller is told of
// a change by the store, not by this registry's own writes. The index is
// replaced whole, so a request sees the instances before or after, never a
// mix; on an error (the store did not answer) the old index stays. Events
// and faults of instances no longer stored are dropped, as RemoveInstance
// drops them.
func (r *Registry) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.rebuild(ctx); err != nil {
		return err
	}
	x := r.idx.Load()
	for name := range r.overlays {
		if x.byName[name] == nil {
			delete(r.overlays, name)
		}
	}
	return nil
}

// SetConfig replaces the instances declared in the config file (already
// derived and validated) and who answers requesters no instance matches.
func (r *Registry) SetConfig(ctx context.Context, insts []*ec2.Instance, def Default) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, oldDef := r.config, r.def
	r.config, r.def = insts, def
	if err := r.rebuild(ctx); err != nil {
		r.config, r.def = old, oldDef
		return err
	}
	return nil
}

// rebuild makes a new index from the config and the store. r.mu is held.
func (r *Registry) rebuild(ctx context.Context) error {
	next := &index{byName: map[string]*ec2.Instance{}, specs: map[string]*ec2.Instance{},
		byAddr: map[netip.Addr]*ec2.Instance{}, byMAC: map[string]*ec2.Instance{}}
	for _, inst := range r.config {
		if err := next.add(r.withEvents(inst)); err != nil {
			return err
		}
	}
	if r.Store != nil {
		specs, err := r.Store.FindInstances(ctx)
		if err != nil {
			return err
		}
		for _, spec := range specs {
			inst, err := r.derive(spec)
			if err == nil {
				err = next.add(r.withEvents(inst))
			}
			if err != nil {
				// A stored instance that now clashes with the config file (or no
				// longer validates) is left out, loudly, rather than stopping the server.
				r.Logger.Warn("stored instance not served", "instance", spec.Name, "err", ec2.ErrorMessage(err))
				continue
			}
			next.specs[spec.Name] = spec
		}
	}
	for _, origin := range sortedKeys(r.discovered) {
		for _, inst := range r.discovered[origin] {
			if err := next.add(r.withEvents(inst)); err != nil {
				// The config file, reloaded, now claims what a source found:
				// the file wins until the source next reports.
				r.Logger.Warn("discovered instance not served", "instance", inst.Name, "origin", origin, "err", ec2.ErrorMessage(err))
			}
		}
	}
	if r.def.Name != "" {
		next.def = next.byName[r.def.Name]
		if next.def == nil {
			return ec2.Errorf(ec2.EINVALID, "default instance %q does not exist", r.def.Name)
		}
		if r.def.Implicit && len(next.names) > 1 {
			next.def, next.displaced = nil, r.def.Name
		}
	}
	sort.Strings(next.names)
	r.idx.Store(next)
	r.logDefault(next)
	if r.OnChange != nil {
		all := make([]*ec2.Instance, 0, len(next.names))
		for _, n := range next.names {
			all = append(all, next.byName[n])
		}
		r.OnChange(all)
	}
	return nil
}

// logDefault says when the implicit default stops or starts answering
// requesters that no instance matches. r.mu is held.
func (r *Registry) logDefault(next *index) {
	answering := next.def != nil && r.def.Implicit
	switch {
	case !r.def.Implicit:
	case r.answering && !answering:
		r.Logger.Info("requesters that match no instance now get 404: the default instance answers them only while it is the only instance (name it in default_instance to keep it answering)",
			"default", r.def.Name, "instances", len(next.names))
	case r.built && !r.answering && answering:
		r.Logger.Info("the default instance answers every requester again: it is the only instance", "default", r.def.Name)
	}
	r.answering, r.built = answering, true
}

// add puts a derived instance into the index, refusing clashes.
func (x *index) add(inst *ec2.Instance) error {
	if _, dup := x.byName[inst.Name]; dup {
		return ec2.Errorf(ec2.ECONFLICT, "an instance named %q already exists", inst.Name)
	}
	for _, a := range inst.SourceAddrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return ec2.Errorf(ec2.EINVALID, "source address %q is not an IP address", a)
		}
		if other := x.byAddr[ip.Unmap()]; other != nil {
			return ec2.Errorf(ec2.ECONFLICT, "address %s already belongs to instance %s", ip, other.Name)
		}
	}
	mac := inst.Primary().MAC
	if inst.MatchMAC {
		if other := x.byMAC[mac]; other != nil {
			return ec2.Errorf(ec2.ECONFLICT, "MAC %s already belongs to instance %s", mac, other.Name)
		}
	}
	x.byName[inst.Name] = inst
	x.names = append(x.names, inst.Name)
	for _, a := range inst.SourceAddrs {
		ip, _ := netip.ParseAddr(a)
		x.byAddr[ip.Unmap()] = inst
	}
	if inst.MatchMAC {
		x.byMAC[mac] = inst
	}
	return nil
}

// derive turns a stored spec into the instance it describes.
func (r *Registry) derive(spec *ec2.Instance) (*ec2.Instance, error) {
	inst := spec.Clone()
	ec2.Derive(inst, r.Derive)
	inst.Origin = ec2.OriginAPI
	if errs := inst.Validate(); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, ec2.Errorf(ec2.EINVALID, "instance %q: %s", spec.Name, strings.Join(msgs, "; "))
	}
	return inst, nil
}

// Header names of a trusted metadata proxy, as Nova's.
const (
	HeaderInstance  = "X-Instance-ID"
	HeaderSignature = "X-Instance-ID-Signature"
)

// Sign returns the signature a proxy sends for name: hex HMAC-SHA256.
func Sign(secret []byte, name string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))
}

// LocateInstance implements ec2.InstanceLocator: signed proxy headers from a
// trusted proxy first, then the source address, then the MAC, then the
// default instance.
func (r *Registry) LocateInstance(ctx context.Context, req ec2.Requester) (*ec2.Instance, error) {
	x := r.idx.Load()
	if req.ProxiedInstance != "" || req.ProxiedSignature != "" {
		if pt := r.trusted(req.Addr); pt != nil {
			if len(pt.secret) == 0 || !hmac.Equal([]byte(Sign(pt.secret, req.ProxiedInstance)), []byte(req.ProxiedSignature)) {
				return nil, ec2.Errorf(ec2.EFORBIDDEN, "identity headers from proxy %s are unsigned or badly signed", req.Addr)
			}
			if inst := x.byName[req.ProxiedInstance]; inst != nil {
				return inst, nil
			}
			return nil, r.unknown(req.Addr, "proxy "+req.Addr.String()+" named unknown instance "+req.ProxiedInstance)
		}
	}
	if inst := x.byAddr[req.Addr]; inst != nil {
		if inst.Origin == ec2.OriginDocker {
			return r.boundToMAC(ctx, inst, req.Addr)
		}
		return inst, nil
	}
	if len(x.byMAC) > 0 && r.Neighbours != nil {
		if mac := r.macOf(ctx, req.Addr); mac != "" {
			if inst := x.byMAC[mac]; inst != nil {
				return inst, nil
			}
		}
	}
	if x.def != nil {
		return x.def, nil
	}
	msg := "no instance has address " + req.Addr.String()
	if x.displaced != "" {
		msg += " (the default instance " + x.displaced + " answers only while it is the only instance)"
	}
	return nil, r.unknown(req.Addr, msg)
}

// proxyTrust is who may name the instance with signed identity headers.
type proxyTrust struct {
	trusted []netip.Prefix
	secret  []byte // keys the HMAC-SHA256 of X-Instance-ID
}

// SetProxies sets the proxies trusted to name the instance with the
// X-Instance-ID headers, and the secret their signatures are keyed with;
// safe while serving (a config reload calls it).
func (r *Registry) SetProxies(trusted []netip.Prefix, secret []byte) {
	r.proxies.Store(&proxyTrust{trusted: slices.Clone(trusted), secret: slices.Clone(secret)})
}

// trusted returns the proxy trust when a is a trusted proxy, else nil.
func (r *Registry) trusted(a netip.Addr) *proxyTrust {
	pt := r.proxies.Load()
	if pt == nil {
		return nil
	}
	for _, p := range pt.trusted {
		if p.Contains(a) {
			return pt
		}
	}
	return nil
}

// unknown logs an unknown requester at most once a minute per address.
func (r *Registry) unknown(a netip.Addr, msg string) error {
	now := r.Clock.Now()
	if last, ok := r.unknownSeen.Load(a); !ok || now.Sub(last.(time.Time)) > time.Minute {
		r.unknownSeen.Store(a, now)
		r.Logger.Warn("metadata request from an unknown requester", "addr", a.String(), "reason", msg)
	}
	return ec2.Errorf(ec2.ENOTFOUND, "%s", msg)
}

// macOf looks a requester up in the neighbour table, re-reading it at most
// once a second.
func (r *Registry) macOf(ctx context.Context, a netip.Addr) string {
	if c := r.neigh.Load(); c != nil {
		if mac, ok := c.table[a]; ok || r.Clock.Now().Sub(c.at) < time.Second {
			return mac
		}
	}
	r.neighMu.Lock()
	defer r.neighMu.Unlock()
	if c := r.neigh.Load(); c != nil && r.Clock.Now().Sub(c.at) < time.Second {
		return c.table[a]
	}
	table, err := r.Neighbours(ctx)
	if err != nil {
		r.Logger.Warn("reading the neighbour table failed", "err", err)
		return ""
	}
	r.neigh.Store(&neighCache{at: r.Clock.Now(), table: table})
	return table[a]
}

// ListInstances implements ec2.InstanceService.
func (r *Registry) ListInstances(context.Context) ([]*ec2.Instance, error) {
	x := r.idx.Load()
	out := make([]*ec2.Instance, 0, len(x.names))
	for _, n := range x.names {
		out = append(out, x.byName[n].Clone())
	}
	return out, nil
}

// CountByOrigin returns how many instances are served, by ec2.Instance
// Origin.
func (r *Registry) CountByOrigin() map[string]int {
	x := r.idx.Load()
	out := map[string]int{}
	for _, inst := range x.byName {
		out[inst.Origin]++
	}
	return out
}

// Has tells whether an instance of that name is served.
func (r *Registry) Has(name string) bool { return r.idx.Load().byName[name] != nil }

// GetInstance implements ec2.InstanceService.
func (r *Registry) GetInstance(_ context.Context, name string) (*ec2.Instance, error) {
	if inst := r.idx.Load().byName[name]; inst != nil {
		return inst.Clone(), nil
	}
	return nil, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
}

// GetInstanceSpec implements ec2.InstanceService. Config instances have no
// stored spec; their derived form is returned.
func (r *Registry) GetInstanceSpec(ctx context.Context, name string) (*ec2.Instance, error) {
	x := r.idx.Load()
	if spec := x.specs[name]; spec != nil {
		return spec.Clone(), nil
	}
	return r.GetInstance(ctx, name)
}

// AddInstance implements ec2.InstanceService.
func (r *Registry) AddInstance(ctx context.Context, spec *ec2.Instance) (*ec2.Instance, error) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	return r.put(ctx, spec, false)
}

// SetInstance implements ec2.InstanceService.
func (r *Registry) SetInstance(ctx context.Context, spec *ec2.Instance) (*ec2.Instance, error) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	return r.put(ctx, spec, true)
}

// UpdateInstance implements ec2.InstanceService: it applies u to the
// stored spec with no other writer in between.
func (r *Registry) UpdateInstance(ctx context.Context, name string, u ec2.InstanceUpdate) (*ec2.Instance, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	x := r.idx.Load()
	cur := x.byName[name]
	switch {
	case cur == nil:
		return nil, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	case cur.Origin == ec2.OriginConfig:
		r.mu.Lock()
		defer r.mu.Unlock()
		return nil, r.readOnly(name, "changed")
	case cur.Origin != ec2.OriginAPI:
		return nil, ownedError(cur, "changed")
	}
	spec := x.specs[name].Clone()
	u.Apply(spec)
	return r.put(ctx, spec, true)
}

func (r *Registry) put(ctx context.Context, spec *ec2.Instance, replace bool) (_ *ec2.Instance, err error) {
	if r.Store == nil {
		return nil, ec2.Errorf(ec2.EUNSUPPORTED, "this server has no store for instances registered at run time")
	}
	// Checked before derivation, which would name a nameless spec "default".
	if err := ec2.CheckName(spec.Name); err != nil {
		return nil, err
	}
	spec = spec.Clone()
	// Run-time state changes only through events and faults, not documents.
	spec.Origin, spec.Events, spec.Faults = "", ec2.Events{}, ec2.Faults{}
	if spec.PendingTime.IsZero() {
		// Registration is the launch: fixed now so the identity document stays stable.
		spec.PendingTime = r.Clock.Now().UTC().Truncate(time.Second)
	}
	if r.Addresses != nil && len(spec.SourceAddrs) == 0 && len(spec.Interfaces) > 0 && spec.Interfaces[0].MAC != "" {
		mac := strings.ToLower(spec.Interfaces[0].MAC)
		addr, aerr := r.Addresses.Allocate(mac, spec.Name)
		if aerr != nil {
			return nil, ec2.Errorf(ec2.ECONFLICT, "no address for %s: %v", spec.Name, aerr)
		}
		defer func() {
			if err != nil && !replace {
				r.Addresses.Release(mac) // not registered after all
			}
		}()
		spec.SourceAddrs = []string{addr.String()}
	}
	inst, err := r.derive(spec)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	x := r.idx.Load()
	cur := x.byName[spec.Name]
	switch {
	case !replace && cur != nil:
		return nil, ec2.Errorf(ec2.ECONFLICT, "an instance named %q already exists", spec.Name)
	case replace && cur == nil:
		return nil, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", spec.Name)
	case cur != nil && cur.Origin == ec2.OriginConfig:
		return nil, r.readOnly(spec.Name, "changed")
	case cur != nil && cur.Origin != ec2.OriginAPI:
		return nil, ownedError(cur, "changed")
	}
	// Check clashes against every other instance before touching the store.
	trial := &index{byName: map[string]*ec2.Instance{}, byAddr: map[netip.Addr]*ec2.Instance{}, byMAC: map[string]*ec2.Instance{}}
	for _, n := range x.names {
		if n != spec.Name {
			trial.add(x.byName[n])
		}
	}
	if err := trial.add(inst); err != nil {
		return nil, err
	}
	if replace {
		err = r.Store.UpdateInstance(ctx, spec)
	} else {
		err = r.Store.CreateInstance(ctx, spec)
	}
	if err != nil {
		return nil, err
	}
	if err := r.rebuild(ctx); err != nil {
		return nil, err
	}
	verb := "registered"
	if replace {
		verb = "updated"
	}
	r.Logger.Info("instance "+verb, "instance", inst.Name, "instance_id", inst.ID, "addresses", strings.Join(inst.SourceAddrs, ","))
	return inst.Clone(), nil
}

// RemoveInstance implements ec2.InstanceService.
func (r *Registry) RemoveInstance(ctx context.Context, name string) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.idx.Load().byName[name]
	switch {
	case cur == nil:
		return ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	case cur.Origin == ec2.OriginConfig:
		return r.readOnly(name, "removed")
	case cur.Origin != ec2.OriginAPI:
		return ownedError(cur, "removed")
	}
	// Its events and faults first: left behind, they would come back with
	// the next instance of that name.
	if err := r.forget(ctx, name); err != nil {
		return err
	}
	if err := r.Store.DeleteInstance(ctx, name); err != nil {
		return err
	}
	delete(r.overlays, name)
	if r.Addresses != nil && cur.Primary().MAC != "" {
		// Frees the address; the allocator remembers it for this MAC.
		if err := r.Addresses.Release(cur.Primary().MAC); err != nil {
			r.Logger.Warn("releasing the address failed", "instance", name, "err", err)
		}
	}
	if err := r.rebuild(ctx); err != nil {
		return err
	}
	r.Logger.Info("instance removed", "instance", name)
	return nil
}

// String describes the registry for logs.
func (r *Registry) String() string {
	x := r.idx.Load()
	return fmt.Sprintf("registry(%d instances, default %q)", len(x.names), r.def.Name)
}

// readOnly is the EFORBIDDEN error for changing or removing an instance of
// the configuration, saying where it comes from: a config file, or none
// (the zero-configuration instance). r.mu is held.
func (r *Registry) readOnly(name, verb string) error {
	if r.def.ZeroConfig && r.def.Name == name {
		return ec2.Errorf(ec2.EFORBIDDEN, "instance %q is the zero-configuration instance (no config file declares instances); it cannot be %s at run time: "+
			"register others with imds instance add, or declare instances in a config file (imds serve --config FILE)", name, verb)
	}
	if verb == "removed" {
		return ec2.Errorf(ec2.EFORBIDDEN, "instance %q is declared in the config file; remove it there", name)
	}
	return ec2.Errorf(ec2.EFORBIDDEN, "instance %q is declared in the config file; change it there", name)
}
