package ipam

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	subnet24 = netip.MustParsePrefix("10.0.0.0/24")
	gw       = netip.MustParseAddr("10.0.0.1")
)

func open(t *testing.T, path string, p netip.Prefix, reserved ...netip.Addr) *Allocator {
	t.Helper()
	a, err := Open(path, p, gw, reserved...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func mustAlloc(t *testing.T, a *Allocator, mac, name string) netip.Addr {
	t.Helper()
	addr, err := a.Allocate(mac, name)
	if err != nil {
		t.Fatalf("Allocate(%s): %v", mac, err)
	}
	return addr
}

func TestAllocateIdempotentAndStableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	a := open(t, path, subnet24)
	a1 := mustAlloc(t, a, "02:00:00:00:00:01", "vm-1")
	a2 := mustAlloc(t, a, "02:00:00:00:00:02", "vm-2")
	if a1 != netip.MustParseAddr("10.0.0.2") || a2 != netip.MustParseAddr("10.0.0.3") {
		t.Fatalf("got %v %v", a1, a2)
	}
	if again := mustAlloc(t, a, "02-00-00-00-00-01", "vm-1"); again != a1 {
		t.Fatalf("not idempotent: %v != %v", again, a1)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate("02:00:00:00:00:09", "x"); err != ErrClosed {
		t.Fatalf("after Close: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}

	b := open(t, path, subnet24)
	// Allocate in reverse order: must still get the same addresses.
	if got := mustAlloc(t, b, "02:00:00:00:00:02", "vm-2"); got != a2 {
		t.Errorf("vm-2 after reopen: %v, want %v", got, a2)
	}
	if got := mustAlloc(t, b, "02:00:00:00:00:01", "vm-1"); got != a1 {
		t.Errorf("vm-1 after reopen: %v, want %v", got, a1)
	}
	want := []Lease{{"02:00:00:00:00:01", "vm-1", a1}, {"02:00:00:00:00:02", "vm-2", a2}}
	if got := b.Leases(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Leases = %v, want %v", got, want)
	}
}

func TestReleaseAndReAddReturnsSameAddress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	a := open(t, path, subnet24)
	mustAlloc(t, a, "02:00:00:00:00:01", "vm-1")
	a2 := mustAlloc(t, a, "02:00:00:00:00:02", "vm-2")
	if err := a.Release("02:00:00:00:00:02"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Lookup("02:00:00:00:00:02"); ok {
		t.Fatal("released MAC still leased")
	}
	// A newcomer must not take the remembered address while others are free.
	a3 := mustAlloc(t, a, "02:00:00:00:00:03", "vm-3")
	if a3 == a2 {
		t.Fatalf("newcomer got released MAC's address %v", a3)
	}
	a.Close()
	// Across a restart too.
	b := open(t, path, subnet24)
	if got := mustAlloc(t, b, "02:00:00:00:00:02", "vm-2"); got != a2 {
		t.Fatalf("re-added vm-2 got %v, want %v", got, a2)
	}
	if err := b.Release("02:00:00:00:00:77"); err != nil {
		t.Fatalf("releasing unknown MAC: %v", err)
	}
}

func TestFullSubnet(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/29") // .1 gw, .2-.6 usable, .7 broadcast
	a := open(t, filepath.Join(t.TempDir(), "ipam.json"), p)
	seen := map[netip.Addr]bool{}
	for i := range 5 {
		addr := mustAlloc(t, a, fmt.Sprintf("02:00:00:00:00:%02x", i+1), "")
		seen[addr] = true
	}
	for _, bad := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.7"} {
		if seen[netip.MustParseAddr(bad)] {
			t.Errorf("allocated %s", bad)
		}
	}
	_, err := a.Allocate("02:00:00:00:00:99", "")
	if err == nil || err.Error() != "subnet 10.0.0.0/29 is full" {
		t.Fatalf("err = %v", err)
	}
	// Released-but-remembered addresses are used when nothing else is left.
	if err := a.Release("02:00:00:00:00:01"); err != nil {
		t.Fatal(err)
	}
	if got := mustAlloc(t, a, "02:00:00:00:00:99", ""); got != netip.MustParseAddr("10.0.0.2") {
		t.Fatalf("got %v", got)
	}
	// ...and then the old owner cannot get it back.
	if _, err := a.Allocate("02:00:00:00:00:01", ""); err == nil {
		t.Fatal("expected full")
	}
}

func TestReservedSkipped(t *testing.T) {
	r1, r2 := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.4")
	a := open(t, filepath.Join(t.TempDir(), "ipam.json"), subnet24, r1, r2)
	want := []string{"10.0.0.3", "10.0.0.5", "10.0.0.6"}
	for i, w := range want {
		if got := mustAlloc(t, a, fmt.Sprintf("02:00:00:00:01:%02x", i), ""); got.String() != w {
			t.Errorf("allocation %d = %v, want %s", i, got, w)
		}
	}
}

func TestConcurrentAllocationsUnique(t *testing.T) {
	a := open(t, filepath.Join(t.TempDir(), "ipam.json"), subnet24)
	const n = 100
	var wg sync.WaitGroup
	results := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = a.Allocate(fmt.Sprintf("02:00:00:00:02:%02x", i), fmt.Sprint("vm-", i))
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, addr := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if j, dup := seen[addr]; dup {
			t.Fatalf("%v given to %d and %d", addr, i, j)
		}
		seen[addr] = i
	}
	if len(a.Leases()) != n {
		t.Fatalf("%d leases", len(a.Leases()))
	}
}

func TestCorruptFile(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage.json": "{not json",
		"version.json": `{"version": 42}`,
		"dup.json":     `{"version":1,"leases":[{"mac":"02:00:00:00:00:01","addr":"10.0.0.2"},{"mac":"02:00:00:00:00:02","addr":"10.0.0.2"}]}`,
		"badmac.json":  `{"version":1,"leases":[{"mac":"zz","addr":"10.0.0.2"}]}`,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path, subnet24, gw)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("%s: err = %v, want a corrupt-file error naming the file", name, err)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "x"), netip.MustParsePrefix("fd00::/64"), gw); err == nil {
		t.Error("IPv6 subnet accepted")
	}
	a := open(t, filepath.Join(t.TempDir(), "ipam.json"), subnet24)
	if _, err := a.Allocate("not-a-mac", ""); err == nil {
		t.Error("bad MAC accepted")
	}
}
