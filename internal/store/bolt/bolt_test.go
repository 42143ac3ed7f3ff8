package bolt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/storetest"
)

func openTemp(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "imds.db")
	db, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestInstanceStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ec2.InstanceStore {
		db, _ := openTemp(t)
		return db.Instances()
	})
}

func TestPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imds.db")
	ctx := t.Context()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := db.Instances()
	for _, n := range []string{"a", "b", "c"} {
		if err := s.CreateInstance(ctx, storetest.FullInstance(n)); err != nil {
			t.Fatal(err)
		}
	}
	changed := storetest.FullInstance("b")
	changed.Role, changed.Tags = nil, nil
	if err := s.UpdateInstance(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteInstance(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db, err = Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	all, err := db.Instances().FindInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*ec2.Instance{storetest.FullInstance("a"), changed}, all); diff != "" {
		t.Errorf("after reopening (-want +got):\n%s", diff)
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "dir")
	path := filepath.Join(dir, "imds.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", p, got, want)
		}
	}
}

// TestFsyncOnCommit guards the durability promise of the package comment.
func TestFsyncOnCommit(t *testing.T) {
	db, _ := openTemp(t)
	if db.bolt.NoSync {
		t.Error("NoSync is set: a commit could be acknowledged before reaching the disk")
	}
}

func TestOpenInUse(t *testing.T) {
	_, path := openTemp(t)
	type result struct {
		db  *DB
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		db, err := Open(path)
		done <- result{db, err}
	}()
	select {
	case r := <-done:
		if r.err == nil {
			r.db.Close()
			t.Fatal("a second Open of a database in use succeeded")
		}
		want := fmt.Sprintf("database %s is in use by another imds process", path)
		if r.err.Error() != want {
			t.Errorf("second Open: %q, want %q", r.err, want)
		}
		t.Logf("second Open failed after %v: %v", time.Since(start).Round(time.Millisecond), r.err)
	case <-time.After(lockTimeout + 5*time.Second):
		t.Fatalf("a second Open still waits after %v", time.Since(start))
	}
}

// rawUpdate changes the file directly, as another program or a damaged disk
// might.
func rawUpdate(t *testing.T, path string, f func(tx *bbolt.Tx) error) {
	t.Helper()
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Update(f); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownSchemaRefused(t *testing.T) {
	for schema, want := range map[string]string{
		"2":       "schema version 2 is newer than this imds supports (1); upgrade imds",
		"garbage": `unreadable schema version "garbage"`,
	} {
		t.Run(schema, func(t *testing.T) {
			db, path := openTemp(t)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			rawUpdate(t, path, func(tx *bbolt.Tx) error {
				return tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchema), []byte(schema))
			})
			db, err := Open(path)
			if err == nil {
				db.Close()
				t.Fatalf("Open of a file with schema %q succeeded", schema)
			}
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open: %v; want the path and %q", err, want)
			}
			// The refusal must not have rewritten the schema.
			rawUpdate(t, path, func(tx *bbolt.Tx) error {
				if v := tx.Bucket([]byte(bucketMeta)).Get([]byte(keySchema)); string(v) != schema {
					t.Errorf("schema is now %q", v)
				}
				return nil
			})
		})
	}
}

func TestCorruptRecordReported(t *testing.T) {
	ctx := t.Context()
	db, path := openTemp(t)
	if err := db.Instances().CreateInstance(ctx, storetest.FullInstance("good")); err != nil {
		t.Fatal(err)
	}
	db.Close()
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketInstances))
		for k, v := range map[string]string{
			"broken":   `{"version":1,"name":"broken",`,
			"future":   `{"version":2,"name":"future"}`,
			"misnamed": `{"version":1,"name":"other"}`,
			"badtime":  `{"version":1,"name":"badtime","pending_time":"yesterday"}`,
		} {
			if err := b.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	// The server does not start on them: Open names the file and the first
	// record ("badtime" sorts first).
	var de *DamagedError
	if _, err := Open(path); !errors.As(err, &de) || !strings.Contains(err.Error(), `instance "badtime": the record is corrupt`) ||
		!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "(and 3 more problems)") {
		t.Fatalf("Open with corrupt records: %v; want a DamagedError naming the file and the record", err)
	}
	// The store underneath still reports each one, and can delete them.
	db, err := open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := db.Instances()

	for _, key := range []string{"broken", "future", "misnamed", "badtime"} {
		_, err := s.FindInstanceByName(ctx, key)
		if ec2.ErrorCode(err) != ec2.EINTERNAL || !strings.Contains(err.Error(), fmt.Sprintf("%q", key)) || !strings.Contains(err.Error(), "database record is corrupt") {
			t.Errorf("FindInstanceByName(%q): %v; want EINTERNAL naming the key and \"database record is corrupt\"", key, err)
		}
	}
	// FindInstances refuses rather than hiding the record; "badtime" sorts first.
	if all, err := s.FindInstances(ctx); err == nil || !strings.Contains(err.Error(), `"badtime"`) {
		t.Errorf("FindInstances = %d instances, %v; want an error naming \"badtime\"", len(all), err)
	}
	if _, err := s.FindInstanceByName(ctx, "good"); err != nil {
		t.Errorf("a sound record next to corrupt ones: %v", err)
	}
	// A corrupt record can be deleted, after which listing works again.
	for _, key := range []string{"broken", "future", "misnamed", "badtime"} {
		if err := s.DeleteInstance(ctx, key); err != nil {
			t.Errorf("DeleteInstance(%q): %v", key, err)
		}
	}
	if all, err := s.FindInstances(ctx); err != nil || len(all) != 1 {
		t.Errorf("FindInstances after deleting the corrupt records = %d, %v", len(all), err)
	}
}

// writerEnv switches the test binary into the writer of TestCrashSafety and
// names the database it writes.
const writerEnv = "IMDS_STORE_BOLT_CRASH_WRITER_DB"

// TestHelperWriter is not a test: TestCrashSafety runs the test binary as a
// child process in this mode. It creates instances until killed, writing
// "ack NAME" to stdout once CreateInstance has returned for NAME.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(writerEnv)
	if path == "" {
		t.Skip("helper process of TestCrashSafety")
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(2)
	}
	db, err := Open(path)
	if err != nil {
		fail(err)
	}
	s := db.Instances()
	// Stop on our own should the parent die without killing us.
	deadline := time.Now().Add(time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		name := fmt.Sprintf("crash-%06d", i)
		if err := s.CreateInstance(context.Background(), storetest.FullInstance(name)); err != nil {
			fail(err)
		}
		// os.Stdout is unbuffered: the ack leaves the process now.
		if _, err := os.Stdout.WriteString("ack " + name + "\n"); err != nil {
			fail(err)
		}
	}
	fail(errors.New("not killed before the deadline"))
}

// TestCrashSafety kills a writer with SIGKILL in the middle of its work and
// checks that every instance it acknowledged is in the file, and that the
// file opens cleanly and passes bbolt's consistency check. It covers a
// process crash; surviving power loss rests on the fsync that
// TestFsyncOnCommit guards.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	const wantAcks = 200
	path := filepath.Join(t.TempDir(), "imds.db")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), writerEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(stdout)
	for len(acked) < wantAcks && sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked = append(acked, name)
		}
	}
	beforeKill := len(acked)
	// kill -9 of the child we started, by its PID (Process.Kill is SIGKILL
	// on Unix); a no-op error if it already exited.
	killErr := cmd.Process.Kill()
	// Acks the child wrote before dying were acknowledged too: read to EOF.
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked = append(acked, name)
		}
	}
	waitErr := cmd.Wait()
	if beforeKill < wantAcks {
		t.Fatalf("writer gave %d acks before stopping (kill: %v, wait: %v); stderr:\n%s", beforeKill, killErr, waitErr, stderr.String())
	}
	if killErr != nil {
		t.Fatalf("kill writer: %v", killErr)
	}

	db, err := Open(path)
	if err != nil {
		t.Fatalf("reopen after the crash: %v", err)
	}
	defer db.Close()
	var checkErrs []error
	if err := db.bolt.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			checkErrs = append(checkErrs, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(checkErrs) > 0 {
		t.Errorf("bbolt consistency check after the crash: %v", checkErrs)
	}
	all, err := db.Instances().FindInstances(t.Context())
	if err != nil {
		t.Fatalf("FindInstances after the crash: %v", err)
	}
	found := map[string]bool{}
	for _, inst := range all {
		found[inst.Name] = true
	}
	for _, name := range acked {
		if !found[name] {
			t.Errorf("acknowledged instance %s is missing after the crash", name)
		}
	}
	// The writer is sequential: at most the one create in flight at the kill
	// may be present without an ack.
	if extra := len(all) - len(acked); extra < 0 || extra > 1 {
		t.Errorf("%d instances found for %d acknowledged; want the same or one more", len(all), len(acked))
	}
	if diff := cmp.Diff(storetest.FullInstance(acked[len(acked)-1]), all[len(acked)-1]); diff != "" {
		t.Errorf("last acknowledged instance differs (-want +got):\n%s", diff)
	}
	t.Logf("writer killed (%v) after %d acks read; %d acknowledged in all, %d found in the reopened file", waitErr, beforeKill, len(acked), len(all))
}
