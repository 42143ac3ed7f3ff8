// Command scale measures imds with many registered instances, from
// outside, against a real `imds serve` on loopback (bolt store, a fresh
// data directory) and prints the figures as JSON: registering N instances
// through the admin API in batches, one add and one remove then, listing
// them page by page (the memory of both sides), and a restart over the
// full store (time to the first admin and metadata answers, RSS).
//
//	go build -o /tmp/imds ./cmd/imds && go run ./tools/scale -imds /tmp/imds -n 100000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/ec2"
)

// figures is what the tool prints.
type figures struct {
	Instances       int     `json:"instances"`
	Batch           int     `json:"batch"`
	RegisterSeconds float64 `json:"register_s"`
	BatchMillis     stat    `json:"batch_ms"`
	AddMillis       stat    `json:"add_ms"`
	RemoveMillis    stat    `json:"remove_ms"`
	ServerRSSMB     float64 `json:"server_rss_mb_after_register"`
	ListSeconds     float64 `json:"list_s"`
	ListServerRSSMB float64 `json:"list_server_peak_rss_mb"`
	ListClientHeap  float64 `json:"list_client_peak_heap_mb"`
	StartupSeconds  float64 `json:"startup_admin_s"`
	FirstMetadata   float64 `json:"startup_first_metadata_s"`
	StartupRSSMB    float64 `json:"server_rss_mb_after_start"`
	StartupPeakMB   float64 `json:"server_peak_rss_mb_start"`
}

type stat struct {
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

func main() {
	bin := flag.String("imds", "imds", "the imds binary")
	n := flag.Int("n", 100000, "instances to register")
	batch := flag.Int("batch", 5000, "instances per POST /v1/instances")
	samples := flag.Int("samples", 20, "single adds and removes to time")
	flag.Parse()
	if err := run(*bin, *n, *batch, *samples); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func run(bin string, n, batch, samples int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "imds-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f := figures{Instances: n, Batch: batch}
	srv, err := start(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer func() { srv.stop() }()
	c := admin.NewClient(srv.socket)

	t0 := time.Now()
	var batches []float64
	for i := 0; i < n; i += batch {
		tb := time.Now()
		docs := make([]map[string]any, 0, batch)
		for j := i; j < min(n, i+batch); j++ {
			docs = append(docs, map[string]any{"name": name(j), "source_addresses": []string{addr(j)}})
		}
		body, _ := json.Marshal(docs)
		if _, err := c.AddInstances(ctx, body); err != nil {
			return fmt.Errorf("registering instances %d-%d: %w", i, i+len(docs)-1, err)
		}
		batches = append(batches, ms(time.Since(tb)))
	}
	f.RegisterSeconds = time.Since(t0).Seconds()
	f.BatchMillis = summary(batches)

	var adds, removes []float64
	for i := range samples {
		spec := &ec2.Instance{Name: name(n + i), SourceAddrs: []string{addr(n + i)}}
		t0 := time.Now()
		if _, err := c.AddInstance(ctx, spec); err != nil {
			return err
		}
		t1 := time.Now()
		if err := c.RemoveInstance(ctx, spec.Name); err != nil {
			return err
		}
		adds, removes = append(adds, ms(t1.Sub(t0))), append(removes, ms(time.Since(t1)))
	}
	f.AddMillis, f.RemoveMillis = summary(adds), summary(removes)
	f.ServerRSSMB = rssMB(srv.pid(), "VmRSS")

	// The list, page by page, with the server's RSS sampled meanwhile.
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if v := int64(rssMB(srv.pid(), "VmRSS") * 1024); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	runtime.GC()
	var heap uint64
	t0 = time.Now()
	after, listed := "", 0
	for {
		page, more, err := c.ListInstancesPage(ctx, after, admin.ClientPage)
		if err != nil {
			return err
		}
		listed += len(page)
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		heap = max(heap, m.HeapInuse)
		if !more {
			break
		}
		after = page[len(page)-1].Name
	}
	f.ListSeconds = time.Since(t0).Seconds()
	close(stop)
	if listed != n+1 { // and the zero-configuration instance
		return fmt.Errorf("listed %d instances, want %d", listed, n+1)
	}
	f.ListServerRSSMB, f.ListClientHeap = float64(peak.Load())/1024, float64(heap)/(1<<20)

	// Restart over the full store.
	if err := srv.stop(); err != nil {
		return err
	}
	t0 = time.Now()
	if srv, err = start(ctx, bin, dir); err != nil {
		return err
	}
	f.StartupSeconds = srv.ready.Sub(t0).Seconds()
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + srv.listen + "/latest/meta-data/instance-id")
		if err == nil {
			resp.Body.Close()
			break // any answer: 404 for this unregistered requester is an answer
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no metadata answer within 30 s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.FirstMetadata = time.Since(t0).Seconds()
	f.StartupRSSMB, f.StartupPeakMB = rssMB(srv.pid(), "VmRSS"), rssMB(srv.pid(), "VmHWM")
	out, _ := json.MarshalIndent(f, "", "  ")
	fmt.Println(string(out))
	return nil
}

func name(i int) string { return fmt.Sprintf("vm-%06d", i) }

func addr(i int) string {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func summary(v []float64) stat {
	slices.Sort(v)
	return stat{Median: v[len(v)/2], Max: v[len(v)-1]}
}

// server is a running `imds serve`.
type server struct {
	cmd    *exec.Cmd
	socket string
	listen string
	ready  time.Time // when the admin API first answered
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) stop() error {
	if s.cmd.ProcessState != nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-done
		return fmt.Errorf("imds serve did not stop within 30 s of SIGTERM")
	}
}

func start(ctx context.Context, bin, dir string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{socket: filepath.Join(dir, "admin.sock"), listen: "127.0.0.1:" + strconv.Itoa(port)}
	s.cmd = exec.Command(bin, "serve", "--data-dir", filepath.Join(dir, "data"), "--admin-socket", s.socket,
		"--listen", s.listen, "--log-level", "warn")
	var stderr strings.Builder
	s.cmd.Stdout, s.cmd.Stderr = os.Stdout, &stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	c := admin.NewClient(s.socket)
	for deadline := time.Now().Add(60 * time.Second); ; {
		if err := c.Health(ctx); err == nil {
			s.ready = time.Now()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.cmd.Process.Kill()
			s.cmd.Wait()
			return nil, fmt.Errorf("imds serve did not answer within 60 s: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// rssMB reads a memory figure of /proc/PID/status (VmRSS, VmHWM) in MB.
func rssMB(pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}
