package bolt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// verifyTimeout bounds the consistency check of Open. An imds database
// holds instance records (a few KiB each), so even a large one is checked
// in well under a second; a check that takes longer is reported rather than
// waited for.
const verifyTimeout = time.Minute

// maxProblems bounds the problems one check collects.
const maxProblems = 20

// DamagedError says that a database file cannot be fully read. Open returns
// it instead of starting on part of the data or re-initialising the file;
// the file is left exactly as it was.
type DamagedError struct {
	Path    string
	Problem string
}

func (e *DamagedError) Error() string {
	dir := filepath.Dir(e.Path)
	return fmt.Sprintf("database %s is damaged: %s; imds will not start on it, and has not changed it. "+
		"See `imds db check --data-dir %s`; save what is readable with `imds db dump --data-dir %s > instances.json`, "+
		"move the file aside, then `imds db restore --data-dir %s instances.json` (or start with an empty registry)",
		e.Path, e.Problem, dir, dir, dir)
}

// guard runs f with memory faults turned into panics (bbolt reads the file
// through mmap: a truncated file faults, a corrupt page panics) and turns a
// panic into an error naming the file.
func guard(path string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = &DamagedError{Path: path, Problem: fmt.Sprintf("reading it failed: %v", p)}
		}
	}()
	return f()
}

// problems checks a database that is open: its size against its pages,
// every page reachable from its buckets (walked here, where faults are
// caught, then bbolt's consistency check), and every instance record. It
// returns the problems found (at most maxProblems) and the number of
// instance records that decode.
func problems(db *bbolt.DB, path string) (found []string, instances int) {
	add := func(format string, args ...any) bool {
		if len(found) < maxProblems {
			found = append(found, fmt.Sprintf(format, args...))
		}
		return len(found) < maxProblems
	}
	st, err := os.Stat(path)
	if err != nil {
		add("%v", err)
		return found, 0
	}
	err = guard(path, func() error {
		return db.View(func(tx *bbolt.Tx) error {
			if tx.Size() > st.Size() {
				add("the file is %d bytes but its pages reach %d: it was truncated", st.Size(), tx.Size())
				return nil
			}
			// A cycle of corrupt pages would make the walk endless; no file
			// holds more entries than this.
			budget := st.Size()/16 + 1024
			var walk func(b *bbolt.Bucket, name string) bool
			walk = func(b *bbolt.Bucket, name string) bool {
				c := b.Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					if budget--; budget < 0 {
						add("bucket %q: more entries than the file can hold: its pages loop", name)
						return false
					}
					if v == nil {
						if sub := b.Bucket(k); sub != nil && !walk(sub, name+"/"+string(k)) {
							return false
						}
					}
				}
				return true
			}
			ok := true
			_ = tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				if ok {
					ok = walk(b, string(name))
				}
				return nil
			})
			if !ok {
				return nil
			}
			timeout := time.NewTimer(verifyTimeout)
			defer timeout.Stop()
			ch := tx.Check()
		check:
			for {
				select {
				case err, more := <-ch:
					if !more {
						break check
					}
					if !add("%v", err) {
						go func() { // let the check end
							for range ch {
							}
						}()
						break check
					}
				case <-timeout.C:
					add("the consistency check did not finish within %s", verifyTimeout)
					go func() {
						for range ch {
						}
					}()
					break check
				}
			}
			if len(found) > 0 {
				return nil
			}
			if tx.Bucket([]byte(bucketMeta)) == nil && tx.Bucket([]byte(bucketInstances)) != nil {
				add("bucket %q is missing", bucketMeta)
			}
			checkOverlays(tx, func(p string) { add("%s", p) })
			b := tx.Bucket([]byte(bucketInstances))
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				if v == nil {
					add("instances: %q is a bucket, not a record", k)
					return nil
				}
				if _, err := decode(string(k), v); err != nil {
					add("instance %q: the record is corrupt: %v", k, err)
					return nil
				}
				instances++
				return nil
			})
		})
	})
	if err != nil {
		var de *DamagedError
		if errors.As(err, &de) {
			add("%s", de.Problem)
		} else {
			add("%v", err)
		}
	}
	return found, instances
}
