package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/etcdtest"
)

// BenchmarkEtcdRegister registers instances through one host of two on
// one etcd, one after another: registrations per second through a host,
// each listed again by both (go test -bench EtcdRegister -run ^$).
func BenchmarkEtcdRegister(b *testing.B) {
	srv := etcdtest.Start(b)
	host := mustOpenB(b, srv.ClientURL)
	mustOpenB(b, srv.ClientURL)
	b.ResetTimer()
	for i := range b.N {
		if _, err := host.Registry.AddInstance(b.Context(), &ec2.Instance{Name: fmt.Sprintf("bench-%06d", i),
			SourceAddrs: []string{fmt.Sprintf("10.%d.%d.%d", 100+i>>16&0xff, i>>8&0xff, i&0xff)}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
}

// mustOpenB opens a daemon on store.etcd at endpoint for a benchmark.
func mustOpenB(b *testing.B, endpoint string) *Daemon {
	b.Helper()
	sock, err := os.MkdirTemp("", "imds")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(sock) })
	path := filepath.Join(b.TempDir(), "imds.yaml")
	doc := fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    prefix: /bench/\n    host: b%d\n", endpoint, hostNumber.Add(1))
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		b.Fatal(err)
	}
	d, err := Open(Config{ConfigPath: path, Listen: []string{"127.0.0.1:0"}, DataDir: filepath.Join(b.TempDir(), "data"),
		AdminSocket: filepath.Join(sock, "admin.sock")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { closeDaemon(d) })
	return d
}

// BenchmarkBoltRegister is BenchmarkEtcdRegister on one host with the bolt
// store, for comparison: the registry lists its store again on every
// change with either.
func BenchmarkBoltRegister(b *testing.B) {
	sock, err := os.MkdirTemp("", "imds")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(sock) })
	d, err := Open(Config{Listen: []string{"127.0.0.1:0"}, DataDir: filepath.Join(b.TempDir(), "data"), AdminSocket: filepath.Join(sock, "admin.sock")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { closeDaemon(d) })
	b.ResetTimer()
	for i := range b.N {
		if _, err := d.Registry.AddInstance(b.Context(), &ec2.Instance{Name: fmt.Sprintf("bench-%06d", i),
			SourceAddrs: []string{fmt.Sprintf("10.%d.%d.%d", 100+i>>16&0xff, i>>8&0xff, i&0xff)}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
}
