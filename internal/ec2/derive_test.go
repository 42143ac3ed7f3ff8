package ec2

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func derived(name string, seed string) *Instance {
	inst := NewDefaultInstance()
	inst.Name = name
	Derive(inst, DeriveOptions{Seed: []byte(seed), Launch: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}) // fixed instant: a launch time, derived from
	return inst
}

func TestDeriveStableAndValid(t *testing.T) {
	a, b := derived("default", "machine-1"), derived("default", "machine-1")
	if a.ID != b.ID || a.Primary().MAC != b.Primary().MAC || a.AccountID != b.AccountID || a.Primary().PrivateIPv4s[0] != b.Primary().PrivateIPv4s[0] {
		t.Errorf("same seed and name derived different values: %+v vs %+v", a, b)
	}
	c := derived("default", "machine-2")
	if a.ID == c.ID || a.Primary().MAC == c.Primary().MAC {
		t.Errorf("different machines derived the same ID/MAC %s %s", a.ID, a.Primary().MAC)
	}
	d := derived("other", "machine-1")
	if a.ID == d.ID {
		t.Errorf("different names derived the same ID %s", a.ID)
	}
	for _, inst := range []*Instance{a, c, d} {
		if errs := inst.Validate(); len(errs) > 0 {
			t.Errorf("derived instance %s invalid: %v", inst.Name, errs)
		}
	}
}

func TestDeriveConsistent(t *testing.T) {
	inst := derived("default", "m")
	p := inst.Primary()
	ip := netip.MustParseAddr(p.PrivateIPv4s[0])
	if !netip.MustParsePrefix(p.SubnetIPv4CIDR).Contains(ip) || !netip.MustParsePrefix(p.VPCIPv4CIDR).Contains(ip) {
		t.Errorf("private IP %s outside subnet %s or VPC %s", ip, p.SubnetIPv4CIDR, p.VPCIPv4CIDR)
	}
	if want := "ip-" + strings.ReplaceAll(ip.String(), ".", "-") + ".ec2.internal"; p.LocalHostname != want {
		t.Errorf("LocalHostname=%q, want %q", p.LocalHostname, want)
	}
	if !strings.HasPrefix(inst.AvailabilityZone, inst.Region) || !strings.HasPrefix(inst.AvailabilityZoneID, "use1-az") {
		t.Errorf("AZ %s / %s inconsistent with region %s", inst.AvailabilityZone, inst.AvailabilityZoneID, inst.Region)
	}
	if p.OwnerID != inst.AccountID {
		t.Errorf("OwnerID=%s, want account %s", p.OwnerID, inst.AccountID)
	}
	if got, want := inst.InstanceProfileArn(), "arn:aws:iam::"+inst.AccountID+":instance-profile/"+DefaultRoleName; got != want {
		t.Errorf("InstanceProfileArn=%q, want %q", got, want)
	}
	if !inst.PendingTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) { // fixed instant: compared with the derived value
		t.Errorf("PendingTime=%v, want launch truncated to the second", inst.PendingTime)
	}
	if len(inst.ID) != 19 || len(inst.ImageID) != 21 {
		t.Errorf("ID=%q ImageID=%q: want EC2's 17-hex-digit IDs", inst.ID, inst.ImageID)
	}
}

func TestDeriveKeepsGivenValues(t *testing.T) {
	inst := &Instance{Name: "x", AvailabilityZone: "ap-southeast-2c", Interfaces: []NetworkInterface{{PrivateIPv4s: []string{"10.1.2.3"}}}}
	Derive(inst, DeriveOptions{Seed: []byte("s")})
	p := inst.Primary()
	if inst.Region != "ap-southeast-2" || inst.AvailabilityZoneID != "apse2-az3" {
		t.Errorf("Region=%s AZID=%s, want ap-southeast-2 apse2-az3", inst.Region, inst.AvailabilityZoneID)
	}
	if p.SubnetIPv4CIDR != "10.1.2.0/24" || p.VPCIPv4CIDR != "10.1.0.0/16" {
		t.Errorf("subnet=%s vpc=%s, want 10.1.2.0/24 10.1.0.0/16", p.SubnetIPv4CIDR, p.VPCIPv4CIDR)
	}
	if p.LocalHostname != "ip-10-1-2-3.ap-southeast-2.compute.internal" {
		t.Errorf("LocalHostname=%s", p.LocalHostname)
	}
	if errs := inst.Validate(); len(errs) > 0 {
		t.Errorf("invalid: %v", errs)
	}
}

func TestRegionCode(t *testing.T) {
	for in, want := range map[string]string{"us-east-1": "use1", "eu-west-2": "euw2", "ap-southeast-2": "apse2",
		"us-gov-west-1": "usgw1", "ca-central-1": "cac1", "ap-northeast-1": "apne1",
		// Invalid regions (Validate refuses them) must not crash Derive,
		// which runs first; FuzzParse found "--".
		"--": "", "a--1": "a1", "-": "-", "": ""} {
		if got := regionCode(in); got != want {
			t.Errorf("regionCode(%s)=%s, want %s", in, got, want)
		}
	}
}

func TestValidateReportsFields(t *testing.T) {
	inst := derived("default", "m")
	inst.ID = "x-1"
	inst.Metadata.HTTPTokens = "sometimes"
	inst.Metadata.PutResponseHopLimit = 65
	inst.Metadata.TagsInMetadata = true
	inst.Tags = []Tag{{Key: "a b", Value: "v"}}
	got := map[string]bool{}
	for _, e := range inst.Validate() {
		got[e.Field] = true
	}
	for _, f := range []string{"instance_id", "imdsv2", "hop_limit", "tags"} {
		if !got[f] {
			t.Errorf("Validate did not report %s (got %v)", f, got)
		}
	}
}

func TestCredentialsStringHidesSecrets(t *testing.T) {
	c := Credentials{AccessKeyID: "ASIAABCDEFGHIJKLMNOP", SecretAccessKey: "secret", SessionToken: "token"}
	for _, s := range []string{c.String(), c.GoString()} {
		if strings.Contains(s, "secret") || strings.Contains(s, "token") || strings.Contains(s, "IJKLMNOP") {
			t.Errorf("%q reveals secrets", s)
		}
	}
}
