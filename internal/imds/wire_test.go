package imds_test

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/imds"
)

// Several requests written in one write on one connection are answered in
// order, each with its own headers; the token response among them carries
// the TTL header and the others do not, and the connection stays usable
// (its socket's TTL is put back after the token response).
func TestPipelining(t *testing.T) {
	inst := defaultInstance()
	inst.Metadata.PutResponseHopLimit = 1 // not the socket's default: the token response changes the TTL
	fx := prepareFixture(t, inst)
	fx.srv.Listen = []string{"127.0.0.1:0"}
	if err := fx.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.srv.Close(t.Context()) })
	fx.url = fx.srv.URL()
	c := dialFrom(t, fx, "127.0.0.1")
	c.SetDeadline(time.Now().Add(ioWait))
	reqs := []struct{ raw, wantBody string }{
		{getInstanceID, fx.inst.ID},
		{"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n", ""},
		{"GET /latest/meta-data/instance-type HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", fx.inst.InstanceType},
		{"GET /latest/meta-data/nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", ""},
		{getInstanceID, fx.inst.ID},
	}
	var all strings.Builder
	for _, r := range reqs {
		all.WriteString(r.raw)
	}
	if _, err := io.WriteString(c, all.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, r := range reqs {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ttl := resp.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds")
		switch i {
		case 1:
			if resp.StatusCode != 200 || len(b) == 0 || ttl != "60" {
				t.Errorf("token response: %d %q TTL %q, want 200, a token, TTL 60", resp.StatusCode, b, ttl)
			}
		case 3:
			if resp.StatusCode != 404 {
				t.Errorf("response %d: status %d, want 404", i, resp.StatusCode)
			}
		default:
			if resp.StatusCode != 200 || string(b) != r.wantBody || ttl != "" {
				t.Errorf("response %d: %d %q TTL %q, want 200 %q and no TTL", i, resp.StatusCode, b, ttl, r.wantBody)
			}
		}
		if resp.Close {
			t.Errorf("response %d closes the connection", i)
		}
	}
	// The connection still serves, one request at a time.
	if resp, body, err := roundTrip(c, getInstanceID); err != nil || resp.StatusCode != 200 || body != fx.inst.ID {
		t.Fatalf("after the pipelined requests: %v %v %q", resp, err, body)
	}
}

// HTTP/1.0 requests are answered in HTTP/1.1 with the connection closed
// after the response, unless the client asks to keep it alive.
func TestHTTP10(t *testing.T) {
	fx, _, _ := openServer(t, imds.Limits{})
	for _, tc := range []struct {
		name, raw string
		keepAlive bool
	}{
		{"close", "GET /latest/meta-data/instance-id HTTP/1.0\r\n\r\n", false},
		{"keep-alive", "GET /latest/meta-data/instance-id HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
		{"no host needed", "GET /latest/meta-data/instance-id HTTP/1.0\r\nUser-Agent: curl/7\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, fx, "127.0.0.1")
			c.SetDeadline(time.Now().Add(ioWait))
			if _, err := io.WriteString(c, tc.raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != fx.inst.ID {
				t.Fatalf("%d %q", resp.StatusCode, b)
			}
			if got := strings.ToLower(resp.Header.Get("Connection")); tc.keepAlive && got != "keep-alive" {
				t.Errorf("Connection: %q, want keep-alive", got)
			}
			if tc.keepAlive {
				// Kept open: nothing more arrives (a short wait tells).
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			}
			_, err = br.ReadByte()
			if closed := err == io.EOF; closed == tc.keepAlive {
				t.Errorf("connection closed after the response: %v, want %v (read: %v)", closed, !tc.keepAlive, err)
			}
		})
	}
	// An HTTP/1.1 request without Host is refused, as net/http does.
	c := dialFrom(t, fx, "127.0.0.1")
	if resp, _, err := roundTrip(c, "GET /latest/meta-data/instance-id HTTP/1.1\r\n\r\n"); err != nil || resp.StatusCode != 400 {
		t.Errorf("HTTP/1.1 without Host: %v %v, want 400", resp, err)
	}
}

// Paths reach the API as net/http's URL.Path has them: "//", ".." and
// percent-escapes as sent (decoded, not cleaned), the query cut off.
func TestRequestPathOnTheWire(t *testing.T) {
	fx, _, rec := openServer(t, imds.Limits{})
	for _, tc := range []struct {
		raw, wantPath string
		wantStatus    int
	}{
		{"/latest/meta-data/instance-id?x=1", "/latest/meta-data/instance-id", 200},
		{"/latest/meta-data/instance%2Did", "/latest/meta-data/instance-id", 200},
		{"//latest/meta-data/instance-id", "//latest/meta-data/instance-id", 200},
		{"/latest/meta-data/../meta-data/instance-id", "/latest/meta-data/../meta-data/instance-id", 404},
		{"/latest/meta-data//instance-id", "/latest/meta-data//instance-id", 200}, // the resolver skips empty segments
	} {
		c := dialFrom(t, fx, "127.0.0.1")
		resp, _, err := roundTrip(c, "GET "+tc.raw+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		want, _ := url.ParseRequestURI(tc.raw)
		if want.Path != tc.wantPath {
			t.Fatalf("test case %s: net/http's path is %q", tc.raw, want.Path)
		}
		recs := rec.all()
		if got := recs[len(recs)-1].Path; got != tc.wantPath || resp.StatusCode != tc.wantStatus {
			t.Errorf("%s: recorded path %q status %d, want %q %d", tc.raw, got, resp.StatusCode, tc.wantPath, tc.wantStatus)
		}
	}
}

// FuzzRequestPath checks that the path the listeners use is net/http's
// URL.Path (and Host of an absolute URI), and that both refuse the same.
func FuzzRequestPath(f *testing.F) {
	for _, s := range []string{"/", "/latest/meta-data/", "//a//b", "/a/../b", "/a%2Fb", "/a%zz", "/a?b=c", "/a?", "/a#b",
		"*", "http://h:1/p?q", "/a\x7f", "/é", "/a b", "h", "//h/p", "/%", "/a;b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		path, host, err := imds.RequestPath(raw)
		u, werr := url.ParseRequestURI(raw)
		if (err != nil) != (werr != nil) {
			t.Fatalf("%q: error %v, net/url's %v", raw, err, werr)
		}
		if werr == nil && (path != u.Path || host != u.Host) {
			t.Fatalf("%q: path %q host %q, net/http's %q %q", raw, path, host, u.Path, u.Host)
		}
	})
}

// Handler (net/http, for embedding) and the listeners (fasthttp) serve the
// same tree, byte for byte, with the same statuses and headers.
func TestHandlerServesTheSame(t *testing.T) {
	onListener, _ := newFixture(t, richInstance()).crawl(t, "/latest/")
	viaHandler, _ := newHandlerFixture(t, richInstance()).crawl(t, "/latest/")
	if onListener != viaHandler {
		t.Errorf("the listener and Handler differ:\nlistener:\n%s\nHandler:\n%s", onListener, viaHandler)
	}
}

// A header sent with an empty value counts as sent, as net/http has it:
// an empty token is an invalid token (401), not a missing one (IMDSv1).
func TestEmptyHeaderIsSent(t *testing.T) {
	fx, _, _ := openServer(t, imds.Limits{})
	c := dialFrom(t, fx, "127.0.0.1")
	resp, _, err := roundTrip(c, "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token:\r\n\r\n")
	if err != nil || resp.StatusCode != 401 {
		t.Errorf("empty token header: %v %v, want 401", resp, err)
	}
	c = dialFrom(t, fx, "127.0.0.1")
	resp, _, err = roundTrip(c, "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin:\r\n\r\n")
	if err != nil || resp.StatusCode != 403 {
		t.Errorf("empty Origin header: %v %v, want 403", resp, err)
	}
}
