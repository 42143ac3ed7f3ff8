package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// refBody is the reference server's whole response body: an instance ID,
// i.e. what imds returns to the cheapest scenario.
const refBody = "i-0123456789abcdef0"

// refHandler answers any method and path with refBody as text/plain. It
// is the least work a net/http handler can do for an IMDS-sized answer: the
// Content-Type value is assigned to the header map as a shared, already
// canonical slice (no allocation, no canonicalization), and net/http adds
// Content-Length itself without touching the map.
func refHandler() http.Handler {
	body := []byte(refBody)
	contentType := []string{"text/plain"} // never modified
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = contentType
		_, _ = w.Write(body)
	})
}

// runRefServer serves refHandler on addr until ctx is done.
func runRefServer(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// No timeouts on purpose: each one costs deadline updates per request,
	// and the reference must be the fastest net/http server possible. It
	// only ever talks to wrk on loopback, for the duration of the benchmark.
	srv := &http.Server{Handler: refHandler()}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
