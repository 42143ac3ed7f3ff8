// Package registry is the set of instances one server serves: those declared
// in the config file and those registered at run time through the admin API
// (kept in an ec2.InstanceStore), indexed by name, source address and MAC.
//
// Lookups read an immutable index through an atomic pointer, so identifying
// a requester takes no lock and costs the same whatever the number of
// instances. A change makes the next index from the last, copying only the
// shards it touches (see index.go), and swaps it in: an add or a remove
// costs the same at 100 or 100,000 instances, and never blocks requests.
// So does an event or a fault on one instance: the index keeps the
// instance as defined beside the one it serves, and re-applies the
// instance's overlay to it alone. Only Load, Reload and SetConfig build
// the index whole.
package registry

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"net/netip"
	"runtime"
	"slices"
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

	// Host is this server's host name (store.etcd.host, or the machine's
	// host name): an instance pinned to another host (ec2.Instance.Host) is
	// listed and may be changed here, but no request here finds it, and
	// its addresses stay free for this host's own instances. Set it before
	// SetConfig and Load, which build the index with it.
	Host string

	// Clock tells the time (launch times, event times) and drives scheduled
	// events.
	Clock clock.Clock

	// Addresses, if set, gives an address to instances registered with a MAC
	// but no address (VMs whose address imds assigns over DHCP), and takes it
	// back when they are removed.
	Addresses AddressAllocator
	// OnChange, if set, is called after each change (under the registry's
	// lock: it must not call back into the registry) with a function that
	// returns every instance of the new version, sorted by name. The call
	// itself costs nothing; all may be called later, from another goroutine,
	// and costs O(n) only then, so a follower that coalesces changes (vmnet)
	// pays once for many.
	OnChange func(all func() []*ec2.Instance)

	mu sync.Mutex // serialises changes
	// writeMu serialises the writers of specs, so that UpdateInstance's
	// read, change and write sees no other writer in between.
	writeMu sync.Mutex
	idx     atomic.Pointer[index]
	seed    maphash.Seed // of the index's shards
	config  []*ec2.Instance
	// discovered are the instances each discovery source (by origin)
	// found, derived; see SetDiscovered.
	discovered map[string][]*ec2.Instance
	def        Default
	answering  bool                // the implicit default answered unknown requesters at the last change
	built      bool                // the index was built at least once
	loaded     bool                // Load, Reload or a write ran: rebuilds read the store
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

type neighCache struct {
	at    time.Time
	table map[netip.Addr]string
}

// New returns an empty Registry.
func New(store ec2.InstanceStore, opt ec2.DeriveOptions) *Registry {
	r := &Registry{Store: store, Derive: opt, Logger: slog.New(slog.DiscardHandler), Clock: clock.Real{},
		overlays: map[string]*overlay{}, done: make(chan struct{}), seed: maphash.MakeSeed()}
	r.idx.Store(emptyIndex(r.seed, ""))
	return r
}

// Load reads the stored instances. Call it once before serving, after
// SetConfig if there is a config.
func (r *Registry) Load(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loaded = true
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
	r.loaded = true
	if err := r.rebuild(ctx); err != nil {
		return err
	}
	x := r.idx.Load()
	for name := range r.overlays {
		if x.byName.get(name) == nil {
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

// rebuild makes a new index from the config and the store (once loaded:
// SetConfig and LoadOverlays before Load read no store, which Load reads
// right after).
// r.mu is held.
func (r *Registry) rebuild(ctx context.Context) error {
	next := emptyIndex(r.seed, r.Host).edit()
	for _, inst := range r.config {
		if err := r.serve(next, inst); err != nil {
			return err
		}
	}
	if r.Store != nil && r.loaded {
		specs, err := r.Store.FindInstances(ctx)
		if err != nil {
			return err
		}
		// The list is ours: derived in place, with no copy of each spec.
		insts, errs := r.deriveAll(specs, true)
		for i, spec := range specs {
			err := errs[i]
			if err == nil {
				err = r.serve(next, insts[i])
			}
			if err != nil {
				// A stored instance that now clashes with the config file (or no
				// longer validates) is left out, loudly, rather than stopping the server.
				r.Logger.Warn("stored instance not served", "instance", spec.Name, "err", ec2.ErrorMessage(err))
				continue
			}
		}
	}
	for _, origin := range sortedKeys(r.discovered) {
		for _, inst := range r.discovered[origin] {
			if err := r.serve(next, inst); err != nil {
				// The config file, reloaded, now claims what a source found:
				// the file wins until the source next reports.
				r.Logger.Warn("discovered instance not served", "instance", inst.Name, "origin", origin, "err", ec2.ErrorMessage(err))
			}
		}
	}
	return r.publish(next.done())
}

// publish resolves the default instance of next and swaps next in, telling
// OnChange. r.mu is held.
func (r *Registry) publish(next *index) error {
	if r.def.Name != "" {
		next.def = next.byName.get(r.def.Name)
		if next.def == nil {
			return ec2.Errorf(ec2.EINVALID, "default instance %q does not exist", r.def.Name)
		}
		if next.elsewhere(next.def) {
			next.def = nil // another host's: it answers no requester here
		}
		if r.def.Implicit && next.len() > 1 {
			next.def, next.displaced = nil, r.def.Name
		}
	}
	next.faults = r.allFaults
	r.idx.Store(next)
	r.logDefault(next)
	if r.OnChange != nil {
		r.OnChange(next.instances)
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
			"default", r.def.Name, "instances", next.len())
	case r.built && !r.answering && answering:
		r.Logger.Info("the default instance answers every requester again: it is the only instance", "default", r.def.Name)
	}
	r.answering, r.built = answering, true
}

// deriveAll derives specs on every core: at start-up with 100,000 stored
// instances, deriving and validating is most of the work. errs[i] is the
// error of specs[i]. With owned, specs are the caller's to give away and
// are derived in place: at start-up, a copy of each was as much memory
// again, freed too late to be given back to the system.
func (r *Registry) deriveAll(specs []*ec2.Instance, owned bool) (insts []*ec2.Instance, errs []error) {
	insts, errs = make([]*ec2.Instance, len(specs)), make([]error, len(specs))
	workers := min(runtime.GOMAXPROCS(0), len(specs)/1000+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(specs); i += workers {
				if owned {
					insts[i], errs[i] = r.deriveInPlace(specs[i])
				} else {
					insts[i], errs[i] = r.derive(specs[i])
				}
			}
		})
	}
	wg.Wait()
	return insts, errs
}

// derive turns a stored spec into the instance it describes.
func (r *Registry) derive(spec *ec2.Instance) (*ec2.Instance, error) {
	return r.deriveInPlace(spec.Clone())
}

// deriveInPlace derives inst itself.
func (r *Registry) deriveInPlace(inst *ec2.Instance) (*ec2.Instance, error) {
	name := inst.Name
	ec2.Derive(inst, r.Derive)
	inst.Origin = ec2.OriginAPI
	if errs := inst.Validate(); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, ec2.Errorf(ec2.EINVALID, "instance %q: %s", name, strings.Join(msgs, "; "))
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
			if inst := x.byName.get(req.ProxiedInstance); inst != nil && !x.elsewhere(inst) {
				return inst, nil
			}
			return nil, r.unknown(req.Addr, "proxy "+req.Addr.String()+" named unknown instance "+req.ProxiedInstance)
		}
	}
	if inst := x.byAddr.get(req.Addr); inst != nil {
		if inst.Origin == ec2.OriginDocker {
			return r.boundToMAC(ctx, inst, req.Addr)
		}
		return inst, nil
	}
	if x.byMAC.len() > 0 && r.Neighbours != nil {
		if mac := r.macOf(ctx, req.Addr); mac != "" {
			if inst := x.byMAC.get(mac); inst != nil {
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
	list := r.idx.Load().instances()
	for i, inst := range list {
		list[i] = inst.Clone()
	}
	return list, nil
}

// ListInstancesPage implements ec2.InstancePager: up to limit instances
// whose names sort after after, and whether more follow. Pages of one
// list come from the index of the moment each is asked for: an instance
// added or removed meanwhile is seen or not, but none is listed twice.
func (r *Registry) ListInstancesPage(_ context.Context, after string, limit int) ([]*ec2.Instance, bool, error) {
	if limit <= 0 {
		return nil, false, ec2.Errorf(ec2.EINVALID, "the page size must be at least 1, got %d", limit)
	}
	x := r.idx.Load()
	names := x.after(after, limit+1)
	more := len(names) > limit
	names = names[:min(len(names), limit)]
	out := make([]*ec2.Instance, len(names))
	for i, n := range names {
		out[i] = x.byName.get(n).Clone()
	}
	return out, more, nil
}

// CountByOrigin returns how many instances are served, by ec2.Instance
// Origin.
func (r *Registry) CountByOrigin() map[string]int {
	return maps.Clone(r.idx.Load().counts)
}

var _ ec2.PinCounter = (*Registry)(nil)

// CountPins implements ec2.PinCounter over every instance listed (those
// pinned to other hosts too). It reads the whole index: it is for
// imds host list, not for requests.
func (r *Registry) CountPins() ec2.Pins {
	p := ec2.Pins{ByHost: map[string]int{}}
	// In no order: the names need no sorting to be counted.
	r.idx.Load().byName.all(func(_ string, inst *ec2.Instance) bool {
		if inst.Host == "" {
			p.Unpinned++
		} else {
			p.ByHost[inst.Host]++
		}
		return true
	})
	return p
}

// Each calls f with every instance served, in name order, until f returns
// false: the registry's own immutable values, not copies, so that a caller
// that only reads (status pages, counts) costs no copy of 100,000
// instances. f must not modify them.
func (r *Registry) Each(f func(*ec2.Instance) bool) {
	x := r.idx.Load()
	for _, n := range x.names() {
		if !f(x.byName.get(n)) {
			return
		}
	}
}

// Len is the number of instances served.
func (r *Registry) Len() int { return r.idx.Load().len() }

// Has tells whether an instance of that name is served.
func (r *Registry) Has(name string) bool { return r.idx.Load().byName.get(name) != nil }

// GetInstance implements ec2.InstanceService.
func (r *Registry) GetInstance(_ context.Context, name string) (*ec2.Instance, error) {
	if inst := r.idx.Load().byName.get(name); inst != nil {
		return inst.Clone(), nil
	}
	return nil, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
}

// GetInstanceSpec implements ec2.InstanceService. The spec of a registered
// instance is read from the store (the index keeps only the derived
// instance: at 100,000 instances, keeping both doubled the memory);
// config instances have no stored spec, and their derived form is returned.
func (r *Registry) GetInstanceSpec(ctx context.Context, name string) (*ec2.Instance, error) {
	if inst := r.idx.Load().byName.get(name); inst != nil && inst.Origin == ec2.OriginAPI && r.Store != nil {
		return r.Store.FindInstanceByName(ctx, name)
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
	cur := x.byName.get(name)
	switch {
	case cur == nil:
		return nil, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	case cur.Origin != ec2.OriginAPI:
		r.mu.Lock()
		defer r.mu.Unlock()
		return nil, r.notOurs(cur, "changed")
	}
	spec, err := r.Store.FindInstanceByName(ctx, name)
	if err != nil {
		return nil, err
	}
	u.Apply(spec)
	return r.put(ctx, spec, true)
}

func (r *Registry) put(ctx context.Context, spec *ec2.Instance, replace bool) (_ *ec2.Instance, err error) {
	if r.Store == nil {
		return nil, ec2.Errorf(ec2.EUNSUPPORTED, "this server has no store for instances registered at run time")
	}
	spec, err = r.prepare(spec, r.Clock.Now())
	if err != nil {
		return nil, err
	}
	mac, err := r.allocate(spec)
	if err != nil {
		return nil, err
	}
	if mac != "" {
		defer func() {
			if err != nil && !replace {
				r.Addresses.Release(mac) // not registered after all
			}
		}()
	}
	inst, err := r.derive(spec)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loaded = true // the store is written to: later rebuilds must read it
	x := r.idx.Load()
	cur := x.byName.get(spec.Name)
	switch {
	case !replace && cur != nil:
		return nil, ec2.Errorf(ec2.ECONFLICT, "an instance named %q already exists", spec.Name)
	case replace && cur == nil:
		return nil, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", spec.Name)
	case cur != nil && cur.Origin != ec2.OriginAPI:
		return nil, r.notOurs(cur, "changed")
	}
	// Clashes with every other instance are checked before touching the
	// store; the edit copies only the shards it touches.
	next := x.edit()
	next.remove(spec.Name)
	if err := r.serve(next, inst); err != nil {
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
	if err := r.publish(next.done()); err != nil {
		return nil, err
	}
	verb := "registered"
	if replace {
		verb = "updated"
	}
	attrs := []any{"instance", inst.Name, "instance_id", inst.ID, "addresses", strings.Join(inst.SourceAddrs, ",")}
	if inst.Host != "" {
		attrs = append(attrs, "host", inst.Host)
	}
	r.Logger.Info("instance "+verb, attrs...)
	return inst.Clone(), nil
}

// RemoveInstance implements ec2.InstanceService.
func (r *Registry) RemoveInstance(ctx context.Context, name string) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loaded = true
	x := r.idx.Load()
	cur := x.byName.get(name)
	switch {
	case cur == nil:
		return ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	case cur.Origin != ec2.OriginAPI:
		return r.notOurs(cur, "removed")
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
	next := x.edit()
	next.remove(name)
	if err := r.publish(next.done()); err != nil {
		return err
	}
	r.Logger.Info("instance removed", "instance", name)
	return nil
}

// String describes the registry for logs.
func (r *Registry) String() string {
	x := r.idx.Load()
	return fmt.Sprintf("registry(%d instances, default %q)", x.len(), r.def.Name)
}

// prepare checks spec's name and returns the copy of it that is stored:
// without run-time state (that changes only through events and faults, not
// documents), and launched at now unless it says when.
func (r *Registry) prepare(spec *ec2.Instance, now time.Time) (*ec2.Instance, error) {
	// Checked before derivation, which would name a nameless spec "default".
	if err := ec2.CheckName(spec.Name); err != nil {
		return nil, err
	}
	spec = spec.Clone()
	spec.Origin, spec.Events, spec.Faults = "", ec2.Events{}, ec2.Faults{}
	if spec.PendingTime.IsZero() {
		// Registration is the launch: fixed now so the identity document stays stable.
		spec.PendingTime = now.UTC().Truncate(time.Second)
	}
	return spec, nil
}

// allocate gives spec an address from the VM network when it has a MAC
// but no address, and returns the MAC it allocated for ("" if none), for
// the caller to release should the registration fail.
func (r *Registry) allocate(spec *ec2.Instance) (string, error) {
	if r.Addresses == nil || len(spec.SourceAddrs) > 0 || len(spec.Interfaces) == 0 || spec.Interfaces[0].MAC == "" {
		return "", nil
	}
	mac := strings.ToLower(spec.Interfaces[0].MAC)
	addr, err := r.Addresses.Allocate(mac, spec.Name)
	if err != nil {
		return "", ec2.Errorf(ec2.ECONFLICT, "no address for %s: %v", spec.Name, err)
	}
	spec.SourceAddrs = []string{addr.String()}
	return mac, nil
}

// notOurs is the EFORBIDDEN error for a change (verb) to cur that the API
// does not own: the config file's, or a discovery source's; nil for a
// registered instance. r.mu is held.
func (r *Registry) notOurs(cur *ec2.Instance, verb string) error {
	switch cur.Origin {
	case ec2.OriginAPI:
		return nil
	case ec2.OriginConfig:
		return r.readOnly(cur.Name, verb)
	default:
		return ownedError(cur, verb)
	}
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

var (
	_ ec2.InstancePager   = (*Registry)(nil)
	_ ec2.InstanceBatcher = (*Registry)(nil)
)

// AddInstanceBatch implements ec2.InstanceBatcher: every spec is prepared
// and validated, then checked against the index and the batch, before the
// one store transaction; then the index takes them in one change.
func (r *Registry) AddInstanceBatch(ctx context.Context, specs []*ec2.Instance) (_ []*ec2.Instance, err error) {
	if r.Store == nil {
		return nil, ec2.Errorf(ec2.EUNSUPPORTED, "this server has no store for instances registered at run time")
	}
	bs, ok := r.Store.(ec2.InstanceBatchStore)
	if !ok {
		return nil, ec2.Errorf(ec2.EUNSUPPORTED, "this server's instance store cannot write a batch in one transaction")
	}
	if len(specs) == 0 {
		return nil, ec2.Errorf(ec2.EINVALID, "the batch holds no instance")
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	refused := make([]error, len(specs))
	clean := make([]*ec2.Instance, len(specs))
	var allocated []string // MACs given an address by this batch
	defer func() {
		if err != nil {
			for _, mac := range allocated {
				r.Addresses.Release(mac) // not registered after all
			}
		}
	}()
	now := r.Clock.Now()
	for i, spec := range specs {
		clean[i], refused[i] = r.prepare(spec, now)
	}
	toDerive := make([]*ec2.Instance, 0, len(specs))
	for _, spec := range clean {
		if spec != nil {
			toDerive = append(toDerive, spec)
		}
	}
	derived, derrs := r.deriveAll(toDerive, false)
	insts := make([]*ec2.Instance, len(specs))
	for i, j := 0, 0; i < len(specs); i++ {
		if clean[i] != nil {
			insts[i], refused[i] = derived[j], derrs[j]
			j++
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loaded = true
	next := r.idx.Load().edit()
	for i, inst := range insts {
		if refused[i] != nil {
			continue
		}
		spec := clean[i]
		if cur := next.get(spec.Name); cur != nil {
			if refused[i] = r.notOurs(cur, "changed"); refused[i] == nil {
				refused[i] = ec2.Errorf(ec2.ECONFLICT, "an instance named %q already exists", spec.Name)
			}
			continue
		}
		mac, aerr := r.allocate(spec)
		if aerr != nil {
			refused[i] = aerr
			continue
		}
		if mac != "" {
			allocated = append(allocated, mac)
			// Derived again with the address it was given.
			if inst, refused[i] = r.derive(spec); refused[i] != nil {
				continue
			}
			insts[i] = inst
		}
		if err := r.serve(next, inst); err != nil {
			refused[i] = err
			continue
		}
	}
	if err := batchRefusal(specs, refused); err != nil {
		return nil, err
	}
	if err := bs.CreateInstances(ctx, clean); err != nil {
		return nil, err
	}
	if err := r.publish(next.done()); err != nil {
		return nil, err
	}
	r.Logger.Info("instances registered", "count", len(insts), "first", insts[0].Name, "last", insts[len(insts)-1].Name)
	out := make([]*ec2.Instance, len(insts))
	for i, inst := range insts {
		out[i] = inst.Clone()
	}
	return out, nil
}

// batchRefusal is the error of a batch with refused entries, nil if none:
// one line per entry (its number from 1 and its name), and the code of
// the entries when they all have the same.
func batchRefusal(specs []*ec2.Instance, refused []error) error {
	var lines []string
	code := ""
	for i, err := range refused {
		if err == nil {
			continue
		}
		switch c := ec2.ErrorCode(err); {
		case code == "":
			code = c
		case code != c:
			code = ec2.EINVALID
		}
		lines = append(lines, fmt.Sprintf("instance %d of %d (%q): %s", i+1, len(specs), specs[i].Name, ec2.ErrorMessage(err)))
	}
	if len(lines) == 0 {
		return nil
	}
	if len(specs) == 1 {
		return refused[0]
	}
	return &ec2.Error{Code: code, Message: fmt.Sprintf("%d of %d instances refused, nothing was added:\n%s",
		len(lines), len(specs), strings.Join(lines, "\n"))}
}

// ApplyStored applies changes that another writer made to the store (an
// etcd Follower hands them over): the specs put, and the names removed.
// Like Reload, a stored instance that clashes with another or no longer
// validates is left out, loudly; unlike Reload, it costs what it touches.
// Events and faults of a removed instance are dropped.
func (r *Registry) ApplyStored(ctx context.Context, put []*ec2.Instance, removed []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	insts, errs := r.deriveAll(put, true)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loaded = true
	next := r.idx.Load().edit()
	gone := func(name string) bool {
		if cur := next.get(name); cur != nil && cur.Origin == ec2.OriginAPI {
			next.remove(name)
			return true
		}
		return false
	}
	for _, name := range removed {
		if gone(name) {
			delete(r.overlays, name)
		}
	}
	for i, spec := range put {
		gone(spec.Name)
		err := errs[i]
		if err == nil {
			err = r.serve(next, insts[i])
		}
		if err != nil {
			r.Logger.Warn("stored instance not served", "instance", spec.Name, "err", ec2.ErrorMessage(err))
		}
	}
	return r.publish(next.done())
}
