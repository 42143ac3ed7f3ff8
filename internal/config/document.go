package config

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/imdsdev/imds/internal/ec2"
)

// InstanceDoc is the instance document: the keys of instance:, of each item
// of instances:, of `imds instance add --from-file` and of the admin API's
// bodies and answers. It is defined once, here: the decoder walks a YAML (or
// JSON) document against these fields, by their json names, and
// MarshalInstance writes them. A field's `check` tag adds what its Go type
// does not say (see fieldInfo); fields no answer sets (shorthands, file
// references, schedule) are accepted on input only.
type InstanceDoc struct {
	Name   Name   `json:"name,omitempty"`
	Origin string `json:"origin,omitempty" check:"enum=config|api|docker"`

	InstanceID         string       `json:"instance_id,omitempty"`
	AccountID          string       `json:"account_id,omitempty"`
	Region             string       `json:"region,omitempty"`
	AvailabilityZone   string       `json:"availability_zone,omitempty"`
	AvailabilityZoneID string       `json:"availability_zone_id,omitempty"`
	InstanceType       string       `json:"instance_type,omitempty"`
	Architecture       string       `json:"architecture,omitempty"`
	AMIID              string       `json:"ami_id,omitempty"`
	AMILaunchIndex     int          `json:"ami_launch_index,omitempty"`
	AMIManifestPath    string       `json:"ami_manifest_path,omitempty"`
	AncestorAMIIDs     []string     `json:"ancestor_ami_ids,omitempty"`
	KernelID           string       `json:"kernel_id,omitempty"`
	RamdiskID          string       `json:"ramdisk_id,omitempty"`
	ProductCodes       []string     `json:"product_codes,omitempty"`
	BillingProducts    []string     `json:"billing_products,omitempty"`
	ReservationID      string       `json:"reservation_id,omitempty"`
	Profile            string       `json:"profile,omitempty"`
	InstanceLifeCycle  string       `json:"instance_life_cycle,omitempty"`
	InstanceAction     string       `json:"instance_action,omitempty"`
	PendingTime        Timestamp    `json:"pending_time,omitzero"`
	Monitoring         bool         `json:"monitoring,omitempty"`
	Partition          string       `json:"partition,omitempty"`
	Domain             string       `json:"domain,omitempty"`
	Hypervisor         string       `json:"hypervisor,omitempty"`
	AutoscalingState   string       `json:"autoscaling_target_lifecycle_state,omitempty"`
	Placement          PlacementDoc `json:"placement,omitzero"`

	// The shorthands describe interface 0 when network_interfaces is absent.
	MAC            string         `json:"mac,omitempty" check:"shorthand=mac"`
	LocalIPv4      string         `json:"local_ipv4,omitempty" check:"shorthand=local_ipv4s"`
	PublicIPv4     *string        `json:"public_ipv4,omitempty" check:"shorthand=public_ipv4s"`
	IPv6           string         `json:"ipv6,omitempty" check:"shorthand=ipv6s"`
	SecurityGroups SecurityGroups `json:"security_groups,omitempty" check:"shorthand=security_groups"`

	NetworkInterfaces []InterfaceDoc `json:"network_interfaces,omitempty"`
	BlockDevices      BlockDevices   `json:"block_devices,omitempty"`
	PublicKeys        []PublicKeyDoc `json:"public_keys,omitempty"`
	Tags              Tags           `json:"tags,omitempty"`
	TagsInMetadata    bool           `json:"tags_in_metadata,omitempty"`

	UserData       *UserData `json:"user_data,omitempty"`
	UserDataBase64 Base64    `json:"user_data_base64,omitempty"`
	// UserDataFile is read (relative to the document's directory) by the
	// config file and the CLI; the server refuses it.
	UserDataFile FilePath `json:"user_data_file,omitempty"`

	// Role is always written: null is an instance without a profile.
	Role         *RoleDoc `json:"role" check:"nullable"`
	IMDSv2       string   `json:"imdsv2,omitempty" check:"enum=optional|required"`
	HTTPEndpoint string   `json:"http_endpoint,omitempty" check:"enum=enabled|disabled"`
	HopLimit     int      `json:"hop_limit,omitempty" check:"min=1,max=64"`
	SourceAddrs  []string `json:"source_addresses,omitempty"`
	MatchMAC     bool     `json:"match_mac,omitempty"`
	// Host pins the instance to one imds host (see docs/cluster.md).
	Host string `json:"host,omitempty"`

	// Events and faults are run-time state the server shows; they are
	// changed with imds event and imds fault, not through documents, so
	// events is ignored on input.
	Events   *EventsDoc `json:"events,omitempty"`
	Schedule Schedule   `json:"schedule,omitempty"`
	Faults   Faults     `json:"faults,omitempty"`
}

// PlacementDoc is placement: of the instance document.
type PlacementDoc struct {
	GroupName       string `json:"group_name,omitempty"`
	HostID          string `json:"host_id,omitempty"`
	PartitionNumber int    `json:"partition_number,omitempty" check:"min=1"`
}

// InterfaceDoc is one item of network_interfaces. DeviceNumber is written for
// every interface but the first (device 0 unless it says otherwise), and
// PublicIPv4s when it is set, even empty: an empty list means no public
// address, an absent one a derived address.
type InterfaceDoc struct {
	DeviceNumber     *int           `json:"device_number,omitempty"`
	NetworkCardIndex int            `json:"network_card_index,omitempty"`
	InterfaceID      string         `json:"interface_id,omitempty"`
	MAC              string         `json:"mac,omitempty"`
	OwnerID          string         `json:"owner_id,omitempty"`
	LocalIPv4s       []string       `json:"local_ipv4s,omitempty"`
	PublicIPv4s      *[]string      `json:"public_ipv4s,omitempty"`
	IPv6s            []string       `json:"ipv6s,omitempty"`
	LocalHostname    string         `json:"local_hostname,omitempty"`
	PublicHostname   string         `json:"public_hostname,omitempty"`
	SecurityGroups   SecurityGroups `json:"security_groups,omitempty"`
	SubnetID         string         `json:"subnet_id,omitempty"`
	SubnetIPv4CIDR   string         `json:"subnet_ipv4_cidr,omitempty"`
	SubnetIPv6CIDRs  []string       `json:"subnet_ipv6_cidrs,omitempty"`
	VPCID            string         `json:"vpc_id,omitempty"`
	VPCIPv4CIDR      string         `json:"vpc_ipv4_cidr,omitempty"`
	VPCIPv4CIDRs     []string       `json:"vpc_ipv4_cidrs,omitempty"`
	VPCIPv6CIDRs     []string       `json:"vpc_ipv6_cidrs,omitempty"`
}

// SecurityGroupDoc is one security group: {name, id}, or a plain name on input.
type SecurityGroupDoc struct {
	Name string `json:"name" check:"required"`
	ID   string `json:"id,omitempty"`
}

// PublicKeyDoc is one item of public_keys: the key, or on input a file that
// holds it.
type PublicKeyDoc struct {
	Name    string   `json:"name"`
	Key     string   `json:"key"`
	KeyFile FilePath `json:"key_file,omitempty"`
}

// RoleDoc is role: as a mapping (a plain name on input means {name}).
type RoleDoc struct {
	Name                string `json:"name" check:"required"`
	InstanceProfileName string `json:"instance_profile_name,omitempty"`
	InstanceProfileID   string `json:"instance_profile_id,omitempty"`

	none bool // written as "": no instance profile, as null
}

// EventsDoc summarises the events issued to an instance.
type EventsDoc struct {
	Spot          *SpotNoticeDoc   `json:"spot,omitempty"`
	SpotScheduled *SpotNoticeDoc   `json:"spot_scheduled,omitempty"`
	Rebalance     Timestamp        `json:"rebalance,omitzero"`
	Maintenance   []MaintenanceDoc `json:"maintenance,omitempty"`
}

// SpotNoticeDoc is an issued spot interruption.
type SpotNoticeDoc struct {
	Action     string    `json:"action"`
	Time       Timestamp `json:"time"`
	NoticeTime Timestamp `json:"notice_time,omitzero"`
}

// MaintenanceDoc is one maintenance event.
type MaintenanceDoc struct {
	EventID   string    `json:"event_id"`
	Code      string    `json:"code"`
	State     string    `json:"state"`
	NotBefore Timestamp `json:"not_before"`
}

// Name is an instance name: a string in the grammar of ec2.CheckName.
type Name string

// Timestamp is an RFC 3339 time, written in UTC to the second.
type Timestamp struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.UTC().Format(time.RFC3339))
}

// SecurityGroups is a list of groups.
type SecurityGroups []SecurityGroupDoc

// Tags is a mapping of tag keys to values, in document order.
type Tags []ec2.Tag

// MarshalJSON implements json.Marshaler: a JSON object in order.
func (t Tags) MarshalJSON() ([]byte, error) {
	return orderedJSON(len(t), func(i int) (string, string) { return t[i].Key, t[i].Value })
}

// BlockDevices is a mapping of names to devices, in document order.
type BlockDevices []ec2.BlockDevice

// MarshalJSON implements json.Marshaler: a JSON object in order.
func (b BlockDevices) MarshalJSON() ([]byte, error) {
	return orderedJSON(len(b), func(i int) (string, string) { return b[i].Name, b[i].Device })
}

// orderedJSON writes n string pairs as a JSON object in their order.
func orderedJSON(n int, pair func(int) (string, string)) ([]byte, error) {
	out := []byte{'{'}
	for i := range n {
		k, v := pair(i)
		if i > 0 {
			out = append(out, ',')
		}
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(v)
		out = append(append(append(out, kb...), ':'), vb...)
	}
	return append(out, '}'), nil
}

// UserData is user data as text; on input also !!binary.
type UserData []byte

// MarshalJSON implements json.Marshaler (text; others use Base64).
func (u UserData) MarshalJSON() ([]byte, error) { return json.Marshal(string(u)) }

// Base64 is binary data written in standard base64.
type Base64 []byte

// FilePath names a file next to the document; never empty when set.
type FilePath string

// Faults are injected faults in the syntax of ec2.ParseFaults.
type Faults string

// Schedule is the events a config file schedules for the instance; the
// config file only.
type Schedule []ScheduledEvent

// MarshalInstance renders inst as a JSON document in the schema of instance:
// (keys in schema order, empty values left out), so that ParseInstances of
// the result gives back the same spec. The role is always written, as null
// when the instance has none.
func MarshalInstance(inst *ec2.Instance) ([]byte, error) {
	return json.Marshal(docOf(inst))
}

// docOf is the document of inst; instance is its inverse for what
// documents may set.
func docOf(inst *ec2.Instance) *InstanceDoc {
	doc := &InstanceDoc{
		Name:               Name(inst.Name),
		Origin:             inst.Origin,
		InstanceID:         inst.ID,
		AccountID:          inst.AccountID,
		Region:             inst.Region,
		AvailabilityZone:   inst.AvailabilityZone,
		AvailabilityZoneID: inst.AvailabilityZoneID,
		InstanceType:       inst.InstanceType,
		Architecture:       inst.Architecture,
		AMIID:              inst.ImageID,
		AMILaunchIndex:     inst.AMILaunchIndex,
		AMIManifestPath:    inst.AMIManifestPath,
		AncestorAMIIDs:     inst.AncestorAMIIDs,
		KernelID:           inst.KernelID,
		RamdiskID:          inst.RamdiskID,
		ProductCodes:       inst.ProductCodes,
		BillingProducts:    inst.BillingProducts,
		ReservationID:      inst.ReservationID,
		Profile:            inst.Profile,
		InstanceLifeCycle:  inst.LifeCycle,
		InstanceAction:     inst.InstanceAction,
		PendingTime:        Timestamp{inst.PendingTime},
		Monitoring:         inst.Monitoring,
		Partition:          inst.Partition,
		Domain:             inst.Domain,
		Hypervisor:         inst.Hypervisor,
		AutoscalingState:   inst.AutoscalingState,
		Placement:          PlacementDoc{inst.Placement.GroupName, inst.Placement.HostID, inst.Placement.PartitionNumber},
		BlockDevices:       inst.BlockDevices,
		Tags:               inst.Tags,
		TagsInMetadata:     inst.Metadata.TagsInMetadata,
		IMDSv2:             inst.Metadata.HTTPTokens,
		HTTPEndpoint:       inst.Metadata.HTTPEndpoint,
		HopLimit:           inst.Metadata.PutResponseHopLimit,
		SourceAddrs:        inst.SourceAddrs,
		MatchMAC:           inst.MatchMAC,
		Host:               inst.Host,
		Events:             eventsDoc(inst.Events),
		Faults:             Faults(inst.Faults.String()),
	}
	for i, ni := range inst.Interfaces {
		doc.NetworkInterfaces = append(doc.NetworkInterfaces, interfaceDoc(i, ni))
	}
	for _, k := range inst.PublicKeys {
		doc.PublicKeys = append(doc.PublicKeys, PublicKeyDoc{Name: k.Name, Key: k.Key})
	}
	switch {
	case inst.UserData == nil:
	case utf8.Valid(inst.UserData):
		doc.UserData = (*UserData)(&inst.UserData)
	default:
		doc.UserDataBase64 = inst.UserData
	}
	if r := inst.Role; r != nil {
		doc.Role = &RoleDoc{Name: r.Name, InstanceProfileName: r.InstanceProfileName, InstanceProfileID: r.InstanceProfileID}
	}
	return doc
}

func interfaceDoc(i int, ni ec2.NetworkInterface) InterfaceDoc {
	out := InterfaceDoc{
		NetworkCardIndex: ni.NetworkCardIndex,
		InterfaceID:      ni.ID,
		MAC:              ni.MAC,
		OwnerID:          ni.OwnerID,
		LocalIPv4s:       ni.PrivateIPv4s,
		IPv6s:            ni.IPv6s,
		LocalHostname:    ni.LocalHostname,
		PublicHostname:   ni.PublicHostname,
		SubnetID:         ni.SubnetID,
		SubnetIPv4CIDR:   ni.SubnetIPv4CIDR,
		SubnetIPv6CIDRs:  ni.SubnetIPv6CIDRs,
		VPCID:            ni.VPCID,
		VPCIPv4CIDR:      ni.VPCIPv4CIDR,
		VPCIPv4CIDRs:     ni.VPCIPv4CIDRs,
		VPCIPv6CIDRs:     ni.VPCIPv6CIDRs,
	}
	if i > 0 || ni.DeviceNumber != 0 {
		out.DeviceNumber = &ni.DeviceNumber
	}
	if ni.PublicIPv4s != nil {
		out.PublicIPv4s = &ni.PublicIPv4s
	}
	for _, g := range ni.SecurityGroups {
		out.SecurityGroups = append(out.SecurityGroups, SecurityGroupDoc(g))
	}
	return out
}

// eventsDoc summarises issued events; nil when there are none.
func eventsDoc(ev ec2.Events) *EventsDoc {
	out := &EventsDoc{Rebalance: Timestamp{ev.Rebalance}}
	notice := func(sp *ec2.SpotNotice) *SpotNoticeDoc {
		if sp == nil {
			return nil
		}
		return &SpotNoticeDoc{sp.Action, Timestamp{sp.Time}, Timestamp{sp.Notice}}
	}
	out.Spot, out.SpotScheduled = notice(ev.Spot), notice(ev.SpotScheduled)
	for _, m := range ev.Maintenance {
		out.Maintenance = append(out.Maintenance, MaintenanceDoc{m.ID, m.Code, m.State, Timestamp{m.NotBefore}})
	}
	if out.Spot == nil && out.SpotScheduled == nil && ev.Rebalance.IsZero() && len(out.Maintenance) == 0 {
		return nil
	}
	return out
}

// instance is the spec doc describes, for what documents may set: not the
// origin (the server decides) nor events. The shorthands, user data sources
// and file references are resolved before, by the decoder.
func (doc *InstanceDoc) instance() *ec2.Instance {
	inst := &ec2.Instance{
		Name:               string(doc.Name),
		ID:                 doc.InstanceID,
		AccountID:          doc.AccountID,
		Region:             doc.Region,
		AvailabilityZone:   doc.AvailabilityZone,
		AvailabilityZoneID: doc.AvailabilityZoneID,
		InstanceType:       doc.InstanceType,
		Architecture:       doc.Architecture,
		ImageID:            doc.AMIID,
		AMILaunchIndex:     doc.AMILaunchIndex,
		AMIManifestPath:    doc.AMIManifestPath,
		AncestorAMIIDs:     doc.AncestorAMIIDs,
		KernelID:           doc.KernelID,
		RamdiskID:          doc.RamdiskID,
		ProductCodes:       doc.ProductCodes,
		BillingProducts:    doc.BillingProducts,
		ReservationID:      doc.ReservationID,
		Profile:            doc.Profile,
		LifeCycle:          doc.InstanceLifeCycle,
		InstanceAction:     doc.InstanceAction,
		PendingTime:        doc.PendingTime.Time,
		Monitoring:         doc.Monitoring,
		Partition:          doc.Partition,
		Domain:             doc.Domain,
		Hypervisor:         doc.Hypervisor,
		AutoscalingState:   doc.AutoscalingState,
		Placement:          ec2.Placement{GroupName: doc.Placement.GroupName, HostID: doc.Placement.HostID, PartitionNumber: doc.Placement.PartitionNumber},
		BlockDevices:       doc.BlockDevices,
		Tags:               doc.Tags,
		Metadata: ec2.MetadataOptions{
			HTTPTokens:          doc.IMDSv2,
			HTTPEndpoint:        doc.HTTPEndpoint,
			PutResponseHopLimit: doc.HopLimit,
			TagsInMetadata:      doc.TagsInMetadata,
		},
		SourceAddrs: doc.SourceAddrs,
		MatchMAC:    doc.MatchMAC,
		Host:        doc.Host,
	}
	for _, ni := range doc.NetworkInterfaces {
		inst.Interfaces = append(inst.Interfaces, ni.networkInterface())
	}
	for _, k := range doc.PublicKeys {
		inst.PublicKeys = append(inst.PublicKeys, ec2.PublicKey{Name: k.Name, Key: k.Key})
	}
	switch {
	case doc.UserData != nil:
		inst.UserData = nonEmpty(*doc.UserData)
	case doc.UserDataBase64 != nil:
		inst.UserData = nonEmpty(doc.UserDataBase64)
	}
	if doc.Faults != "" {
		inst.Faults, _ = ec2.ParseFaults(string(doc.Faults)) // checked when decoded
	}
	if r := doc.Role; r != nil && !r.none {
		inst.Role = &ec2.Role{Name: r.Name, InstanceProfileName: r.InstanceProfileName, InstanceProfileID: r.InstanceProfileID}
	}
	return inst
}

func (ni InterfaceDoc) networkInterface() ec2.NetworkInterface {
	out := ec2.NetworkInterface{
		NetworkCardIndex: ni.NetworkCardIndex,
		ID:               ni.InterfaceID,
		MAC:              ni.MAC,
		OwnerID:          ni.OwnerID,
		PrivateIPv4s:     ni.LocalIPv4s,
		IPv6s:            ni.IPv6s,
		LocalHostname:    ni.LocalHostname,
		PublicHostname:   ni.PublicHostname,
		SecurityGroups:   ni.SecurityGroups.groups(),
		SubnetID:         ni.SubnetID,
		SubnetIPv4CIDR:   ni.SubnetIPv4CIDR,
		SubnetIPv6CIDRs:  ni.SubnetIPv6CIDRs,
		VPCID:            ni.VPCID,
		VPCIPv4CIDR:      ni.VPCIPv4CIDR,
		VPCIPv4CIDRs:     ni.VPCIPv4CIDRs,
		VPCIPv6CIDRs:     ni.VPCIPv6CIDRs,
	}
	if ni.DeviceNumber != nil {
		out.DeviceNumber = *ni.DeviceNumber
	}
	if ni.PublicIPv4s != nil {
		out.PublicIPv4s = *ni.PublicIPv4s
	}
	return out
}

// primary is interface 0 as the shorthands describe it.
func (doc *InstanceDoc) primary() ec2.NetworkInterface {
	ni := ec2.NetworkInterface{MAC: doc.MAC, SecurityGroups: doc.SecurityGroups.groups()}
	if doc.LocalIPv4 != "" {
		ni.PrivateIPv4s = []string{doc.LocalIPv4}
	}
	if doc.PublicIPv4 != nil {
		// Empty but not nil: ec2.Derive then gives no public address.
		ni.PublicIPv4s = []string{}
		if *doc.PublicIPv4 != "" {
			ni.PublicIPv4s = []string{*doc.PublicIPv4}
		}
	}
	if doc.IPv6 != "" {
		ni.IPv6s = []string{doc.IPv6}
	}
	return ni
}

func (g SecurityGroups) groups() []ec2.SecurityGroup {
	if len(g) == 0 {
		return nil
	}
	out := make([]ec2.SecurityGroup, len(g))
	for i, sg := range g {
		out[i] = ec2.SecurityGroup(sg)
	}
	return out
}
