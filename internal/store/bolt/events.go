package bolt

import (
	"context"

	bbolt "go.etcd.io/bbolt"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/record"
)

// bucketOverlays holds the events and faults of instances (ec2.Overlay),
// one record per instance name, and those of every instance under
// keyEveryInstance. It is created by the first write, so that a file of an
// imds without it needs no new schema version: an older imds ignores it.
const (
	bucketOverlays   = "overlays"
	keyEveryInstance = "*" // no instance name holds '*'
)

var _ ec2.OverlayStore = (*InstanceStore)(nil)

func overlayKey(name string) []byte {
	if name == "" {
		return []byte(keyEveryInstance)
	}
	return []byte(name)
}

// PutOverlay implements ec2.OverlayStore.
func (s *InstanceStore) PutOverlay(ctx context.Context, name string, o ec2.Overlay) error {
	if name != "" {
		if err := checkName(name); err != nil {
			return err
		}
	}
	var v []byte
	if !o.Empty() {
		var err error
		if v, err = record.MarshalOverlay(o); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		if v == nil {
			if b := tx.Bucket([]byte(bucketOverlays)); b != nil {
				return b.Delete(overlayKey(name))
			}
			return nil
		}
		b, err := tx.CreateBucketIfNotExists([]byte(bucketOverlays))
		if err != nil {
			return err
		}
		return b.Put(overlayKey(name), v)
	})
}

// FindOverlays implements ec2.OverlayStore. A record that does not decode
// fails the call naming it, as FindInstances does.
func (s *InstanceStore) FindOverlays(ctx context.Context) (map[string]ec2.Overlay, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := map[string]ec2.Overlay{}
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketOverlays))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			name := string(k)
			if name == keyEveryInstance {
				name = ""
			}
			o, err := record.UnmarshalOverlay(v)
			if err != nil {
				return ec2.Errorf(ec2.EINTERNAL, "events and faults of %q: database record is corrupt: %v (database %s; see imds db check)", k, err, s.path)
			}
			out[name] = o
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
