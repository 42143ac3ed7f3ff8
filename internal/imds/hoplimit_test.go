package imds_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/imds"
)

func TestHopDistanceLongestPrefix(t *testing.T) {
	srv := imds.NewServer()
	srv.HopDistances = []imds.HopDistance{
		{CIDR: netip.MustParsePrefix("172.16.0.0/12"), Hops: 3},
		{CIDR: netip.MustParsePrefix("172.17.0.0/16"), Hops: 2},
		{CIDR: netip.MustParsePrefix("172.17.5.7/32"), Hops: 5},
		{CIDR: netip.MustParsePrefix("10.0.0.0/8"), Hops: 4},
		{CIDR: netip.MustParsePrefix("10.1.0.0/16"), Hops: 1}, // a more specific direct network
		{CIDR: netip.MustParsePrefix("fd00::/8"), Hops: 2},
		{CIDR: netip.MustParsePrefix("fd00:1::/32"), Hops: 6},
	}
	for _, tc := range []struct {
		addr string
		want int
	}{
		{"172.17.0.2", 2},
		{"172.17.5.7", 5},
		{"172.17.5.8", 2},
		{"172.18.0.1", 3},
		{"172.32.0.1", 1},
		{"10.9.9.9", 4},
		{"10.1.2.3", 1},
		{"127.0.0.1", 1},
		{"::ffff:172.17.0.2", 2}, // IPv4-mapped, as a dual-stack socket reports it
		{"fd00::1", 2},
		{"fd00:1::1", 6},
		{"fe80::1", 1},
		{"::1", 1},
	} {
		if got := srv.HopDistance(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("HopDistance(%s) = %d, want %d", tc.addr, got, tc.want)
		}
	}

	// A catch-all prefix applies where nothing longer does.
	srv.HopDistances = []imds.HopDistance{
		{CIDR: netip.MustParsePrefix("0.0.0.0/0"), Hops: 2},
		{CIDR: netip.MustParsePrefix("192.168.0.0/16"), Hops: 1},
	}
	for addr, want := range map[string]int{"8.8.8.8": 2, "192.168.1.1": 1, "2001:db8::1": 1} {
		if got := srv.HopDistance(netip.MustParseAddr(addr)); got != want {
			t.Errorf("with 0.0.0.0/0: HopDistance(%s) = %d, want %d", addr, got, want)
		}
	}
	srv.HopDistances = nil
	if got := srv.HopDistance(netip.MustParseAddr("172.17.0.2")); got != 1 {
		t.Errorf("without hop_distances: %d, want 1", got)
	}
}

// lockedBuffer is a log the server writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hopFixture serves an instance with the given hop limit through Open (the
// path real servers take, where the connection's socket is at hand), with
// loopback requesters dist hops away.
func hopFixture(t *testing.T, limit, dist int) (*fixture, *lockedBuffer) {
	t.Helper()
	return hopFixtureOn(t, "127.0.0.1:0", limit, dist)
}

func hopFixtureOn(t *testing.T, listen string, limit, dist int) (*fixture, *lockedBuffer) {
	t.Helper()
	inst := defaultInstance()
	inst.Metadata.PutResponseHopLimit = limit
	fx := prepareFixture(t, inst)
	log := &lockedBuffer{}
	fx.srv.Logger = slog.New(slog.NewTextHandler(log, nil))
	fx.srv.Listen = []string{listen}
	fx.srv.HopDistances = []imds.HopDistance{
		{CIDR: netip.MustParsePrefix("127.0.0.0/8"), Hops: dist},
		{CIDR: netip.MustParsePrefix("::1/128"), Hops: dist},
		{CIDR: netip.MustParsePrefix("10.0.0.0/8"), Hops: 1},
	}
	if err := fx.srv.Open(); err != nil {
		if strings.HasPrefix(listen, "[") {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fx.srv.Close(ctx)
	})
	fx.url = fx.srv.URL()
	return fx, log
}

func putToken(client *http.Client, url string) (string, error) {
	req, err := http.NewRequest("PUT", url+"/latest/api/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

func TestHopLimitTooFar(t *testing.T) {
	fx, log := hopFixture(t, 1, 2)
	client := &http.Client{Timeout: 300 * time.Millisecond}
	start := time.Now()
	if tok, err := putToken(client, fx.url); err == nil {
		t.Fatalf("a requester 2 hops away with hop limit 1 got a token response: %q", tok)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("the token request failed after %v; it should hang until the client gives up", took)
	}
	// The server ends the request when the client gives up.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), "fault=hop-limit") {
		if time.Now().After(deadline) {
			t.Fatalf("the access log does not report the hop limit:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "status=0") {
		t.Errorf("the access log reports a status for the unanswered token request:\n%s", log.String())
	}

	// Everything but the token response gets through, as on EC2: IMDSv1
	// still works.
	resp, body := fx.do(t, "GET", "/latest/meta-data/instance-id")
	if resp.StatusCode != 200 || body != fx.inst.ID {
		t.Errorf("IMDSv1 GET from beyond the hop limit: %d %q, want 200 %q", resp.StatusCode, body, fx.inst.ID)
	}
	// OPTIONS and errors of the token path are not token responses.
	if resp, _ := fx.do(t, "PUT", "/latest/api/token"); resp.StatusCode != 400 {
		t.Errorf("token PUT without a TTL: %d, want 400", resp.StatusCode)
	}
}

func TestHopLimitWithinReach(t *testing.T) {
	for _, tc := range []struct {
		listen      string
		limit, dist int
	}{{"127.0.0.1:0", 2, 2}, {"127.0.0.1:0", 1, 1}, {"127.0.0.1:0", 64, 2}, {"[::1]:0", 1, 1}, {"[::1]:0", 3, 2}} {
		t.Run(fmt.Sprintf("%s limit %d distance %d", tc.listen, tc.limit, tc.dist), func(t *testing.T) {
			fx, log := hopFixtureOn(t, tc.listen, tc.limit, tc.dist)
			// One keep-alive connection carries the token response (sent
			// with the low TTL) and then the other responses.
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			tok, err := putToken(client, fx.url)
			if err != nil {
				t.Fatalf("token PUT: %v", err)
			}
			var reused bool
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
			})
			for range 3 {
				req, _ := http.NewRequestWithContext(ctx, "GET", fx.url+"/latest/meta-data/instance-id", nil)
				req.Header.Set("X-aws-ec2-metadata-token", tok)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != fx.inst.ID {
					t.Fatalf("GET with the token: %d %q", resp.StatusCode, b)
				}
				if !reused {
					t.Errorf("the connection of the token response was not kept alive")
				}
			}
			if _, err := putToken(client, fx.url); err != nil {
				t.Errorf("second token PUT on the same connection: %v", err)
			}
			if strings.Contains(log.String(), "hop-limit") || strings.Contains(log.String(), "cannot set") {
				t.Errorf("the log reports a hop limit problem:\n%s", log.String())
			}
		})
	}
}
