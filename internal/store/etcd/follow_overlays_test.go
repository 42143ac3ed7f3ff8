package etcd

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
)

// TestFollowOverlayChanges: a Follower hands the registry each overlay
// another host changed (its record, nil once deleted, "" for the faults
// of every instance) rather than having it read them all; a record that
// does not decode falls back to reading them all.
func TestFollowOverlayChanges(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openStore(t, "/ovf/", srv)
	other := openStore(t, "/ovf/", srv).Instances()
	if _, err := s.Instances().FindInstances(t.Context()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	shown := map[string]ec2.Overlay{}
	var reads atomic.Int64
	var log syncBuffer
	f := &Follower{Store: s, ProbeInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&log, nil)),
		Reload: func(ctx context.Context) error { _, err := s.Instances().FindInstances(ctx); return err },
		Overlays: func(context.Context) error {
			reads.Add(1)
			return nil
		},
		ApplyOverlays: func(_ context.Context, changed map[string]*ec2.Overlay) error {
			mu.Lock()
			defer mu.Unlock()
			for name, o := range changed {
				if o == nil {
					delete(shown, name)
				} else {
					shown[name] = *o
				}
			}
			return nil
		}}
	ctx, cancel := context.WithCancel(t.Context())
	f.Start(ctx)
	t.Cleanup(func() { cancel(); f.Wait() })
	has := func(name string, ok func(ec2.Overlay, bool) bool) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			o, found := shown[name]
			return ok(o, found)
		}
	}

	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // fixed instant: a stored event time, never compared with a clock
	if err := other.PutOverlay(ctx, "a", ec2.Overlay{Events: ec2.Events{Rebalance: at}}); err != nil {
		t.Fatal(err)
	}
	if err := other.PutOverlay(ctx, "", ec2.Overlay{Faults: ec2.Faults{ErrorRate: 0.5}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's rebalance handed over", has("a", func(o ec2.Overlay, ok bool) bool { return ok && o.Events.Rebalance.Equal(at) }))
	eventually(t, "the faults of every instance handed over", has("", func(o ec2.Overlay, ok bool) bool { return ok && o.Faults.ErrorRate == 0.5 }))
	if err := other.PutOverlay(ctx, "a", ec2.Overlay{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a's deletion handed over", has("a", func(_ ec2.Overlay, ok bool) bool { return !ok }))
	if n := reads.Load(); n != 0 {
		t.Errorf("the overlays were read whole %d times; want none", n)
	}

	if _, err := s.client.Put(ctx, "/ovf/overlays/b", "{not json"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a read of every overlay after one that does not decode", func() bool { return reads.Load() > 0 })
	if !strings.Contains(log.String(), "do not decode") {
		t.Errorf("no warning of the record that does not decode; log:\n%s", log.String())
	}
}

// TestStaleOverlayChange: a change of an overlay older than this store's
// own last write of it is stale (the registry shows the write already);
// the write itself and later changes are not, and once the watch reached
// the write, nothing of that key is stale any more.
func TestStaleOverlayChange(t *testing.T) {
	is := &InstanceStore{}
	tests := []struct {
		rev  int64
		want bool
	}{
		{9, true}, {10, false}, {9, false}, {11, false},
	}
	is.wroteOverlay("k", 10)
	is.wroteOverlay("k", 8) // an older write's answer arriving late changes nothing
	for _, tt := range tests {
		if got := is.stale("k", tt.rev); got != tt.want {
			t.Errorf("stale(k, %d) = %v, want %v", tt.rev, got, tt.want)
		}
	}
	if is.stale("other", 1) {
		t.Error("a key this store never wrote is stale")
	}
}
