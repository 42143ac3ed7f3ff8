package bolt

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/storetest"
)

func TestOverlayStore(t *testing.T) {
	storetest.RunOverlays(t, func(t *testing.T) ec2.OverlayStore {
		db, err := Open(filepath.Join(t.TempDir(), "imds.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db.Instances()
	})
}

// TestOverlaysPersistAcrossReopen: events and faults survive a restart, and
// the file still passes its check with the overlays bucket in it.
func TestOverlaysPersistAcrossReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "imds.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Instances().PutOverlay(ctx, "vm-1", storetest.FullOverlay()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path)
	if err != nil {
		t.Fatalf("reopening a file with overlays: %v", err)
	}
	defer db.Close()
	got, err := db.Instances().FindOverlays(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]ec2.Overlay{"vm-1": storetest.FullOverlay()}, got); diff != "" {
		t.Errorf("overlays after reopening (-want +got):\n%s", diff)
	}
}

// TestCorruptOverlayRefused: a damaged events record is found by the
// verification at Open, naming it, as a damaged instance record is.
func TestCorruptOverlayRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imds.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Instances().PutOverlay(t.Context(), "vm-1", storetest.FullOverlay()); err != nil {
		t.Fatal(err)
	}
	if err := db.bolt.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(bucketOverlays)).Put([]byte("vm-1"), []byte(`{"version":1,"rebalance":"soon"}`))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path)
	var de *DamagedError
	if !errors.As(err, &de) || !strings.Contains(de.Problem, `events and faults of "vm-1": the record is corrupt`) {
		t.Errorf("Open of a file with a corrupt events record: %v", err)
	}
}
