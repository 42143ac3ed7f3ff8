package daemon

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkGetWhileRegistering: metadata GETs on host A while host B, on
// the same etcd, registers 100 instances per second, against the same GETs
// with B idle, in alternating phases of b.N requests each (go test -bench
// GetWhileRegistering -benchtime 20000x -run ^$). It reports both rates
// and their ratio: every registration reaches A through its watch and
// changes its index, which the request path must not feel.
func BenchmarkGetWhileRegistering(b *testing.B) {
	srv := etcdtest.Start(b)
	a, reg := mustOpenB(b, srv.ClientURL), mustOpenB(b, srv.ClientURL)
	const requester = "127.0.3.1"
	inst, err := a.Registry.AddInstance(b.Context(), &ec2.Instance{Name: "requester", SourceAddrs: []string{requester}})
	if err != nil {
		b.Fatal(err)
	}
	const workers = 8
	clients := make([]*http.Client, workers)
	for i := range clients {
		clients[i] = sourceClient(requester)
		defer clients[i].CloseIdleConnections()
	}
	url := a.URL() + "/latest/meta-data/instance-id"
	get := func(c *http.Client) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != http.StatusOK || string(body) != inst.ID) {
			err = fmt.Errorf("GET instance-id: %d %q, want 200 %s", resp.StatusCode, body, inst.ID)
		}
		return err
	}
	// phase serves b.N requests from the workers and returns requests/s.
	phase := func() float64 {
		var next atomic.Int64
		var failed atomic.Value
		start := time.Now()
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					if err := get(c); err != nil {
						failed.CompareAndSwap(nil, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		return float64(b.N) / time.Since(start).Seconds()
	}
	registered := 0
	// registering runs phase while reg adds 100 instances per second.
	registering := func() float64 {
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					done <- nil
					return
				case <-tick.C:
				}
				i := registered
				registered++
				if _, err := reg.Registry.AddInstance(b.Context(), &ec2.Instance{Name: fmt.Sprintf("load-%06d", i),
					SourceAddrs: []string{fmt.Sprintf("10.%d.%d.%d", 200+i>>16&0xff, i>>8&0xff, i&0xff)}}); err != nil {
					done <- err
					return
				}
			}
		}()
		rate := phase()
		close(stop)
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return rate
	}
	phase() // warm: connections open, the index built
	b.ResetTimer()
	var idle, loaded []float64
	for range 3 {
		idle = append(idle, phase())
		loaded = append(loaded, registering())
	}
	b.StopTimer()
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(idle), "idle-req/s")
	b.ReportMetric(med(loaded), "registering-req/s")
	b.ReportMetric(med(loaded)/med(idle), "ratio")
	b.ReportMetric(float64(registered), "registered")
}
