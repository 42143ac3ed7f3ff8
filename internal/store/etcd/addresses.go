package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/ipam"
)

// maxAllocAttempts bounds the retries of an allocation that lost a race
// for an address to another host; each retry reads the leases again.
const maxAllocAttempts = 64

// Addresses allocates the addresses of a VM network subnet, one per MAC,
// in etcd, so that every host sharing the store hands out each address
// once. It keeps ipam.Allocator's rules: a MAC keeps its address while it
// holds it, and gets it back after a release if nobody took it meanwhile.
//
// Keys, under <prefix>ipam/<subnet>/: mac/<mac> holds the lease (address
// and instance name), addr/<address> the MAC holding it, and
// released/<mac> the address a released MAC last had. An allocation is one
// transaction that requires both the mac/ and the addr/ key to be absent,
// so two hosts can never take one address.
type Addresses struct {
	s        *Store
	ctx      context.Context // bounds every call, with the store's timeout
	dir      string
	subnet   netip.Prefix
	excluded map[netip.Addr]bool
}

// lease is the value of a mac/ key.
type lease struct {
	Addr netip.Addr `json:"addr"`
	Name string     `json:"name"`
}

// Addresses returns the allocator of subnet (network, broadcast and
// gateway excluded). ctx bounds its calls: the registry's allocator
// interface takes none.
func (s *Store) Addresses(ctx context.Context, subnet netip.Prefix, gateway netip.Addr) (*Addresses, error) {
	if !subnet.IsValid() || !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return nil, fmt.Errorf("ipam: subnet %v is not an IPv4 prefix with room for hosts", subnet)
	}
	subnet = subnet.Masked()
	a := &Addresses{s: s, ctx: ctx, subnet: subnet,
		dir:      s.prefix + "ipam/" + strings.ReplaceAll(subnet.String(), "/", "_") + "/",
		excluded: map[netip.Addr]bool{subnet.Addr(): true, broadcast(subnet): true}}
	if gateway.IsValid() {
		a.excluded[gateway.Unmap()] = true
	}
	return a, nil
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= uint32(1)<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// call runs f with the store's timeout under a.ctx.
func (a *Addresses) call(op string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(a.ctx, a.s.timeout)
	defer cancel()
	return a.s.fail(ctx, op, f(ctx))
}

// state is what an allocation reads: the MAC's lease, the addresses taken
// and the addresses remembered for released MACs.
type state struct {
	lease    *lease
	leaseRev int64
	taken    map[netip.Addr]bool
	released map[netip.Addr][]string // address -> MACs that remember it
	prev     netip.Addr              // this MAC's remembered address
}

func (a *Addresses) read(mac string) (*state, error) {
	st := &state{taken: map[netip.Addr]bool{}, released: map[netip.Addr][]string{}}
	var resp *clientv3.TxnResponse
	err := a.call("the address leases", func(ctx context.Context) (err error) {
		// One transaction: the three reads see one revision.
		resp, err = a.s.client.Txn(ctx).Then(
			clientv3.OpGet(a.dir+"mac/"+mac),
			clientv3.OpGet(a.dir+"addr/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
			clientv3.OpGet(a.dir+"released/", clientv3.WithPrefix()),
		).Commit()
		return err
	})
	if err != nil {
		return nil, err
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		var l lease
		if err := json.Unmarshal(kvs[0].Value, &l); err != nil {
			return nil, ec2.Errorf(ec2.EINTERNAL, "the lease of %s in etcd is corrupt: %v", mac, err)
		}
		st.lease, st.leaseRev = &l, kvs[0].ModRevision
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if ip, err := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), a.dir+"addr/")); err == nil {
			st.taken[ip] = true
		}
	}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		m := strings.TrimPrefix(string(kv.Key), a.dir+"released/")
		ip, err := netip.ParseAddr(string(kv.Value))
		if err != nil {
			continue
		}
		st.released[ip] = append(st.released[ip], m)
		if m == mac {
			st.prev = ip
		}
	}
	return st, nil
}

func (a *Addresses) free(st *state, ip netip.Addr) bool {
	return a.subnet.Contains(ip) && !a.excluded[ip] && !st.taken[ip]
}

// pick chooses the address for a new lease: the MAC's remembered one if
// free, else the first free one nobody remembers, else the first free
// remembered one. After a lost race (spread) it picks at random among
// those, so that hosts racing for addresses spread out instead of all
// trying the same next one.
func (a *Addresses) pick(st *state, spread bool) (netip.Addr, bool) {
	if st.prev.IsValid() && a.free(st, st.prev) {
		return st.prev, true
	}
	var fresh, remembered []netip.Addr
	for c := a.subnet.Addr().Next(); a.subnet.Contains(c); c = c.Next() {
		switch {
		case !a.free(st, c):
		case len(st.released[c]) == 0:
			fresh = append(fresh, c)
		default:
			remembered = append(remembered, c)
		}
	}
	list := fresh
	if len(list) == 0 {
		list = remembered
	}
	switch {
	case len(list) == 0:
		return netip.Addr{}, false
	case spread:
		return list[rand.IntN(len(list))], true
	}
	return list[0], true
}

// Allocate returns the address of mac, allocating one if needed; it is
// idempotent per MAC cluster-wide, and name is recorded with the lease.
func (a *Addresses) Allocate(mac, name string) (netip.Addr, error) {
	mac, err := ipam.NormalizeMAC(mac)
	if err != nil {
		return netip.Addr{}, err
	}
	macKey := a.dir + "mac/" + mac
	for attempt := range maxAllocAttempts {
		st, err := a.read(mac)
		if err != nil {
			return netip.Addr{}, err
		}
		if st.lease != nil {
			if st.lease.Name == name {
				return st.lease.Addr, nil
			}
			v, _ := json.Marshal(lease{Addr: st.lease.Addr, Name: name})
			var resp *clientv3.TxnResponse
			if err := a.call("the lease of "+mac, func(ctx context.Context) (err error) {
				resp, err = a.s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(macKey), "=", st.leaseRev)).
					Then(clientv3.OpPut(macKey, string(v))).Commit()
				return err
			}); err != nil {
				return netip.Addr{}, err
			}
			if resp.Succeeded {
				return st.lease.Addr, nil
			}
			continue
		}
		ip, ok := a.pick(st, attempt > 0)
		if !ok {
			return netip.Addr{}, fmt.Errorf("subnet %v is full", a.subnet)
		}
		addrKey := a.dir + "addr/" + ip.String()
		v, _ := json.Marshal(lease{Addr: ip, Name: name})
		ops := []clientv3.Op{clientv3.OpPut(macKey, string(v)), clientv3.OpPut(addrKey, mac), clientv3.OpDelete(a.dir + "released/" + mac)}
		for _, m := range st.released[ip] {
			if m != mac {
				// That MAC cannot get the address back any more.
				ops = append(ops, clientv3.OpDelete(a.dir+"released/"+m))
			}
		}
		var resp *clientv3.TxnResponse
		if err := a.call("the allocation of an address to "+mac, func(ctx context.Context) (err error) {
			resp, err = a.s.client.Txn(ctx).If(
				clientv3.Compare(clientv3.CreateRevision(macKey), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(addrKey), "=", 0),
			).Then(ops...).Commit()
			return err
		}); err != nil {
			return netip.Addr{}, err
		}
		if resp.Succeeded {
			return ip, nil
		}
		// Another host took the address, or allocated this MAC: read again.
	}
	return netip.Addr{}, ec2.Errorf(ec2.EUNAVAILABLE, "no address for %s after %d attempts: other hosts kept taking the free ones", mac, maxAllocAttempts)
}

// Release frees the address of mac and remembers it for the MAC.
// Releasing a MAC without a lease is not an error.
func (a *Addresses) Release(mac string) error {
	mac, err := ipam.NormalizeMAC(mac)
	if err != nil {
		return err
	}
	macKey := a.dir + "mac/" + mac
	for range maxAllocAttempts {
		st, err := a.read(mac)
		if err != nil {
			return err
		}
		if st.lease == nil {
			return nil
		}
		var resp *clientv3.TxnResponse
		if err := a.call("the release of "+mac, func(ctx context.Context) (err error) {
			resp, err = a.s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(macKey), "=", st.leaseRev)).Then(
				clientv3.OpDelete(macKey),
				clientv3.OpDelete(a.dir+"addr/"+st.lease.Addr.String()),
				clientv3.OpPut(a.dir+"released/"+mac, st.lease.Addr.String()),
			).Commit()
			return err
		}); err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
	return ec2.Errorf(ec2.EUNAVAILABLE, "the lease of %s kept changing under the release", mac)
}

// Leases returns every lease of the subnet, by address.
func (a *Addresses) Leases() ([]ipam.Lease, error) {
	var resp *clientv3.GetResponse
	if err := a.call("the address leases", func(ctx context.Context) (err error) {
		resp, err = a.s.client.Get(ctx, a.dir+"mac/", clientv3.WithPrefix())
		return err
	}); err != nil {
		return nil, err
	}
	var out []ipam.Lease
	for _, kv := range resp.Kvs {
		var l lease
		if err := json.Unmarshal(kv.Value, &l); err != nil {
			continue
		}
		out = append(out, ipam.Lease{MAC: strings.TrimPrefix(string(kv.Key), a.dir+"mac/"), Name: l.Name, Addr: l.Addr})
	}
	slices.SortFunc(out, func(x, y ipam.Lease) int { return x.Addr.Compare(y.Addr) })
	return out, nil
}
