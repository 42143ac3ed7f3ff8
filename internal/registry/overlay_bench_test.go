package registry

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// BenchmarkOverlay prints what one event (TriggerEvent, a rebalance
// notice), one instance's faults (SetFaults), the faults of every
// instance, LoadOverlays and one overlay another host changed
// (ApplyOverlays) cost with 1,000 and 100,000 registered instances (bolt),
// in ns/op and allocs/op. Figures only:
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
		b.Run(fmt.Sprintf("SetFaultsAll/%d", n), func(b *testing.B) {
			fill(b)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := r.SetFaults(b.Context(), "", ec2.Faults{ErrorRate: float64(i%2) / 2, ErrorStatus: 500}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		// What a host that follows another's event paid before
		// ApplyOverlays (and still pays at a resync).
		b.Run(fmt.Sprintf("LoadOverlays/%d", n), func(b *testing.B) {
			fill(b)
			b.ReportAllocs()
			for b.Loop() {
				if err := r.LoadOverlays(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
		benchApplyOverlays(b, r, n, fill)
	}
}

// benchApplyOverlays is what a host that follows another's event pays: one
// changed overlay handed over by its etcd Follower.
func benchApplyOverlays(b *testing.B, r *Registry, n int, fill func(*testing.B)) {
	b.Run(fmt.Sprintf("ApplyOverlays/%d", n), func(b *testing.B) {
		fill(b)
		b.ReportAllocs()
		at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // fixed instant: a stored event time, never compared with a clock
		i := 0
		for b.Loop() {
			name := scaleSpec(i % n).Name
			o := &ec2.Overlay{Events: ec2.Events{Rebalance: at}}
			if err := r.ApplyOverlays(b.Context(), map[string]*ec2.Overlay{name: o}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkHeapAllFaults prints the heap of a registry of 100,000
// instances (bolt) with no faults and with faults of every instance set:
// the index keeps no second value of an instance for them.
func BenchmarkHeapAllFaults(b *testing.B) {
	const n = 100000
	r, _, _ := openRegistryDB(b, filepath.Join(b.TempDir(), "imds.db"))
	r.Logger = slog.New(slog.DiscardHandler)
	fillRegistry(b, r, n)
	heap := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	for b.Loop() {
		h0 := heap()
		if err := r.SetFaults(b.Context(), "", ec2.Faults{ErrorRate: 0.5}); err != nil {
			b.Fatal(err)
		}
		h1 := heap()
		if err := r.SetFaults(b.Context(), "", ec2.Faults{}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(h0, "heap-none-MB")
		b.ReportMetric(h1, "heap-allfaults-MB")
	}
}
