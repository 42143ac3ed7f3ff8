package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/record"
)

const (
	// schemaVersion is the bucket layout this code reads and writes. A file
	// with a higher version was written by a newer imds and is refused, since
	// writing to it could destroy what the newer version relies on.
	schemaVersion = 1

	// lockTimeout bounds the wait for the file lock. Another imds holding it
	// will not release it soon, so failing quickly with a clear message beats
	// hanging at start-up (bbolt's default is to wait forever).
	lockTimeout = 2 * time.Second
)

// Bucket and key names: part of the file format.
const (
	bucketMeta      = "meta"
	bucketInstances = "instances"
	keySchema       = "schema"
)

// DB is the imds database file (data_dir/imds.db).
type DB struct {
	bolt *bbolt.DB
	path string
	// first holds the records Open's check decoded, for the first
	// FindInstances (the registry's Load) if nothing was written since.
	first atomic.Pointer[[]*ec2.Instance]
}

// Open opens the database at path, creating it (and its directory, 0700) if
// needed with mode 0600, since records may hold role names and user data
// that other local users have no business reading. It fails if another
// process holds the file, and if the file was written by a newer imds.
//
// An existing file is verified before use: its size against its pages,
// every page (bbolt's consistency check) and every record. A file that
// cannot be fully read (empty, truncated, a page zeroed or flipped, one
// corrupt record) is refused with a *DamagedError and left untouched: it is
// never re-initialised, and imds never starts on part of its data.
func Open(path string) (*DB, error) {
	st, err := os.Stat(path)
	exists := err == nil
	if exists && st.Size() == 0 {
		return nil, &DamagedError{Path: path, Problem: "the file is empty (0 bytes), though a database file is never empty: it was truncated or replaced"}
	}
	db, err := open(path, false)
	if err != nil {
		return nil, err
	}
	if exists {
		found, _, decoded := problems(db.bolt, path, true)
		if len(found) > 0 {
			db.bolt.Close()
			p := found[0]
			if len(found) > 1 {
				p = fmt.Sprintf("%s (and %d more problems)", p, len(found)-1)
			}
			return nil, &DamagedError{Path: path, Problem: p}
		}
		db.first.Store(&decoded)
	}
	if err := guard(path, func() error { return db.bolt.Update(initSchema) }); err != nil {
		db.bolt.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return db, nil
}

// open opens the bbolt file without verifying it; readOnly takes a shared
// lock, which fails while a server holds the file.
func open(path string, readOnly bool) (db *DB, err error) {
	if !readOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
	}
	var b *bbolt.DB
	err = guard(path, func() (err error) {
		b, err = bbolt.Open(path, 0o600, &bbolt.Options{
			ReadOnly: readOnly,
			Timeout:  lockTimeout,
			// The hashmap freelist keeps allocation cheap as the file grows; it
			// is not persisted differently, so the choice can change freely.
			FreelistType: bbolt.FreelistMapType,
			// NoSync stays false: every commit is fsynced before Update returns,
			// which is what lets CreateInstance's success mean "durable".
		})
		return err
	})
	var de *DamagedError
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("database %s is in use by another imds process", path)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, &DamagedError{Path: path, Problem: err.Error() + " (not a database, or its header pages are corrupt)"}
	case errors.As(err, &de):
		return nil, err
	case err != nil && exists(path):
		return nil, &DamagedError{Path: path, Problem: err.Error()}
	case err != nil:
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return &DB{bolt: b, path: path}, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// initSchema checks the schema of an existing file, before touching anything
// else in it, and creates the buckets of a new one (or of a bbolt file that
// holds nothing, as a crash right after creating it leaves).
func initSchema(tx *bbolt.Tx) error {
	if tx.Bucket([]byte(bucketMeta)) == nil {
		other := false
		_ = tx.ForEach(func([]byte, *bbolt.Bucket) error { other = true; return nil })
		if other {
			return errors.New("not an imds database: it holds buckets but no schema version")
		}
	}
	if meta := tx.Bucket([]byte(bucketMeta)); meta != nil {
		v := meta.Get([]byte(keySchema))
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("unreadable schema version %q: not an imds database or corrupt", v)
		}
		if n > schemaVersion {
			return fmt.Errorf("schema version %d is newer than this imds supports (%d); upgrade imds", n, schemaVersion)
		}
		if n < 1 {
			return fmt.Errorf("invalid schema version %d", n)
		}
	}
	meta, err := tx.CreateBucketIfNotExists([]byte(bucketMeta))
	if err != nil {
		return err
	}
	if meta.Get([]byte(keySchema)) == nil {
		if err := meta.Put([]byte(keySchema), []byte(strconv.Itoa(schemaVersion))); err != nil {
			return err
		}
	}
	_, err = tx.CreateBucketIfNotExists([]byte(bucketInstances))
	return err
}

// Close releases the file and its lock.
func (db *DB) Close() error {
	return db.bolt.Close()
}

// Instances returns the store of run-time instances kept in db.
func (db *DB) Instances() *InstanceStore {
	return &InstanceStore{db: db.bolt, path: db.path, owner: db}
}

// InstanceStore is ec2.InstanceStore on a DB. It is safe for concurrent use:
// bbolt serialises writers and gives readers consistent snapshots.
type InstanceStore struct {
	db    *bbolt.DB
	path  string
	owner *DB
}

// view and update run a transaction under guard: damage found after start-up
// (a page corrupted under a running server) is an error naming the file, not
// a crash.
func (s *InstanceStore) view(f func(tx *bbolt.Tx) error) error {
	return s.guard(func() error { return s.db.View(f) })
}

func (s *InstanceStore) update(f func(tx *bbolt.Tx) error) error {
	s.owner.first.Store(nil) // the records Open decoded are no longer the file's
	return s.guard(func() error { return s.db.Update(f) })
}

func (s *InstanceStore) guard(f func() error) error {
	err := guard(s.path, f)
	var de *DamagedError
	if errors.As(err, &de) {
		return ec2.Errorf(ec2.EINTERNAL, "database %s is damaged: %s; stop imds and run imds db check", de.Path, de.Problem)
	}
	return err
}

var _ ec2.InstanceStore = (*InstanceStore)(nil)

// FindInstanceByName implements ec2.InstanceStore.
func (s *InstanceStore) FindInstanceByName(ctx context.Context, name string) (*ec2.Instance, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var inst *ec2.Instance
	err := s.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket([]byte(bucketInstances)).Get([]byte(name))
		if v == nil {
			return ec2.Errorf(ec2.ENOTFOUND, "instance %q not found", name)
		}
		var err error
		inst, err = s.decode(name, v)
		return err
	})
	return inst, err
}

// FindInstances implements ec2.InstanceStore. Names come back sorted because
// bbolt keeps keys in byte order, the same order as Go's string comparison.
//
// A record that does not decode fails the whole call with an error naming its
// key, rather than being skipped: a caller loading the instances at start-up
// would otherwise carry on as if the instance did not exist, and hand its
// name, addresses and MAC to someone else. The other records stay readable
// one by one through FindInstanceByName, and the bad one can be deleted.
func (s *InstanceStore) FindInstances(ctx context.Context) ([]*ec2.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if first := s.owner.first.Swap(nil); first != nil {
		// Decoded by Open's check, and nothing written since: the caller
		// (the registry's Load) is the first and only one to get them.
		return *first, nil
	}
	var insts []*ec2.Instance
	err := s.view(func(tx *bbolt.Tx) error {
		var keys, vals [][]byte
		if err := tx.Bucket([]byte(bucketInstances)).ForEach(func(k, v []byte) error {
			keys, vals = append(keys, k), append(vals, v)
			return nil
		}); err != nil {
			return err
		}
		var errs []error
		insts, errs = decodeAll(keys, vals)
		for i, err := range errs {
			if err != nil {
				return ec2.Errorf(ec2.EINTERNAL, "instance %q: database record is corrupt: %v (database %s; see imds db check)", keys[i], err, s.path)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return insts, nil
}

// CreateInstance implements ec2.InstanceStore: a batch of one.
func (s *InstanceStore) CreateInstance(ctx context.Context, inst *ec2.Instance) error {
	return s.CreateInstances(ctx, []*ec2.Instance{inst})
}

var _ ec2.InstanceBatchStore = (*InstanceStore)(nil)

// CreateInstances implements ec2.InstanceBatchStore: one bbolt Update, so
// one fsync for the batch, and all the records or none.
func (s *InstanceStore) CreateInstances(ctx context.Context, insts []*ec2.Instance) error {
	vals := make([][]byte, len(insts))
	for i, inst := range insts {
		v, err := encode(inst)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketInstances))
		for i, inst := range insts {
			if b.Get([]byte(inst.Name)) != nil {
				return ec2.Errorf(ec2.ECONFLICT, "instance %q already exists", inst.Name)
			}
			if err := b.Put([]byte(inst.Name), vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// UpdateInstance implements ec2.InstanceStore. The record is replaced whole,
// so a field cleared in inst is cleared in the store.
func (s *InstanceStore) UpdateInstance(ctx context.Context, inst *ec2.Instance) error {
	v, err := encode(inst)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketInstances))
		if b.Get([]byte(inst.Name)) == nil {
			return ec2.Errorf(ec2.ENOTFOUND, "instance %q not found", inst.Name)
		}
		return b.Put([]byte(inst.Name), v)
	})
}

// DeleteInstance implements ec2.InstanceStore. It does not decode the record,
// so that a corrupt one can be removed.
func (s *InstanceStore) DeleteInstance(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketInstances))
		if b.Get([]byte(name)) == nil {
			return ec2.Errorf(ec2.ENOTFOUND, "instance %q not found", name)
		}
		return b.Delete([]byte(name))
	})
}

// checkName rejects names bbolt cannot use as keys.
func checkName(name string) error { return record.CheckName(name, bbolt.MaxKeySize) }

// encode checks inst and marshals its record.
func encode(inst *ec2.Instance) ([]byte, error) { return record.Encode(inst, bbolt.MaxKeySize) }

// decode unmarshals the record stored under key. v belongs to bbolt and is
// valid only during the transaction; json.Unmarshal copies what it keeps, so
// the result is the caller's to modify.
func decode(key string, v []byte) (*ec2.Instance, error) {
	return record.Unmarshal(key, v)
}

// decode is decode with an error that names the record and the file.
func (s *InstanceStore) decode(key string, v []byte) (*ec2.Instance, error) {
	inst, err := decode(key, v)
	if err != nil {
		return nil, ec2.Errorf(ec2.EINTERNAL, "instance %q: database record is corrupt: %v (database %s; see imds db check)", key, err, s.path)
	}
	return inst, nil
}
