package registry

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// BenchmarkOverlay prints what one event (TriggerEvent, a rebalance
// notice) and one instance's faults (SetFaults) cost with 1,000 and 100,000
// registered instances (bolt), in ns/op and allocs/op. Figures only:
// nothing here asserts a time.
func BenchmarkOverlay(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		path := filepath.Join(b.TempDir(), "imds.db")
		r, _, _ := openRegistryDB(b, path)
		r.Logger = slog.New(slog.DiscardHandler)
		filled := false
		fill := func(b *testing.B) {
			if !filled {
				fillRegistry(b, r, n)
				filled = true
			}
		}
		b.Run(fmt.Sprintf("TriggerEvent/%d", n), func(b *testing.B) {
			fill(b)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				name := scaleSpec(i % n).Name
				if _, err := r.TriggerEvent(b.Context(), name, ec2.EventRequest{Type: ec2.EventRebalance}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("SetFaults/%d", n), func(b *testing.B) {
			fill(b)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				name := scaleSpec(i % n).Name
				if err := r.SetFaults(b.Context(), name, ec2.Faults{ErrorRate: 0.5, ErrorStatus: 500}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
