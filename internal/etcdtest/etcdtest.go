// Package etcdtest runs a real etcd server for tests: Debian's etcd-server
// binary as a separate process, on loopback ports chosen at random, with a
// data directory under the test's temporary directory. The server is
// stopped (killed by its PID) when the test ends, and never outlives it.
// StartCluster runs several members; StartTLS one that requires client
// certificates, made by NewCerts.
package etcdtest

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary is the etcd server the tests run: Debian's etcd-server package
// installs it there (scripts/deps.sh).
const Binary = "etcd"

// startTimeout bounds the wait for a new server to answer; generous, for a
// loaded two-core machine.
const startTimeout = 30 * time.Second

// Server is one etcd member started by a test.
type Server struct {
	// Name, DataDir and the URLs stay the same across Stop and Start, so that
	// a restarted member finds its data and its clients find it.
	Name      string
	DataDir   string
	ClientURL string
	PeerURL   string

	t       testing.TB
	cluster string // the initial cluster, name=peer-url,...
	certs   *Certs // nil: plain http
	state   string // "new" or "existing"

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *lockedWriter
}

// Available tells whether the etcd binary can run here, and if not why.
func Available() error {
	path, err := exec.LookPath(Binary)
	if err != nil {
		return fmt.Errorf("%s not found in PATH: install Debian's etcd-server package (scripts/deps.sh)", Binary)
	}
	if out, err := exec.Command(path, "--version").CombinedOutput(); err != nil {
		return fmt.Errorf("%s --version: %v: %s", path, err, bytes.TrimSpace(out))
	}
	return nil
}

// Start runs one single-member etcd and returns it once it answers; it
// skips the test with the reason when etcd cannot run here.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, 1, nil)[0]
}

// StartTLS runs one member whose client URL is https and that requires a
// client certificate signed by certs.CA.
func StartTLS(t testing.TB, certs *Certs) *Server {
	t.Helper()
	return start(t, 1, certs)[0]
}

// StartCluster runs an n-member etcd cluster on loopback and returns its
// members once every one answers.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	return start(t, n, nil)
}

// StartClusterOn is StartCluster with the members' client URLs on host (an
// address of this machine, such as a test bridge's, that network namespaces
// reach) instead of 127.0.0.1; the members talk to each other on loopback.
func StartClusterOn(t testing.TB, n int, host string) []*Server {
	t.Helper()
	return startOn(t, n, nil, host)
}

// dataDir is a fresh directory for one member's data, in memory (/dev/shm)
// where the machine has it: etcd fsyncs its log on every write, and on a
// busy shared disk one fsync can outlast the short request timeouts the
// tests use to notice an outage quickly.
func dataDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "imds-etcdtest-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func start(t testing.TB, n int, certs *Certs) []*Server {
	t.Helper()
	return startOn(t, n, certs, "127.0.0.1")
}

func startOn(t testing.TB, n int, certs *Certs, clientHost string) []*Server {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("no etcd server to test against: %v", err)
	}
	ports := freePorts(t, "127.0.0.1", 2*n)
	if clientHost != "127.0.0.1" {
		client := freePorts(t, clientHost, n)
		for i := range n {
			ports[2*i] = client[i]
		}
	}
	members := make([]*Server, n)
	var cluster string
	for i := range n {
		scheme := "http://"
		if certs != nil {
			scheme = "https://"
		}
		s := &Server{
			Name:      "m" + strconv.Itoa(i),
			DataDir:   dataDir(t),
			ClientURL: scheme + net.JoinHostPort(clientHost, strconv.Itoa(ports[2*i])),
			PeerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			t:         t,
			state:     "new",
			certs:     certs,
		}
		if cluster != "" {
			cluster += ","
		}
		cluster += s.Name + "=" + s.PeerURL
		members[i] = s
	}
	for _, s := range members {
		s.cluster = cluster
		s.launch()
		t.Cleanup(s.Stop)
	}
	for _, s := range members {
		s.waitReady()
	}
	for _, s := range members {
		s.state = "existing"
	}
	return members
}

// Endpoints returns the client URLs of members.
func Endpoints(members ...*Server) []string {
	var out []string
	for _, s := range members {
		out = append(out, s.ClientURL)
	}
	return out
}

// launch starts the process without waiting for it to answer.
func (s *Server) launch() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatalf("etcd %s is already running", s.Name)
	}
	args := []string{
		"--name", s.Name,
		"--data-dir", s.DataDir,
		"--listen-client-urls", s.ClientURL,
		"--advertise-client-urls", s.ClientURL,
		"--listen-peer-urls", s.PeerURL,
		"--initial-advertise-peer-urls", s.PeerURL,
		"--initial-cluster", s.cluster,
		"--initial-cluster-state", s.state,
		"--initial-cluster-token", "imds-test",
		// No metrics or debugging listeners beyond the client URL, and quick
		// elections so that tests of a lost member finish soon.
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--log-level", "warn",
	}
	if s.certs != nil {
		args = append(args, "--cert-file", s.certs.ServerCert, "--key-file", s.certs.ServerKey,
			"--trusted-ca-file", s.certs.CA, "--client-cert-auth")
	}
	cmd := exec.Command(Binary, args...)
	out := &lockedWriter{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited, s.out = cmd, exited, out
}

// waitReady polls the member's health endpoint until it answers.
func (s *Server) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(startTimeout)
	host := strings.TrimPrefix(strings.TrimPrefix(s.ClientURL, "http://"), "https://")
	for {
		s.mu.Lock()
		exited, out := s.exited, s.out
		s.mu.Unlock()
		select {
		case <-exited:
			s.t.Fatalf("etcd %s exited at start-up:\n%s", s.Name, out.String())
		default:
		}
		if healthy(host, s.certs) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("etcd %s did not answer within %s:\n%s", s.Name, startTimeout, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// healthy asks GET /health over a plain connection, to stay independent of
// the client under test.
func healthy(host string, certs *Certs) bool {
	d := &net.Dialer{Timeout: time.Second}
	var c net.Conn
	var err error
	if certs != nil {
		c, err = tls.DialWithDialer(d, "tcp", host, certs.clientTLS())
	} else {
		c, err = d.Dial("tcp", host)
	}
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET /health HTTP/1.0\r\nHost: %s\r\n\r\n", host)
	var buf bytes.Buffer
	tmp := make([]byte, 512)
	for {
		n, err := c.Read(tmp)
		buf.Write(tmp[:n])
		if err != nil {
			break
		}
	}
	return bytes.Contains(buf.Bytes(), []byte(`"health":"true"`))
}

// Stop kills the member (SIGKILL, by PID) and waits for it to exit; its
// data directory stays for Start. Stopping a stopped member does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Start restarts a stopped member on the same ports and data, and waits
// until it answers (in a cluster, until it rejoined: a member alone of
// three does not answer until a quorum is back, so restart those first
// with Launch).
func (s *Server) Start() {
	s.t.Helper()
	s.launch()
	s.waitReady()
}

// Launch restarts a stopped member without waiting for it.
func (s *Server) Launch() {
	s.t.Helper()
	s.launch()
}

// WaitReady waits until a launched member answers.
func (s *Server) WaitReady() {
	s.t.Helper()
	s.waitReady()
}

// Log returns what the member printed so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// freePorts returns n distinct ports of host that were free a moment ago.
func freePorts(t testing.TB, host string, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// lockedWriter lets etcd's stdout and stderr share one buffer that the
// test reads while the process writes.
type lockedWriter struct {
	mu sync.Mutex
	w  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
