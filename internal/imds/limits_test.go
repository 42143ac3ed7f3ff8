package imds_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/imds"
)

// ioWait bounds every wait on a socket in these tests: generous for a slow
// shared machine, and only reached when the server fails to answer or to
// close.
const ioWait = 30 * time.Second

// recorder keeps what the server records.
type recorder struct {
	mu   sync.Mutex
	recs []ec2.RequestRecord
}

func (r *recorder) Record(rec ec2.RequestRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recorder) all() []ec2.RequestRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ec2.RequestRecord(nil), r.recs...)
}

// openServer serves the default instance on a real loopback listener with
// the given limits.
func openServer(t *testing.T, limits imds.Limits) (*fixture, *lockedBuffer, *recorder) {
	t.Helper()
	fx := prepareFixture(t, defaultInstance())
	log := &lockedBuffer{}
	rec := &recorder{}
	fx.srv.Logger = slog.New(slog.NewTextHandler(log, nil))
	fx.srv.Recorder = rec
	fx.srv.Limits = limits
	fx.srv.Listen = []string{"127.0.0.1:0"}
	if err := fx.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fx.srv.Close(ctx)
	})
	fx.url = fx.srv.URL()
	return fx, log, rec
}

// dialFrom connects to the server from a loopback address of its own
// (every 127.0.0.0/8 address is local on Linux), so that one test can be
// several sources.
func dialFrom(t *testing.T, fx *fixture, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: ioWait}
	c, err := d.Dial("tcp", strings.TrimPrefix(fx.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const getInstanceID = "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

// roundTrip sends one raw request on c and reads the response; err is set
// when the server closes the connection without one.
func roundTrip(c net.Conn, raw string) (*http.Response, string, error) {
	c.SetDeadline(time.Now().Add(ioWait))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// A request that declares a body and never sends it is answered (400) and
// its connection closed once BodyTimeout has passed; before, it held the
// connection forever and 20,000 of them exhausted the file descriptors.
func TestDeclaredBodyNeverSent(t *testing.T) {
	fx, _, rec := openServer(t, imds.Limits{BodyTimeout: 100 * time.Millisecond})
	for _, path := range []string{"/latest/meta-data/instance-id", "/latest/api/token", "/nonexistent"} {
		c := dialFrom(t, fx, "127.0.0.1")
		c.SetDeadline(time.Now().Add(ioWait))
		req := "PUT " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 1000\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(c) // up to EOF: the server must close
		if err != nil {
			t.Fatalf("%s: the connection was neither answered nor closed: %v (read %q)", path, err, all)
		}
		if !strings.HasPrefix(string(all), "HTTP/1.1 400 ") || !strings.Contains(string(all), "Connection: close") {
			t.Errorf("%s: got %q, want a 400 that closes the connection", path, all)
		}
	}
	for _, r := range rec.all() {
		if r.Status != 400 {
			t.Errorf("recorded %s %s status %d, want 400", r.Method, r.Path, r.Status)
		}
	}
}

// Bodies are never needed on the metadata API: a small one is read and
// ignored (some clients send one with the token PUT), a big one refused.
func TestBodiesOnTheMetadataAPI(t *testing.T) {
	fx, _, _ := openServer(t, imds.Limits{})
	c := dialFrom(t, fx, "127.0.0.1")
	resp, tok, err := roundTrip(c, "PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 2\r\n\r\n{}")
	if err != nil || resp.StatusCode != 200 || tok == "" {
		t.Fatalf("token PUT with a small body: %v %v %q", resp, err, tok)
	}
	// The connection stays usable.
	if resp, body, err := roundTrip(c, getInstanceID); err != nil || resp.StatusCode != 200 || body != fx.inst.ID {
		t.Fatalf("next request on the connection: %v %v %q", resp, err, body)
	}
	big := strings.Repeat("x", imds.MaxIgnoredBody+1)
	resp, _, err = roundTrip(c, "POST /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4097\r\n\r\n"+big)
	if err != nil || resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("a body over %d bytes: %v %v, want 400 and close", imds.MaxIgnoredBody, resp, err)
	}
}

// One source cannot hold more than MaxConnsPerSource connections nor all
// of them more than MaxConns; the refused connections are closed at once,
// the others keep being served, and the refusals are logged once per
// interval, not once per connection.
func TestConnectionCaps(t *testing.T) {
	fx, log, _ := openServer(t, imds.Limits{MaxConnsPerSource: 3, MaxConns: 5})
	var held []net.Conn
	for range 3 {
		c := dialFrom(t, fx, "127.0.0.1")
		// A request answered proves the connection was admitted; it stays
		// open, idle.
		if resp, _, err := roundTrip(c, getInstanceID); err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection within the cap: %v %v", resp, err)
		}
		held = append(held, c)
	}
	refused := func(src string) bool {
		t.Helper()
		c := dialFrom(t, fx, src)
		_, _, err := roundTrip(c, getInstanceID)
		return err != nil
	}
	if !refused("127.0.0.1") {
		t.Fatal("a 4th connection from one source was served with MaxConnsPerSource 3")
	}
	// Other sources are served while one is at its cap.
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		c := dialFrom(t, fx, src)
		if resp, body, err := roundTrip(c, getInstanceID); err != nil || body != fx.inst.ID {
			t.Fatalf("%s while 127.0.0.1 is at its cap: %v %v %q", src, resp, err, body)
		}
		held = append(held, c)
	}
	if !refused("127.0.0.4") {
		t.Fatal("a 6th connection was served with MaxConns 5")
	}
	// A connection closed gives its slot back.
	held[0].Close()
	deadline := time.Now().Add(ioWait)
	for refused("127.0.0.1") {
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection was never given back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(log.String(), "metadata connections refused"); n != 1 {
		t.Errorf("%d log lines about refused connections, want 1 (rate-limited):\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "limit=per-source max=3 source=127.0.0.1") {
		t.Errorf("the log line does not say which cap and source:\n%s", log.String())
	}
}

// A flood of connections from one source that send headers and never a
// body does not keep another source from being served.
func TestFloodFromOneSource(t *testing.T) {
	fx, _, _ := openServer(t, imds.Limits{MaxConnsPerSource: 16})
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: ioWait}
			c, err := d.Dial("tcp", strings.TrimPrefix(fx.url, "http://"))
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		}()
	}
	wg.Wait()
	for range 20 {
		c := dialFrom(t, fx, "127.0.0.9")
		if resp, body, err := roundTrip(c, getInstanceID); err != nil || body != fx.inst.ID {
			t.Fatalf("a well-behaved client during the flood: %v %v %q", resp, err, body)
		}
		c.Close()
	}
}

// Fields the client controls are cut to ec2.MaxRecordedField, visibly, in
// the record and in the access log.
func TestHugePathAndUserAgentAreCut(t *testing.T) {
	fx, log, rec := openServer(t, imds.Limits{})
	path := "/latest/meta-data/" + strings.Repeat("p", 20000)
	ua := strings.Repeat("u", 15000)
	c := dialFrom(t, fx, "127.0.0.1")
	resp, _, err := roundTrip(c, "GET "+path+" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: "+ua+"\r\n\r\n")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("%v %v", resp, err)
	}
	recs := rec.all()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	wantPath := path[:ec2.MaxRecordedField] + "…[+19506 bytes]"
	wantUA := ua[:ec2.MaxRecordedField] + "…[+14488 bytes]"
	if r.Path != wantPath || r.UserAgent != wantUA {
		t.Errorf("recorded path %d bytes %q…, ua %d bytes; want them cut with a mark", len(r.Path), r.Path[len(r.Path)-20:], len(r.UserAgent))
	}
	line := log.String()
	if !strings.Contains(line, "19506 bytes]") || !strings.Contains(line, "14488 bytes]") || len(line) > 4*ec2.MaxRecordedField {
		t.Errorf("access log line of %d bytes, want the fields cut with a mark", len(line))
	}
}
