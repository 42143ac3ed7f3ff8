package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A data directory every user may write to is refused before imds writes
// anything into it.
func TestWorldWritableDataDirRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.DataDir = dir
	d, err := Open(cfg)
	if err == nil {
		d.Close(t.Context())
	}
	if err == nil || !strings.Contains(err.Error(), "data directory "+dir+" is writable by every user (mode 0777)") || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("Open on a world-writable data dir: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("imds wrote into the refused directory: %v", entries)
	}
	for _, d := range []string{filepath.Join(t.TempDir(), "new"), t.TempDir()} {
		if err := checkDataDir(d); err != nil {
			t.Errorf("checkDataDir(%s): %v", d, err)
		}
	}
}
