//go:build linux

package neigh

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
)

// TestTableSeesPermanentEntry adds a neighbour entry on a veth interface of
// the test's own and finds it in the table (needs root; CI runs as root).
func TestTableSeesPermanentEntry(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a veth pair")
	}
	dev := fmt.Sprintf("imdsn%d", os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("link", "add", dev, "type", "veth", "peer", "name", dev+"p")
	t.Cleanup(func() { exec.Command("ip", "link", "del", dev).Run() })
	run("link", "set", dev, "up")
	run("addr", "add", "10.213.250.1/24", "dev", dev)
	run("neigh", "add", "10.213.250.9", "lladdr", "02:AA:bb:cc:dd:09", "dev", dev, "nud", "permanent")
	tbl, err := Table(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl[netip.MustParseAddr("10.213.250.9")]; got != "02:aa:bb:cc:dd:09" {
		t.Errorf("table[10.213.250.9]=%q, want 02:aa:bb:cc:dd:09", got)
	}
}
