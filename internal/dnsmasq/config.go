// Package dnsmasq runs and supervises a dnsmasq that serves DHCP (static
// leases only) and DNS for the VMs on one bridge.
//
// Every VM gets its address from a dhcp-hostsfile (MAC,IP,NAME) and a
// name <name>.<domain> (forward and reverse) from an addn-hosts file. The
// DHCP answers carry a default router and a classless static route (option
// 121) to the metadata address 169.254.169.254/32 via the gateway, plus the
// default route (clients that receive option 121 ignore option 3).
//
// The configuration file written by the Server can also be used by a
// dnsmasq run by systemd: see ConfigFile.
package dnsmasq

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// Config describes the dnsmasq instance.
type Config struct {
	// Binary is the dnsmasq executable; default "dnsmasq" (looked up in PATH).
	Binary string
	// Netns, if set, runs the binary inside that named network namespace
	// through "ip netns exec NETNS BINARY ARGS..." (ip execs the binary, so
	// the supervised PID is dnsmasq's own).
	Netns string
	// Command, if set, builds the command instead (overrides Netns); it is
	// given the binary and its arguments. The process it starts must be
	// dnsmasq itself (not a shell that forks it) so that signals reach it.
	Command func(binary string, args []string) []string
	// Dir holds the configuration and the hosts files (created with mode 0700).
	Dir string
	// Interface is the bridge served (bind-interfaces: nothing else is bound).
	Interface string
	// Subnet is the DHCP range, static leases only.
	Subnet netip.Prefix
	// Gateway is the router option and the gateway of the metadata route.
	Gateway netip.Addr
	// Domain: names are <name>.<domain>, e.g. "vm.internal".
	Domain string
	// DNSPort is the DNS port; default 53. 0 keeps the default, -1 is not
	// supported (use a port).
	DNSPort int
	// Metadata is the metadata service address; default 169.254.169.254.
	Metadata netip.Addr
	// Upstream DNS servers for names outside Domain (server= lines). Without
	// any, only local names are answered.
	Upstream []string
	// User dnsmasq runs as after startup. Default "root": dnsmasq re-reads
	// the hosts files (in the 0700 Dir) on SIGHUP, after dropping privileges.
	// With another user, Dir and its files are chowned to that user.
	User string
	// LogQueries adds log-queries and log-dhcp.
	LogQueries bool
}

// Host is one VM: its DHCP reservation and its DNS name.
type Host struct {
	Name string
	MAC  string
	Addr netip.Addr
}

// DefaultMetadata is the EC2 instance metadata address.
var DefaultMetadata = netip.MustParseAddr("169.254.169.254")

const (
	confName      = "dnsmasq.conf"
	dhcpHostsName = "dhcp-hosts"
	hostsName     = "hosts"
	pidName       = "dnsmasq.pid"
)

func (c Config) withDefaults() Config {
	if c.Binary == "" {
		c.Binary = "dnsmasq"
	}
	if c.DNSPort == 0 {
		c.DNSPort = 53
	}
	if !c.Metadata.IsValid() {
		c.Metadata = DefaultMetadata
	}
	if c.User == "" {
		c.User = "root"
	}
	c.Subnet = c.Subnet.Masked()
	c.Domain = strings.TrimSuffix(strings.ToLower(c.Domain), ".")
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		errs = append(errs, fmt.Errorf("dir %q must be an absolute path", c.Dir))
	}
	if c.Interface == "" || strings.ContainsAny(c.Interface, " \t\n/,") {
		errs = append(errs, fmt.Errorf("invalid interface %q", c.Interface))
	}
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 30 {
		errs = append(errs, fmt.Errorf("invalid IPv4 subnet %v", c.Subnet))
	}
	if !c.Gateway.Is4() || !c.Subnet.Contains(c.Gateway) {
		errs = append(errs, fmt.Errorf("gateway %v is not in subnet %v", c.Gateway, c.Subnet))
	}
	if !c.Metadata.Is4() {
		errs = append(errs, fmt.Errorf("invalid metadata address %v", c.Metadata))
	}
	if err := validDomain(c.Domain); err != nil {
		errs = append(errs, err)
	}
	if c.DNSPort < 1 || c.DNSPort > 65535 {
		errs = append(errs, fmt.Errorf("invalid DNS port %d", c.DNSPort))
	}
	for _, u := range c.Upstream {
		if u == "" || strings.ContainsAny(u, " \t\n") {
			errs = append(errs, fmt.Errorf("invalid upstream server %q", u))
		}
	}
	if strings.ContainsAny(c.User, " \t\n") {
		errs = append(errs, fmt.Errorf("invalid user %q", c.User))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dnsmasq: invalid config: %w", err)
	}
	return nil
}

func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func validDomain(d string) error {
	if d == "" || len(d) > 200 {
		return fmt.Errorf("invalid domain %q", d)
	}
	for _, l := range strings.Split(d, ".") {
		if !validLabel(l) {
			return fmt.Errorf("invalid domain %q", d)
		}
	}
	return nil
}

func mask(p netip.Prefix) string {
	return net.IP(net.CIDRMask(p.Bits(), 32)).String()
}

// ConfigPath, DHCPHostsPath and HostsPath are the files in Dir.
func (c Config) confPath() string      { return filepath.Join(c.Dir, confName) }
func (c Config) dhcpHostsPath() string { return filepath.Join(c.Dir, dhcpHostsName) }
func (c Config) hostsPath() string     { return filepath.Join(c.Dir, hostsName) }
func (c Config) pidPath() string       { return filepath.Join(c.Dir, pidName) }

// render returns the dnsmasq configuration file. cfg must have defaults
// applied and be valid.
func render(c Config) []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Generated by imds; do not edit: it is rewritten on every start.")
	w("# Run with: dnsmasq --keep-in-foreground --conf-file=%s", c.confPath())
	w("")
	w("# Serve only %s, never any other interface.", c.Interface)
	w("bind-interfaces")
	w("interface=%s", c.Interface)
	w("except-interface=lo")
	w("port=%d", c.DNSPort)
	w("user=%s", c.User)
	w("# No pid file: the process is supervised.")
	w("pid-file=")
	w("")
	w("# DNS: local names only from %s.", c.hostsPath())
	w("no-hosts")
	w("no-resolv")
	if len(c.Upstream) > 0 {
		w("domain-needed")
		w("bogus-priv")
		for _, u := range c.Upstream {
			w("server=%s", u)
		}
	}
	w("domain=%s", c.Domain)
	w("local=/%s/", c.Domain)
	w("expand-hosts")
	w("addn-hosts=%s", c.hostsPath())
	if c.LogQueries {
		w("log-queries")
		w("log-dhcp")
	}
	w("")
	w("# DHCP: static leases only, from %s.", c.dhcpHostsPath())
	w("dhcp-range=%s,static,%s", c.Subnet.Addr(), mask(c.Subnet))
	w("dhcp-authoritative")
	w("leasefile-ro")
	w("dhcp-hostsfile=%s", c.dhcpHostsPath())
	w("dhcp-option=option:router,%s", c.Gateway)
	w("# Clients that get option 121 ignore option 3: include the default route.")
	w("dhcp-option=121,%s/32,%s,0.0.0.0/0,%s", c.Metadata, c.Gateway, c.Gateway)
	return []byte(b.String())
}

// normalizeHosts validates hosts and returns them sorted by address with
// normalised MACs and lower-case names.
func normalizeHosts(c Config, hosts []Host) ([]Host, error) {
	out := make([]Host, 0, len(hosts))
	macs := map[string]bool{}
	addrs := map[netip.Addr]bool{}
	names := map[string]bool{}
	for _, h := range hosts {
		hw, err := net.ParseMAC(h.MAC)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("dnsmasq: host %q: invalid MAC %q", h.Name, h.MAC)
		}
		name := strings.ToLower(h.Name)
		if !validLabel(name) {
			return nil, fmt.Errorf("dnsmasq: host %q: invalid name (must be a DNS label)", h.Name)
		}
		addr := h.Addr.Unmap()
		if !addr.Is4() || !c.Subnet.Contains(addr) || addr == c.Gateway || addr == c.Subnet.Addr() {
			return nil, fmt.Errorf("dnsmasq: host %q: address %v is not a host address of %v", h.Name, h.Addr, c.Subnet)
		}
		mac := hw.String()
		switch {
		case macs[mac]:
			return nil, fmt.Errorf("dnsmasq: duplicate MAC %s", mac)
		case addrs[addr]:
			return nil, fmt.Errorf("dnsmasq: duplicate address %v", addr)
		case names[name]:
			return nil, fmt.Errorf("dnsmasq: duplicate name %s", name)
		}
		macs[mac], addrs[addr], names[name] = true, true, true
		out = append(out, Host{Name: name, MAC: mac, Addr: addr})
	}
	slices.SortFunc(out, func(a, b Host) int { return a.Addr.Compare(b.Addr) })
	return out, nil
}

func renderDHCPHosts(hosts []Host) []byte {
	var b strings.Builder
	b.WriteString("# Generated by imds: MAC,IP,NAME\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "%s,%s,%s\n", h.MAC, h.Addr, h.Name)
	}
	return []byte(b.String())
}

func renderHosts(c Config, hosts []Host) []byte {
	var b strings.Builder
	b.WriteString("# Generated by imds: IP NAME.DOMAIN NAME\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "%s %s.%s %s\n", h.Addr, h.Name, c.Domain, h.Name)
	}
	return []byte(b.String())
}
