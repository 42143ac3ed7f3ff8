package ec2

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestInstanceUpdateApply(t *testing.T) {
	base := func() *Instance {
		return &Instance{Name: "a", Region: "us-east-1", AvailabilityZone: "us-east-1c", AvailabilityZoneID: "use1-az1",
			Role: &Role{Name: "r", InstanceProfileName: "p"}, Tags: []Tag{{"env", "old"}, {"keep", "1"}},
			Interfaces: []NetworkInterface{{DeviceNumber: 1, MAC: "02:00:00:00:00:09"}, {MAC: "02:00:00:00:00:01"}}}
	}
	tests := []struct {
		name string
		u    InstanceUpdate
		want func(*Instance)
	}{
		{name: "nothing", want: func(*Instance) {}},
		{name: "region drops the zone of the old region", u: InstanceUpdate{Region: Ptr("eu-west-1")},
			want: func(i *Instance) { i.Region, i.AvailabilityZone, i.AvailabilityZoneID = "eu-west-1", "", "" }},
		{name: "region and zone", u: InstanceUpdate{Region: Ptr("eu-west-1"), AvailabilityZone: Ptr("eu-west-1b")},
			want: func(i *Instance) { i.Region, i.AvailabilityZone, i.AvailabilityZoneID = "eu-west-1", "eu-west-1b", "" }},
		{name: "same role keeps it", u: InstanceUpdate{Role: Ptr("r")}, want: func(*Instance) {}},
		{name: "other role", u: InstanceUpdate{Role: Ptr("s")}, want: func(i *Instance) { i.Role = &Role{Name: "s"} }},
		{name: "no role", u: InstanceUpdate{Role: Ptr("")}, want: func(i *Instance) { i.Role = nil }},
		{name: "MAC of the primary interface", u: InstanceUpdate{MAC: Ptr("02:00:00:00:00:02")},
			want: func(i *Instance) { i.Interfaces[1].MAC, i.MatchMAC = "02:00:00:00:00:02", true }},
		{name: "tags in order", u: InstanceUpdate{Tags: []TagEdit{{Key: "env", Value: "dev"}, {Key: "new", Value: "x"}, {Key: "keep", Remove: true}}},
			want: func(i *Instance) { i.Tags = []Tag{{"env", "dev"}, {"new", "x"}} }},
		{name: "empty user data removes it", u: InstanceUpdate{UserData: Ptr([]byte{})}, want: func(*Instance) {}},
		{name: "imdsv2 and hop limit", u: InstanceUpdate{HTTPTokens: Ptr(TokensRequired), HopLimit: Ptr(2)},
			want: func(i *Instance) { i.Metadata.HTTPTokens, i.Metadata.PutResponseHopLimit = TokensRequired, 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, want := base(), base()
			tt.u.Apply(got)
			tt.want(want)
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("Apply (-got +want):\n%s", diff)
			}
		})
	}
}

// TestInstanceUpdateJSON: absent fields stay nil (unchanged), present empty
// ones are kept (cleared).
func TestInstanceUpdateJSON(t *testing.T) {
	var u InstanceUpdate
	if err := json.Unmarshal([]byte(`{"source_addresses":[],"role":"","tags":[{"key":"a","remove":true}]}`), &u); err != nil {
		t.Fatal(err)
	}
	if u.SourceAddrs == nil || len(*u.SourceAddrs) != 0 || u.Role == nil || *u.Role != "" || u.MAC != nil || u.IsZero() {
		t.Errorf("decoded %+v", u)
	}
	if (InstanceUpdate{}).IsZero() != true {
		t.Error("the zero update changes something")
	}
}

// TestInstanceUpdateClearsRoundTrip: an emptied list or user data survives
// the trip through JSON as "clear", not as "unchanged".
func TestInstanceUpdateClearsRoundTrip(t *testing.T) {
	b, err := json.Marshal(InstanceUpdate{SourceAddrs: Ptr([]string{}), UserData: Ptr([]byte{})})
	if err != nil {
		t.Fatal(err)
	}
	var u InstanceUpdate
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	if u.SourceAddrs == nil || u.UserData == nil {
		t.Errorf("%s decoded as %+v, want both fields present", b, u)
	}
}
