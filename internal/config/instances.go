package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/ec2"
)

// errNoFiles refuses file references in documents that come over the admin
// API: the server must not read its own files on a client's behalf.
var errNoFiles = errors.New("documents sent to the server cannot reference files; inline the content (user_data, user_data_base64, key)")

// ParseInstances decodes instance definitions in the schema of instance:
// from YAML or JSON: one mapping, a list of them, or a mapping with an
// instances: list. Decoding is as strict as for the config file; every
// problem is reported as "NAME:LINE: field: problem". Each definition needs a
// name. It returns specs, before derivation. File references are refused.
func ParseInstances(name string, data []byte) ([]*ec2.Instance, error) {
	return parseInstances(name, data, "", func(string, int64) ([]byte, error) { return nil, errNoFiles })
}

// LoadInstances reads instance definitions from a local file, resolving
// user_data_file and key_file against its directory (for the CLI, which
// sends the result with the files inlined).
func LoadInstances(path string) ([]*ec2.Instance, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Line: 1, Field: "file", Problem: readError(path, err)}
	}
	return parseInstances(path, data, filepath.Dir(path), readLimited)
}

func parseInstances(name string, data []byte, baseDir string, read readFunc) ([]*ec2.Instance, error) {
	d := newDecoder(name, baseDir, read)
	var defs []*Instance
	if root := d.document(data); root != nil {
		rv := resolve(root)
		switch {
		case rv.Kind == yaml.SequenceNode:
			defs = d.instanceList("", 1, root)
		case rv.Kind == yaml.MappingNode && hasKey(rv, "instances"):
			d.mapping("", 1, root, schema{"instances": func(p string, l int, v *yaml.Node) { defs = d.instanceList(p, l, v) }})
		case rv.Kind == yaml.MappingNode:
			if ci := d.instanceDef("", rv.Line, root); ci != nil {
				defs = []*Instance{ci}
			}
		default:
			d.errorf(rv.Line, "", "must be an instance definition, a list of them or a mapping with instances:, got %s", describe(rv))
		}
	}
	if len(defs) == 0 && len(d.errs) == 0 {
		d.errorf(1, "", "no instance definition found")
	}
	for _, ci := range defs {
		if len(ci.schedule) > 0 {
			d.errorf(ci.schedule[0].Line, sub(ci.prefix, "schedule"), "is read from the config file only; trigger events with imds event")
		}
	}
	f := &File{name: name, lines: d.lines, Instances: defs}
	if !d.exhausted() {
		_, errs := f.buildAll(ec2.DeriveOptions{})
		for _, e := range errs {
			if !d.isCovered(e.Field) {
				d.errs = append(d.errs, e)
			}
		}
	}
	if err := joinErrors(d.errs); err != nil {
		return nil, err
	}
	out := make([]*ec2.Instance, len(defs))
	for i, ci := range defs {
		out[i] = ci.Spec()
	}
	return out, nil
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// ordered is a JSON object that keeps its keys in insertion order.
type ordered struct {
	keys []string
	vals []any
}

func (o *ordered) set(k string, v any) { o.keys = append(o.keys, k); o.vals = append(o.vals, v) }

// opt sets k unless v is the zero value of its type.
func (o *ordered) opt(k string, v any) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return
		}
	case int:
		if x == 0 {
			return
		}
	case bool:
		if !x {
			return
		}
	case []string:
		if len(x) == 0 {
			return
		}
	case *ordered:
		if x == nil || len(x.keys) == 0 {
			return
		}
	}
	o.set(k, v)
}

// MarshalJSON implements json.Marshaler.
func (o *ordered) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(o.vals[i])
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// MarshalInstance renders inst as a JSON document in the schema of instance:
// (keys in schema order, empty values left out), so that ParseInstances of
// the result gives back the same spec. The role is always written, as null
// when the instance has none.
func MarshalInstance(inst *ec2.Instance) ([]byte, error) {
	return json.Marshal(instanceDoc(inst))
}

func instanceDoc(inst *ec2.Instance) *ordered {
	o := &ordered{}
	o.opt("name", inst.Name)
	o.opt("origin", inst.Origin)
	o.opt("instance_id", inst.ID)
	o.opt("account_id", inst.AccountID)
	o.opt("region", inst.Region)
	o.opt("availability_zone", inst.AvailabilityZone)
	o.opt("availability_zone_id", inst.AvailabilityZoneID)
	o.opt("instance_type", inst.InstanceType)
	o.opt("architecture", inst.Architecture)
	o.opt("ami_id", inst.ImageID)
	o.opt("ami_launch_index", inst.AMILaunchIndex)
	o.opt("ami_manifest_path", inst.AMIManifestPath)
	o.opt("ancestor_ami_ids", inst.AncestorAMIIDs)
	o.opt("kernel_id", inst.KernelID)
	o.opt("ramdisk_id", inst.RamdiskID)
	o.opt("product_codes", inst.ProductCodes)
	o.opt("billing_products", inst.BillingProducts)
	o.opt("reservation_id", inst.ReservationID)
	o.opt("profile", inst.Profile)
	o.opt("instance_life_cycle", inst.LifeCycle)
	o.opt("instance_action", inst.InstanceAction)
	if !inst.PendingTime.IsZero() {
		o.set("pending_time", inst.PendingTime.UTC().Format(time.RFC3339))
	}
	o.opt("monitoring", inst.Monitoring)
	o.opt("partition", inst.Partition)
	o.opt("domain", inst.Domain)
	o.opt("hypervisor", inst.Hypervisor)
	o.opt("autoscaling_target_lifecycle_state", inst.AutoscalingState)
	pl := &ordered{}
	pl.opt("group_name", inst.Placement.GroupName)
	pl.opt("host_id", inst.Placement.HostID)
	pl.opt("partition_number", inst.Placement.PartitionNumber)
	o.opt("placement", pl)
	if len(inst.Interfaces) > 0 {
		nis := make([]*ordered, 0, len(inst.Interfaces))
		for i, ni := range inst.Interfaces {
			n := &ordered{}
			if i > 0 || ni.DeviceNumber != 0 {
				n.set("device_number", ni.DeviceNumber)
			}
			n.opt("network_card_index", ni.NetworkCardIndex)
			n.opt("interface_id", ni.ID)
			n.opt("mac", ni.MAC)
			n.opt("owner_id", ni.OwnerID)
			n.opt("local_ipv4s", ni.PrivateIPv4s)
			if ni.PublicIPv4s != nil {
				n.set("public_ipv4s", nonNil(ni.PublicIPv4s))
			}
			n.opt("ipv6s", ni.IPv6s)
			n.opt("local_hostname", ni.LocalHostname)
			n.opt("public_hostname", ni.PublicHostname)
			if len(ni.SecurityGroups) > 0 {
				var sgs []*ordered
				for _, g := range ni.SecurityGroups {
					sg := &ordered{}
					sg.opt("name", g.Name)
					sg.opt("id", g.ID)
					sgs = append(sgs, sg)
				}
				n.set("security_groups", sgs)
			}
			n.opt("subnet_id", ni.SubnetID)
			n.opt("subnet_ipv4_cidr", ni.SubnetIPv4CIDR)
			n.opt("subnet_ipv6_cidrs", ni.SubnetIPv6CIDRs)
			n.opt("vpc_id", ni.VPCID)
			n.opt("vpc_ipv4_cidr", ni.VPCIPv4CIDR)
			n.opt("vpc_ipv4_cidrs", ni.VPCIPv4CIDRs)
			n.opt("vpc_ipv6_cidrs", ni.VPCIPv6CIDRs)
			nis = append(nis, n)
		}
		o.set("network_interfaces", nis)
	}
	if len(inst.BlockDevices) > 0 {
		bd := &ordered{}
		for _, d := range inst.BlockDevices {
			bd.set(d.Name, d.Device)
		}
		o.set("block_devices", bd)
	}
	if len(inst.PublicKeys) > 0 {
		var keys []*ordered
		for _, k := range inst.PublicKeys {
			ko := &ordered{}
			ko.set("name", k.Name)
			ko.set("key", k.Key)
			keys = append(keys, ko)
		}
		o.set("public_keys", keys)
	}
	if len(inst.Tags) > 0 {
		tags := &ordered{}
		for _, t := range inst.Tags {
			tags.set(t.Key, t.Value)
		}
		o.set("tags", tags)
	}
	o.opt("tags_in_metadata", inst.Metadata.TagsInMetadata)
	if inst.UserData != nil {
		if utf8.Valid(inst.UserData) {
			o.set("user_data", string(inst.UserData))
		} else {
			o.set("user_data_base64", base64.StdEncoding.EncodeToString(inst.UserData))
		}
	}
	if inst.Role == nil {
		o.set("role", nil)
	} else {
		r := &ordered{}
		r.set("name", inst.Role.Name)
		r.opt("instance_profile_name", inst.Role.InstanceProfileName)
		r.opt("instance_profile_id", inst.Role.InstanceProfileID)
		o.set("role", r)
	}
	o.opt("imdsv2", inst.Metadata.HTTPTokens)
	o.opt("http_endpoint", inst.Metadata.HTTPEndpoint)
	o.opt("hop_limit", inst.Metadata.PutResponseHopLimit)
	o.opt("source_addresses", inst.SourceAddrs)
	o.opt("match_mac", inst.MatchMAC)
	// Run-time state, shown by the server and ignored when read back.
	if ev := eventsDoc(inst.Events); ev != nil {
		o.set("events", ev)
	}
	o.opt("faults", inst.Faults.String())
	return o
}

// eventsDoc summarises issued events; nil when there are none.
func eventsDoc(ev ec2.Events) *ordered {
	o := &ordered{}
	for _, n := range []struct {
		key string
		sp  *ec2.SpotNotice
	}{{"spot", ev.Spot}, {"spot_scheduled", ev.SpotScheduled}} {
		if n.sp == nil {
			continue
		}
		sp := &ordered{}
		sp.set("action", n.sp.Action)
		sp.set("time", n.sp.Time.UTC().Format(time.RFC3339))
		if !n.sp.Notice.IsZero() {
			sp.set("notice_time", n.sp.Notice.UTC().Format(time.RFC3339))
		}
		o.set(n.key, sp)
	}
	if !ev.Rebalance.IsZero() {
		o.set("rebalance", ev.Rebalance.UTC().Format(time.RFC3339))
	}
	if len(ev.Maintenance) > 0 {
		var ms []*ordered
		for _, m := range ev.Maintenance {
			mo := &ordered{}
			mo.set("event_id", m.ID)
			mo.set("code", m.Code)
			mo.set("state", m.State)
			mo.set("not_before", m.NotBefore.UTC().Format(time.RFC3339))
			ms = append(ms, mo)
		}
		o.set("maintenance", ms)
	}
	if len(o.keys) == 0 {
		return nil
	}
	return o
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
