// Package ipam allocates IPv4 addresses of a subnet, one per MAC address,
// stably: a MAC gets the same address back after a restart and after being
// released and re-added (as long as nobody else took the address meanwhile).
//
// State is kept in a small JSON file, rewritten atomically (temporary file,
// fsync, rename, fsync of the directory) with mode 0600 after every change.
package ipam

import (
	"github.com/imdsdev/imds/internal/atomicfile"

	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
)

// Lease is an address currently held by a MAC.
type Lease struct {
	MAC  string     `json:"mac"`
	Name string     `json:"name"`
	Addr netip.Addr `json:"addr"`
}

// fileFormat is the on-disk representation.
type fileFormat struct {
	Version int     `json:"version"`
	Subnet  string  `json:"subnet"`
	Leases  []Lease `json:"leases"`
	// Released remembers the last address of MACs that were released.
	Released map[string]netip.Addr `json:"released,omitempty"`
}

const formatVersion = 1

// Allocator hands out IPv4 addresses of a subnet, one per MAC, stable.
// It is safe for concurrent use.
type Allocator struct {
	mu       sync.Mutex
	path     string
	subnet   netip.Prefix
	excluded map[netip.Addr]bool
	leases   map[string]Lease      // by normalised MAC
	byAddr   map[netip.Addr]string // address -> MAC
	released map[string]netip.Addr // MAC -> last address
	closed   bool
}

// ErrClosed is returned by operations on a closed Allocator.
var ErrClosed = errors.New("ipam: allocator is closed")

// Open loads (or creates) the allocation state at path for subnet. The
// network and broadcast addresses, gateway and reserved are never handed out.
func Open(path string, subnet netip.Prefix, gateway netip.Addr, reserved ...netip.Addr) (*Allocator, error) {
	if !subnet.IsValid() || !subnet.Addr().Is4() {
		return nil, fmt.Errorf("ipam: subnet %v is not an IPv4 prefix", subnet)
	}
	subnet = subnet.Masked()
	if subnet.Bits() > 30 {
		return nil, fmt.Errorf("ipam: subnet %v is too small", subnet)
	}
	a := &Allocator{
		path:     path,
		subnet:   subnet,
		excluded: map[netip.Addr]bool{subnet.Addr(): true, broadcast(subnet): true},
		leases:   map[string]Lease{},
		byAddr:   map[netip.Addr]string{},
		released: map[string]netip.Addr{},
	}
	if gateway.IsValid() {
		a.excluded[gateway.Unmap()] = true
	}
	for _, r := range reserved {
		a.excluded[r.Unmap()] = true
	}
	if err := a.load(); err != nil {
		return nil, err
	}
	return a, nil
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// NormalizeMAC returns mac in lower-case colon-separated form.
func NormalizeMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(mac))
	if err != nil {
		return "", fmt.Errorf("ipam: invalid MAC %q: %w", mac, err)
	}
	if len(hw) != 6 {
		return "", fmt.Errorf("ipam: invalid MAC %q: not an EUI-48 address", mac)
	}
	return hw.String(), nil
}

func (a *Allocator) load() error {
	data, err := os.ReadFile(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return a.saveLocked()
	}
	if err != nil {
		return fmt.Errorf("ipam: reading %s: %w", a.path, err)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("ipam: corrupt state file %s: %s", a.path, fmt.Sprintf(format, args...))
	}
	var f fileFormat
	if err := json.Unmarshal(data, &f); err != nil {
		return corrupt("%v", err)
	}
	if f.Version != formatVersion {
		return corrupt("unsupported version %d", f.Version)
	}
	for _, l := range f.Leases {
		mac, err := NormalizeMAC(l.MAC)
		if err != nil {
			return corrupt("%v", err)
		}
		if !l.Addr.Is4() {
			return corrupt("lease for %s has invalid address %v", mac, l.Addr)
		}
		if _, dup := a.leases[mac]; dup {
			return corrupt("duplicate lease for %s", mac)
		}
		if other, dup := a.byAddr[l.Addr]; dup {
			return corrupt("address %v leased to both %s and %s", l.Addr, other, mac)
		}
		// Leases outside the (possibly changed) subnet or on addresses that
		// are now excluded are dropped: the MAC will get a fresh address.
		if !a.subnet.Contains(l.Addr) || a.excluded[l.Addr] {
			continue
		}
		l.MAC = mac
		a.leases[mac] = l
		a.byAddr[l.Addr] = mac
	}
	for m, addr := range f.Released {
		mac, err := NormalizeMAC(m)
		if err != nil {
			return corrupt("%v", err)
		}
		if _, leased := a.leases[mac]; leased || !a.subnet.Contains(addr) {
			continue
		}
		a.released[mac] = addr
	}
	return nil
}

func (a *Allocator) saveLocked() error {
	f := fileFormat{Version: formatVersion, Subnet: a.subnet.String(), Leases: a.sortedLeases(), Released: a.released}
	if len(f.Released) == 0 {
		f.Released = nil
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("ipam: encoding state: %w", err)
	}
	data = append(data, '\n')
	if err := atomicfile.Write(a.path, data, 0o600); err != nil {
		return fmt.Errorf("ipam: writing %s: %w", a.path, err)
	}
	return nil
}

func (a *Allocator) sortedLeases() []Lease {
	out := make([]Lease, 0, len(a.leases))
	for _, l := range a.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, func(x, y Lease) int { return x.Addr.Compare(y.Addr) })
	return out
}

func (a *Allocator) free(addr netip.Addr) bool {
	if !a.subnet.Contains(addr) || a.excluded[addr] {
		return false
	}
	_, used := a.byAddr[addr]
	return !used
}

// Allocate returns the address of mac, allocating one if needed. It is
// idempotent per MAC; name is recorded (and updated) with the lease. A MAC
// that was released gets its previous address back if that is still free.
func (a *Allocator) Allocate(mac string, name string) (netip.Addr, error) {
	mac, err := NormalizeMAC(mac)
	if err != nil {
		return netip.Addr{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return netip.Addr{}, ErrClosed
	}
	if l, ok := a.leases[mac]; ok {
		if l.Name != name {
			l.Name = name
			a.leases[mac] = l
			if err := a.saveLocked(); err != nil {
				return netip.Addr{}, err
			}
		}
		return l.Addr, nil
	}
	addr, ok := netip.Addr{}, false
	if prev, had := a.released[mac]; had && a.free(prev) {
		addr, ok = prev, true
	}
	if !ok {
		// Prefer addresses nobody remembers, so released MACs can come back
		// to theirs; fall back to remembered ones when nothing else is left.
		remembered := map[netip.Addr]bool{}
		for _, r := range a.released {
			remembered[r] = true
		}
		var fallback netip.Addr
		for c := a.subnet.Addr().Next(); a.subnet.Contains(c); c = c.Next() {
			if !a.free(c) {
				continue
			}
			if !remembered[c] {
				addr, ok = c, true
				break
			}
			if !fallback.IsValid() {
				fallback = c
			}
		}
		if !ok && fallback.IsValid() {
			addr, ok = fallback, true
		}
	}
	if !ok {
		return netip.Addr{}, fmt.Errorf("subnet %v is full", a.subnet)
	}
	a.leases[mac] = Lease{MAC: mac, Name: name, Addr: addr}
	a.byAddr[addr] = mac
	delete(a.released, mac)
	for m, r := range a.released {
		if r == addr {
			delete(a.released, m) // that MAC cannot get it back any more
		}
	}
	if err := a.saveLocked(); err != nil {
		delete(a.leases, mac)
		delete(a.byAddr, addr)
		return netip.Addr{}, err
	}
	return addr, nil
}

// Release frees the address of mac, remembering it so that a later Allocate
// for the same MAC prefers it. Releasing an unknown MAC is not an error.
func (a *Allocator) Release(mac string) error {
	mac, err := NormalizeMAC(mac)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	l, ok := a.leases[mac]
	if !ok {
		return nil
	}
	delete(a.leases, mac)
	delete(a.byAddr, l.Addr)
	a.released[mac] = l.Addr
	if err := a.saveLocked(); err != nil {
		a.leases[mac] = l
		a.byAddr[l.Addr] = mac
		delete(a.released, mac)
		return err
	}
	return nil
}

// Lookup returns the current lease of mac, if any.
func (a *Allocator) Lookup(mac string) (Lease, bool) {
	mac, err := NormalizeMAC(mac)
	if err != nil {
		return Lease{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.leases[mac]
	return l, ok
}

// Leases returns the current leases sorted by address.
func (a *Allocator) Leases() []Lease {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sortedLeases()
}

// Subnet returns the managed subnet.
func (a *Allocator) Subnet() netip.Prefix { return a.subnet }

// Close releases the allocator; state is already on disk.
func (a *Allocator) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	return nil
}
