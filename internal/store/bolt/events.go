package bolt

import (
	"context"
	"fmt"

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

// checkOverlays reports each overlay record that does not decode, for
// Open's verification and imds db check: FindOverlays would refuse it at
// start-up.
func checkOverlays(tx *bbolt.Tx, add func(problem string)) {
	b := tx.Bucket([]byte(bucketOverlays))
	if b == nil {
		return
	}
	_ = b.ForEach(func(k, v []byte) error {
		if v == nil {
			add(fmt.Sprintf("overlays: %q is a bucket, not a record", k))
		} else if _, err := record.UnmarshalOverlay(v); err != nil {
			add(fmt.Sprintf("events and faults of %q: the record is corrupt: %v", k, err))
		}
		return nil
	})
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

// UpdateOverlay implements ec2.OverlayStore: the read, the change and the
// write are one transaction.
func (s *InstanceStore) UpdateOverlay(ctx context.Context, name string, change func(ec2.Overlay) (ec2.Overlay, error)) (ec2.Overlay, error) {
	if name != "" {
		if err := checkName(name); err != nil {
			return ec2.Overlay{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return ec2.Overlay{}, err
	}
	var next ec2.Overlay
	err := s.update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucketOverlays))
		if err != nil {
			return err
		}
		var cur ec2.Overlay
		if v := b.Get(overlayKey(name)); v != nil {
			if cur, err = record.UnmarshalOverlay(v); err != nil {
				return ec2.Errorf(ec2.EINTERNAL, "events and faults of %q: database record is corrupt: %v (database %s; see imds db check)", name, err, s.path)
			}
		}
		if next, err = change(cur); err != nil {
			return err
		}
		if next.Empty() {
			return b.Delete(overlayKey(name))
		}
		v, err := record.MarshalOverlay(next)
		if err != nil {
			return err
		}
		return b.Put(overlayKey(name), v)
	})
	if err != nil {
		return ec2.Overlay{}, err
	}
	return next, nil
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
