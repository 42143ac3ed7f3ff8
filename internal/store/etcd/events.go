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

var _ ec2.OverlayStore = (*InstanceStore)(nil)

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
			_, err := is.s.client.Delete(ctx, k)
			return err
		})
	}
	v, err := record.MarshalOverlay(o)
	if err != nil {
		return err
	}
	return is.call(ctx, "the write of "+what, func(ctx context.Context) error {
		_, err := is.s.client.Put(ctx, k, string(v))
		return err
	})
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
