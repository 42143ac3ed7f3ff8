package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/record"
)

// DefaultProbeInterval is how often a Follower checks that etcd answers
// when no change arrives.
const DefaultProbeInterval = time.Second

// Follower keeps a registry in step with the instances in etcd. Start it
// after the registry's first load: it watches from the revision of that
// list.
type Follower struct {
	// Store is the cluster followed.
	Store *Store
	// Reload lists the instances again and swaps the registry's index whole
	// (registry.Registry.Reload).
	Reload func(ctx context.Context) error
	// Apply, if set, applies the instance changes of a watch to the
	// registry (registry.Registry.ApplyStored): the specs put and the names
	// removed, so that a change costs what it touches rather than a list of
	// every instance. A change that does not decode, or an error of Apply,
	// falls back to Reload.
	Apply func(ctx context.Context, put []*ec2.Instance, removed []string) error
	// Overlays, if set, reads the events and faults again
	// (registry.Registry.LoadOverlays): after every Reload of a resync, and
	// after a change of theirs when ApplyOverlays is not set or fails.
	Overlays func(ctx context.Context) error
	// ApplyOverlays, if set, applies the overlay changes of a watch to the
	// registry (registry.Registry.ApplyOverlays): the record of each name
	// changed ("" for the faults of every instance), nil for one deleted,
	// so that an event costs the one instance it changes on every host
	// rather than a read of every overlay. A change that does not decode,
	// or an error of ApplyOverlays, falls back to Overlays.
	ApplyOverlays func(ctx context.Context, changed map[string]*ec2.Overlay) error
	// Clock paces the probes and retries.
	Clock clock.Clock
	// ProbeInterval is DefaultProbeInterval when zero.
	ProbeInterval time.Duration
	// Logger receives one line per change of state (lost, back, resynced
	// after a compaction), never one per request.
	Logger *slog.Logger

	online  atomic.Bool
	resyncs atomic.Int64
	contact atomic.Int64 // unix nanoseconds of etcd's last answer
	wg      sync.WaitGroup
}

// errCompacted ends a watch whose start revision etcd no longer keeps.
var errCompacted = errors.New("the watch's revision was compacted")

// Start follows until ctx is done.
func (f *Follower) Start(ctx context.Context) {
	if f.Clock == nil {
		f.Clock = clock.Real{}
	}
	if f.ProbeInterval <= 0 {
		f.ProbeInterval = DefaultProbeInterval
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	f.online.Store(true)
	f.touch() // the registry's first list was read just before
	f.wg.Go(func() { f.run(ctx) })
}

// Wait returns once the Follower stopped.
func (f *Follower) Wait() { f.wg.Wait() }

// Online tells whether etcd answered at the last check.
func (f *Follower) Online() bool { return f.online.Load() }

// LastContact is when etcd last answered: a change, a probe or a list.
func (f *Follower) LastContact() time.Time { return time.Unix(0, f.contact.Load()) }

func (f *Follower) touch() { f.contact.Store(f.Clock.Now().UnixNano()) }

// Resyncs counts the full lists after a lost watch, a compaction or an
// outage (not those of ordinary changes).
func (f *Follower) Resyncs() int64 { return f.resyncs.Load() }

func (f *Follower) run(ctx context.Context) {
	is := f.Store.Instances()
	for ctx.Err() == nil {
		err := f.watch(ctx, is.Revision())
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errCompacted) {
			f.Logger.Info("etcd compacted the revisions the watch needed: listing the instances again", "endpoints", f.Store.endpoints)
		} else if f.online.CompareAndSwap(true, false) {
			f.Logger.Warn("etcd does not answer: serving the instances last listed; changes are refused until it answers",
				"endpoints", f.Store.endpoints, "err", err.Error())
		}
		if !f.resync(ctx) {
			return
		}
	}
}

// resync waits until etcd answers and the registry listed the instances
// again; false when ctx ended first.
func (f *Follower) resync(ctx context.Context) bool {
	for {
		err := f.Store.Ping(ctx)
		if err == nil {
			err = f.Reload(ctx)
		}
		if err == nil {
			err = f.reloadOverlays(ctx)
		}
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			f.touch()
			f.resyncs.Add(1)
			if f.online.CompareAndSwap(false, true) {
				f.Logger.Info("etcd answers again: instances listed again and followed", "endpoints", f.Store.endpoints,
					"revision", f.Store.Instances().Revision())
			}
			return true
		}
		if !f.sleep(ctx) {
			return false
		}
	}
}

// watch follows changes after rev until the watch breaks, is compacted,
// or a probe finds etcd unreachable (a watch on a stopped server just
// waits, so the probe is what notices it).
func (f *Follower) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	is := f.Store.Instances()
	// RequireLeader: a member cut off from the others ends the watch rather
	// than keeping it open with no changes.
	// The whole prefix: instances and overlays in one watch, so that one
	// revision orders them; changed sorts the keys.
	wch := f.Store.client.Watch(clientv3.WithRequireLeader(wctx), f.Store.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	probe := f.Clock.NewTimer(f.ProbeInterval)
	defer func() { probe.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-wch:
			if !ok {
				return errors.New("the watch ended")
			}
			latest, overlays, err := f.changed(resp)
			if err != nil {
				return err
			}
			events := resp.Events
			f.touch()
			// Coalesce what else is waiting: one list covers it all.
			for more := true; more; {
				select {
				case resp, ok := <-wch:
					if !ok {
						return errors.New("the watch ended")
					}
					r, o, err := f.changed(resp)
					if err != nil {
						return err
					}
					latest, overlays = max(latest, r), overlays || o
					events = append(events, resp.Events...)
				default:
					more = false
				}
			}
			// The registry's own writes are in its index already (see
			// InstanceStore.advance): they need no second look.
			if latest > is.Revision() {
				if err := f.update(ctx, events, latest); err != nil {
					return err
				}
			}
			if overlays {
				if err := f.overlays(ctx, events); err != nil {
					return err
				}
			}
		case <-probe.C():
			if err := f.Store.Ping(ctx); err != nil {
				return err
			}
			f.touch()
			probe = f.Clock.NewTimer(f.ProbeInterval)
		}
	}
}

// update brings the registry up to revision latest with events, those of
// the watch since the revision it had: by Apply when set and every
// instance event decodes, else by Reload.
func (f *Follower) update(ctx context.Context, events []*clientv3.Event, latest int64) error {
	is := f.Store.Instances()
	if f.Apply == nil {
		return f.Reload(ctx)
	}
	since := is.Revision()
	// The last event of each instance key is its state at latest.
	final := map[string]*clientv3.Event{}
	for _, ev := range events {
		if k := string(ev.Kv.Key); strings.HasPrefix(k, is.dir) && ev.Kv.ModRevision > since { // else in the index already
			final[k] = ev
		}
	}
	var put []*ec2.Instance
	var removed []string
	changes := make(map[string][]byte, len(final))
	for key, ev := range final {
		name := strings.TrimPrefix(key, is.dir)
		if ev.Type == clientv3.EventTypeDelete {
			removed = append(removed, name)
			changes[key] = nil
			continue
		}
		spec, err := is.decode(name, ev.Kv.Value)
		if err != nil {
			f.Logger.Warn("etcd: a changed instance does not decode: listing every instance again", "instance", name, "err", ec2.ErrorMessage(err))
			return f.Reload(ctx)
		}
		put = append(put, spec)
		changes[key] = ev.Kv.Value
	}
	if err := f.Apply(ctx, put, removed); err != nil {
		f.Logger.Warn("etcd: applying changes failed: listing every instance again", "err", ec2.ErrorMessage(err))
		return f.Reload(ctx)
	}
	is.remember(changes)
	for {
		cur := is.rev.Load()
		if latest <= cur || is.rev.CompareAndSwap(cur, latest) {
			return nil
		}
	}
}

// overlays hands the registry the overlays events changed: by
// ApplyOverlays when set and every one decodes, else by Overlays.
func (f *Follower) overlays(ctx context.Context, events []*clientv3.Event) error {
	if f.ApplyOverlays == nil {
		return f.reloadOverlays(ctx)
	}
	dir := f.Store.prefix + overlaysDir
	// The last event of each key is its state after the watch's changes.
	changed := map[string]*ec2.Overlay{}
	for _, ev := range events {
		k := string(ev.Kv.Key)
		if !strings.HasPrefix(k, dir) {
			continue
		}
		if f.Store.instances.stale(k, ev.Kv.ModRevision) {
			continue
		}
		name := strings.TrimPrefix(k, dir)
		if name == keyEveryInstance {
			name = ""
		}
		if ev.Type == clientv3.EventTypeDelete {
			changed[name] = nil
			continue
		}
		o, err := record.UnmarshalOverlay(ev.Kv.Value)
		if err != nil {
			f.Logger.Warn("etcd: changed events and faults do not decode: reading them all again", "key", k, "err", err.Error())
			return f.reloadOverlays(ctx)
		}
		changed[name] = &o
	}
	if len(changed) == 0 {
		return nil // this store's own writes, shown already
	}
	if err := f.ApplyOverlays(ctx, changed); err != nil {
		if ctx.Err() != nil {
			return err
		}
		f.Logger.Warn("etcd: applying changed events and faults failed: reading them all again", "err", ec2.ErrorMessage(err))
		return f.reloadOverlays(ctx)
	}
	return nil
}

// reloadOverlays reads every overlay again (Overlays), if the Follower has
// them to follow: after a resync, and as the fallback of overlays.
func (f *Follower) reloadOverlays(ctx context.Context) error {
	if f.Overlays == nil {
		return nil
	}
	return f.Overlays(ctx)
}

// changed returns the revision of the last change of an instance in resp
// (0 for none, or a progress notification), and whether an overlay
// changed. Other keys (hosts, addresses) are not the registry's.
func (f *Follower) changed(resp clientv3.WatchResponse) (latest int64, overlays bool, err error) {
	if resp.CompactRevision != 0 {
		return 0, false, fmt.Errorf("%w (compacted at %d)", errCompacted, resp.CompactRevision)
	}
	if err := resp.Err(); err != nil {
		return 0, false, err
	}
	ovDir := f.Store.prefix + overlaysDir
	for _, ev := range resp.Events {
		switch k := string(ev.Kv.Key); {
		case strings.HasPrefix(k, f.Store.instances.dir):
			latest = max(latest, ev.Kv.ModRevision)
		case strings.HasPrefix(k, ovDir):
			overlays = true
		}
	}
	return latest, overlays, nil
}

func (f *Follower) sleep(ctx context.Context) bool {
	t := f.Clock.NewTimer(f.ProbeInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}
