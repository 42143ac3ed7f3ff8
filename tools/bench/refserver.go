package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/valyala/fasthttp"
)

// refBody is the reference servers' whole response body: an instance ID,
// i.e. what imds returns to the cheapest scenario.
const refBody = "i-0123456789abcdef0"

// The kinds of reference server.
const (
	refNetHTTP  = "net/http"
	refFastHTTP = "fasthttp"
)

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

// fastRefHandler is refHandler for fasthttp: the same answer.
func fastRefHandler(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain")
	ctx.SetBodyString(refBody)
}

// runRefServer serves the reference of that kind on addr until ctx is done.
func runRefServer(ctx context.Context, kind, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// No timeouts on purpose: each one costs deadline updates per request,
	// and the references must be the fastest servers possible. They only
	// ever talk to wrk on loopback, for the duration of the benchmark.
	switch kind {
	case refFastHTTP:
		srv := &fasthttp.Server{Handler: fastRefHandler, NoDefaultDate: false}
		stop := context.AfterFunc(ctx, func() { _ = srv.Shutdown() })
		defer stop()
		return srv.Serve(ln)
	case refNetHTTP, "":
		srv := &http.Server{Handler: refHandler()}
		stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
		defer stop()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	}
	return fmt.Errorf("unknown reference kind %q", kind)
}
