package ec2

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Instance is everything the metadata service knows about one EC2 instance.
// Empty fields are filled in by Derive so that every value the metadata tree
// repeats (instance-id, region, addresses, account ID) is consistent.
type Instance struct {
	// Name identifies the instance inside imds (not an EC2 concept).
	Name string

	ID                 string // i-0123456789abcdef0
	AccountID          string // 12 digits
	Region             string // us-east-1
	AvailabilityZone   string // us-east-1a
	AvailabilityZoneID string // use1-az4
	InstanceType       string // m5.large
	Architecture       string // x86_64 | arm64 | i386
	ImageID            string // ami-…
	AMILaunchIndex     int
	AMIManifestPath    string // "(unknown)" for EBS-backed AMIs
	AncestorAMIIDs     []string
	KernelID           string // aki-…; empty means absent (404)
	RamdiskID          string // ari-…; empty means absent (404)
	ProductCodes       []string
	BillingProducts    []string
	ReservationID      string // r-…
	Profile            string // default-hvm
	LifeCycle          string // on-demand | spot | scheduled
	InstanceAction     string // none | shutdown | bundle-pending
	PendingTime        time.Time
	Monitoring         bool   // detailed CloudWatch monitoring (fws/instance-monitoring)
	Partition          string // aws | aws-cn | aws-us-gov
	Domain             string // amazonaws.com
	Hypervisor         string // the undocumented "system" leaf, e.g. nitro

	Placement Placement

	// Interfaces holds the network interfaces; Interfaces[0] (device 0) is the
	// primary one that the top-level mac, local-ipv4 and hostnames describe.
	Interfaces []NetworkInterface

	BlockDevices []BlockDevice
	PublicKeys   []PublicKey
	Tags         []Tag

	// UserData is served byte for byte; nil means the instance has none (404).
	UserData []byte

	// Role is the instance profile's role; nil means no instance profile, and
	// then iam/ is absent from the tree as on EC2.
	Role *Role

	Metadata MetadataOptions

	// AutoscalingState is autoscaling/target-lifecycle-state; empty means the
	// instance is not in an Auto Scaling group (404).
	AutoscalingState string

	// SourceAddrs are the addresses this instance's metadata requests come
	// from. Derive fills the primary interface's private addresses from them
	// when those are not given.
	SourceAddrs []string
	// MatchMAC recognises requests by the primary interface's MAC through
	// the kernel neighbour table, for requesters whose address changes.
	MatchMAC bool
	// Origin tells where the instance is declared: OriginConfig, OriginAPI
	// or a discovery source such as OriginDocker.
	Origin string
	// Host pins the instance to one imds host of those sharing a store
	// (its store.etcd.host, or its machine's host name): only that host
	// answers it and indexes its addresses, so that two hypervisors may
	// each run a VM at the same private address. Empty: every host
	// answers it.
	Host string

	// Events are the lifecycle events issued so far (run-time state, not
	// part of a stored spec).
	Events Events
	// Faults are the faults injected into this instance's responses
	// (run-time state: its own merged with those for every instance).
	Faults Faults
}

// Origins of an instance.
const (
	OriginConfig = "config" // declared in the config file: read-only at run time
	OriginAPI    = "api"    // registered through the admin API and stored
	// OriginDocker instances are containers found through the Docker
	// engine, which owns them: they come and go with their containers, and
	// a request is theirs only when its address and its MAC both agree.
	OriginDocker = "docker"
)

// Placement is the placement/ category beyond the availability zone.
type Placement struct {
	GroupName       string // only in a placement group
	HostID          string // Dedicated Hosts only
	PartitionNumber int    // partition placement groups only; 0 means absent
}

// NetworkInterface is one ENI as network/interfaces/macs/<mac>/ shows it.
type NetworkInterface struct {
	DeviceNumber     int
	NetworkCardIndex int
	ID               string // eni-…
	MAC              string // lower-case, colon separated
	OwnerID          string // account ID of the ENI owner
	PrivateIPv4s     []string
	PublicIPv4s      []string
	IPv6s            []string
	LocalHostname    string
	PublicHostname   string
	SecurityGroups   []SecurityGroup
	SubnetID         string
	SubnetIPv4CIDR   string
	SubnetIPv6CIDRs  []string
	VPCID            string
	VPCIPv4CIDR      string
	VPCIPv4CIDRs     []string
	VPCIPv6CIDRs     []string
}

// SecurityGroup is a security group name and ID.
type SecurityGroup struct {
	Name string
	ID   string
}

// BlockDevice maps a virtual device name (ami, root, ebs1, ephemeral0, swap) to
// the device the guest sees.
type BlockDevice struct {
	Name   string
	Device string
}

// PublicKey is one entry of public-keys/: index i is its position in the list.
type PublicKey struct {
	Name string
	Key  string // OpenSSH public key line
}

// Tag is one instance tag; order is preserved as given.
type Tag struct {
	Key   string
	Value string
}

// Role is the IAM role of an instance profile.
type Role struct {
	Name string
	// InstanceProfileName defaults to the role name, as the console does.
	InstanceProfileName string
	// InstanceProfileID is the AIPA… unique ID of the instance profile.
	InstanceProfileID string
}

// InstanceProfileArn returns the profile's ARN in the instance's partition and account.
func (i *Instance) InstanceProfileArn() string {
	if i.Role == nil {
		return ""
	}
	return fmt.Sprintf("arn:%s:iam::%s:instance-profile/%s", i.Partition, i.AccountID, i.Role.InstanceProfileName)
}

// Token modes of MetadataOptions.HTTPTokens.
const (
	TokensOptional = "optional"
	TokensRequired = "required"
)

// Endpoint states of MetadataOptions.HTTPEndpoint.
const (
	EndpointEnabled  = "enabled"
	EndpointDisabled = "disabled"
)

// MetadataOptions are an instance's IMDS settings, as in EC2's
// ModifyInstanceMetadataOptions.
type MetadataOptions struct {
	HTTPTokens   string // optional | required
	HTTPEndpoint string // enabled | disabled
	// TagsInMetadata exposes tags/instance/ (InstanceMetadataTags=enabled).
	TagsInMetadata bool
	// PutResponseHopLimit is the IP TTL of token responses (1–64).
	PutResponseHopLimit int
}

// Primary returns the device-0 network interface, or a zero interface when
// there is none.
func (i *Instance) Primary() NetworkInterface {
	for _, ni := range i.Interfaces {
		if ni.DeviceNumber == 0 {
			return ni
		}
	}
	if len(i.Interfaces) > 0 {
		return i.Interfaces[0]
	}
	return NetworkInterface{}
}

// Clone returns a deep copy, so that a caller may modify it without racing
// readers of the original.
func (i *Instance) Clone() *Instance {
	c := *i
	c.AncestorAMIIDs = slices.Clone(i.AncestorAMIIDs)
	c.ProductCodes = slices.Clone(i.ProductCodes)
	c.BillingProducts = slices.Clone(i.BillingProducts)
	c.BlockDevices = slices.Clone(i.BlockDevices)
	c.PublicKeys = slices.Clone(i.PublicKeys)
	c.Tags = slices.Clone(i.Tags)
	c.UserData = slices.Clone(i.UserData)
	c.SourceAddrs = slices.Clone(i.SourceAddrs)
	c.Events = i.Events.Clone()
	if i.Role != nil {
		r := *i.Role
		c.Role = &r
	}
	c.Interfaces = make([]NetworkInterface, len(i.Interfaces))
	for n, ni := range i.Interfaces {
		ni.PrivateIPv4s = slices.Clone(ni.PrivateIPv4s)
		ni.PublicIPv4s = slices.Clone(ni.PublicIPv4s)
		ni.IPv6s = slices.Clone(ni.IPv6s)
		ni.SecurityGroups = slices.Clone(ni.SecurityGroups)
		ni.SubnetIPv6CIDRs = slices.Clone(ni.SubnetIPv6CIDRs)
		ni.VPCIPv4CIDRs = slices.Clone(ni.VPCIPv4CIDRs)
		ni.VPCIPv6CIDRs = slices.Clone(ni.VPCIPv6CIDRs)
		c.Interfaces[n] = ni
	}
	if i.Interfaces == nil {
		c.Interfaces = nil
	}
	return &c
}

var (
	reRoleName = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	reTagKey   = regexp.MustCompile(`^[a-zA-Z0-9+\-=._:@,]{1,128}$`)
)

// AutoscalingStates are the values of autoscaling/target-lifecycle-state.
var AutoscalingStates = []string{"Detached", "InService", "Standby", "Terminated",
	"Warmed:Hibernated", "Warmed:Running", "Warmed:Stopped", "Warmed:Terminated"}

// FieldError names the field of an instance that is invalid and why.
type FieldError struct {
	Field   string // the field in configuration spelling, e.g. "instance_id"
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Validate checks a derived instance and returns every problem found, each
// naming the field in configuration spelling; nil means valid.
func (i *Instance) Validate() []*FieldError {
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if err := CheckName(i.Name); err != nil {
		bad("name", "%s", ErrorMessage(err))
	}
	if i.Host != "" {
		if err := CheckHostName(i.Host); err != nil {
			bad("host", "%s", err)
		}
	}
	if !isInstanceID(i.ID) {
		bad("instance_id", "must look like i-0123456789abcdef0, got %q", i.ID)
	}
	if !isAccountID(i.AccountID) {
		bad("account_id", "must be 12 digits, got %q", i.AccountID)
	}
	if !isRegion(i.Region) {
		bad("region", "must look like us-east-1, got %q", i.Region)
	}
	if z, ok := strings.CutPrefix(i.AvailabilityZone, i.Region); !ok || len(z) != 1 || z[0] < 'a' || z[0] > 'z' {
		bad("availability_zone", "must be the region followed by a zone letter (e.g. %sa), got %q", i.Region, i.AvailabilityZone)
	}
	if !isInstanceType(i.InstanceType) {
		bad("instance_type", "must look like m5.large, got %q", i.InstanceType)
	}
	switch i.Architecture {
	case "x86_64", "arm64", "i386":
	default:
		bad("architecture", "must be x86_64, arm64 or i386, got %q", i.Architecture)
	}
	if !strings.HasPrefix(i.ImageID, "ami-") {
		bad("ami_id", "must start with ami-, got %q", i.ImageID)
	}
	if i.KernelID != "" && !strings.HasPrefix(i.KernelID, "aki-") {
		bad("kernel_id", "must start with aki-, got %q", i.KernelID)
	}
	if i.RamdiskID != "" && !strings.HasPrefix(i.RamdiskID, "ari-") {
		bad("ramdisk_id", "must start with ari-, got %q", i.RamdiskID)
	}
	if !strings.HasPrefix(i.ReservationID, "r-") {
		bad("reservation_id", "must start with r-, got %q", i.ReservationID)
	}
	switch i.LifeCycle {
	case "on-demand", "spot", "scheduled":
	default:
		bad("instance_life_cycle", "must be on-demand, spot or scheduled, got %q", i.LifeCycle)
	}
	switch i.InstanceAction {
	case "none", "shutdown", "bundle-pending":
	default:
		bad("instance_action", "must be none, shutdown or bundle-pending, got %q", i.InstanceAction)
	}
	if i.AutoscalingState != "" && !slices.Contains(AutoscalingStates, i.AutoscalingState) {
		bad("autoscaling_target_lifecycle_state", "must be one of %s, got %q", strings.Join(AutoscalingStates, ", "), i.AutoscalingState)
	}
	switch i.Partition {
	case "aws", "aws-cn", "aws-us-gov":
	default:
		bad("partition", "must be aws, aws-cn or aws-us-gov, got %q", i.Partition)
	}
	if len(i.Interfaces) == 0 {
		bad("network_interfaces", "at least one network interface is required")
	} else if !slices.ContainsFunc(i.Interfaces, func(ni NetworkInterface) bool { return ni.DeviceNumber == 0 }) {
		bad("network_interfaces", "one interface must be device 0 (the primary)")
	}
	macs, devices := map[string]bool{}, map[int]bool{}
	for n, ni := range i.Interfaces {
		field := "network_interfaces[" + strconv.Itoa(n) + "]"
		if !isMAC(ni.MAC) {
			bad(field+".mac", "must be six lower-case hex pairs separated by colons, got %q", ni.MAC)
		} else if macs[ni.MAC] {
			bad(field+".mac", "duplicate MAC %s", ni.MAC)
		}
		macs[ni.MAC] = true
		if ni.DeviceNumber < 0 || devices[ni.DeviceNumber] {
			bad(field+".device_number", "must be unique and not negative, got %d", ni.DeviceNumber)
		}
		devices[ni.DeviceNumber] = true
		for _, ip := range ni.PrivateIPv4s {
			if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
				bad(field+".local_ipv4s", "%q is not an IPv4 address", ip)
			}
		}
		for _, ip := range ni.PublicIPv4s {
			if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
				bad(field+".public_ipv4s", "%q is not an IPv4 address", ip)
			}
		}
		for _, ip := range ni.IPv6s {
			if a, err := netip.ParseAddr(ip); err != nil || !a.Is6() || a.Is4In6() {
				bad(field+".ipv6s", "%q is not an IPv6 address", ip)
			}
		}
		cidrs := func(name string, v6 bool, values ...string) {
			for _, c := range values {
				if p, err := netip.ParsePrefix(c); err != nil || p.Addr().Is6() != v6 {
					bad(field+"."+name, "%q is not an IPv%s CIDR", c, map[bool]string{false: "4", true: "6"}[v6])
				}
			}
		}
		cidrs("subnet_ipv4_cidr", false, ni.SubnetIPv4CIDR)
		if _, err := netip.ParsePrefix(ni.SubnetIPv4CIDR); err == nil || ni.VPCIPv4CIDR != "" {
			cidrs("vpc_ipv4_cidr", false, ni.VPCIPv4CIDR) // derived from the subnet: only report it on its own
		}
		cidrs("vpc_ipv4_cidrs", false, ni.VPCIPv4CIDRs...)
		cidrs("subnet_ipv6_cidrs", true, ni.SubnetIPv6CIDRs...)
		cidrs("vpc_ipv6_cidrs", true, ni.VPCIPv6CIDRs...)
		if !isPrefixedID(ni.ID) || !strings.HasPrefix(ni.ID, "eni-") {
			bad(field+".interface_id", "must look like eni-0123456789abcdef0, got %q", ni.ID)
		}
	}
	for n, k := range i.PublicKeys {
		if k.Name == "" || strings.ContainsAny(k.Name, "=/\n") {
			bad(fmt.Sprintf("public_keys[%d].name", n), "must be non-empty without '=', '/' or newlines, got %q", k.Name)
		}
		if !strings.HasPrefix(k.Key, "ssh-") && !strings.HasPrefix(k.Key, "ecdsa-") && !strings.HasPrefix(k.Key, "sk-") {
			bad(fmt.Sprintf("public_keys[%d].key", n), "must be an OpenSSH public key line (ssh-ed25519 AAAA…)")
		}
	}
	for n, d := range i.BlockDevices {
		if d.Name == "" || strings.ContainsAny(d.Name, "/\n") || d.Device == "" {
			bad(fmt.Sprintf("block_devices[%d]", n), "needs a name without slashes and a device, got %q=%q", d.Name, d.Device)
		}
	}
	keys := map[string]bool{}
	for _, t := range i.Tags {
		switch {
		case t.Key == "" || utf8.RuneCountInString(t.Key) > 128:
			bad("tags", "key %q must be 1-128 characters", t.Key)
		case i.Metadata.TagsInMetadata && (!reTagKey.MatchString(t.Key) || t.Key == "." || t.Key == ".." || t.Key == "_index"):
			bad("tags", "key %q: only a-z A-Z 0-9 + - = . , _ : @ are allowed in tag keys shown in metadata (and not ., .. or _index)", t.Key)
		case keys[t.Key]:
			bad("tags", "duplicate key %q", t.Key)
		case utf8.RuneCountInString(t.Value) > 256:
			bad("tags", "value of %q is longer than 256 characters", t.Key)
		}
		keys[t.Key] = true
	}
	if len(i.Tags) > 50 {
		bad("tags", "at most 50 tags, got %d", len(i.Tags))
	}
	if len(i.UserData) > 16*1024 {
		bad("user_data", "is %d bytes; EC2 allows at most 16384", len(i.UserData))
	}
	if i.Role != nil {
		if !reRoleName.MatchString(i.Role.Name) {
			bad("role.name", "must be 1-64 characters of letters, digits and +=,.@_-, got %q", i.Role.Name)
		}
		if !reRoleName.MatchString(i.Role.InstanceProfileName) {
			bad("role.instance_profile_name", "must be 1-64 characters of letters, digits and +=,.@_-, got %q", i.Role.InstanceProfileName)
		}
		if !strings.HasPrefix(i.Role.InstanceProfileID, "AIPA") {
			bad("role.instance_profile_id", "must start with AIPA, got %q", i.Role.InstanceProfileID)
		}
	}
	switch i.Metadata.HTTPTokens {
	case TokensOptional, TokensRequired:
	default:
		bad("imdsv2", "must be optional or required, got %q", i.Metadata.HTTPTokens)
	}
	switch i.Metadata.HTTPEndpoint {
	case EndpointEnabled, EndpointDisabled:
	default:
		bad("http_endpoint", "must be enabled or disabled, got %q", i.Metadata.HTTPEndpoint)
	}
	for n, a := range i.SourceAddrs {
		if ip, err := netip.ParseAddr(a); err != nil || ip.Zone() != "" {
			bad(fmt.Sprintf("source_addresses[%d]", n), "%q is not an IP address", a)
		}
	}
	if i.Metadata.PutResponseHopLimit < 1 || i.Metadata.PutResponseHopLimit > 64 {
		bad("hop_limit", "must be between 1 and 64, got %d", i.Metadata.PutResponseHopLimit)
	}
	return errs
}

// The checks below are the simplest patterns of Validate, written out
// rather than matched with regexp, which was most of the time of
// validating 100,000 stored instances at start-up. Each comment is the
// pattern it implements; TestFormatChecks compares them.

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isInstanceID: ^i-[0-9a-f]{8}([0-9a-f]{9})?$
func isInstanceID(s string) bool {
	return (len(s) == 10 || len(s) == 19) && s[:2] == "i-" && isLowerHex(s[2:])
}

// isAccountID: ^[0-9]{12}$
func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isMAC: ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$
func isMAC(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i := 0; i < 17; i += 3 {
		if !isLowerHex(s[i:i+2]) || (i+2 < 17 && s[i+2] != ':') {
			return false
		}
	}
	return true
}

// isPrefixedID: ^[a-z]+-[0-9a-f]{8,17}$
func isPrefixedID(s string) bool {
	i := strings.IndexByte(s, '-')
	if i < 1 || len(s)-i-1 < 8 || len(s)-i-1 > 17 || !isLowerHex(s[i+1:]) {
		return false
	}
	for j := 0; j < i; j++ {
		if s[j] < 'a' || s[j] > 'z' {
			return false
		}
	}
	return true
}

// isInstanceType: ^[a-z0-9-]+\.[a-z0-9-]+$
func isInstanceType(s string) bool {
	dot := strings.IndexByte(s, '.')
	if dot < 1 || dot == len(s)-1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i != dot && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// isRegion: ^[a-z]{2}(-[a-z]+)+-[0-9]+$
func isRegion(s string) bool {
	parts := strings.Split(s, "-")
	if len(parts) < 3 || len(parts[0]) != 2 {
		return false
	}
	for _, p := range parts[:len(parts)-1] {
		if p == "" || strings.IndexFunc(p, func(r rune) bool { return r < 'a' || r > 'z' }) >= 0 {
			return false
		}
	}
	last := parts[len(parts)-1]
	return last != "" && strings.IndexFunc(last, func(r rune) bool { return r < '0' || r > '9' }) < 0
}
