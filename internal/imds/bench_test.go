package imds_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// nopWriter is a ResponseWriter that discards, so benchmarks measure the
// handler rather than the recorder.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

func benchHandler(b *testing.B, path string, v2, accessLog bool) {
	f := newFixture(b, defaultInstance())
	f.srv.AccessLog = accessLog
	f.srv.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := f.srv.Handler()
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Host = "169.254.169.254"
	if v2 {
		req.Header.Set("X-aws-ec2-metadata-token", f.token(b, "21600"))
	}
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

func BenchmarkServeV1InstanceID(b *testing.B) {
	benchHandler(b, "/latest/meta-data/instance-id", false, false)
}

func BenchmarkServeV1InstanceIDAccessLog(b *testing.B) {
	benchHandler(b, "/latest/meta-data/instance-id", false, true)
}

func BenchmarkServeV2Credentials(b *testing.B) {
	benchHandler(b, "/latest/meta-data/iam/security-credentials/"+ec2.DefaultRoleName, true, false)
}
