package registry

import (
	"hash/maphash"
	"maps"
	"net/netip"
	"sort"
	"sync"

	"github.com/imdsdev/imds/internal/ec2"
)

// shardCount is the number of shards of every index map: a change copies
// the one shard it touches (about n/256 entries) and the shard table
// (256 pointers), not the n entries of a whole map.
const shardCount = 256

// shardMap is a persistent map: once published in an index it is never
// changed, and an edit copies only the shards it writes to. Readers index it
// without a lock.
type shardMap[K comparable] struct {
	seed   maphash.Seed
	shards [shardCount]map[K]*ec2.Instance
	n      int
}

func newShardMap[K comparable](seed maphash.Seed) *shardMap[K] {
	return &shardMap[K]{seed: seed}
}

func (m *shardMap[K]) shard(k K) int {
	return int(maphash.Comparable(m.seed, k) % shardCount)
}

// get returns the value of k, nil if none.
func (m *shardMap[K]) get(k K) *ec2.Instance { return m.shards[m.shard(k)][k] }

// len is the number of entries.
func (m *shardMap[K]) len() int { return m.n }

// all calls f for every entry, in no particular order, until f returns false.
func (m *shardMap[K]) all(f func(K, *ec2.Instance) bool) {
	for _, s := range m.shards {
		for k, v := range s {
			if !f(k, v) {
				return
			}
		}
	}
}

// mapEdit changes a copy of a shardMap: the first write to a shard copies
// it, later ones write to the copy. The map it started from stays as it was.
type mapEdit[K comparable] struct {
	m     *shardMap[K]
	owned [shardCount]bool
}

func editMap[K comparable](m *shardMap[K]) *mapEdit[K] {
	c := *m // copies the shard table, shares the shards
	return &mapEdit[K]{m: &c}
}

func (e *mapEdit[K]) own(i int) map[K]*ec2.Instance {
	if !e.owned[i] {
		e.m.shards[i] = maps.Clone(e.m.shards[i])
		if e.m.shards[i] == nil {
			e.m.shards[i] = map[K]*ec2.Instance{}
		}
		e.owned[i] = true
	}
	return e.m.shards[i]
}

func (e *mapEdit[K]) set(k K, v *ec2.Instance) {
	s := e.own(e.m.shard(k))
	if _, ok := s[k]; !ok {
		e.m.n++
	}
	s[k] = v
}

func (e *mapEdit[K]) del(k K) {
	i := e.m.shard(k)
	if _, ok := e.m.shards[i][k]; !ok {
		return
	}
	delete(e.own(i), k)
	e.m.n--
}

// index is an immutable view of every instance. A change makes a new one
// from the last with an indexEdit, which copies only what it touches, so
// that a request sees the instances before or after a change, never a mix.
type index struct {
	byName *shardMap[string] // derived
	byAddr *shardMap[netip.Addr]
	byMAC  *shardMap[string]
	// bases are the instances as defined (derived, no overlay) of those
	// that byName holds with their own events or faults applied: an event
	// re-derives the one instance from its base rather than every
	// instance from the store.
	bases *shardMap[string]
	// faults are the faults of every instance its instances were served
	// with. An instance with no overlay of its own (and no faults in its
	// definition) keeps no base: it is the served one with no faults,
	// and 100,000 of them do not cost 100,000 more values while faults
	// of every instance are set.
	faults ec2.Faults
	// counts are the instances by origin (metrics read them at each scrape).
	counts map[string]int
	def    *ec2.Instance
	// displaced names the implicit default while others keep it from
	// answering unmatched requesters.
	displaced string
	// host is this server's host name: instances pinned to another host
	// are listed but not located here (see indexEdit.add).
	host string

	// sorted is every name in order, made on first use (lists, followers)
	// rather than on every change.
	sortOnce sync.Once
	sorted   []string
}

func emptyIndex(seed maphash.Seed, host string) *index {
	return &index{byName: newShardMap[string](seed),
		byAddr: newShardMap[netip.Addr](seed), byMAC: newShardMap[string](seed), bases: newShardMap[string](seed), counts: map[string]int{},
		host: host}
}

// len is the number of instances.
func (x *index) len() int { return x.byName.len() }

// names returns every name, sorted; the caller must not modify it.
func (x *index) names() []string {
	x.sortOnce.Do(func() {
		names := make([]string, 0, x.byName.len())
		x.byName.all(func(n string, _ *ec2.Instance) bool {
			names = append(names, n)
			return true
		})
		sort.Strings(names)
		x.sorted = names
	})
	return x.sorted
}

// instances returns every instance, sorted by name.
func (x *index) instances() []*ec2.Instance {
	names := x.names()
	out := make([]*ec2.Instance, len(names))
	for i, n := range names {
		out[i] = x.byName.get(n)
	}
	return out
}

// after returns up to limit names after the name after (all of them from
// the start when after is empty), sorted.
func (x *index) after(after string, limit int) []string {
	names := x.names()
	i := 0
	if after != "" {
		i = sort.SearchStrings(names, after)
		if i < len(names) && names[i] == after {
			i++
		}
	}
	return names[i:min(len(names), i+limit)]
}

// indexEdit makes the next index from one: add and remove check and apply
// changes to copies of the shards they touch; done returns the new index.
// An edit that is dropped leaves the index it started from as it was.
type indexEdit struct {
	byName, byMAC *mapEdit[string]
	byAddr        *mapEdit[netip.Addr]
	bases         *mapEdit[string]
	faults        ec2.Faults // of the index edited
	counts        map[string]int
	host          string
}

func (x *index) edit() *indexEdit {
	return &indexEdit{byName: editMap(x.byName), byAddr: editMap(x.byAddr),
		byMAC: editMap(x.byMAC), bases: editMap(x.bases), faults: x.faults, counts: maps.Clone(x.counts), host: x.host}
}

// done returns the new index; the default instance is resolved by the
// caller (Registry.publish).
func (e *indexEdit) done() *index {
	for o, n := range e.counts {
		if n == 0 {
			delete(e.counts, o)
		}
	}
	return &index{byName: e.byName.m, byAddr: e.byAddr.m, byMAC: e.byMAC.m, bases: e.bases.m, counts: e.counts, host: e.host}
}

// elsewhere reports whether inst is pinned to another host than this one.
func (x *index) elsewhere(inst *ec2.Instance) bool {
	return inst.Host != "" && inst.Host != x.host
}

// elsewhere reports whether inst is pinned to another host than this one:
// it is listed (the store and the admin API are shared) but its addresses
// and MAC are left out of this host's index, so that no request here finds
// it and another instance here may hold the same address.
func (e *indexEdit) elsewhere(inst *ec2.Instance) bool {
	return inst.Host != "" && inst.Host != e.host
}

// get returns the instance of that name in the edit, nil if none.
func (e *indexEdit) get(name string) *ec2.Instance { return e.byName.m.get(name) }

// add puts a derived instance into the index, refusing clashes. An
// instance pinned to another host is indexed by name only.
func (e *indexEdit) add(inst *ec2.Instance) error {
	if e.byName.m.get(inst.Name) != nil {
		return ec2.Errorf(ec2.ECONFLICT, "an instance named %q already exists", inst.Name)
	}
	if e.elsewhere(inst) {
		e.byName.set(inst.Name, inst)
		e.counts[inst.Origin]++
		return nil
	}
	addrs := make([]netip.Addr, 0, len(inst.SourceAddrs))
	for _, a := range inst.SourceAddrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return ec2.Errorf(ec2.EINVALID, "source address %q is not an IP address", a)
		}
		ip = ip.Unmap()
		if other := e.byAddr.m.get(ip); other != nil {
			return ec2.Errorf(ec2.ECONFLICT, "address %s already belongs to instance %s", ip, other.Name)
		}
		addrs = append(addrs, ip)
	}
	mac := inst.Primary().MAC
	if inst.MatchMAC {
		if other := e.byMAC.m.get(mac); other != nil {
			return ec2.Errorf(ec2.ECONFLICT, "MAC %s already belongs to instance %s", mac, other.Name)
		}
	}
	e.byName.set(inst.Name, inst)
	for _, ip := range addrs {
		e.byAddr.set(ip, inst)
	}
	if inst.MatchMAC {
		e.byMAC.set(mac, inst)
	}
	e.counts[inst.Origin]++
	return nil
}

// remove takes the named instance out of the index, if there.
func (e *indexEdit) remove(name string) *ec2.Instance {
	inst := e.byName.m.get(name)
	if inst == nil {
		return nil
	}
	e.byName.del(name)
	e.bases.del(name)
	for _, a := range inst.SourceAddrs {
		if ip, err := netip.ParseAddr(a); err == nil && e.byAddr.m.get(ip.Unmap()) == inst {
			e.byAddr.del(ip.Unmap())
		}
	}
	if mac := inst.Primary().MAC; inst.MatchMAC && e.byMAC.m.get(mac) == inst {
		e.byMAC.del(mac)
	}
	e.counts[inst.Origin]--
	return inst
}

// serve adds served, base with its overlay applied (base itself if it has
// none), and keeps base when own (it has events or faults of its own) or
// when its definition has faults, for the next change of the overlay (see
// base).
func (e *indexEdit) serve(base, served *ec2.Instance, own bool) error {
	if err := e.add(served); err != nil {
		return err
	}
	if served != base && (own || base.Faults.Active()) {
		e.bases.set(base.Name, base)
	}
	return nil
}

// base returns the named instance as defined, without its overlay; nil if
// none is in the edit. One that serve kept no base of is the served one,
// without the faults of every instance if they were set.
func (e *indexEdit) base(name string) *ec2.Instance {
	if b := e.bases.m.get(name); b != nil {
		return b
	}
	served := e.byName.m.get(name)
	if served == nil || !e.faults.Active() {
		return served
	}
	b := *served
	b.Faults = ec2.Faults{}
	return &b
}
