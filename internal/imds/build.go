package imds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// ec2Time is the timestamp format of IMDS JSON documents.
const ec2Time = "2006-01-02T15:04:05Z"

// compiled is the tree of one instance snapshot plus what requests need
// alongside it.
type compiled struct {
	inst         *ec2.Instance
	settings     *settings // those it was compiled with
	root         *node     // children: dynamic, meta-data, user-data
	scope        string
	lastModified []string
}

// compile builds the metadata tree of inst. Static values are rendered once;
// credentials stay dynamic because they rotate without the instance changing.
func (s *Server) compile(inst *ec2.Instance, st *settings) (*compiled, error) {
	doc := identityDocument(inst)
	var sigs struct{ signature, pkcs7, rsa2048 string }
	if s.Signer != nil {
		sg, err := s.Signer.Sign(doc)
		if err != nil {
			return nil, fmt.Errorf("signing identity document of %s: %w", inst.Name, err)
		}
		sigs.signature, sigs.pkcs7, sigs.rsa2048 = sg.Signature, sg.PKCS7, sg.RSA2048
	}
	monitoring := "disabled"
	if inst.Monitoring {
		monitoring = "enabled"
	}
	dynamic := dir("dynamic", "2009-04-04",
		dir("fws", "2009-04-04", leaf("instance-monitoring", "2009-04-04", monitoring)),
		// EC2 lists these in this order (and dsa2048, whose content is undocumented).
		when(s.Signer != nil, func() *node {
			return dir("instance-identity", "2009-04-04",
				leaf("rsa2048", "2009-04-04", sigs.rsa2048),
				leaf("pkcs7", "2009-04-04", sigs.pkcs7),
				&node{name: "document", entry: "document", since: "2009-04-04", value: doc},
				leaf("signature", "2009-04-04", sigs.signature),
			)
		}),
	)
	var userData *node
	ud, udErr := inst.UserData, error(nil)
	if st.userData != nil {
		ud, udErr = st.userData(inst)
	}
	switch {
	case udErr != nil:
		// A broken template breaks this instance's user-data only.
		s.Logger.Error("user-data not rendered", "instance", inst.Name, "err", udErr)
		msg := udErr.Error()
		userData = &node{name: "user-data", entry: "user-data", octet: true, dyn: func(context.Context) ([]byte, error) {
			return nil, ec2.Errorf(ec2.EINTERNAL, "%s", msg)
		}}
	case ud != nil:
		userData = &node{name: "user-data", entry: "user-data", value: ud, octet: true}
	}
	md := s.metaData(inst)
	// EC2 lists the version root without trailing slashes.
	dynamic.entry, md.entry = dynamic.name, md.name
	root := dir("", "", dynamic, md, userData)
	return &compiled{
		inst:         inst,
		settings:     st,
		root:         root,
		scope:        inst.Name + "\x00" + inst.ID,
		lastModified: []string{s.now().UTC().Format(httpTime)},
	}, nil
}

const httpTime = "Mon, 02 Jan 2006 15:04:05 GMT"

func (s *Server) metaData(inst *ec2.Instance) *node {
	p := inst.Primary()
	first := func(v []string) string {
		if len(v) == 0 {
			return ""
		}
		return v[0]
	}
	var sgNames []string
	for _, g := range p.SecurityGroups {
		sgNames = append(sgNames, g.Name)
	}
	return sortedDir("meta-data", "",
		leaf("ami-id", "1.0", inst.ImageID),
		leaf("ami-launch-index", "1.0", strconv.Itoa(inst.AMILaunchIndex)),
		leaf("ami-manifest-path", "1.0", inst.AMIManifestPath),
		when(len(inst.AncestorAMIIDs) > 0, func() *node { return lines("ancestor-ami-ids", "2007-10-10", inst.AncestorAMIIDs) }),
		when(inst.AutoscalingState != "", func() *node {
			return dir("autoscaling", "2021-07-15", leaf("target-lifecycle-state", "2021-07-15", inst.AutoscalingState))
		}),
		blockDeviceMapping(inst),
		events(inst),
		leaf("hostname", "1.0", p.LocalHostname),
		when(inst.Role != nil, func() *node { return s.iam(inst) }),
		s.identityCredentials(inst),
		leaf("instance-action", "2008-09-01", inst.InstanceAction),
		leaf("instance-id", "1.0", inst.ID),
		leaf("instance-life-cycle", "2019-10-01", inst.LifeCycle),
		leaf("instance-type", "2007-08-29", inst.InstanceType),
		when(len(p.IPv6s) > 0, func() *node { return leaf("ipv6", "2021-01-03", p.IPv6s[0]) }),
		when(inst.KernelID != "", func() *node { return leaf("kernel-id", "2008-02-01", inst.KernelID) }),
		leaf("local-hostname", "2007-01-19", p.LocalHostname),
		when(len(p.PrivateIPv4s) > 0, func() *node { return leaf("local-ipv4", "1.0", first(p.PrivateIPv4s)) }),
		leaf("mac", "2011-01-01", p.MAC),
		// Retired, but real instances still list it.
		dir("metrics", "2011-05-01", leaf("vhostmd", "2011-05-01", `<?xml version="1.0" encoding="UTF-8"?>`)),
		dir("network", "2011-01-01", networkInterfaces(inst)),
		placement(inst),
		when(len(inst.ProductCodes) > 0, func() *node { return lines("product-codes", "2007-03-01", inst.ProductCodes) }),
		leaf("profile", "", inst.Profile),
		when(p.PublicHostname != "", func() *node { return leaf("public-hostname", "2007-01-19", p.PublicHostname) }),
		when(len(p.PublicIPv4s) > 0, func() *node { return leaf("public-ipv4", "2007-01-19", first(p.PublicIPv4s)) }),
		publicKeys(inst),
		when(inst.RamdiskID != "", func() *node { return leaf("ramdisk-id", "2007-10-10", inst.RamdiskID) }),
		leaf("reservation-id", "1.0", inst.ReservationID),
		lines("security-groups", "1.0", sgNames),
		dir("services", "2014-02-25",
			leaf("domain", "2014-02-25", inst.Domain),
			leaf("partition", "2015-10-20", inst.Partition),
		),
		spot(inst),
		when(inst.Hypervisor != "", func() *node { return leaf("system", "", inst.Hypervisor) }),
		tags(inst),
	)
}

// spot is spot/, present only once an interruption notice is issued, as on EC2.
func spot(inst *ec2.Instance) *node {
	sp := inst.Events.Spot
	if sp == nil {
		return nil
	}
	t := sp.Time.UTC().Format(ec2Time)
	return dir("spot", "2014-11-05",
		leaf("instance-action", "2016-11-15", `{"action": "`+sp.Action+`", "time": "`+t+`"}`),
		when(sp.Action == ec2.SpotTerminate, func() *node { return leaf("termination-time", "2014-11-05", t) }),
	)
}

// events is events/: maintenance/ always (empty lists until something is
// scheduled), recommendations/ only once a rebalance recommendation exists.
func events(inst *ec2.Instance) *node {
	var scheduled, history []ec2.MaintenanceEvent
	for _, e := range inst.Events.Maintenance {
		if e.State == ec2.MaintenanceActive {
			scheduled = append(scheduled, e)
		} else {
			history = append(history, e)
		}
	}
	ev := inst.Events
	return dir("events", "2018-08-17",
		dir("maintenance", "2018-08-17",
			&node{name: "history", entry: "history", since: "2018-08-17", value: maintenanceDoc(history)},
			&node{name: "scheduled", entry: "scheduled", since: "2018-08-17", value: maintenanceDoc(scheduled)},
		),
		when(!ev.Rebalance.IsZero(), func() *node {
			return dir("recommendations", "2020-10-27",
				leaf("rebalance", "2020-10-27", `{"noticeTime": "`+ev.Rebalance.UTC().Format(ec2Time)+`"}`))
		}),
	)
}

// maintenanceTime is the date format of maintenance events: "21 Jan 2019 09:00:43 GMT".
const maintenanceTime = "02 Jan 2006 15:04:05 GMT"

// maintenanceDoc renders maintenance events in the layout of EC2's documentation.
func maintenanceDoc(evs []ec2.MaintenanceEvent) []byte {
	if len(evs) == 0 {
		return []byte("[]")
	}
	var b bytes.Buffer
	b.WriteString("[ \n")
	for i, e := range evs {
		doc := jsonDoc(
			"NotBefore", e.NotBefore.UTC().Format(maintenanceTime),
			"Code", e.Code,
			"Description", e.Description,
			"EventId", e.ID,
			"NotAfter", e.NotAfter.UTC().Format(maintenanceTime),
			"State", e.State,
		)
		b.WriteString("  ")
		b.Write(bytes.ReplaceAll(doc, []byte("\n"), []byte("\n  ")))
		if i < len(evs)-1 {
			b.WriteByte(',')
		}
		b.WriteString(" \n")
	}
	b.WriteByte(']')
	return b.Bytes()
}

func blockDeviceMapping(inst *ec2.Instance) *node {
	if len(inst.BlockDevices) == 0 {
		return nil
	}
	kids := make([]*node, 0, len(inst.BlockDevices))
	for _, d := range inst.BlockDevices {
		kids = append(kids, leaf(d.Name, "2007-12-15", d.Device))
	}
	return sortedDir("block-device-mapping", "2007-12-15", kids...)
}

func placement(inst *ec2.Instance) *node {
	pl := inst.Placement
	return sortedDir("placement", "2008-02-01",
		leaf("availability-zone", "2008-02-01", inst.AvailabilityZone),
		leaf("availability-zone-id", "2019-10-01", inst.AvailabilityZoneID),
		when(pl.GroupName != "", func() *node { return leaf("group-name", "2020-08-24", pl.GroupName) }),
		when(pl.HostID != "", func() *node { return leaf("host-id", "2020-08-24", pl.HostID) }),
		when(pl.PartitionNumber > 0, func() *node {
			return leaf("partition-number", "2020-08-24", strconv.Itoa(pl.PartitionNumber))
		}),
		leaf("region", "2020-08-24", inst.Region),
	)
}

func publicKeys(inst *ec2.Instance) *node {
	if len(inst.PublicKeys) == 0 {
		return nil
	}
	kids := make([]*node, 0, len(inst.PublicKeys))
	for i, k := range inst.PublicKeys {
		idx := strconv.Itoa(i)
		d := dir(idx, "1.0", leaf("openssh-key", "1.0", k.Key))
		d.entry = idx + "=" + k.Name // the listing names keys, but paths use the index
		kids = append(kids, d)
	}
	return dir("public-keys", "1.0", kids...)
}

func tags(inst *ec2.Instance) *node {
	if !inst.Metadata.TagsInMetadata || len(inst.Tags) == 0 {
		return nil
	}
	kids := make([]*node, 0, len(inst.Tags))
	for _, t := range inst.Tags {
		kids = append(kids, leaf(t.Key, "2021-03-23", t.Value))
	}
	return dir("tags", "2021-03-23", dir("instance", "2021-03-23", kids...))
}

func networkInterfaces(inst *ec2.Instance) *node {
	macs := make([]*node, 0, len(inst.Interfaces))
	for _, ni := range inst.Interfaces {
		var sgNames, sgIDs []string
		for _, g := range ni.SecurityGroups {
			sgNames = append(sgNames, g.Name)
			sgIDs = append(sgIDs, g.ID)
		}
		var assoc *node
		if len(ni.PublicIPv4s) > 0 && len(ni.PrivateIPv4s) > 0 {
			kids := make([]*node, 0, len(ni.PublicIPv4s))
			for n, pub := range ni.PublicIPv4s {
				kids = append(kids, leaf(pub, "2011-01-01", ni.PrivateIPv4s[min(n, len(ni.PrivateIPv4s)-1)]))
			}
			assoc = dir("ipv4-associations", "2011-01-01", kids...)
		}
		macs = append(macs, sortedDir(ni.MAC, "2011-01-01",
			leaf("device-number", "2011-01-01", strconv.Itoa(ni.DeviceNumber)),
			leaf("interface-id", "2011-01-01", ni.ID),
			assoc,
			when(len(ni.IPv6s) > 0, func() *node { return lines("ipv6s", "2016-06-30", ni.IPv6s) }),
			leaf("local-hostname", "2011-01-01", ni.LocalHostname),
			when(len(ni.PrivateIPv4s) > 0, func() *node { return lines("local-ipv4s", "2011-01-01", ni.PrivateIPv4s) }),
			leaf("mac", "2011-01-01", ni.MAC),
			leaf("network-card-index", "2020-11-01", strconv.Itoa(ni.NetworkCardIndex)),
			leaf("owner-id", "2011-01-01", ni.OwnerID),
			when(ni.PublicHostname != "", func() *node { return leaf("public-hostname", "2011-01-01", ni.PublicHostname) }),
			when(len(ni.PublicIPv4s) > 0, func() *node { return lines("public-ipv4s", "2011-01-01", ni.PublicIPv4s) }),
			lines("security-group-ids", "2011-01-01", sgIDs),
			lines("security-groups", "2011-01-01", sgNames),
			leaf("subnet-id", "2011-01-01", ni.SubnetID),
			leaf("subnet-ipv4-cidr-block", "2011-01-01", ni.SubnetIPv4CIDR),
			when(len(ni.SubnetIPv6CIDRs) > 0, func() *node {
				return lines("subnet-ipv6-cidr-blocks", "2016-06-30", ni.SubnetIPv6CIDRs)
			}),
			leaf("vpc-id", "2011-01-01", ni.VPCID),
			leaf("vpc-ipv4-cidr-block", "2011-01-01", ni.VPCIPv4CIDR),
			lines("vpc-ipv4-cidr-blocks", "2016-06-30", ni.VPCIPv4CIDRs),
			when(len(ni.VPCIPv6CIDRs) > 0, func() *node { return lines("vpc-ipv6-cidr-blocks", "2016-06-30", ni.VPCIPv6CIDRs) }),
		))
	}
	return dir("interfaces", "2011-01-01", sortedDir("macs", "2011-01-01", macs...))
}

func (s *Server) iam(inst *ec2.Instance) *node {
	role := inst.Role.Name
	creds := func(ctx context.Context) (ec2.Credentials, error) {
		c, err := s.Credentials.Credentials(ctx, inst, role)
		if err == nil && inst.Faults.ExpiredCredentials {
			// The fault: credentials that expired a minute ago, as after a long outage.
			now := s.now().UTC().Truncate(time.Second)
			c.LastUpdated, c.Expiration = now.Add(-6*time.Hour), now.Add(-time.Minute)
		}
		return c, err
	}
	return dir("iam", "2012-01-12",
		dynLeaf("info", "2012-01-12", func(ctx context.Context) ([]byte, error) {
			c, err := creds(ctx)
			updated := c.LastUpdated
			if err != nil {
				updated = s.now()
			}
			return jsonDoc(
				"Code", "Success",
				"LastUpdated", updated.UTC().Format(ec2Time),
				"InstanceProfileArn", inst.InstanceProfileArn(),
				"InstanceProfileId", inst.Role.InstanceProfileID,
			), nil
		}),
		dir("security-credentials", "2012-01-12",
			dynLeaf(role, "2012-01-12", cachedCredentials(creds, s.roleError)),
		),
	)
}

func (s *Server) identityCredentials(inst *ec2.Instance) *node {
	if s.Identity == nil {
		return nil
	}
	creds := func(ctx context.Context) (ec2.Credentials, error) {
		return s.Identity.IdentityCredentials(ctx, inst)
	}
	return dir("identity-credentials", "2018-05-23",
		dir("ec2", "2018-05-23",
			dynLeaf("info", "2018-05-23", func(ctx context.Context) ([]byte, error) {
				c, err := creds(ctx)
				if err != nil {
					return nil, err
				}
				return jsonDoc("Code", "Success", "LastUpdated", c.LastUpdated.UTC().Format(ec2Time), "AccountId", inst.AccountID), nil
			}),
			dir("security-credentials", "2018-05-23",
				dynLeaf("ec2-instance", "2018-05-23", cachedCredentials(creds, s.roleError)),
			),
		),
	)
}

// roleError renders a credential failure the way EC2 does: 200 with a JSON
// Code other than Success, so SDKs report the message instead of retrying.
// Only ENOTFOUND stays an HTTP error.
func (s *Server) roleError(err error) ([]byte, error) {
	if ec2.ErrorCode(err) == ec2.ENOTFOUND {
		return nil, err
	}
	code, msg := "InternalError", ec2.ErrorMessage(err)
	var re *ec2.RoleError
	if errors.As(err, &re) {
		code, msg = re.EC2Code, re.Message
	}
	return jsonDoc("Code", code, "Message", msg, "LastUpdated", s.now().UTC().Format(ec2Time)), nil
}

// renderedCredentials is a credentials document and the credentials it shows.
type renderedCredentials struct {
	creds ec2.Credentials
	doc   []byte
}

// cachedCredentials renders the credentials document once per set of
// credentials rather than on every request; the provider is still asked
// every time, so rotation shows immediately.
func cachedCredentials(get func(context.Context) (ec2.Credentials, error), onErr func(error) ([]byte, error)) func(context.Context) ([]byte, error) {
	var last atomic.Pointer[renderedCredentials]
	return func(ctx context.Context) ([]byte, error) {
		c, err := get(ctx)
		if err != nil {
			return onErr(err)
		}
		if r := last.Load(); r != nil && r.creds == c {
			return r.doc, nil
		}
		r := &renderedCredentials{creds: c, doc: credentialsDoc(c)}
		last.Store(r)
		return r.doc, nil
	}
}

func credentialsDoc(c ec2.Credentials) []byte {
	return jsonDoc(
		"Code", "Success",
		"LastUpdated", c.LastUpdated.UTC().Format(ec2Time),
		"Type", "AWS-HMAC",
		"AccessKeyId", c.AccessKeyID,
		"SecretAccessKey", c.SecretAccessKey,
		"Token", c.SessionToken,
		"Expiration", c.Expiration.UTC().Format(ec2Time),
	)
}

// jsonDoc renders key/value string pairs in EC2's style: two-space indent,
// " : " between key and value, keys in the given order.
func jsonDoc(kv ...string) []byte {
	var b bytes.Buffer
	b.WriteString("{\n")
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString("  ")
		writeJSONString(&b, kv[i])
		b.WriteString(" : ")
		writeJSONString(&b, kv[i+1])
		if i+2 < len(kv) {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteByte('}')
	return b.Bytes()
}

func writeJSONString(b *bytes.Buffer, s string) {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			plain = false
			break
		}
	}
	if plain {
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // cannot fail for a string
	b.Truncate(b.Len() - 1)
}

// identityDocument renders dynamic/instance-identity/document exactly as EC2
// lays it out; the signatures cover these bytes.
func identityDocument(inst *ec2.Instance) []byte {
	p := inst.Primary()
	str := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	list := func(v []string) any {
		if len(v) == 0 {
			return nil
		}
		return v
	}
	var privateIP any
	if len(p.PrivateIPv4s) > 0 {
		privateIP = p.PrivateIPv4s[0]
	}
	fields := []struct {
		k string
		v any
	}{
		{"accountId", inst.AccountID},
		{"architecture", inst.Architecture},
		{"availabilityZone", inst.AvailabilityZone},
		{"billingProducts", list(inst.BillingProducts)},
		{"devpayProductCodes", nil},
		{"marketplaceProductCodes", list(inst.ProductCodes)},
		{"imageId", inst.ImageID},
		{"instanceId", inst.ID},
		{"instanceType", inst.InstanceType},
		{"kernelId", str(inst.KernelID)},
		{"pendingTime", inst.PendingTime.UTC().Format(time.RFC3339)},
		{"privateIp", privateIP},
		{"ramdiskId", str(inst.RamdiskID)},
		{"region", inst.Region},
		{"version", "2017-09-30"},
	}
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, f := range fields {
		b.WriteString("  ")
		writeJSONString(&b, f.k)
		b.WriteString(" : ")
		switch v := f.v.(type) {
		case nil:
			b.WriteString("null")
		case string:
			writeJSONString(&b, v)
		case []string:
			b.WriteString("[ ")
			for j, s := range v {
				if j > 0 {
					b.WriteString(", ")
				}
				writeJSONString(&b, s)
			}
			b.WriteString(" ]")
		}
		if i < len(fields)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteByte('}')
	return b.Bytes()
}
