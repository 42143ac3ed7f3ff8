// Command chaos repeats the hostile-input campaigns of issue 12 against a
// real `imds serve` on loopback and prints figures: slow bodies, a
// connection flood from one source, huge paths and user agents, a stalled
// stderr, and damaged database files. Every phase is bounded in time.
//
//	go build -o /tmp/imds ./cmd/imds && go run ./tools/chaos -imds /tmp/imds
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	bin := flag.String("imds", "imds", "the imds binary")
	conns := flag.Int("conns", 2000, "hostile connections per phase")
	flag.Parse()
	dir, err := os.MkdirTemp("", "imds-chaos-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	c := &campaign{bin: *bin, dir: dir}
	c.http(*conns)
	c.stalledStderr()
	c.damagedDB()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chaos:", err)
	os.Exit(1)
}

type campaign struct {
	bin, dir string
}

// server is one `imds serve` with its own data directory.
type server struct {
	cmd  *exec.Cmd
	addr string
	log  *bytes.Buffer
	mu   *sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (c *campaign) start(name string, stderr io.Writer) *server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(c.dir, name)
	os.MkdirAll(data, 0o700)
	s := &server{addr: addr, log: &bytes.Buffer{}, mu: &sync.Mutex{}}
	if stderr == nil {
		stderr = lockedWriter{s.mu, s.log}
	}
	s.cmd = exec.Command(c.bin, "serve", "--listen", addr, "--data-dir", data, "--admin-socket", filepath.Join(data, "admin.sock"))
	s.cmd.Stderr = stderr
	if err := s.cmd.Start(); err != nil {
		fail(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get("http://" + addr + "/latest/meta-data/instance-id"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			fail(fmt.Errorf("%s: the server did not answer within 30 s", name))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

func (s *server) logBytes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.log.Len() }

// good runs n GETs from src, one connection each, and counts the answers.
func good(addr, src string, n int) (ok int) {
	for range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			continue
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(conn, "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil && resp.StatusCode == 200 {
			ok++
		}
		conn.Close()
	}
	return ok
}

// hostile opens n connections from src and sends head on each; it returns
// the connections the server accepted and kept.
func hostile(addr, src string, n int, head string) []net.Conn {
	var out []net.Conn
	for range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			continue
		}
		io.WriteString(conn, head)
		out = append(out, conn)
	}
	return out
}

// closedWithin counts the connections the server closed (answered then
// closed, closed, or reset) within d.
func closedWithin(conns []net.Conn, d time.Duration) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(deadline)
			// EOF or a reset: closed; a timeout: still open.
			if _, err := io.Copy(io.Discard, c); err == nil || !os.IsTimeout(err) {
				n.Add(1)
			}
			c.Close()
		}()
	}
	wg.Wait()
	return int(n.Load())
}

func (c *campaign) http(n int) {
	s := c.start("http", nil)
	defer s.stop()
	fmt.Println("== hostile HTTP against imds serve on", s.addr)

	start := time.Now()
	slow := hostile(s.addr, "127.0.0.1", n, "GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
	ok := good(s.addr, "127.0.0.2", 200)
	closed := closedWithin(slow, 20*time.Second)
	fmt.Printf("slow bodies:   %d connections declaring 1000 bytes, none sent: %d closed by the server within 20 s; well-behaved client meanwhile: %d/200 ok (%.1fs)\n",
		len(slow), closed, ok, time.Since(start).Seconds())

	start = time.Now()
	flood := hostile(s.addr, "127.0.0.1", n, "")
	ok = good(s.addr, "127.0.0.3", 200)
	closed = closedWithin(flood, 15*time.Second)
	fmt.Printf("flood:         %d idle connections from one source: %d closed within 15 s (refused at the cap or timed out); well-behaved client meanwhile: %d/200 ok (%.1fs)\n",
		len(flood), closed, ok, time.Since(start).Seconds())

	before := s.logBytes()
	path := "/latest/meta-data/" + strings.Repeat("p", 20000)
	ua := strings.Repeat("u", 10000)
	client := &http.Client{Timeout: 5 * time.Second}
	sent := 0
	for range 500 {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+s.addr+path, nil)
		req.Header.Set("User-Agent", ua)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			sent++
		}
	}
	time.Sleep(300 * time.Millisecond) // the log's flush interval
	grown := s.logBytes() - before
	fmt.Printf("huge fields:   %d requests with 20 KB paths and 10 KB user agents: %d bytes of log, %d per request\n", sent, grown, grown/max(sent, 1))
}

func (c *campaign) stalledStderr() {
	r, w, err := os.Pipe()
	if err != nil {
		fail(err)
	}
	defer r.Close()
	s := c.start("stderr", w)
	defer s.stop()
	w.Close()
	client := &http.Client{Timeout: 2 * time.Second}
	const total = 20000
	ok := 0
	start := time.Now()
	for range total {
		resp, err := client.Get("http://" + s.addr + "/latest/meta-data/instance-id")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok++
			}
		}
	}
	fmt.Printf("stalled stderr: %d/%d requests answered with stderr on a pipe nobody reads (%.1fs)\n", ok, total, time.Since(start).Seconds())
	// Now read: the server says how many lines it dropped.
	go func() { time.Sleep(5 * time.Second); r.Close() }()
	b, _ := io.ReadAll(io.LimitReader(r, 64<<20))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "log lines dropped") {
			fmt.Println("               ", line)
			break
		}
	}
}

func (c *campaign) damagedDB() {
	fmt.Println("== damaged databases")
	s := c.start("db", nil)
	sock := filepath.Join(c.dir, "db", "admin.sock")
	for i := range 50 {
		out, err := exec.Command(c.bin, "instance", "add", fmt.Sprintf("vm-%02d", i), "--ip", fmt.Sprintf("10.9.0.%d", i+10), "--admin-socket", sock).CombinedOutput()
		if err != nil {
			fail(fmt.Errorf("instance add: %v %s", err, out))
		}
	}
	s.stop()
	orig, err := os.ReadFile(filepath.Join(c.dir, "db", "imds.db"))
	if err != nil {
		fail(err)
	}
	page := os.Getpagesize()
	damages := map[string]func([]byte) []byte{
		"empty (0 bytes)":   func([]byte) []byte { return nil },
		"truncated to half": func(b []byte) []byte { return b[:len(b)/2] },
		"page 3 zeroed":     func(b []byte) []byte { clear(b[3*page : 4*page]); return b },
		"page 4 header flipped": func(b []byte) []byte {
			for i := 4 * page; i < 4*page+16; i++ {
				b[i] ^= 0xff
			}
			return b
		},
		"one record corrupt": func(b []byte) []byte {
			if i := bytes.Index(b, []byte(`"name":"vm-07"`)); i > 0 {
				b[i-2] = '#'
			}
			return b
		},
	}
	for name, damage := range damages {
		dir := filepath.Join(c.dir, "damaged-"+strings.ReplaceAll(name, " ", "-"))
		os.MkdirAll(dir, 0o700)
		file := filepath.Join(dir, "imds.db")
		damaged := damage(bytes.Clone(orig))
		os.WriteFile(file, damaged, 0o600)
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		// A server that starts is stopped after 5 s: the damage hit no page
		// in use, and its log says how many instances it serves.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cmd := exec.CommandContext(ctx, c.bin, "serve", "--listen", addr, "--data-dir", dir, "--admin-socket", filepath.Join(dir, "admin.sock"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		cancel()
		after, _ := os.ReadFile(file)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		last := lines[len(lines)-1]
		if i := strings.Index(stderr.String(), "instances="); i >= 0 && ctx.Err() != nil {
			last = "started: " + strings.Fields(stderr.String()[i:])[0]
		}
		fmt.Printf("%-22s exit=%v, file unchanged=%v, %d stderr line(s): %.200s\n", name+":", err, bytes.Equal(after, damaged), len(lines), last)
	}
}
