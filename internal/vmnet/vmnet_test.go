package vmnet

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/dnsmasq"
	"github.com/imdsdev/imds/internal/ec2"
)

func inst(name, mac string, addrs ...string) *ec2.Instance {
	return &ec2.Instance{Name: name, SourceAddrs: addrs, Interfaces: []ec2.NetworkInterface{{MAC: mac}}}
}

func TestHosts(t *testing.T) {
	subnet := netip.MustParsePrefix("192.168.150.0/24")
	tests := []struct {
		name  string
		insts []*ec2.Instance
		want  []dnsmasq.Host
	}{
		{name: "none"},
		{name: "first address in the subnet",
			insts: []*ec2.Instance{inst("a", "02:00:00:00:00:01", "10.0.0.1", "192.168.150.10", "192.168.150.11")},
			want:  []dnsmasq.Host{{Name: "a", MAC: "02:00:00:00:00:01", Addr: netip.MustParseAddr("192.168.150.10")}}},
		{name: "no MAC", insts: []*ec2.Instance{inst("a", "", "192.168.150.10")}},
		{name: "outside the subnet", insts: []*ec2.Instance{inst("a", "02:00:00:00:00:01", "127.0.0.1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(Hosts(subnet, tt.insts), tt.want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("Hosts (-got +want):\n%s", diff)
			}
		})
	}
}

// TestConfigOnly opens a network whose dnsmasq imds does not run and checks
// that a change reaches dnsmasq's host file.
func TestConfigOnly(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.VMNetwork{Bridge: "virbr9", Subnet: netip.MustParsePrefix("192.168.150.0/24"),
		Gateway: netip.MustParseAddr("192.168.150.1"), Domain: "vm.internal"}
	v, err := Open(cfg, dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(v.DNS().ConfigFile()); err != nil {
		t.Fatalf("dnsmasq configuration not written: %v", err)
	}
	addr, err := v.Alloc().Allocate("02:00:00:00:00:07", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	v.Changed(func() []*ec2.Instance { return []*ec2.Instance{inst("vm1", "02:00:00:00:00:07", addr.String())} })
	deadline := time.Now().Add(10 * time.Second)
	for len(v.DNS().Hosts()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the host list never reached dnsmasq")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(dir, "dnsmasq", "hosts"))
	if err == nil && !strings.Contains(string(b), "vm1") {
		t.Errorf("hosts file lacks vm1:\n%s", b)
	}
	v.Close()
	v.Close()
}
