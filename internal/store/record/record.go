package record

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// recordVersion is the version of the record encoding written by this code.
// Bump it, and teach instance() to read the older versions, whenever a change
// to record would make an older imds misread a new record.
const recordVersion = 1

// record is the stored form of an ec2.Instance. It mirrors every field of the
// domain type under explicit snake_case JSON names, so the file format is
// decided here and not by Go field names.
//
// Normalisation: an empty slice is stored as an absent key and reads back as
// nil, since no field gives meaning to "empty but present". UserData is the
// exception: nil means the instance has no user data (404) while an empty
// slice is served as an empty 200 body, so it uses omitzero, which keeps the
// two apart ("user_data" absent versus "").
type record struct {
	Version int `json:"version"`

	Name               string   `json:"name,omitempty"`
	ID                 string   `json:"id,omitempty"`
	AccountID          string   `json:"account_id,omitempty"`
	Region             string   `json:"region,omitempty"`
	AvailabilityZone   string   `json:"availability_zone,omitempty"`
	AvailabilityZoneID string   `json:"availability_zone_id,omitempty"`
	InstanceType       string   `json:"instance_type,omitempty"`
	Architecture       string   `json:"architecture,omitempty"`
	ImageID            string   `json:"image_id,omitempty"`
	AMILaunchIndex     int      `json:"ami_launch_index,omitempty"`
	AMIManifestPath    string   `json:"ami_manifest_path,omitempty"`
	AncestorAMIIDs     []string `json:"ancestor_ami_ids,omitempty"`
	KernelID           string   `json:"kernel_id,omitempty"`
	RamdiskID          string   `json:"ramdisk_id,omitempty"`
	ProductCodes       []string `json:"product_codes,omitempty"`
	BillingProducts    []string `json:"billing_products,omitempty"`
	ReservationID      string   `json:"reservation_id,omitempty"`
	Profile            string   `json:"profile,omitempty"`
	LifeCycle          string   `json:"life_cycle,omitempty"`
	InstanceAction     string   `json:"instance_action,omitempty"`
	// PendingTime is RFC 3339 with nanoseconds; absent means the zero time.
	PendingTime string `json:"pending_time,omitempty"`
	Monitoring  bool   `json:"monitoring,omitempty"`
	Partition   string `json:"partition,omitempty"`
	Domain      string `json:"domain,omitempty"`
	Hypervisor  string `json:"hypervisor,omitempty"`

	Placement placementRecord `json:"placement,omitzero"`

	Interfaces   []interfaceRecord   `json:"interfaces,omitempty"`
	BlockDevices []blockDeviceRecord `json:"block_devices,omitempty"`
	PublicKeys   []publicKeyRecord   `json:"public_keys,omitempty"`
	Tags         []tagRecord         `json:"tags,omitempty"` // a list, not an object, to keep the order

	UserData []byte      `json:"user_data,omitzero"` // base64; see the type comment
	Role     *roleRecord `json:"role,omitempty"`

	Metadata metadataRecord `json:"metadata,omitzero"`

	AutoscalingState string   `json:"autoscaling_state,omitempty"`
	SourceAddrs      []string `json:"source_addrs,omitempty"`
	MatchMAC         bool     `json:"match_mac,omitempty"`
	Origin           string   `json:"origin,omitempty"`
	// Host is an addition to version 1: records written before it have
	// none, and read back as unpinned instances.
	Host string `json:"host,omitempty"`
}

type placementRecord struct {
	GroupName       string `json:"group_name,omitempty"`
	HostID          string `json:"host_id,omitempty"`
	PartitionNumber int    `json:"partition_number,omitempty"`
}

type interfaceRecord struct {
	DeviceNumber     int                   `json:"device_number,omitempty"`
	NetworkCardIndex int                   `json:"network_card_index,omitempty"`
	ID               string                `json:"id,omitempty"`
	MAC              string                `json:"mac,omitempty"`
	OwnerID          string                `json:"owner_id,omitempty"`
	PrivateIPv4s     []string              `json:"private_ipv4s,omitempty"`
	PublicIPv4s      []string              `json:"public_ipv4s,omitempty"`
	IPv6s            []string              `json:"ipv6s,omitempty"`
	LocalHostname    string                `json:"local_hostname,omitempty"`
	PublicHostname   string                `json:"public_hostname,omitempty"`
	SecurityGroups   []securityGroupRecord `json:"security_groups,omitempty"`
	SubnetID         string                `json:"subnet_id,omitempty"`
	SubnetIPv4CIDR   string                `json:"subnet_ipv4_cidr,omitempty"`
	SubnetIPv6CIDRs  []string              `json:"subnet_ipv6_cidrs,omitempty"`
	VPCID            string                `json:"vpc_id,omitempty"`
	VPCIPv4CIDR      string                `json:"vpc_ipv4_cidr,omitempty"`
	VPCIPv4CIDRs     []string              `json:"vpc_ipv4_cidrs,omitempty"`
	VPCIPv6CIDRs     []string              `json:"vpc_ipv6_cidrs,omitempty"`
}

type securityGroupRecord struct {
	Name string `json:"name,omitempty"`
	ID   string `json:"id,omitempty"`
}

type blockDeviceRecord struct {
	Name   string `json:"name,omitempty"`
	Device string `json:"device,omitempty"`
}

type publicKeyRecord struct {
	Name string `json:"name,omitempty"`
	Key  string `json:"key,omitempty"`
}

type tagRecord struct {
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
}

type roleRecord struct {
	Name                string `json:"name,omitempty"`
	InstanceProfileName string `json:"instance_profile_name,omitempty"`
	InstanceProfileID   string `json:"instance_profile_id,omitempty"`
}

type metadataRecord struct {
	HTTPTokens          string `json:"http_tokens,omitempty"`
	HTTPEndpoint        string `json:"http_endpoint,omitempty"`
	TagsInMetadata      bool   `json:"tags_in_metadata,omitempty"`
	PutResponseHopLimit int    `json:"put_response_hop_limit,omitempty"`
}

// toRecord converts inst to its stored form. The record shares no memory
// with inst beyond immutable strings.
func toRecord(inst *ec2.Instance) record {
	r := record{
		Version:            recordVersion,
		Name:               inst.Name,
		ID:                 inst.ID,
		AccountID:          inst.AccountID,
		Region:             inst.Region,
		AvailabilityZone:   inst.AvailabilityZone,
		AvailabilityZoneID: inst.AvailabilityZoneID,
		InstanceType:       inst.InstanceType,
		Architecture:       inst.Architecture,
		ImageID:            inst.ImageID,
		AMILaunchIndex:     inst.AMILaunchIndex,
		AMIManifestPath:    inst.AMIManifestPath,
		AncestorAMIIDs:     strs(inst.AncestorAMIIDs),
		KernelID:           inst.KernelID,
		RamdiskID:          inst.RamdiskID,
		ProductCodes:       strs(inst.ProductCodes),
		BillingProducts:    strs(inst.BillingProducts),
		ReservationID:      inst.ReservationID,
		Profile:            inst.Profile,
		LifeCycle:          inst.LifeCycle,
		InstanceAction:     inst.InstanceAction,
		Monitoring:         inst.Monitoring,
		Partition:          inst.Partition,
		Domain:             inst.Domain,
		Hypervisor:         inst.Hypervisor,
		Placement: placementRecord{
			GroupName:       inst.Placement.GroupName,
			HostID:          inst.Placement.HostID,
			PartitionNumber: inst.Placement.PartitionNumber,
		},
		Interfaces:   mapSlice(inst.Interfaces, interfaceToRecord),
		BlockDevices: mapSlice(inst.BlockDevices, func(d ec2.BlockDevice) blockDeviceRecord { return blockDeviceRecord(d) }),
		PublicKeys:   mapSlice(inst.PublicKeys, func(k ec2.PublicKey) publicKeyRecord { return publicKeyRecord(k) }),
		Tags:         mapSlice(inst.Tags, func(t ec2.Tag) tagRecord { return tagRecord(t) }),
		UserData:     cloneBytes(inst.UserData),
		Metadata: metadataRecord{
			HTTPTokens:          inst.Metadata.HTTPTokens,
			HTTPEndpoint:        inst.Metadata.HTTPEndpoint,
			TagsInMetadata:      inst.Metadata.TagsInMetadata,
			PutResponseHopLimit: inst.Metadata.PutResponseHopLimit,
		},
		AutoscalingState: inst.AutoscalingState,
		SourceAddrs:      strs(inst.SourceAddrs),
		MatchMAC:         inst.MatchMAC,
		Host:             inst.Host,
		Origin:           inst.Origin,
	}
	if !inst.PendingTime.IsZero() {
		r.PendingTime = inst.PendingTime.Format(time.RFC3339Nano)
	}
	if inst.Role != nil {
		r.Role = &roleRecord{
			Name:                inst.Role.Name,
			InstanceProfileName: inst.Role.InstanceProfileName,
			InstanceProfileID:   inst.Role.InstanceProfileID,
		}
	}
	return r
}

// instance converts a decoded record back to the domain type. It fails on a
// record it cannot represent faithfully rather than guessing.
func (r record) instance() (*ec2.Instance, error) {
	if r.Version != recordVersion {
		return nil, fmt.Errorf("record version %d is not supported (this imds reads version %d)", r.Version, recordVersion)
	}
	inst := &ec2.Instance{
		Name:               r.Name,
		ID:                 r.ID,
		AccountID:          r.AccountID,
		Region:             r.Region,
		AvailabilityZone:   r.AvailabilityZone,
		AvailabilityZoneID: r.AvailabilityZoneID,
		InstanceType:       r.InstanceType,
		Architecture:       r.Architecture,
		ImageID:            r.ImageID,
		AMILaunchIndex:     r.AMILaunchIndex,
		AMIManifestPath:    r.AMIManifestPath,
		AncestorAMIIDs:     strs(r.AncestorAMIIDs),
		KernelID:           r.KernelID,
		RamdiskID:          r.RamdiskID,
		ProductCodes:       strs(r.ProductCodes),
		BillingProducts:    strs(r.BillingProducts),
		ReservationID:      r.ReservationID,
		Profile:            r.Profile,
		LifeCycle:          r.LifeCycle,
		InstanceAction:     r.InstanceAction,
		Monitoring:         r.Monitoring,
		Partition:          r.Partition,
		Domain:             r.Domain,
		Hypervisor:         r.Hypervisor,
		Placement: ec2.Placement{
			GroupName:       r.Placement.GroupName,
			HostID:          r.Placement.HostID,
			PartitionNumber: r.Placement.PartitionNumber,
		},
		Interfaces:   mapSlice(r.Interfaces, interfaceFromRecord),
		BlockDevices: mapSlice(r.BlockDevices, func(d blockDeviceRecord) ec2.BlockDevice { return ec2.BlockDevice(d) }),
		PublicKeys:   mapSlice(r.PublicKeys, func(k publicKeyRecord) ec2.PublicKey { return ec2.PublicKey(k) }),
		Tags:         mapSlice(r.Tags, func(t tagRecord) ec2.Tag { return ec2.Tag(t) }),
		UserData:     cloneBytes(r.UserData),
		Metadata: ec2.MetadataOptions{
			HTTPTokens:          r.Metadata.HTTPTokens,
			HTTPEndpoint:        r.Metadata.HTTPEndpoint,
			TagsInMetadata:      r.Metadata.TagsInMetadata,
			PutResponseHopLimit: r.Metadata.PutResponseHopLimit,
		},
		AutoscalingState: r.AutoscalingState,
		SourceAddrs:      strs(r.SourceAddrs),
		MatchMAC:         r.MatchMAC,
		Host:             r.Host,
		Origin:           r.Origin,
	}
	if r.PendingTime != "" {
		t, err := time.Parse(time.RFC3339Nano, r.PendingTime)
		if err != nil {
			return nil, fmt.Errorf("pending_time: %w", err)
		}
		inst.PendingTime = t
	}
	if r.Role != nil {
		inst.Role = &ec2.Role{
			Name:                r.Role.Name,
			InstanceProfileName: r.Role.InstanceProfileName,
			InstanceProfileID:   r.Role.InstanceProfileID,
		}
	}
	return inst, nil
}

func interfaceToRecord(ni ec2.NetworkInterface) interfaceRecord {
	return interfaceRecord{
		DeviceNumber:     ni.DeviceNumber,
		NetworkCardIndex: ni.NetworkCardIndex,
		ID:               ni.ID,
		MAC:              ni.MAC,
		OwnerID:          ni.OwnerID,
		PrivateIPv4s:     strs(ni.PrivateIPv4s),
		PublicIPv4s:      strs(ni.PublicIPv4s),
		IPv6s:            strs(ni.IPv6s),
		LocalHostname:    ni.LocalHostname,
		PublicHostname:   ni.PublicHostname,
		SecurityGroups:   mapSlice(ni.SecurityGroups, func(g ec2.SecurityGroup) securityGroupRecord { return securityGroupRecord(g) }),
		SubnetID:         ni.SubnetID,
		SubnetIPv4CIDR:   ni.SubnetIPv4CIDR,
		SubnetIPv6CIDRs:  strs(ni.SubnetIPv6CIDRs),
		VPCID:            ni.VPCID,
		VPCIPv4CIDR:      ni.VPCIPv4CIDR,
		VPCIPv4CIDRs:     strs(ni.VPCIPv4CIDRs),
		VPCIPv6CIDRs:     strs(ni.VPCIPv6CIDRs),
	}
}

func interfaceFromRecord(r interfaceRecord) ec2.NetworkInterface {
	return ec2.NetworkInterface{
		DeviceNumber:     r.DeviceNumber,
		NetworkCardIndex: r.NetworkCardIndex,
		ID:               r.ID,
		MAC:              r.MAC,
		OwnerID:          r.OwnerID,
		PrivateIPv4s:     strs(r.PrivateIPv4s),
		PublicIPv4s:      strs(r.PublicIPv4s),
		IPv6s:            strs(r.IPv6s),
		LocalHostname:    r.LocalHostname,
		PublicHostname:   r.PublicHostname,
		SecurityGroups:   mapSlice(r.SecurityGroups, func(g securityGroupRecord) ec2.SecurityGroup { return ec2.SecurityGroup(g) }),
		SubnetID:         r.SubnetID,
		SubnetIPv4CIDR:   r.SubnetIPv4CIDR,
		SubnetIPv6CIDRs:  strs(r.SubnetIPv6CIDRs),
		VPCID:            r.VPCID,
		VPCIPv4CIDR:      r.VPCIPv4CIDR,
		VPCIPv4CIDRs:     strs(r.VPCIPv4CIDRs),
		VPCIPv6CIDRs:     strs(r.VPCIPv6CIDRs),
	}
}

// mapSlice converts each element with f; an empty or nil input gives nil, the
// normalisation described on record.
func mapSlice[S ~[]E, E, T any](s S, f func(E) T) []T {
	if len(s) == 0 {
		return nil
	}
	out := make([]T, len(s))
	for i, e := range s {
		out[i] = f(e)
	}
	return out
}

// strs copies a string list, normalising empty to nil.
func strs(s []string) []string {
	return mapSlice(s, func(v string) string { return v })
}

// cloneBytes copies b, keeping nil and empty apart (see record).
func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// Marshal encodes inst as a version 1 record. It refuses nil and a nameless
// instance, which no store can key.
func Marshal(inst *ec2.Instance) ([]byte, error) {
	if inst == nil {
		return nil, ec2.Errorf(ec2.EINVALID, "no instance given")
	}
	if inst.Name == "" {
		return nil, ec2.Errorf(ec2.EINVALID, "the instance name must not be empty")
	}
	v, err := json.Marshal(toRecord(inst))
	if err != nil {
		return nil, fmt.Errorf("encode instance %q: %w", inst.Name, err)
	}
	return v, nil
}

// Unmarshal decodes the record stored under key, refusing one whose name
// is not key. The result shares no memory with v, so v may be a buffer the
// store reuses.
func Unmarshal(key string, v []byte) (*ec2.Instance, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, err
	}
	inst, err := r.instance()
	if err != nil {
		return nil, err
	}
	if inst.Name != key {
		return nil, fmt.Errorf("record holds name %q", inst.Name)
	}
	return inst, nil
}
