package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/imdsdev/imds/internal/ec2"
)

// FullOverlay returns an overlay with every kept field set. Times are whole
// seconds in UTC, as the registry fixes them.
func FullOverlay() ec2.Overlay {
	// A fixed instant: stores keep times as given, no clock is read.
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	return ec2.Overlay{
		Events: ec2.Events{
			Spot:          &ec2.SpotNotice{Action: ec2.SpotStop, Time: at.Add(2 * time.Minute), Notice: at},
			SpotScheduled: &ec2.SpotNotice{Action: ec2.SpotTerminate, Time: at.Add(time.Hour), Notice: at.Add(50 * time.Minute)},
			Rebalance:     at.Add(time.Second),
			Maintenance: []ec2.MaintenanceEvent{
				{ID: "instance-event-0123456789abcdef0", Code: "system-reboot", Description: "scheduled reboot",
					State: ec2.MaintenanceActive, NotBefore: at.Add(time.Hour), NotAfter: at.Add(80 * time.Minute)},
				{ID: "instance-event-0fedcba9876543210", Code: "instance-stop", Description: "[Canceled] scheduled stop",
					State: ec2.MaintenanceCanceled, NotBefore: at, NotAfter: at.Add(20 * time.Minute)},
			},
		},
		AutoscalingState: "Warmed:Stopped",
		Spot:             true,
		Faults: ec2.Faults{Latency: 10 * time.Millisecond, LatencyMax: time.Second, ErrorRate: 0.25, ErrorStatus: 500,
			RateLimit: 5, Burst: 2, Token: ec2.TokenRefuse, ExpiredCredentials: true, DropRate: 0.5},
	}
}

// RunOverlays runs the ec2.OverlayStore contract tests against stores made
// by newStore (a fresh, empty store per call).
func RunOverlays(t *testing.T, newStore func(t *testing.T) ec2.OverlayStore) {
	ctx := t.Context()
	equal := cmpopts.EquateEmpty()

	t.Run("SampleIsFull", func(t *testing.T) {
		// Parts of EventService's answers, never of an instance's state.
		notKept := []string{"ec2.Overlay.Events.AutoscalingState", "ec2.Overlay.Events.SpotReplaced"}
		zero := slices.DeleteFunc(ZeroFields(FullOverlay()), func(p string) bool { return slices.Contains(notKept, p) })
		if len(zero) > 0 {
			t.Errorf("FullOverlay leaves fields unset, so their storage goes untested: %v", zero)
		}
	})

	t.Run("EmptyAtFirst", func(t *testing.T) {
		s := newStore(t)
		got, err := s.FindOverlays(ctx)
		if err != nil {
			t.Fatalf("FindOverlays: %v", err)
		}
		if len(got) != 0 {
			t.Errorf("a new store holds overlays: %v", got)
		}
	})

	t.Run("PutFindRoundTrip", func(t *testing.T) {
		s := newStore(t)
		every := ec2.Overlay{Faults: ec2.Faults{Latency: time.Second}}
		want := map[string]ec2.Overlay{"vm-1": FullOverlay(), "": every}
		for name, o := range want {
			if err := s.PutOverlay(ctx, name, o); err != nil {
				t.Fatalf("PutOverlay(%q): %v", name, err)
			}
		}
		got, err := s.FindOverlays(ctx)
		if err != nil {
			t.Fatalf("FindOverlays: %v", err)
		}
		if diff := cmp.Diff(want, got, equal); diff != "" {
			t.Errorf("FindOverlays after PutOverlay (-want +got):\n%s", diff)
		}
	})

	t.Run("PutReplaces", func(t *testing.T) {
		s := newStore(t)
		if err := s.PutOverlay(ctx, "vm-1", FullOverlay()); err != nil {
			t.Fatal(err)
		}
		next := ec2.Overlay{AutoscalingState: "Terminated"}
		if err := s.PutOverlay(ctx, "vm-1", next); err != nil {
			t.Fatal(err)
		}
		got, err := s.FindOverlays(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]ec2.Overlay{"vm-1": next}, got, equal); diff != "" {
			t.Errorf("a second PutOverlay did not replace the first whole (-want +got):\n%s", diff)
		}
	})

	t.Run("EmptyDeletes", func(t *testing.T) {
		// Cleared events are deleted, not kept as empty records forever.
		s := newStore(t)
		for _, name := range []string{"vm-1", ""} {
			if err := s.PutOverlay(ctx, name, FullOverlay()); err != nil {
				t.Fatal(err)
			}
			if err := s.PutOverlay(ctx, name, ec2.Overlay{}); err != nil {
				t.Fatalf("PutOverlay(%q, empty): %v", name, err)
			}
		}
		// Deleting what is not there is no error: clearing twice is clearing.
		if err := s.PutOverlay(ctx, "never", ec2.Overlay{}); err != nil {
			t.Errorf("PutOverlay of an empty overlay for a name with none: %v", err)
		}
		got, err := s.FindOverlays(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("empty overlays were kept: %v", got)
		}
	})

	t.Run("UpdateSeesCurrent", func(t *testing.T) {
		s := newStore(t)
		got, err := s.UpdateOverlay(ctx, "vm-1", func(cur ec2.Overlay) (ec2.Overlay, error) {
			if !cur.Empty() {
				t.Errorf("UpdateOverlay of a name with none gave %+v, want the zero Overlay", cur)
			}
			return FullOverlay(), nil
		})
		if err != nil || !cmp.Equal(got, FullOverlay(), equal) {
			t.Fatalf("UpdateOverlay = %+v, %v", got, err)
		}
		if _, err := s.UpdateOverlay(ctx, "vm-1", func(cur ec2.Overlay) (ec2.Overlay, error) {
			if diff := cmp.Diff(FullOverlay(), cur, equal); diff != "" {
				t.Errorf("UpdateOverlay saw (-stored +given):\n%s", diff)
			}
			cur.AutoscalingState = "Terminated"
			return cur, nil
		}); err != nil {
			t.Fatal(err)
		}
		all, err := s.FindOverlays(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if all["vm-1"].AutoscalingState != "Terminated" || all["vm-1"].Events.Spot == nil {
			t.Errorf("after UpdateOverlay: %+v", all["vm-1"])
		}
	})

	t.Run("UpdateErrorStoresNothing", func(t *testing.T) {
		s := newStore(t)
		refused := ec2.Errorf(ec2.ENOTFOUND, "no such maintenance event")
		if _, err := s.UpdateOverlay(ctx, "vm-1", func(ec2.Overlay) (ec2.Overlay, error) { return FullOverlay(), refused }); err != refused {
			t.Errorf("UpdateOverlay returned %v, want the change's own error", err)
		}
		if all, err := s.FindOverlays(ctx); err != nil || len(all) != 0 {
			t.Errorf("a refused change stored %v (%v)", all, err)
		}
	})

	t.Run("UpdateToEmptyDeletes", func(t *testing.T) {
		s := newStore(t)
		if err := s.PutOverlay(ctx, "vm-1", FullOverlay()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateOverlay(ctx, "vm-1", func(ec2.Overlay) (ec2.Overlay, error) { return ec2.Overlay{}, nil }); err != nil {
			t.Fatal(err)
		}
		if all, err := s.FindOverlays(ctx); err != nil || len(all) != 0 {
			t.Errorf("an update to nothing kept %v (%v)", all, err)
		}
	})

	t.Run("ConcurrentUpdatesLoseNothing", func(t *testing.T) {
		// Hosts adding maintenance events to one instance at once: each
		// update sees the others', none is lost.
		s := newStore(t)
		const n = 16
		concurrently(t, n, "UpdateOverlay", func(i int) error {
			_, err := s.UpdateOverlay(ctx, "vm-1", func(cur ec2.Overlay) (ec2.Overlay, error) {
				cur.Events.Maintenance = append(slices.Clone(cur.Events.Maintenance), ec2.MaintenanceEvent{ID: fmt.Sprintf("e-%02d", i),
					Code: "system-reboot", State: ec2.MaintenanceActive})
				return cur, nil
			})
			return err
		})
		all, err := s.FindOverlays(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(all["vm-1"].Events.Maintenance); got != n {
			t.Errorf("%d maintenance events after %d concurrent updates", got, n)
		}
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		s := newStore(t)
		const n = 16
		concurrently(t, n, "PutOverlay", func(i int) error {
			return s.PutOverlay(ctx, fmt.Sprintf("vm-%02d", i), FullOverlay())
		})
		got, err := s.FindOverlays(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Errorf("%d overlays stored by %d concurrent puts", len(got), n)
		}
	})
}

// concurrently runs f(0), ..., f(n-1) at once and reports every error,
// naming what was run.
func concurrently(t *testing.T, n int, what string, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := f(i); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("%s: %v", what, err)
	}
}
