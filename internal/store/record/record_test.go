package record

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/storetest"
)

// TestRecordRoundTrip checks that the record carries every field of
// ec2.Instance exactly: the sample sets every field (checked by reflection, so
// a new field fails here until the sample and the record cover it), and the
// comparison is strict, nil against empty included.
func TestRecordRoundTrip(t *testing.T) {
	want := storetest.FullInstance("full")
	if zero := storetest.ZeroFields(want); len(zero) > 0 {
		t.Fatalf("the sample leaves fields unset; add them to storetest.FullInstance and to record: %v", zero)
	}
	b, err := json.Marshal(toRecord(want))
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	got, err := r.instance()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record round trip lost data (-want +got):\n%s", diff)
	}

	// The normalisation the record documents: empty slices come back nil,
	// except UserData whose emptiness means something.
	sparse := &ec2.Instance{Name: "sparse", Tags: []ec2.Tag{}, Interfaces: []ec2.NetworkInterface{{PrivateIPv4s: []string{}}}, UserData: []byte{}}
	b, _ = json.Marshal(toRecord(sparse))
	var sr record
	if err := json.Unmarshal(b, &sr); err != nil {
		t.Fatal(err)
	}
	got, err = sr.instance()
	if err != nil {
		t.Fatal(err)
	}
	if got.Tags != nil || got.Interfaces[0].PrivateIPv4s != nil || got.UserData == nil || len(got.UserData) != 0 {
		t.Errorf("sparse instance came back as %+v (stored %s)", got, b)
	}
}

// TestRecordFormat pins the version 1 file format: renaming a Go field must
// not change it, and files written today must stay readable. If the sample
// gained a field, regenerate testdata/record-v1.json from the output below
// after checking that only additions show up in the diff.
func TestRecordFormat(t *testing.T) {
	golden, err := os.ReadFile("testdata/record-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	want := storetest.FullInstance("full")
	got, err := Unmarshal("full", golden)
	if err != nil {
		t.Fatalf("decode golden record: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("golden version 1 record decodes differently (-want +got):\n%s", diff)
	}
	encoded, err := json.MarshalIndent(toRecord(want), "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(encoded), bytes.TrimSpace(golden)) {
		t.Errorf("the encoding of the sample differs from testdata/record-v1.json; now:\n%s", encoded)
	}
}

// TestRecordBeforeHost reads a version 1 record written before instances
// could be pinned to a host: it is the same instance, unpinned.
func TestRecordBeforeHost(t *testing.T) {
	old, err := os.ReadFile("testdata/record-v1-unpinned.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal("full", old)
	if err != nil {
		t.Fatalf("decode a record written before host: %v", err)
	}
	want := storetest.FullInstance("full")
	want.Host = ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("a record without host decodes differently (-want +got):\n%s", diff)
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	for _, tc := range []struct{ name, key, v string }{
		{"not JSON", "a", "{"},
		{"other name", "a", `{"version":1,"name":"b"}`},
		{"newer version", "a", `{"version":2,"name":"a"}`},
		{"bad time", "a", `{"version":1,"name":"a","pending_time":"yesterday"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if inst, err := Unmarshal(tc.key, []byte(tc.v)); err == nil {
				t.Errorf("Unmarshal(%q, %s) = %+v, want an error", tc.key, tc.v, inst)
			}
		})
	}
	if _, err := Marshal(nil); ec2.ErrorCode(err) != ec2.EINVALID {
		t.Errorf("Marshal(nil): %v, want EINVALID", err)
	}
}
