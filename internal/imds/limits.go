package imds

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Limits bound what clients can hold on the metadata listener, so that one
// client (slow, broken or hostile) cannot take the service from the others.
// Zero fields take the defaults below.
type Limits struct {
	// MaxConns caps the connections open at once, over all sources
	// (DefaultMaxConns).
	MaxConns int
	// MaxConnsPerSource caps the connections open at once from one address
	// (DefaultMaxConnsPerSource). A metadata proxy in front of imds is one
	// source for all its clients: raise it there.
	MaxConnsPerSource int
	// HeaderTimeout bounds reading a request's headers (DefaultHeaderTimeout).
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body: the metadata API needs
	// none and reads at most MaxIgnoredBody bytes of one
	// (DefaultBodyTimeout). POST /instance-upload has UploadTimeout.
	BodyTimeout time.Duration
	// UploadTimeout bounds reading the body of POST /instance-upload
	// (DefaultUploadTimeout).
	UploadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that carries no request
	// (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its response (DefaultWriteTimeout). It must exceed the longest
	// wait a fault may impose (a minute of latency, then a 30 s token hold).
	WriteTimeout time.Duration
}

// The default Limits: far above what well-behaved IMDS clients use (an SDK
// holds one or two connections and sends a request as soon as it connects;
// its own timeouts are a few seconds), far below what exhausts a process.
const (
	DefaultMaxConns          = 4096
	DefaultMaxConnsPerSource = 128
	DefaultHeaderTimeout     = 10 * time.Second
	DefaultBodyTimeout       = 5 * time.Second
	DefaultUploadTimeout     = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 2 * time.Minute

	// MaxIgnoredBody is the most of a request body the metadata API reads
	// (and ignores) before it refuses the request; POST /instance-upload
	// takes up to MaxUploadBody.
	MaxIgnoredBody = 4 << 10
	MaxUploadBody  = 1 << 20

	// connRefusalLogInterval is the least time between two log lines about
	// refused connections; the lines in between are counted.
	connRefusalLogInterval = 10 * time.Second
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxConns, DefaultMaxConns)
	def(&l.MaxConnsPerSource, DefaultMaxConnsPerSource)
	defDur(&l.HeaderTimeout, DefaultHeaderTimeout)
	defDur(&l.BodyTimeout, DefaultBodyTimeout)
	defDur(&l.UploadTimeout, DefaultUploadTimeout)
	defDur(&l.IdleTimeout, DefaultIdleTimeout)
	defDur(&l.WriteTimeout, DefaultWriteTimeout)
	return l
}

// connLimiter counts the open connections of a listener, in total and per
// source address, and refuses those above the caps. The counts are shared
// by every listener of a Server.
type connLimiter struct {
	max, perSource int
	logger         *slog.Logger
	now            func() time.Time

	mu       sync.Mutex
	total    int
	bySource map[netip.Addr]int
	refused  int // since the last log line
	lastLog  time.Time
}

func newConnLimiter(l Limits, logger *slog.Logger, now func() time.Time) *connLimiter {
	return &connLimiter{max: l.MaxConns, perSource: l.MaxConnsPerSource, logger: logger, now: now, bySource: map[netip.Addr]int{}}
}

// admit counts a new connection from src, or reports why it is refused.
func (cl *connLimiter) admit(src netip.Addr) (ok bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cause := ""
	switch {
	case cl.total >= cl.max:
		cause = "total"
	case cl.bySource[src] >= cl.perSource:
		cause = "per-source"
	default:
		cl.total++
		cl.bySource[src]++
		return true
	}
	cl.refused++
	if now := cl.now(); cl.lastLog.IsZero() || now.Sub(cl.lastLog) >= connRefusalLogInterval {
		limit := cl.max
		if cause == "per-source" {
			limit = cl.perSource
		}
		cl.logger.Warn("metadata connections refused: limit reached", "limit", cause, "max", limit,
			"source", src.String(), "refused", cl.refused, "open", cl.total)
		cl.lastLog, cl.refused = now, 0
	}
	return false
}

func (cl *connLimiter) release(src netip.Addr) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.total--
	if n := cl.bySource[src] - 1; n > 0 {
		cl.bySource[src] = n
	} else {
		delete(cl.bySource, src)
	}
}

// limitListener closes at once the connections its limiter refuses, before
// the HTTP server spends a goroutine or a buffer on them.
type limitListener struct {
	net.Listener
	limits *connLimiter
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var src netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			src = ap.Addr().Unmap()
		}
		if !l.limits.admit(src) {
			c.Close()
			continue
		}
		rel, remote := &releaser{limits: l.limits, src: src}, c.RemoteAddr().String()
		// Keep the *net.TCPConn visible (the hop limit of token responses
		// needs its socket).
		if tc, ok := c.(*net.TCPConn); ok {
			lc := &limitedTCPConn{TCPConn: tc}
			lc.rel, lc.peer, lc.remote = rel, src, remote
			return lc, nil
		}
		lc := &limitedConn{Conn: c}
		lc.rel, lc.peer, lc.remote = rel, src, remote
		return lc, nil
	}
}

// releaser gives a connection's slot back once, however often it is closed.
type releaser struct {
	once   sync.Once
	limits *connLimiter
	src    netip.Addr
}

func (r *releaser) release() { r.once.Do(func() { r.limits.release(r.src) }) }

type limitedTCPConn struct {
	*net.TCPConn
	connInfo
}

func (c *limitedTCPConn) Write(p []byte) (int, error) {
	c.beforeWrite()
	n, err := c.TCPConn.Write(p)
	c.wrote(err)
	return n, err
}

func (c *limitedTCPConn) Close() error {
	c.beforeClose() // before the socket goes: it tells what was acknowledged
	err := c.TCPConn.Close()
	c.wrote(net.ErrClosed)
	c.rel.release()
	return err
}

type limitedConn struct {
	net.Conn
	connInfo
}

func (c *limitedConn) Write(p []byte) (int, error) {
	c.beforeWrite()
	n, err := c.Conn.Write(p)
	c.wrote(err)
	return n, err
}

func (c *limitedConn) Close() error {
	c.beforeClose() // before the socket goes: it tells what was acknowledged
	err := c.Conn.Close()
	c.wrote(net.ErrClosed)
	c.rel.release()
	return err
}
