package record

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/store/storetest"
)

// TestOverlayFormat pins the version 1 overlay encoding: the sample (every
// kept field set) round-trips, and encodes as testdata/overlay-v1.json.
func TestOverlayFormat(t *testing.T) {
	want := storetest.FullOverlay()
	b, err := MarshalOverlay(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalOverlay(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("overlay round trip lost data (-want +got):\n%s", diff)
	}
	golden, err := os.ReadFile("testdata/overlay-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var indented bytes.Buffer
	json.Indent(&indented, b, "", "\t")
	if !bytes.Equal(indented.Bytes(), bytes.TrimSpace(golden)) {
		t.Errorf("the encoding of the sample differs from testdata/overlay-v1.json; now:\n%s", indented.Bytes())
	}
	if got, err := UnmarshalOverlay(golden); err != nil || !cmp.Equal(got, want) {
		t.Errorf("the golden record decodes as %+v, %v", got, err)
	}
}

func TestUnmarshalOverlayErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"version":2}`, "version 2 is not supported"},
		{`{"version":1,"rebalance":"yesterday"}`, "rebalance:"},
		{`{"version":1,"spot":{"action":"stop","time":"x","notice":""}}`, "spot.time:"},
		{`{"version":1,"maintenance":[{"id":"e","code":"c","state":"active","not_before":"","not_after":"soon"}]}`, "maintenance[0].not_after:"},
		{`{"version":1,"faults":{"error_rate":2}}`, "faults: error_rate"},
		{`[`, "unexpected end"},
	} {
		_, err := UnmarshalOverlay([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("UnmarshalOverlay(%s) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

// FuzzUnmarshalOverlay: no stored bytes make UnmarshalOverlay panic, and
// what it accepts survives a second round trip unchanged.
func FuzzUnmarshalOverlay(f *testing.F) {
	if golden, err := os.ReadFile("testdata/overlay-v1.json"); err == nil {
		f.Add(golden)
	}
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"faults":{"latency_ns":5,"token":"refuse"}}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		o, err := UnmarshalOverlay(v)
		if err != nil {
			return
		}
		b, err := MarshalOverlay(o)
		if err != nil {
			t.Fatalf("MarshalOverlay of an accepted record: %v", err)
		}
		again, err := UnmarshalOverlay(b)
		if err != nil {
			t.Fatalf("UnmarshalOverlay of its own encoding: %v\n%s", err, b)
		}
		if diff := cmp.Diff(o, again); diff != "" {
			t.Errorf("a second round trip changed the overlay (-first +second):\n%s", diff)
		}
	})
}
