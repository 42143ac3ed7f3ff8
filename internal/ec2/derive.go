package ec2

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// DefaultRoleName is the role of the zero-configuration instance.
const DefaultRoleName = "imds-instance-role"

// DefaultInstanceName names the zero-configuration instance.
const DefaultInstanceName = "default"

// NewDefaultInstance returns the instance that `imds serve` serves without any
// configuration: an on-demand instance in us-east-1 with an instance profile.
// Call Derive on it to fill in the rest.
func NewDefaultInstance() *Instance {
	// The region is left to Derive: us-east-1, unless an availability zone
	// given later names another.
	return &Instance{
		Name: DefaultInstanceName,
		Role: &Role{Name: DefaultRoleName},
	}
}

// DeriveOptions are the inputs that make derived values stable.
type DeriveOptions struct {
	// Seed identifies the machine (for example /etc/machine-id). The same seed
	// and instance name always give the same derived values.
	Seed []byte
	// Launch is the pendingTime given to an instance that has none.
	Launch time.Time
}

// deriver produces stable pseudo-random values from the seed, the instance
// name and a label naming what the value is for.
type deriver struct {
	seed []byte
	name string
}

func (d deriver) sum(label string) [32]byte {
	// One buffer on the stack and one Sum256, rather than a hash.Hash: a
	// registry deriving 100,000 instances calls this about two million times.
	var buf [256]byte
	b := append(buf[:0], d.seed...)
	b = append(b, 0)
	b = append(b, d.name...)
	b = append(b, 0)
	b = append(b, label...)
	return sha256.Sum256(b)
}

func (d deriver) uint(label string) uint64 {
	s := d.sum(label)
	return binary.BigEndian.Uint64(s[:8])
}

// id returns prefix-0 followed by 16 hex digits, the 17-digit form EC2 uses.
func (d deriver) id(prefix, label string) string {
	s := d.sum(label)
	return prefix + "-0" + hex.EncodeToString(s[:8])
}

// upper returns n characters of the base32 alphabet EC2 uses in unique IDs.
func (d deriver) upper(label string, n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	s := d.sum(label)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte(alphabet[s[i%len(s)]&31])
	}
	return b.String()
}

// Derive fills every empty field of inst with a value derived from the options
// and inst.Name, keeping values that repeat across the tree consistent
// (addresses, account, region, hostnames). Fields already set are kept.
func Derive(inst *Instance, opt DeriveOptions) {
	if inst.Name == "" {
		inst.Name = DefaultInstanceName
	}
	d := deriver{seed: opt.Seed, name: inst.Name}
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&inst.ID, d.id("i", "instance-id"))
	set(&inst.AccountID, strconv.FormatUint(100000000000+d.uint("account-id")%900000000000, 10))
	if inst.Region == "" {
		if len(inst.AvailabilityZone) > 1 {
			inst.Region = inst.AvailabilityZone[:len(inst.AvailabilityZone)-1]
		} else {
			inst.Region = "us-east-1"
		}
	}
	zone := byte('a' + d.uint("zone")%3)
	if inst.AvailabilityZone == "" {
		inst.AvailabilityZone = inst.Region + string(zone)
	}
	zoneIndex := 1
	if last := inst.AvailabilityZone[len(inst.AvailabilityZone)-1]; last >= 'a' && last <= 'z' {
		zoneIndex = int(last-'a') + 1
	}
	set(&inst.AvailabilityZoneID, regionCode(inst.Region)+"-az"+strconv.Itoa(zoneIndex))
	set(&inst.Architecture, "x86_64")
	if inst.Architecture == "arm64" {
		set(&inst.InstanceType, "m6g.large")
	}
	set(&inst.InstanceType, "m5.large")
	set(&inst.ImageID, d.id("ami", "ami-id"))
	set(&inst.AMIManifestPath, "(unknown)")
	set(&inst.ReservationID, d.id("r", "reservation-id"))
	set(&inst.Profile, "default-hvm")
	set(&inst.LifeCycle, "on-demand")
	set(&inst.InstanceAction, "none")
	set(&inst.Partition, partitionOf(inst.Region))
	if inst.Partition == "aws-cn" {
		set(&inst.Domain, "amazonaws.com.cn")
	}
	set(&inst.Domain, "amazonaws.com")
	set(&inst.Hypervisor, "nitro")
	if inst.PendingTime.IsZero() {
		inst.PendingTime = opt.Launch
	}
	inst.PendingTime = inst.PendingTime.UTC().Truncate(time.Second)

	if len(inst.Interfaces) == 0 {
		inst.Interfaces = []NetworkInterface{{}}
	}
	// A requester's own addresses are its private addresses unless told otherwise.
	if p := &inst.Interfaces[0]; len(p.PrivateIPv4s) == 0 || len(p.IPv6s) == 0 {
		var v4, v6 []string
		for _, a := range inst.SourceAddrs {
			if ip, err := netip.ParseAddr(a); err == nil && ip.Unmap().Is4() {
				v4 = append(v4, ip.Unmap().String())
			} else if err == nil {
				v6 = append(v6, ip.String())
			}
		}
		if len(p.PrivateIPv4s) == 0 && len(v4) > 0 {
			p.PrivateIPv4s = v4
		}
		if len(p.IPv6s) == 0 && len(v6) > 0 {
			p.IPv6s = v6
		}
	}
	// Interfaces after the first that give no device number take the lowest
	// free one, so numbers stay unique and the first interface stays device 0.
	used := map[int]bool{}
	for n, ni := range inst.Interfaces {
		if n == 0 || ni.DeviceNumber != 0 {
			used[ni.DeviceNumber] = true
		}
	}
	next := 1
	for n := range inst.Interfaces {
		if n > 0 && inst.Interfaces[n].DeviceNumber == 0 {
			for used[next] {
				next++
			}
			inst.Interfaces[n].DeviceNumber = next
			used[next] = true
		}
		deriveInterface(inst, &inst.Interfaces[n], n, d, zoneIndex)
	}
	if len(inst.BlockDevices) == 0 {
		inst.BlockDevices = []BlockDevice{{Name: "ami", Device: "/dev/xvda"}, {Name: "root", Device: "/dev/xvda"}}
	}
	if inst.Role != nil {
		set(&inst.Role.InstanceProfileName, inst.Role.Name)
		set(&inst.Role.InstanceProfileID, "AIPA"+d.upper("instance-profile-id:"+inst.Role.InstanceProfileName, 17))
	}
	set(&inst.Metadata.HTTPTokens, TokensOptional)
	set(&inst.Metadata.HTTPEndpoint, EndpointEnabled)
	if inst.Metadata.PutResponseHopLimit == 0 {
		inst.Metadata.PutResponseHopLimit = 1
	}
}

func deriveInterface(inst *Instance, ni *NetworkInterface, n int, d deriver, zoneIndex int) {
	label := "eni" + strconv.Itoa(n) + ":"
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&ni.ID, d.id("eni", label+"id"))
	if ni.MAC == "" {
		s := d.sum(label + "mac")
		// Locally administered unicast, as EC2's 02:, 06:, 0a: and 0e: MACs are.
		first := []byte{0x02, 0x06, 0x0a, 0x0e}[s[0]%4]
		ni.MAC = macString([6]byte{first, s[1], s[2], s[3], s[4], s[5]})
	}
	ni.MAC = strings.ToLower(ni.MAC)
	set(&ni.OwnerID, inst.AccountID)

	// The default VPC is 172.31.0.0/16 with one /20 subnet per zone.
	var ip netip.Addr
	if len(ni.PrivateIPv4s) > 0 {
		ip, _ = netip.ParseAddr(ni.PrivateIPv4s[0])
	}
	if ni.SubnetIPv4CIDR == "" {
		switch {
		case ip.Is4() && netip.MustParsePrefix("172.31.0.0/16").Contains(ip):
			p, _ := ip.Prefix(20)
			ni.SubnetIPv4CIDR = p.String()
		case ip.Is4():
			p, _ := ip.Prefix(24)
			ni.SubnetIPv4CIDR = p.String()
		default:
			ni.SubnetIPv4CIDR = "172.31." + strconv.Itoa(16*((zoneIndex-1)%16)) + ".0/20"
		}
	}
	if len(ni.PrivateIPv4s) == 0 {
		if subnet, err := netip.ParsePrefix(ni.SubnetIPv4CIDR); err == nil && subnet.Addr().Is4() {
			ni.PrivateIPv4s = []string{hostInPrefix(subnet.Masked(), d.uint(label+"ip")).String()}
		}
	}
	if ni.VPCIPv4CIDR == "" {
		if subnet, err := netip.ParsePrefix(ni.SubnetIPv4CIDR); err == nil {
			bits := min(16, subnet.Bits())
			if netip.MustParsePrefix("172.31.0.0/16").Overlaps(subnet) {
				bits = 16
			}
			p, _ := subnet.Addr().Prefix(bits)
			ni.VPCIPv4CIDR = p.String()
		}
	}
	if len(ni.VPCIPv4CIDRs) == 0 && ni.VPCIPv4CIDR != "" {
		ni.VPCIPv4CIDRs = []string{ni.VPCIPv4CIDR}
	}
	if len(ni.PrivateIPv4s) > 0 {
		set(&ni.LocalHostname, PrivateDNSName(ni.PrivateIPv4s[0], inst.Region))
	}
	if n == 0 && ni.PublicIPv4s == nil {
		// 203.0.113.0/24 is TEST-NET-3: plausible, and never anybody's real address.
		ni.PublicIPv4s = []string{"203.0.113." + strconv.FormatUint(1+d.uint(label+"public-ip")%254, 10)}
	}
	if len(ni.PublicIPv4s) > 0 {
		set(&ni.PublicHostname, PublicDNSName(ni.PublicIPv4s[0], inst.Region, inst.Domain))
	}
	if len(ni.SecurityGroups) == 0 {
		ni.SecurityGroups = []SecurityGroup{{Name: "default"}}
	}
	for g := range ni.SecurityGroups {
		set(&ni.SecurityGroups[g].ID, d.id("sg", "sg:"+ni.SecurityGroups[g].Name))
	}
	set(&ni.SubnetID, d.id("subnet", "subnet:"+ni.SubnetIPv4CIDR))
	set(&ni.VPCID, d.id("vpc", "vpc:"+ni.VPCIPv4CIDR))
}

// macString formats a MAC as EC2 does: lower-case hex pairs and colons.
func macString(m [6]byte) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, c := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, digits[c>>4], digits[c&15])
	}
	return string(b)
}

// hostInPrefix picks a host address in p from r, skipping the network address
// and the three addresses after it (reserved by AWS) and the broadcast address.
func hostInPrefix(p netip.Prefix, r uint64) netip.Addr {
	size := uint64(1) << (32 - p.Bits())
	if size <= 8 {
		return p.Addr().Next()
	}
	off := 4 + r%(size-5)
	b := p.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(off)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// PrivateDNSName returns EC2's IP-based private hostname for an IPv4 address.
func PrivateDNSName(ip, region string) string {
	dashed := strings.ReplaceAll(ip, ".", "-")
	if region == "us-east-1" {
		return "ip-" + dashed + ".ec2.internal"
	}
	return "ip-" + dashed + "." + region + ".compute.internal"
}

// PublicDNSName returns EC2's public DNS name for a public IPv4 address.
func PublicDNSName(ip, region, domain string) string {
	dashed := strings.ReplaceAll(ip, ".", "-")
	if region == "us-east-1" {
		return "ec2-" + dashed + ".compute-1." + domain
	}
	return "ec2-" + dashed + "." + region + ".compute." + domain
}

func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

// regionCode abbreviates a region as availability zone IDs do: us-east-1 →
// use1, ap-southeast-2 → apse2, us-gov-west-1 → usgw1.
func regionCode(region string) string {
	parts := strings.Split(region, "-")
	if len(parts) < 3 {
		return region
	}
	var b strings.Builder
	b.WriteString(parts[0])
	for _, p := range parts[1 : len(parts)-1] {
		switch p {
		case "":
			// Only an invalid region ("--", "a--1") has empty parts;
			// Validate refuses it later, Derive must not crash on it.
			continue
		case "east", "west", "north", "south", "central", "gov":
			b.WriteByte(p[0])
		case "northeast", "northwest", "southeast", "southwest":
			b.WriteByte(p[0])
			b.WriteByte(p[5])
		default:
			b.WriteByte(p[0])
		}
	}
	b.WriteString(parts[len(parts)-1])
	return b.String()
}
