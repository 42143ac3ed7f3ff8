package admin_test

import (
	"net/http"
	"testing"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
)

// TestMetricsEndpoint: /metrics is served on the socket without a token,
// on TCP only with it, to GET only, and refused to browsers like the rest.
func TestMetricsEndpoint(t *testing.T) {
	exposition := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("imds_up 1\n"))
	})
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, func(s *admin.Server) {
		s.TCPAddr, s.Token, s.Metrics = "127.0.0.1:0", testToken, exposition
	})
	uc, tc, tcp := unixHTTP(srv.SocketPath), http.DefaultClient, srv.TCPURL()
	for _, c := range []struct {
		name   string
		client *http.Client
		method string
		url    string
		header map[string]string
		want   int
	}{
		{"socket", uc, "GET", "http://imds/metrics", nil, 200},
		{"TCP with the token", tc, "GET", tcp + "/metrics", map[string]string{"Authorization": "Bearer " + testToken}, 200},
		{"TCP without a token", tc, "GET", tcp + "/metrics", nil, 401},
		{"TCP with a wrong token", tc, "GET", tcp + "/metrics", map[string]string{"Authorization": "Bearer wrong"}, 401},
		{"POST", uc, "POST", "http://imds/metrics", nil, 405},
		{"a browser", uc, "GET", "http://imds/metrics", map[string]string{"Origin": "https://evil.example"}, 403},
	} {
		r := do(t, c.client, c.method, c.url, c.header, "")
		if r.status != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.want)
		}
		if c.want == 200 && r.body != "imds_up 1\n" {
			t.Errorf("%s: body %q", c.name, r.body)
		}
	}
}
