package record

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzUnmarshal: no stored bytes make Unmarshal panic, and what it accepts
// survives Marshal and Unmarshal again unchanged.
func FuzzUnmarshal(f *testing.F) {
	if golden, err := os.ReadFile("testdata/record-v1.json"); err == nil {
		f.Add("full", golden)
	}
	f.Add("a", []byte(`{"version":1,"name":"a"}`))
	f.Add("a", []byte(`{"version":1,"name":"a","user_data":"","pending_time":"2026-01-02T03:04:05Z"}`))
	f.Add("a", []byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, key string, v []byte) {
		inst, err := Unmarshal(key, v)
		if err != nil || key == "" {
			return
		}
		b, err := Marshal(inst)
		if err != nil {
			t.Fatalf("Marshal of an accepted record: %v", err)
		}
		again, err := Unmarshal(key, b)
		if err != nil {
			t.Fatalf("Unmarshal of its own encoding: %v\n%s", err, b)
		}
		if diff := cmp.Diff(inst, again); diff != "" {
			t.Errorf("a second round trip changed the instance (-first +second):\n%s", diff)
		}
	})
}
