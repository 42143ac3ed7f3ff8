package etcd

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/etcdtest"
)

func mac(i int) string { return fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff) }

func TestAddressesRules(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, "/ipam-rules/", srv)
	a, err := s.Addresses(t.Context(), netip.MustParsePrefix("192.168.50.0/29"), netip.MustParseAddr("192.168.50.1"))
	if err != nil {
		t.Fatal(err)
	}
	// .0 is the network, .1 the gateway, .7 the broadcast: .2 to .6 are free.
	want := []string{"192.168.50.2", "192.168.50.3", "192.168.50.4", "192.168.50.5", "192.168.50.6"}
	for i, w := range want {
		got, err := a.Allocate(mac(i), fmt.Sprintf("vm-%d", i))
		if err != nil || got.String() != w {
			t.Fatalf("Allocate(%s) = %v, %v; want %s", mac(i), got, err, w)
		}
	}
	if got, err := a.Allocate(mac(9), "vm-9"); err == nil {
		t.Fatalf("Allocate in a full subnet = %v, want an error", got)
	}
	// Idempotent, whatever the spelling of the MAC.
	if got, err := a.Allocate("52:54:00:00:00:02", "vm-2"); err != nil || got.String() != want[2] {
		t.Errorf("Allocate again = %v, %v; want %s", got, err, want[2])
	}
	if got, err := a.Allocate("52-54-00-00-00-02", "renamed"); err != nil || got.String() != want[2] {
		t.Errorf("Allocate with another name = %v, %v; want %s", got, err, want[2])
	}
	// A released MAC gets its address back; another MAC gets it only once
	// nothing else is free, and then the first MAC cannot have it back.
	if err := a.Release(mac(1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(mac(1)); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if got, err := a.Allocate(mac(1), "vm-1"); err != nil || got.String() != want[1] {
		t.Errorf("Allocate after Release = %v, %v; want %s back", got, err, want[1])
	}
	if err := a.Release(mac(1)); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Allocate(mac(20), "vm-20"); err != nil || got.String() != want[1] {
		t.Errorf("Allocate for a new MAC in a full subnet but one remembered address = %v, %v; want %s", got, err, want[1])
	}
	leases, err := a.Leases()
	if err != nil || len(leases) != 5 {
		t.Fatalf("Leases = %v, %v; want 5", leases, err)
	}
	if leases[2].Name != "renamed" {
		t.Errorf("lease of %s names %q, want renamed", leases[2].MAC, leases[2].Name)
	}
	if _, err := a.Allocate("not-a-mac", "x"); err == nil {
		t.Error("Allocate of a bad MAC succeeded")
	}
}

// TestAddressesAcrossHosts: three hosts (three clients) allocate for the
// same 1,000 MACs at once, each host for every MAC: no address is handed
// out twice, and every MAC has one address on every host.
func TestAddressesAcrossHosts(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	srv := etcdtest.Start(t)
	subnet, gw := netip.MustParsePrefix("10.77.0.0/22"), netip.MustParseAddr("10.77.0.1")
	const hosts, workers = 3, 6
	got := make([][]netip.Addr, hosts)
	start := time.Now()
	var wg sync.WaitGroup
	for h := range hosts {
		a, err := openStore(t, "/ipam-race/", srv).Addresses(t.Context(), subnet, gw)
		if err != nil {
			t.Fatal(err)
		}
		got[h] = make([]netip.Addr, n)
		for w := range workers {
			wg.Go(func() {
				// Each host walks the MACs from another place, so that hosts
				// really do allocate the same MACs at the same time.
				for i := w; i < n; i += workers {
					m := (i + h*n/hosts) % n
					addr, err := a.Allocate(mac(m), fmt.Sprintf("vm-%d", m))
					if err != nil {
						t.Errorf("host %d: Allocate(%s): %v", h, mac(m), err)
						return
					}
					got[h][m] = addr
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	owner := map[netip.Addr]int{}
	for m := range n {
		addr := got[0][m]
		for h := 1; h < hosts; h++ {
			if got[h][m] != addr {
				t.Errorf("MAC %s has %s on host 0 and %s on host %d", mac(m), addr, got[h][m], h)
			}
		}
		if other, dup := owner[addr]; dup {
			t.Errorf("address %s handed to %s and %s", addr, mac(other), mac(m))
		}
		owner[addr] = m
		if !subnet.Contains(addr) || addr == gw {
			t.Errorf("MAC %s got %s, not a host address of %s", mac(m), addr, subnet)
		}
	}
	t.Logf("%d hosts × %d MACs: %d allocations in %s, %d distinct addresses", hosts, n, hosts*n, elapsed.Round(time.Millisecond), len(owner))
}
