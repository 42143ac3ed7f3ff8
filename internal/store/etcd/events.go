package etcd

import (
	"context"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/record"
)

// Events and faults (ec2.Overlay) are one key per instance,
// <prefix>overlays/<name>, and <prefix>overlays/* for the faults of every
// instance: apart from the instance's record, so that a document written
// through the admin API never touches them. Follower watches them too.
const (
	overlaysDir      = "overlays/"
	keyEveryInstance = "*" // no instance name holds '*'
)

var (
	_ ec2.OverlayStore = (*InstanceStore)(nil)
	_ ec2.SharedStore  = (*InstanceStore)(nil)
)

// Shared implements ec2.SharedStore: every host sharing the prefix reads
// and writes these instances.
func (is *InstanceStore) Shared() bool { return true }

func (is *InstanceStore) overlayKey(name string) string {
	if name == "" {
		name = keyEveryInstance
	}
	return is.s.prefix + overlaysDir + name
}

// PutOverlay implements ec2.OverlayStore: one put, or one delete for an
// empty overlay.
func (is *InstanceStore) PutOverlay(ctx context.Context, name string, o ec2.Overlay) error {
	if name != "" {
		if err := checkName(name); err != nil {
			return err
		}
	}
	what := "the events and faults of instance " + name
	if name == "" {
		what = "the faults of every instance"
	}
	k := is.overlayKey(name)
	if o.Empty() {
		return is.call(ctx, "the removal of "+what, func(ctx context.Context) error {
			resp, err := is.s.client.Delete(ctx, k)
			if err == nil {
				is.wroteOverlay(k, resp.Header.Revision)
			}
			return err
		})
	}
	v, err := record.MarshalOverlay(o)
	if err != nil {
		return err
	}
	return is.call(ctx, "the write of "+what, func(ctx context.Context) error {
		resp, err := is.s.client.Put(ctx, k, string(v))
		if err == nil {
			is.wroteOverlay(k, resp.Header.Revision)
		}
		return err
	})
}

// maxUpdateTries bounds UpdateOverlay's retries when other hosts keep
// writing the same overlay first.
const maxUpdateTries = 16

// UpdateOverlay implements ec2.OverlayStore: a read, then a transaction
// that writes only if the key's revision is still the one read; when
// another host wrote in between, it reads again and retries.
func (is *InstanceStore) UpdateOverlay(ctx context.Context, name string, change func(ec2.Overlay) (ec2.Overlay, error)) (ec2.Overlay, error) {
	if name != "" {
		if err := checkName(name); err != nil {
			return ec2.Overlay{}, err
		}
	}
	k := is.overlayKey(name)
	for range maxUpdateTries {
		var get *clientv3.GetResponse
		if err := is.call(ctx, "a read of the events and faults of instance "+name, func(ctx context.Context) (err error) {
			get, err = is.s.client.Get(ctx, k)
			return err
		}); err != nil {
			return ec2.Overlay{}, err
		}
		var cur ec2.Overlay
		var rev int64 // 0: no key, which ModRevision compares as
		if len(get.Kvs) > 0 {
			var err error
			if cur, err = record.UnmarshalOverlay(get.Kvs[0].Value); err != nil {
				return ec2.Overlay{}, ec2.Errorf(ec2.EINTERNAL, "the events and faults in etcd (%s at %s) are corrupt: %v", k, is.s.endpoints, err)
			}
			rev = get.Kvs[0].ModRevision
		}
		next, err := change(cur)
		if err != nil {
			return ec2.Overlay{}, err
		}
		op := clientv3.OpDelete(k)
		if !next.Empty() {
			v, err := record.MarshalOverlay(next)
			if err != nil {
				return ec2.Overlay{}, err
			}
			op = clientv3.OpPut(k, string(v))
		}
		var resp *clientv3.TxnResponse
		if err := is.call(ctx, "the write of the events and faults of instance "+name, func(ctx context.Context) (err error) {
			resp, err = is.s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(op).Commit()
			return err
		}); err != nil {
			return ec2.Overlay{}, err
		}
		if resp.Succeeded {
			is.wroteOverlay(k, resp.Header.Revision)
			return next, nil
		}
	}
	return ec2.Overlay{}, ec2.Errorf(ec2.ECONFLICT, "the events and faults of instance %s changed %d times while this host wrote them; try again", name, maxUpdateTries)
}

// wroteOverlay notes that this store wrote the overlay key k at revision
// rev: the registry shows that write at once, so a Follower must not show
// an older value of k it still has to hand over (see ownOverlay).
func (is *InstanceStore) wroteOverlay(k string, rev int64) {
	for {
		cur, loaded := is.ownOverlays.LoadOrStore(k, rev)
		if !loaded || cur.(int64) >= rev || is.ownOverlays.CompareAndSwap(k, cur, rev) {
			return
		}
	}
}

// stale tells a Follower whether the change of overlay key k at revision
// rev is older than this store's own last write of k, which the registry
// shows already: handing it over would show an older state until the
// watch reached that write. Once the watch reaches it, the key is
// forgotten (a watch sends revisions in order).
func (is *InstanceStore) stale(k string, rev int64) bool {
	v, ok := is.ownOverlays.Load(k)
	if !ok {
		return false
	}
	own := v.(int64)
	if rev >= own {
		is.ownOverlays.CompareAndDelete(k, v)
		return false
	}
	return true
}

// FindOverlays implements ec2.OverlayStore: one range read.
func (is *InstanceStore) FindOverlays(ctx context.Context) (map[string]ec2.Overlay, error) {
	var resp *clientv3.GetResponse
	dir := is.s.prefix + overlaysDir
	if err := is.call(ctx, "the list of events and faults", func(ctx context.Context) (err error) {
		resp, err = is.s.client.Get(ctx, dir, clientv3.WithPrefix())
		return err
	}); err != nil {
		return nil, err
	}
	out := make(map[string]ec2.Overlay, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), dir)
		o, err := record.UnmarshalOverlay(kv.Value)
		if err != nil {
			return nil, ec2.Errorf(ec2.EINTERNAL, "the events and faults in etcd (%s at %s) are corrupt: %v", kv.Key, is.s.endpoints, err)
		}
		if name == keyEveryInstance {
			name = ""
		}
		out[name] = o
	}
	return out, nil
}
