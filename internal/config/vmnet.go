package config

import (
	"net/netip"

	"go.yaml.in/yaml/v3"
)

// VMNetwork is the network imds runs for VMs: addresses per MAC from Subnet,
// and, when Managed, a dnsmasq on Bridge with static leases, the route to
// 169.254.169.254 and DNS names <name>.<Domain>.
type VMNetwork struct {
	Bridge  string
	Subnet  netip.Prefix
	Gateway netip.Addr
	Domain  string
	// Managed starts and supervises dnsmasq; otherwise imds only writes its
	// configuration (for systemd to run) and keeps the host files current.
	Managed bool
	// Netns runs dnsmasq inside that network namespace (for tests and for
	// bridges that live in one).
	Netns string
}

func (d *decoder) vmNetwork(path string, line int, v *yaml.Node) *VMNetwork {
	n := &VMNetwork{Domain: "vm.internal", Managed: true}
	var subnetSet bool
	ok := d.mapping(path, line, v, schema{
		"bridge": d.into(&n.Bridge),
		"subnet": func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok {
				pfx, err := netip.ParsePrefix(s)
				if err != nil || !pfx.Addr().Is4() || pfx.Bits() > 30 {
					d.errorf(l, p, "must be an IPv4 CIDR with room for hosts, like 192.168.150.0/24, got %q", s)
					return
				}
				n.Subnet, subnetSet = pfx.Masked(), true
			}
		},
		"gateway": func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok {
				a, err := netip.ParseAddr(s)
				if err != nil || !a.Is4() {
					d.errorf(l, p, "must be an IPv4 address, got %q", s)
					return
				}
				n.Gateway = a
			}
		},
		"domain": d.into(&n.Domain),
		"dnsmasq": func(p string, l int, v *yaml.Node) {
			if s, ok := d.enum(p, l, v, "managed", "config-only"); ok {
				n.Managed = s == "managed"
			}
		},
		"netns": d.into(&n.Netns),
	})
	if !ok {
		return nil
	}
	switch {
	case n.Bridge == "":
		d.errorf(line, path+".bridge", "is required (the bridge the VMs are on)")
	case !subnetSet:
		d.errorf(line, path+".subnet", "is required")
	case !n.Gateway.IsValid():
		d.errorf(line, path+".gateway", "is required (the bridge's own address)")
	case !n.Subnet.Contains(n.Gateway):
		d.errorf(line, path+".gateway", "%s is not in the subnet %s", n.Gateway, n.Subnet)
	default:
		return n
	}
	return nil
}
