package bolt

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"
)

// The way out of a damaged file: check names the problem, dump saves the
// readable records, restore builds a new file from them, never over one.
func TestCheckDumpRestore(t *testing.T) {
	path, want := sampleFile(t)
	if n, found, err := Check(path); err != nil || len(found) != 0 || n != len(want) {
		t.Fatalf("Check on a sound file: %d %v %v", n, found, err)
	}
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(bucketInstances)).Put([]byte("inst-99"), []byte(`{"version":1,"name":"inst-99",`))
	})
	before, _ := os.ReadFile(path)
	n, found, err := Check(path)
	if err != nil || len(found) != 1 || !strings.Contains(found[0], `instance "inst-99": the record is corrupt`) || n != len(want) {
		t.Fatalf("Check with a corrupt record: %d %v %v", n, found, err)
	}
	var dump bytes.Buffer
	dumped, skipped, err := Dump(path, &dump)
	if err != nil || dumped != len(want) || len(skipped) != 1 || !strings.Contains(skipped[0], "inst-99") {
		t.Fatalf("Dump: %d %v %v", dumped, skipped, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("Check or Dump changed the file")
	}
	if _, err := Restore(path, bytes.NewReader(dump.Bytes())); err == nil || !strings.Contains(err.Error(), "never replaces") {
		t.Errorf("Restore over an existing file: %v", err)
	}
	fresh := filepath.Join(t.TempDir(), "imds.db")
	if n, err := Restore(fresh, bytes.NewReader(dump.Bytes())); err != nil || n != len(want) {
		t.Fatalf("Restore: %d %v", n, err)
	}
	db, err := Open(fresh)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Instances().FindInstances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{}`, `{"format":"imds-db-dump/1","instances":[{"name":"..","record":{}}]}`, `{"format":"imds-db-dump/1","instances":[{"name":"a","record":{"version":1,"name":"b"}}]}`} {
		if _, err := Restore(filepath.Join(t.TempDir(), "x.db"), strings.NewReader(bad)); err == nil {
			t.Errorf("Restore(%s) accepted it", bad)
		}
	}
	// Check on an empty file says so, and leaves it.
	empty := filepath.Join(t.TempDir(), "imds.db")
	os.WriteFile(empty, nil, 0o600)
	if _, found, err := Check(empty); err != nil || len(found) != 1 || !strings.Contains(found[0], "empty") {
		t.Errorf("Check on an empty file: %v %v", found, err)
	}
}
