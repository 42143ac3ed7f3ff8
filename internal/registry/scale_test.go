package registry

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/bolt"
)

// scaleSpec is the nth instance of a large registry: its own name and
// address.
func scaleSpec(n int) *ec2.Instance {
	a := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
	return &ec2.Instance{Name: fmt.Sprintf("vm-%06d", n), SourceAddrs: []string{a.String()},
		Tags: []ec2.Tag{{Key: "env", Value: "bench"}}}
}

// fillRegistry registers n instances through AddInstanceBatch, in batches
// of 5,000, and returns the time it took.
func fillRegistry(tb testing.TB, r *Registry, n int) time.Duration {
	tb.Helper()
	start := time.Now()
	for i := 0; i < n; i += 5000 {
		batch := make([]*ec2.Instance, 0, 5000)
		for j := i; j < min(n, i+5000); j++ {
			batch = append(batch, scaleSpec(j))
		}
		if _, err := r.AddInstanceBatch(tb.Context(), batch); err != nil {
			tb.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkScale registers 1,000, 10,000 and 100,000 instances (bolt) and
// prints what one add and one remove cost then, the batch registration
// time, and the start-up (Load) time and heap of a registry over the file.
// Figures only: nothing here asserts a time.
func BenchmarkScale(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "imds.db")
			r, _, db := openRegistryDB(b, path)
			r.Logger = slog.New(slog.DiscardHandler)
			fill := fillRegistry(b, r, n)
			var add, remove time.Duration
			i := 0
			for b.Loop() {
				spec := scaleSpec(n + 1 + i)
				t0 := time.Now()
				if _, err := r.AddInstance(b.Context(), spec); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := r.RemoveInstance(b.Context(), spec.Name); err != nil {
					b.Fatal(err)
				}
				add, remove = add+t1.Sub(t0), remove+time.Since(t1)
				i++
			}
			b.ReportMetric(float64(add.Microseconds())/float64(i)/1000, "add-ms")
			b.ReportMetric(float64(remove.Microseconds())/float64(i)/1000, "remove-ms")
			b.ReportMetric(fill.Seconds(), "batch-fill-s")

			// Start-up: a new registry over the same file.
			db.Close()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			t0, c0 := time.Now(), cpuTime()
			db2, err := bolt.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer db2.Close()
			opened := time.Since(t0)
			r2 := New(db2.Instances(), opt)
			if err := r2.Load(b.Context()); err != nil {
				b.Fatal(err)
			}
			loaded, cpu := time.Since(t0), cpuTime()-c0
			runtime.GC()
			runtime.ReadMemStats(&after)
			if got := r2.idx.Load().len(); got != n {
				b.Fatalf("loaded %d instances, want %d", got, n)
			}
			b.ReportMetric(opened.Seconds(), "open-s")
			b.ReportMetric(loaded.Seconds(), "startup-s")
			b.ReportMetric(cpu.Seconds(), "startup-cpu-s")
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
		})
	}
}

// BenchmarkLoad is the start-up of a registry over a bolt file of 100,000
// instances: opening (and checking) the file, then Load. For profiles.
func BenchmarkLoad(b *testing.B) {
	const n = 100000
	path := filepath.Join(b.TempDir(), "imds.db")
	db, err := bolt.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	specs := make([]*ec2.Instance, n)
	for i := range specs {
		specs[i] = scaleSpec(i)
		specs[i].PendingTime = time.Unix(1700000000, 0) // fixed instant: a stored launch time, never compared with a clock
	}
	if err := db.Instances().CreateInstances(b.Context(), specs); err != nil {
		b.Fatal(err)
	}
	db.Close()
	var cpu time.Duration
	for b.Loop() {
		c0 := cpuTime()
		db, err := bolt.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		r := New(db.Instances(), opt)
		if err := r.Load(b.Context()); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c0
		db.Close()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is the CPU time of the process so far, user and system: on a
// shared machine, far steadier than the wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
