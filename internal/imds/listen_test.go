package imds_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestListenBothWildcards: "0.0.0.0:P" with "[::]:P", in either order, serves
// IPv4 and IPv6 on one port (each listener takes its own family), and
// either wildcard alone still serves both families (Go's dual-stack socket).
func TestListenBothWildcards(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	for _, tc := range []struct {
		name   string
		listen func(port string) []string
	}{
		{"IPv4 first", func(p string) []string { return []string{"0.0.0.0:" + p, "[::]:" + p} }},
		{"IPv6 first", func(p string) []string { return []string{"[::]:" + p, "0.0.0.0:" + p} }},
		{"IPv6 alone", func(p string) []string { return []string{"[::]:" + p} }},
		{"IPv4 alone", func(p string) []string { return []string{"0.0.0.0:" + p} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := prepareFixture(t, defaultInstance())
			port := openOnFreePort(t, func(port string) error {
				fx.srv.Listen = tc.listen(port)
				return fx.srv.Open()
			})
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				fx.srv.Close(ctx)
			})
			for _, host := range []string{"127.0.0.1", "::1"} {
				url := "http://" + net.JoinHostPort(host, port) + "/latest/meta-data/instance-id"
				resp, err := http.Get(url)
				if err != nil {
					t.Errorf("GET %s: %v", url, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != fx.inst.ID {
					t.Errorf("GET %s: %d %q, want 200 %q", url, resp.StatusCode, body, fx.inst.ID)
				}
			}
		})
	}
}

// openOnFreePort calls open with a port that was free a moment ago, again
// with another one if something took it in between.
func openOnFreePort(t *testing.T, open func(port string) error) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		err = open(port)
		if err == nil {
			return port
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
	}
	t.Fatal("no free port after 20 tries")
	return ""
}
