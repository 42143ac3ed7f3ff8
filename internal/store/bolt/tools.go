package bolt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	bbolt "go.etcd.io/bbolt"

	"github.com/imdsdev/imds/internal/ec2"
)

// Check verifies the database at path as Open does, without changing it
// and without the lock a server holds (it fails while one runs). It returns
// the instance records that decode and every problem found (up to 20).
func Check(path string) (instances int, found []string, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, nil, err
	}
	if st.Size() == 0 {
		return 0, []string{"the file is empty (0 bytes)"}, nil
	}
	db, err := open(path, true)
	var de *DamagedError
	if errors.As(err, &de) {
		return 0, []string{de.Problem}, nil
	} else if err != nil {
		return 0, nil, err
	}
	defer db.bolt.Close()
	found, instances, _ = problems(db.bolt, path, false)
	return instances, found, nil
}

// dumpFormat names the format of Dump's output.
const dumpFormat = "imds-db-dump/1"

type dumpFile struct {
	Format    string       `json:"format"`
	Instances []dumpRecord `json:"instances"`
}

type dumpRecord struct {
	Name   string          `json:"name"`
	Record json.RawMessage `json:"record"` // as stored: the format of record.go
}

// Dump writes every instance record of the database at path that can be
// read, as stored, to w (JSON), and returns how many it wrote and what it
// skipped: the way to save what a damaged file still holds. It opens the
// file read-only and fails while a server holds it.
func Dump(path string, w io.Writer) (dumped int, skipped []string, err error) {
	db, err := open(path, true)
	if err != nil {
		return 0, nil, err
	}
	defer db.bolt.Close()
	out := dumpFile{Format: dumpFormat, Instances: []dumpRecord{}}
	rerr := guard(path, func() error {
		return db.bolt.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte(bucketInstances))
			if b == nil {
				return errors.New("no instances bucket")
			}
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if _, err := decode(string(k), v); err != nil {
					skipped = append(skipped, fmt.Sprintf("instance %s: %v", ec2.QuoteName(string(k)), err))
					continue
				}
				out.Instances = append(out.Instances, dumpRecord{Name: string(k), Record: json.RawMessage(string(v))})
			}
			return nil
		})
	})
	if rerr != nil {
		skipped = append(skipped, fmt.Sprintf("reading stopped after %d records: %v", len(out.Instances), rerr))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return 0, skipped, err
	}
	return len(out.Instances), skipped, nil
}

// Restore creates the database at path from the output of Dump. It never
// replaces a file: path must not exist (move a damaged one aside first).
// Every record is checked before anything is written, and the file appears
// at path only once complete.
func Restore(path string, r io.Reader) (int, error) {
	if _, err := os.Lstat(path); err == nil {
		return 0, fmt.Errorf("%s exists: imds db restore never replaces a database; move it aside first", path)
	}
	var in dumpFile
	dec := json.NewDecoder(io.LimitReader(r, 1<<30))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return 0, fmt.Errorf("dump: %w", err)
	}
	if in.Format != dumpFormat {
		return 0, fmt.Errorf("dump: format %q, want %q (the output of imds db dump)", in.Format, dumpFormat)
	}
	seen := map[string]bool{}
	for i, rec := range in.Instances {
		if err := ec2.CheckName(rec.Name); err != nil {
			return 0, fmt.Errorf("dump: instances[%d]: %s", i, ec2.ErrorMessage(err))
		}
		if seen[rec.Name] {
			return 0, fmt.Errorf("dump: instances[%d]: instance %q appears twice", i, rec.Name)
		}
		seen[rec.Name] = true
		if _, err := decode(rec.Name, rec.Record); err != nil {
			return 0, fmt.Errorf("dump: instance %q: %v", rec.Name, err)
		}
	}
	tmp := path + ".restore"
	_ = os.Remove(tmp) // a leftover of an interrupted restore
	db, err := open(tmp, false)
	if err != nil {
		return 0, err
	}
	err = db.bolt.Update(func(tx *bbolt.Tx) error {
		if err := initSchema(tx); err != nil {
			return err
		}
		b := tx.Bucket([]byte(bucketInstances))
		for _, rec := range in.Instances {
			if err := b.Put([]byte(rec.Name), rec.Record); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.bolt.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("restore %s: %w", path, err)
	}
	return len(in.Instances), nil
}
