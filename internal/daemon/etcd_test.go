package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
)

// etcdConfig is testConfig with a config file that selects the etcd store
// at endpoints, under prefix.
func etcdConfig(t *testing.T, prefix string, endpoints ...string) Config {
	t.Helper()
	cfg := testConfig(t)
	path := filepath.Join(t.TempDir(), "imds.yaml")
	doc := fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    prefix: %s\n    dial_timeout: 2s\n    host: h%d\n", strings.Join(endpoints, ", "), prefix, hostNumber.Add(1))
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ConfigPath = path
	return cfg
}

// hostNumber gives each daemon of the tests a host name of its own.
var hostNumber atomic.Int64

func mustOpen(t *testing.T, cfg Config) *Daemon {
	t.Helper()
	d, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { closeDaemon(d) })
	return d
}

func closeDaemon(d *Daemon) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.Close(ctx)
}

// TestEtcdStoreKeepsRegistrations: an instance registered on a daemon over
// etcd is there for the next daemon, which keeps nothing of it in its data
// directory (a fresh one).
func TestEtcdStoreKeepsRegistrations(t *testing.T) {
	srv := etcdtest.Start(t)
	d := mustOpen(t, etcdConfig(t, "/keep/", srv.ClientURL))
	if _, err := d.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-1", SourceAddrs: []string{"10.20.0.1"}}); err != nil {
		t.Fatalf("AddInstance: %v", err)
	}
	want, _ := d.Registry.GetInstance(t.Context(), "vm-1")
	closeDaemon(d)
	if _, err := os.Stat(filepath.Join(d.DataDir, "imds.db")); !os.IsNotExist(err) {
		t.Errorf("the etcd store also wrote a bolt file: %v", err)
	}

	d2 := mustOpen(t, etcdConfig(t, "/keep/", srv.ClientURL))
	got, err := d2.Registry.GetInstance(t.Context(), "vm-1")
	if err != nil {
		t.Fatalf("the next daemon does not have vm-1: %v", err)
	}
	if got.ID != want.ID {
		t.Errorf("vm-1 came back as %s, was %s", got.ID, want.ID)
	}
}

// TestEtcdDownAtStart: a daemon whose etcd does not answer refuses to
// start, naming the endpoints, within the dial timeout and some.
func TestEtcdDownAtStart(t *testing.T) {
	srv := etcdtest.Start(t)
	srv.Stop()
	start := time.Now()
	_, err := Open(etcdConfig(t, "/down/", srv.ClientURL))
	if err == nil || !strings.Contains(err.Error(), "store.etcd") || !strings.Contains(err.Error(), srv.ClientURL) {
		t.Fatalf("Open with etcd down: %v; want an error naming store.etcd and %s", err, srv.ClientURL)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Open with etcd down took %s", d)
	}
	t.Logf("Open with etcd down: %v", err)
}

// TestEtcdStoreOverTLS: store.etcd.tls in a config file reaches an etcd
// that requires client certificates.
func TestEtcdStoreOverTLS(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.StartTLS(t, certs)
	cfg := testConfig(t)
	cfg.ConfigPath = filepath.Join(t.TempDir(), "imds.yaml")
	doc := fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    tls:\n      ca: %s\n      cert: %s\n      key: %s\n", srv.ClientURL, certs.CA, certs.ClientCert, certs.ClientKey)
	if err := os.WriteFile(cfg.ConfigPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, cfg)
	if _, err := d.Registry.AddInstance(t.Context(), &ec2.Instance{Name: "vm-tls", SourceAddrs: []string{"10.20.0.9"}}); err != nil {
		t.Fatalf("AddInstance over TLS: %v", err)
	}
}

// TestEtcdPasswordFile: a missing or empty password_file stops the start
// with a message naming the key.
func TestEtcdPasswordFile(t *testing.T) {
	srv := etcdtest.Start(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{filepath.Join(dir, "missing"), empty} {
		cfg := testConfig(t)
		cfg.ConfigPath = filepath.Join(t.TempDir(), "imds.yaml")
		doc := fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    username: imds\n    password_file: %s\n", srv.ClientURL, pw)
		if err := os.WriteFile(cfg.ConfigPath, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "store.etcd.password_file") {
			t.Errorf("Open with password_file %s: %v; want an error naming store.etcd.password_file", pw, err)
		}
	}
}

// TestEtcdClusterSeed: hosts on one etcd derive stored instances from the
// cluster's seed, not their machine's, so an instance registered without
// an ID has one ID everywhere.
func TestEtcdClusterSeed(t *testing.T) {
	srv := etcdtest.Start(t)
	a := mustOpen(t, etcdConfig(t, "/seed/", srv.ClientURL))
	b := mustOpen(t, etcdConfig(t, "/seed/", srv.ClientURL))
	if string(a.Registry.Derive.Seed) != string(b.Registry.Derive.Seed) || string(a.Registry.Derive.Seed) == string(machineSeed()) {
		t.Fatalf("seeds %q and %q, machine %q: want one cluster seed, not the machine's", a.Registry.Derive.Seed, b.Registry.Derive.Seed, machineSeed())
	}
}
