package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Endpoint is a listener of its own for /metrics (the config's
// metrics.listen): no token, since the exposition holds no secrets.
type Endpoint struct {
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup
}

// Listen serves the exposition at /metrics on addr (port 0 picks one);
// every other path is 404.
func (m *Metrics) Listen(addr string, logger *slog.Logger) (*Endpoint, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	e := &Endpoint{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics listener stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return e, nil
}

// Addr is the address listened on.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// Close stops the listener, waiting for scrapes in flight until ctx is done.
func (e *Endpoint) Close(ctx context.Context) error {
	err := e.srv.Shutdown(ctx)
	e.wg.Wait()
	return err
}
