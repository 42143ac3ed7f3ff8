package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/imdsdev/imds/internal/ec2"
)

// Run runs the ec2.InstanceStore contract tests against stores made by
// newStore (a fresh, empty store per call).
func Run(t *testing.T, newStore func(t *testing.T) ec2.InstanceStore) {
	ctx := t.Context()
	// A backend may return an empty slice as nil or as empty, as no field but
	// UserData gives the difference a meaning, and UserData has its own
	// subtest. time.Time compares with Equal, so a backend may change the
	// location's name but not the instant.
	equal := cmpopts.EquateEmpty()

	t.Run("SampleIsFull", func(t *testing.T) {
		// Guards the round-trip subtests: a field missing from the sample
		// would go untested.
		if zero := ZeroFields(FullInstance("full")); len(zero) > 0 {
			t.Errorf("FullInstance leaves fields unset, so their storage goes untested: %v", zero)
		}
	})

	t.Run("CreateFindRoundTrip", func(t *testing.T) {
		s := newStore(t)
		want := FullInstance("full")
		mustCreate(t, s, want)
		got, err := s.FindInstanceByName(ctx, "full")
		if err != nil {
			t.Fatalf("FindInstanceByName: %v", err)
		}
		if diff := cmp.Diff(want, got, equal); diff != "" {
			t.Errorf("FindInstanceByName after CreateInstance (-want +got):\n%s", diff)
		}
		all, err := s.FindInstances(ctx)
		if err != nil {
			t.Fatalf("FindInstances: %v", err)
		}
		if diff := cmp.Diff([]*ec2.Instance{want}, all, equal); diff != "" {
			t.Errorf("FindInstances after CreateInstance (-want +got):\n%s", diff)
		}
	})

	t.Run("UserDataNilAndEmptyKeptApart", func(t *testing.T) {
		// nil user data is a 404 and empty user data an empty 200: the
		// difference must survive storage.
		s := newStore(t)
		none, empty := FullInstance("none"), FullInstance("empty")
		none.UserData, empty.UserData = nil, []byte{}
		mustCreate(t, s, none)
		mustCreate(t, s, empty)
		if got := mustFind(t, s, "none"); got.UserData != nil {
			t.Errorf("nil UserData came back as %#v", got.UserData)
		}
		if got := mustFind(t, s, "empty"); got.UserData == nil || len(got.UserData) != 0 {
			t.Errorf("empty UserData came back as %#v, want []byte{}", got.UserData)
		}
	})

	t.Run("CreateDuplicateConflicts", func(t *testing.T) {
		s := newStore(t)
		first := FullInstance("dup")
		mustCreate(t, s, first)
		second := FullInstance("dup")
		second.ID = "i-0fedcba9876543210"
		err := s.CreateInstance(ctx, second)
		if code := ec2.ErrorCode(err); code != ec2.ECONFLICT {
			t.Fatalf("second CreateInstance of the same name: error %v (code %q), want code %q", err, code, ec2.ECONFLICT)
		}
		if got := mustFind(t, s, "dup"); got.ID != first.ID {
			t.Errorf("a refused CreateInstance changed the stored ID to %s", got.ID)
		}
	})

	t.Run("UpdateMissingNotFound", func(t *testing.T) {
		s := newStore(t)
		err := s.UpdateInstance(ctx, FullInstance("ghost"))
		if code := ec2.ErrorCode(err); code != ec2.ENOTFOUND {
			t.Fatalf("UpdateInstance of a missing name: error %v (code %q), want code %q", err, code, ec2.ENOTFOUND)
		}
		if _, err := s.FindInstanceByName(ctx, "ghost"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
			t.Errorf("a refused UpdateInstance created the instance (Find error %v)", err)
		}
	})

	t.Run("UpdateReplaces", func(t *testing.T) {
		s := newStore(t)
		mustCreate(t, s, FullInstance("repl"))
		// Every optional part removed: nothing of the old spec may survive.
		want := &ec2.Instance{Name: "repl", ID: "i-0aaaaaaaaaaaaaaaa", Origin: ec2.OriginAPI}
		if err := s.UpdateInstance(ctx, want); err != nil {
			t.Fatalf("UpdateInstance: %v", err)
		}
		got := mustFind(t, s, "repl")
		if diff := cmp.Diff(want, got, equal); diff != "" {
			t.Errorf("after UpdateInstance (-want +got):\n%s", diff)
		}
		if got.UserData != nil || got.Role != nil {
			t.Errorf("removed UserData/Role came back: %#v / %#v", got.UserData, got.Role)
		}
	})

	t.Run("DeleteThenFindNotFound", func(t *testing.T) {
		s := newStore(t)
		mustCreate(t, s, FullInstance("gone"))
		mustCreate(t, s, FullInstance("kept"))
		if err := s.DeleteInstance(ctx, "gone"); err != nil {
			t.Fatalf("DeleteInstance: %v", err)
		}
		if _, err := s.FindInstanceByName(ctx, "gone"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
			t.Errorf("FindInstanceByName after DeleteInstance: error %v, want code %q", err, ec2.ENOTFOUND)
		}
		all, err := s.FindInstances(ctx)
		if err != nil {
			t.Fatalf("FindInstances: %v", err)
		}
		if names := names(all); !slices.Equal(names, []string{"kept"}) {
			t.Errorf("FindInstances after DeleteInstance = %v, want [kept]", names)
		}
		// The name is free again.
		mustCreate(t, s, FullInstance("gone"))
	})

	t.Run("DeleteMissingNotFound", func(t *testing.T) {
		s := newStore(t)
		err := s.DeleteInstance(ctx, "ghost")
		if code := ec2.ErrorCode(err); code != ec2.ENOTFOUND {
			t.Fatalf("DeleteInstance of a missing name: error %v (code %q), want code %q", err, code, ec2.ENOTFOUND)
		}
	})

	t.Run("EmptyNameInvalid", func(t *testing.T) {
		s := newStore(t)
		unnamed := FullInstance("")
		for op, err := range map[string]error{
			"CreateInstance":     s.CreateInstance(ctx, unnamed),
			"UpdateInstance":     s.UpdateInstance(ctx, unnamed),
			"DeleteInstance":     s.DeleteInstance(ctx, ""),
			"FindInstanceByName": second(s.FindInstanceByName(ctx, "")),
		} {
			if code := ec2.ErrorCode(err); code != ec2.EINVALID {
				t.Errorf("%s with an empty name: error %v (code %q), want code %q", op, err, code, ec2.EINVALID)
			}
		}
	})

	t.Run("FindInstancesSortedAndComplete", func(t *testing.T) {
		s := newStore(t)
		all, err := s.FindInstances(ctx)
		if err != nil || len(all) != 0 {
			t.Fatalf("FindInstances on an empty store = %v, %v; want none", names(all), err)
		}
		// Byte order, the order of Go's string comparison: upper case before
		// lower, shorter prefix first, multi-byte runes last.
		want := []string{"A", "a", "a-1", "a.b", "aa", "b", "web-10", "web-2", "zz", "é"}
		shuffled := slices.Clone(want)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for _, n := range shuffled {
			mustCreate(t, s, FullInstance(n))
		}
		all, err = s.FindInstances(ctx)
		if err != nil {
			t.Fatalf("FindInstances: %v", err)
		}
		if got := names(all); !slices.Equal(got, want) {
			t.Errorf("FindInstances names = %v, want %v (created in order %v)", got, want, shuffled)
		}
		for _, inst := range all {
			if diff := cmp.Diff(FullInstance(inst.Name), inst, equal); diff != "" {
				t.Errorf("FindInstances returned %s changed (-want +got):\n%s", inst.Name, diff)
			}
		}
	})

	t.Run("ReturnedValuesAreCopies", func(t *testing.T) {
		s := newStore(t)
		in := FullInstance("copy")
		mustCreate(t, s, in)
		// The store must not keep the caller's value either.
		mutate(in)
		want := FullInstance("copy")
		if diff := cmp.Diff(want, mustFind(t, s, "copy"), equal); diff != "" {
			t.Fatalf("modifying the value given to CreateInstance changed the store (-want +got):\n%s", diff)
		}

		mutate(mustFind(t, s, "copy"))
		if diff := cmp.Diff(want, mustFind(t, s, "copy"), equal); diff != "" {
			t.Errorf("modifying a FindInstanceByName result changed the store (-want +got):\n%s", diff)
		}
		all, err := s.FindInstances(ctx)
		if err != nil || len(all) != 1 {
			t.Fatalf("FindInstances = %v, %v", names(all), err)
		}
		mutate(all[0])
		if diff := cmp.Diff(want, mustFind(t, s, "copy"), equal); diff != "" {
			t.Errorf("modifying a FindInstances result changed the store (-want +got):\n%s", diff)
		}

		up := FullInstance("copy")
		if err := s.UpdateInstance(ctx, up); err != nil {
			t.Fatalf("UpdateInstance: %v", err)
		}
		mutate(up)
		if diff := cmp.Diff(want, mustFind(t, s, "copy"), equal); diff != "" {
			t.Errorf("modifying the value given to UpdateInstance changed the store (-want +got):\n%s", diff)
		}
	})

	t.Run("ConcurrentCreates", func(t *testing.T) {
		const goroutines, each = 10, 5
		s := newStore(t)
		concurrently(t, goroutines, "concurrent CreateInstance", func(g int) error {
			var errs []error
			for i := range each {
				errs = append(errs, s.CreateInstance(ctx, FullInstance(fmt.Sprintf("c-%02d-%d", g, i))))
			}
			return errors.Join(errs...)
		})
		all, err := s.FindInstances(ctx)
		if err != nil {
			t.Fatalf("FindInstances: %v", err)
		}
		var want []string
		for g := range goroutines {
			for i := range each {
				want = append(want, fmt.Sprintf("c-%02d-%d", g, i))
			}
		}
		if got := names(all); !slices.Equal(got, want) {
			t.Errorf("after %d concurrent creates FindInstances has %d: %v", len(want), len(got), got)
		}
	})

	t.Run("CreateInstancesAllOrNothing", func(t *testing.T) {
		s := newStore(t)
		bs, ok := s.(ec2.InstanceBatchStore)
		if !ok {
			t.Skip("the store writes no batches")
		}
		mustCreate(t, s, FullInstance("taken"))
		// 300 is more than one etcd transaction holds (128 operations).
		batch := func(prefix string, n int) []*ec2.Instance {
			list := make([]*ec2.Instance, n)
			for i := range list {
				list[i] = FullInstance(fmt.Sprintf("%s-%03d", prefix, i))
			}
			return list
		}
		tests := []struct {
			name  string
			batch []*ec2.Instance
		}{
			{"name taken", append(batch("a", 3), FullInstance("taken"))},
			{"name taken after the first transaction", append(batch("b", 299), FullInstance("taken"))},
			{"name twice", append(batch("c", 2), FullInstance("c-001"))},
		}
		for _, tt := range tests {
			err := bs.CreateInstances(ctx, tt.batch)
			if code := ec2.ErrorCode(err); code != ec2.ECONFLICT {
				t.Errorf("%s: CreateInstances: %v (code %q), want ECONFLICT", tt.name, err, code)
			}
			if all, err := s.FindInstances(ctx); err != nil || len(all) != 1 {
				t.Errorf("%s: the store holds %v (%v) after a refused batch; want only taken", tt.name, names(all), err)
			}
		}
		want := batch("d", 300)
		if err := bs.CreateInstances(ctx, want); err != nil {
			t.Fatalf("CreateInstances: %v", err)
		}
		all, err := s.FindInstances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, all[:300], equal); diff != "" || len(all) != 301 {
			t.Errorf("FindInstances after CreateInstances of 300 (%d found) (-want +got):\n%s", len(all), diff)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s := newStore(t)
		mustCreate(t, s, FullInstance("present"))
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.CreateInstance(canceled, FullInstance("new")); err == nil {
			t.Error("CreateInstance with a canceled context succeeded")
		}
		if err := s.UpdateInstance(canceled, FullInstance("present")); err == nil {
			t.Error("UpdateInstance with a canceled context succeeded")
		}
		if err := s.DeleteInstance(canceled, "present"); err == nil {
			t.Error("DeleteInstance with a canceled context succeeded")
		}
		if _, err := s.FindInstanceByName(canceled, "present"); err == nil {
			t.Error("FindInstanceByName with a canceled context succeeded")
		}
		if _, err := s.FindInstances(canceled); err == nil {
			t.Error("FindInstances with a canceled context succeeded")
		}
		// A canceled call must have had no effect.
		all, err := s.FindInstances(ctx)
		if err != nil {
			t.Fatalf("FindInstances: %v", err)
		}
		if got := names(all); !slices.Equal(got, []string{"present"}) {
			t.Errorf("after canceled calls FindInstances = %v, want [present]", got)
		}
	})
}

// FullInstance returns an instance named name with every field set, nested
// ones included, to non-zero values; ZeroFields(FullInstance(n)) is empty
// except for Name when n is "". Each call returns a new value.
func FullInstance(name string) *ec2.Instance {
	return &ec2.Instance{
		Name:               name,
		ID:                 "i-0123456789abcdef0",
		AccountID:          "123456789012",
		Region:             "eu-west-3",
		AvailabilityZone:   "eu-west-3b",
		AvailabilityZoneID: "euw3-az2",
		InstanceType:       "m7g.large",
		Architecture:       "arm64",
		ImageID:            "ami-0abcdef1234567890",
		AMILaunchIndex:     3,
		AMIManifestPath:    "(unknown)",
		AncestorAMIIDs:     []string{"ami-0000000000000000a", "ami-0000000000000000b"},
		KernelID:           "aki-12345678",
		RamdiskID:          "ari-12345678",
		ProductCodes:       []string{"pc-one", "pc-two"},
		BillingProducts:    []string{"bp-6ba54002"},
		ReservationID:      "r-0123456789abcdef0",
		Profile:            "default-hvm",
		LifeCycle:          "spot",
		InstanceAction:     "shutdown",
		// Nanoseconds and a non-UTC offset: both must survive.
		PendingTime: time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.FixedZone("CET", 3600)), // fixed instant: stored and read back
		Monitoring:  true,
		Partition:   "aws",
		Domain:      "amazonaws.com",
		Hypervisor:  "nitro",
		Placement:   ec2.Placement{GroupName: "pg", HostID: "h-0123456789abcdef0", PartitionNumber: 2},
		Interfaces: []ec2.NetworkInterface{{
			DeviceNumber:     0,
			NetworkCardIndex: 0,
			ID:               "eni-0123456789abcdef0",
			MAC:              "02:00:00:00:00:01",
			OwnerID:          "123456789012",
			PrivateIPv4s:     []string{"10.0.0.10", "10.0.0.11"},
			PublicIPv4s:      []string{"203.0.113.10"},
			IPv6s:            []string{"2001:db8::10"},
			LocalHostname:    "ip-10-0-0-10.eu-west-3.compute.internal",
			PublicHostname:   "ec2-203-0-113-10.eu-west-3.compute.amazonaws.com",
			SecurityGroups:   []ec2.SecurityGroup{{Name: "default", ID: "sg-0123456789abcdef0"}, {Name: "web", ID: "sg-0123456789abcdef1"}},
			SubnetID:         "subnet-0123456789abcdef0",
			SubnetIPv4CIDR:   "10.0.0.0/24",
			SubnetIPv6CIDRs:  []string{"2001:db8::/64"},
			VPCID:            "vpc-0123456789abcdef0",
			VPCIPv4CIDR:      "10.0.0.0/16",
			VPCIPv4CIDRs:     []string{"10.0.0.0/16", "10.1.0.0/16"},
			VPCIPv6CIDRs:     []string{"2001:db8::/56"},
		}, {
			// The second interface carries the non-zero device numbers the
			// first cannot, so that every field is set somewhere.
			DeviceNumber:     1,
			NetworkCardIndex: 1,
			ID:               "eni-0123456789abcdef1",
			MAC:              "02:00:00:00:00:02",
			OwnerID:          "123456789012",
			PrivateIPv4s:     []string{"10.0.1.10"},
			PublicIPv4s:      []string{"203.0.113.11"},
			IPv6s:            []string{"2001:db8:1::10"},
			LocalHostname:    "ip-10-0-1-10.eu-west-3.compute.internal",
			PublicHostname:   "ec2-203-0-113-11.eu-west-3.compute.amazonaws.com",
			SecurityGroups:   []ec2.SecurityGroup{{Name: "db", ID: "sg-0123456789abcdef2"}},
			SubnetID:         "subnet-0123456789abcdef1",
			SubnetIPv4CIDR:   "10.0.1.0/24",
			SubnetIPv6CIDRs:  []string{"2001:db8:1::/64"},
			VPCID:            "vpc-0123456789abcdef0",
			VPCIPv4CIDR:      "10.0.0.0/16",
			VPCIPv4CIDRs:     []string{"10.0.0.0/16"},
			VPCIPv6CIDRs:     []string{"2001:db8::/56"},
		}},
		BlockDevices: []ec2.BlockDevice{{Name: "ami", Device: "/dev/xvda"}, {Name: "ebs1", Device: "sdb"}},
		PublicKeys:   []ec2.PublicKey{{Name: "me", Key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA me@example"}},
		// Out of alphabetical order on purpose: the order must be kept.
		Tags:     []ec2.Tag{{Key: "Name", Value: "web"}, {Key: "Env", Value: "prod"}, {Key: "App", Value: "shop"}},
		UserData: []byte("#!/bin/sh\necho \x00\xff binary-safe\n"),
		Role:     &ec2.Role{Name: "web-role", InstanceProfileName: "web-profile", InstanceProfileID: "AIPA0123456789ABCDEFG"},
		Metadata: ec2.MetadataOptions{
			HTTPTokens:          ec2.TokensRequired,
			HTTPEndpoint:        ec2.EndpointEnabled,
			TagsInMetadata:      true,
			PutResponseHopLimit: 2,
		},
		AutoscalingState: "InService",
		SourceAddrs:      []string{"10.0.0.10", "fd00::10"},
		MatchMAC:         true,
		Origin:           ec2.OriginAPI,
		Host:             "hv-1",
	}
}

// NotStored names the fields of ec2.Instance that an instance's record does
// not keep: run-time state, which a store keeps apart as an ec2.Overlay
// (RunOverlays) so that no document written through the admin API touches
// it. ZeroFields does not report them.
var NotStored = map[string]bool{"Events": true, "Faults": true}

// ZeroFields returns the paths of the fields of v (a struct or a pointer to
// one) that are zero, looking into nested structs, pointers and slice
// elements. A field counts as set if any element of its slice sets it, so that
// a sample with several list elements (for instance a device number 0 and
// one 1) is full. An empty or nil slice is itself reported.
//
// It uses reflection so that a field added to ec2.Instance is reported until
// the sample, and therefore the backends' encodings, cover it.
func ZeroFields(v any) []string {
	set := map[string]bool{}
	var all []string
	var walk func(path string, rv reflect.Value)
	walk = func(path string, rv reflect.Value) {
		if _, seen := set[path]; !seen {
			all = append(all, path)
			set[path] = false
		}
		if rv.IsZero() {
			return
		}
		switch rv.Kind() {
		case reflect.Pointer:
			walk(path+"*", rv.Elem())
			set[path] = true
		case reflect.Slice:
			if rv.Len() == 0 {
				return
			}
			set[path] = true
			if rv.Type().Elem().Kind() == reflect.Uint8 {
				return // bytes: non-empty is enough
			}
			for i := range rv.Len() {
				walk(path+"[]", rv.Index(i))
			}
		case reflect.Struct:
			set[path] = true
			if rv.Type() == reflect.TypeFor[time.Time]() {
				return // opaque: non-zero is enough
			}
			for i := range rv.NumField() {
				f := rv.Type().Field(i)
				if !f.IsExported() || (rv.Type() == reflect.TypeFor[ec2.Instance]() && NotStored[f.Name]) {
					continue
				}
				walk(path+"."+f.Name, rv.Field(i))
			}
		default:
			set[path] = true
		}
	}
	rv := reflect.ValueOf(v)
	walk(rv.Type().String(), rv)
	var zero []string
	for _, p := range all {
		if !set[p] {
			zero = append(zero, p)
		}
	}
	return zero
}

// mutate changes every part of inst that a store could share with its own
// copy: scalars, slice elements in place, nested slices and the role.
func mutate(inst *ec2.Instance) {
	inst.ID = "i-0ffffffffffffffff"
	inst.AncestorAMIIDs[0] = "mutated"
	inst.ProductCodes[0] = "mutated"
	inst.BillingProducts[0] = "mutated"
	inst.Interfaces[0].MAC = "mutated"
	inst.Interfaces[0].PrivateIPv4s[0] = "mutated"
	inst.Interfaces[0].SecurityGroups[0].ID = "mutated"
	inst.Interfaces[0].VPCIPv4CIDRs[0] = "mutated"
	inst.BlockDevices[0].Device = "mutated"
	inst.PublicKeys[0].Key = "mutated"
	inst.Tags[0].Value = "mutated"
	inst.UserData[0] = 'X'
	inst.Role.Name = "mutated"
	inst.SourceAddrs[0] = "mutated"
	inst.Metadata.HTTPTokens = "mutated"
}

func mustCreate(t *testing.T, s ec2.InstanceStore, inst *ec2.Instance) {
	t.Helper()
	if err := s.CreateInstance(t.Context(), inst); err != nil {
		t.Fatalf("CreateInstance(%q): %v", inst.Name, err)
	}
}

func mustFind(t *testing.T, s ec2.InstanceStore, name string) *ec2.Instance {
	t.Helper()
	inst, err := s.FindInstanceByName(t.Context(), name)
	if err != nil {
		t.Fatalf("FindInstanceByName(%q): %v", name, err)
	}
	return inst
}

func names(insts []*ec2.Instance) []string {
	var out []string
	for _, inst := range insts {
		out = append(out, inst.Name)
	}
	return out
}

func second[T any](_ T, err error) error { return err }
