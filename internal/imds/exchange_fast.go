package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// The metadata listeners are served by valyala/fasthttp rather than
// net/http: net/http's per-request machinery (a goroutine and a context
// per connection, a header map per request, a response writer, buffered
// writers) costs more than the whole metadata lookup, and no net/http
// server reaches the throughput of a constant fasthttp answer (see
// tools/bench). Every behaviour is kept: net/http's URL.Path (requestPath),
// its header caps and timeouts, one flushed response per request (so that
// the TTL of a token response applies to it alone), held requests that end
// when the client goes away (watchPeer), and the graceful Close.

// maxHeaderBytes is what net/http accepts with MaxHeaderBytes 32 KiB (it
// adds 4 KiB of slack): the request line and headers must fit.
const maxHeaderBytes = 32<<10 + 4<<10

// fastServer is the fasthttp side of a Server.
type fastServer struct {
	srv *fasthttp.Server
	// ctx ends when Close gives up waiting (the requests' lookups end
	// then); the requests' own contexts end earlier, at Shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open, for Close to end when it gives up
	// bodies keeps the headers of requests whose bodies are being read
	// before the handler runs: fasthttp forgets them when the body does not
	// arrive in time, and that request is still answered and recorded.
	bodies map[*fasthttp.RequestHeader]*fasthttp.RequestHeader
	// exchanges are reused from request to request.
	exchanges sync.Pool
}

// newFastServer configures fasthttp for the metadata API.
func (s *Server) newFastServer() *fastServer {
	fs := &fastServer{conns: map[net.Conn]struct{}{}, bodies: map[*fasthttp.RequestHeader]*fasthttp.RequestHeader{}}
	fs.ctx, fs.cancel = context.WithCancel(context.Background())
	fs.exchanges.New = func() any { return new(fastExchange) }
	fs.srv = &fasthttp.Server{
		Handler:      func(c *fasthttp.RequestCtx) { s.serveFast(c, nil) },
		ErrorHandler: s.fastError,
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			// -2 is no Content-Length and no Transfer-Encoding: no body.
			if n := h.ContentLength(); n == 0 || n == -2 {
				return fasthttp.RequestConfig{}
			}
			d := s.limits.BodyTimeout
			if strings.HasPrefix(b2s(h.RequestURI()), "/instance-upload") {
				d = s.limits.UploadTimeout
			}
			kept := &fasthttp.RequestHeader{}
			h.CopyTo(kept)
			fs.mu.Lock()
			fs.bodies[h] = kept
			fs.mu.Unlock()
			return fasthttp.RequestConfig{ReadTimeout: d}
		},
		Name:                         "EC2ws",
		ReadTimeout:                  s.limits.HeaderTimeout,
		IdleTimeout:                  s.limits.IdleTimeout,
		ReadBufferSize:               maxHeaderBytes,
		MaxRequestBodySize:           MaxUploadBody,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultContentType:         true,
		Concurrency:                  max(s.limits.MaxConns, 1) + 1, // the listener's cap comes first
		Logger:                       fastLogger{s.Logger},
		SecureErrorLogMessage:        true,
		ConnState: func(c net.Conn, st fasthttp.ConnState) {
			fs.mu.Lock()
			switch st {
			case fasthttp.StateNew:
				fs.conns[c] = struct{}{}
			case fasthttp.StateClosed, fasthttp.StateHijacked:
				delete(fs.conns, c)
			}
			fs.mu.Unlock()
		},
	}
	return fs
}

// closeAll ends every connection and the requests' lookups: Close's last
// resort once its context is done.
func (fs *fastServer) closeAll() {
	fs.cancel()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for c := range fs.conns {
		c.Close()
	}
}

// takeBody returns (and forgets) the headers kept for h by HeaderReceived.
func (fs *fastServer) takeBody(h *fasthttp.RequestHeader) *fasthttp.RequestHeader {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	kept := fs.bodies[h]
	if kept != nil {
		delete(fs.bodies, h)
	}
	return kept
}

// fastLogger passes fasthttp's own messages (broken connections and the
// like) to the log at debug level: they are not the API's.
type fastLogger struct{ l *slog.Logger }

func (f fastLogger) Printf(format string, args ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug("metadata listener", "msg", strings.TrimSpace(fmt.Sprintf(format, args...)))
	}
}

// fastError answers what fasthttp refuses before the handler: as net/http
// would, except for a request whose declared body does not arrive within
// BodyTimeout, which is the API's to answer (400, recorded, as with
// net/http).
func (s *Server) fastError(c *fasthttp.RequestCtx, err error) {
	if kept := s.fast.takeBody(&c.Request.Header); kept != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.ErrUnexpectedEOF) {
			kept.CopyTo(&c.Request.Header)
			s.serveFast(c, err)
			return
		}
	}
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		plainError(c, http.StatusRequestHeaderFieldsTooLarge)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		plainError(c, http.StatusRequestEntityTooLarge)
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.Response.SetStatusCode(http.StatusRequestTimeout)
			return
		}
		plainError(c, http.StatusBadRequest)
	}
}

// plainError is net/http's answer to a request it cannot parse.
func plainError(c *fasthttp.RequestCtx, status int) {
	c.Response.Reset()
	c.Response.SetStatusCode(status)
	c.Response.Header.SetContentType("text/plain; charset=utf-8")
	c.Response.SetBodyString(fmt.Sprintf("%d %s", status, http.StatusText(status)))
	c.SetConnectionClose()
}

// serveFast serves one request from fasthttp; bodyErr is set when its body
// did not arrive (see fastError).
func (s *Server) serveFast(c *fasthttp.RequestCtx, bodyErr error) {
	if bodyErr == nil {
		s.fast.takeBody(&c.Request.Header)
	}
	// One flushed response per request, as net/http writes them: fasthttp
	// flushes at once when the handler has set a write deadline, instead of
	// batching the responses of pipelined requests (a token response must go
	// out alone, with its own TTL). The deadline is net/http's WriteTimeout:
	// from the end of the headers to the end of the response.
	_ = c.SetWriteDeadline(time.Now().Add(s.limits.WriteTimeout))
	x := s.fast.exchanges.Get().(*fastExchange)
	*x = fastExchange{s: s, c: c, bodyErr: bodyErr}
	defer func() {
		*x = fastExchange{} // nothing kept alive by the pool
		s.fast.exchanges.Put(x)
	}()
	raw := b2s(c.Request.Header.RequestURI())
	path, host, err := requestPath(raw)
	if err != nil {
		plainError(c, http.StatusBadRequest)
		return
	}
	x.p = path
	if host == "" {
		host = b2s(c.Request.Header.Host())
		if host == "" && c.Request.Header.IsHTTP11() {
			// net/http refuses HTTP/1.1 requests without Host.
			plainError(c, http.StatusBadRequest)
			c.Response.SetBodyString("400 Bad Request: missing required Host header")
			return
		}
	}
	x.h = host
	if ci := connInfoOf(c.Conn()); ci != nil {
		x.ci = ci
	}
	s.handle(x, &x.req)
}

// fastExchange is an exchange on fasthttp. Its strings are views of
// fasthttp's buffers, valid until the handler returns.
type fastExchange struct {
	s       *Server
	c       *fasthttp.RequestCtx
	ci      *connInfo
	p, h    string
	bodyErr error

	scanned bool
	has     uint16
	vals    [numReqHeaders]string
	req     request

	goneCh    chan struct{}
	stopWatch func()
}

func (x *fastExchange) method() string    { return b2s(x.c.Method()) }
func (x *fastExchange) path() string      { return x.p }
func (x *fastExchange) host() string      { return x.h }
func (x *fastExchange) userAgent() string { return b2s(x.c.Request.Header.UserAgent()) }
func (x *fastExchange) remoteAddr() string {
	if x.ci != nil {
		return x.ci.remote
	}
	return x.c.RemoteAddr().String()
}
func (x *fastExchange) ctx() context.Context { return x.s.fast.ctx }

func (x *fastExchange) peer() netip.Addr {
	if x.ci != nil {
		return x.ci.peer
	}
	if a, ok := x.c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

func (x *fastExchange) local() netip.Addr {
	if a, ok := x.c.LocalAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// header looks through the request's headers once, for all the ones the
// API reads (a map lookup per name would cost more than this one pass).
func (x *fastExchange) header(h reqHeader) (string, bool) {
	if !x.scanned {
		x.scanned = true
		for k, v := range x.c.Request.Header.All() {
			var i reqHeader
			switch b2s(k) {
			case "Origin":
				i = hOrigin
			case "Sec-Fetch-Site":
				i = hSecFetchSite
			case "X-Forwarded-For":
				i = hForwardedFor
			case hdrToken:
				i = hToken
			case hdrTokenTTL:
				i = hTokenTTL
			case "X-Instance-Id":
				i = hInstanceID
			case "X-Instance-Id-Signature":
				i = hInstanceIDSig
			default:
				continue
			}
			if x.has&(1<<i) == 0 {
				x.has |= 1 << i
				x.vals[i] = b2s(v)
			}
		}
	}
	return x.vals[h], x.has&(1<<h) != 0
}

func (x *fastExchange) contentLength() int64 {
	if x.bodyErr != nil {
		return 1
	}
	n := x.c.Request.Header.ContentLength()
	if n == -2 { // no Content-Length, no Transfer-Encoding: no body
		return 0
	}
	return int64(n)
}

func (x *fastExchange) body() io.Reader {
	if x.bodyErr != nil {
		return errReader{x.bodyErr}
	}
	if r := x.c.RequestBodyStream(); r != nil {
		return r
	}
	return strings.NewReader(b2s(x.c.Request.Body()))
}

func (x *fastExchange) setReadDeadline(t time.Time) {
	if x.bodyErr == nil {
		_ = x.c.SetReadDeadline(t)
	}
}

func (x *fastExchange) conn() net.Conn {
	if x.ci == nil {
		return nil
	}
	return x.c.Conn()
}

func (x *fastExchange) gone() <-chan struct{} {
	if x.goneCh == nil {
		x.goneCh = make(chan struct{})
		x.stopWatch = watchPeer(x.c.Conn(), x.goneCh)
	}
	return x.goneCh
}

func (x *fastExchange) respond(req *request, ct contentType, body []byte, lastModified string) {
	r := &x.c.Response
	r.SetStatusCode(req.status)
	h := &r.Header
	h.SetContentType(ct.String())
	if lastModified != "" {
		h.SetCanonical(s2b("Accept-Ranges"), s2b("none"))
		h.SetCanonical(s2b("Last-Modified"), s2b(lastModified))
	}
	if req.ttl != "" && req.status == http.StatusOK {
		h.SetCanonical(s2b(hdrTokenTTL), s2b(req.ttl))
	}
	if req.allow != "" {
		h.SetCanonical(s2b("Allow"), s2b(req.allow))
	}
	if req.close || x.bodyErr != nil {
		h.SetConnectionClose()
	}
	r.SetBodyRaw(body)
}

func (x *fastExchange) drop() {
	x.c.HijackSetNoResponse(true)
	x.c.Hijack(func(net.Conn) {}) // fasthttp closes the connection after this
}

func (x *fastExchange) finish(req *request, start time.Time) {
	if x.stopWatch != nil {
		x.stopWatch()
	}
	s := x.s
	f := fields{method: x.method(), path: x.p, ua: x.userAgent(), remote: x.remoteAddr(), peer: x.peer()}
	if req.restore == nil || x.ci == nil {
		s.complete(f, req, start)
		return
	}
	x.ci.settleAfterWrite(x.c.Conn(), s, f, req, start)
}

// settleAfterWrite has the connection report the token request req once
// it has written its response and the peer has acknowledged it (see
// tokenReport). The handler has returned by then and its exchange serves
// another request: what is reported is copied here.
func (ci *connInfo) settleAfterWrite(conn net.Conn, s *Server, f fields, req *request, start time.Time) {
	f.method, f.path, f.ua = cloneMethod(f.method), strings.Clone(f.path), strings.Clone(f.ua)
	tr := &tokenReport{s: s, f: f, start: start, conn: conn, restore: req.restore,
		req: request{status: req.status, api: req.api, instance: req.instance, fault: req.fault, listing: req.listing, err: req.err}}
	ci.after.Store(tr)
}

// tokenReport is a token response sent with a lowered TTL, to be reported
// once the peer has acknowledged it: at once when it has by the end of the
// write, else (pending) before the connection writes anything else, when
// it closes, or, never acknowledged, after hopLimitHold: then it has not
// arrived (its packets died on the way, as they do beyond the hop limit)
// and its retransmissions must keep the low TTL, so the connection is
// closed and the request reported unanswered.
type tokenReport struct {
	s        *Server
	f        fields
	req      request
	start    time.Time
	conn     net.Conn
	restore  ttlRestorer
	deadline time.Time // pending: when it counts as lost
}

func (tr *tokenReport) done(delivered bool) {
	if !delivered {
		tr.req.fault, tr.req.status = "hop-limit", 0
		tr.conn.Close()
	}
	tr.s.complete(tr.f, &tr.req, tr.start)
}

// wrote follows the write of tr's response.
func (ci *connInfo) wroteToken(tr *tokenReport, werr error) {
	tr.f.written = time.Now()
	if werr != nil || tr.restore.acked() {
		tr.done(true)
		return
	}
	tr.deadline = tr.f.written.Add(hopLimitHold)
	ci.pending.Store(tr)
	ci.mu.Lock()
	if ci.expiry == nil {
		ci.expiry = time.AfterFunc(hopLimitHold, ci.expire)
	} else {
		ci.expiry.Reset(hopLimitHold)
	}
	ci.mu.Unlock()
}

// expire reports the pending token response lost once its time is up.
func (ci *connInfo) expire() {
	tr := ci.pending.Load()
	if tr == nil || time.Now().Before(tr.deadline) { // settled, or a newer one
		return
	}
	if ci.pending.CompareAndSwap(tr, nil) {
		tr.done(tr.restore.acked())
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// requestPath returns what net/http's URL.Path (and, for an absolute URI,
// URL.Host) is for a request URI: the common form (an absolute path with
// nothing to decode) is used as is, anything else goes through
// url.ParseRequestURI, as net/http parses it.
func requestPath(raw string) (path, host string, err error) {
	if len(raw) > 0 && raw[0] == '/' {
		plain := true
		for i := 0; i < len(raw); i++ {
			if b := raw[i]; b == '%' || b == '?' || b < ' ' || b == 0x7f {
				plain = false
				break
			}
		}
		if plain {
			return raw, "", nil
		}
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return "", "", err
	}
	return u.Path, u.Host, nil
}

// b2s and s2b view bytes as a string and back without copying; the views
// are only read, and only while the bytes are.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// connInfo is what a connection of the listener knows about itself,
// computed once at accept, and the state of its TTL.
type connInfo struct {
	rel    *releaser
	peer   netip.Addr
	remote string
	// after, if set, is the token response being written (see
	// tokenReport); pending, one written and not yet acknowledged.
	after   atomic.Pointer[tokenReport]
	pending atomic.Pointer[tokenReport]
	ttl     ttlState

	mu     sync.Mutex
	expiry *time.Timer // for pending, made once
}

// beforeWrite runs before the connection writes: a pending token response
// is settled (waiting for its acknowledgement), and the socket's TTL put
// back unless what is written is a token response at the same TTL.
func (ci *connInfo) beforeWrite() {
	ci.settle(true)
	ci.ttl.mu.Lock()
	if !ci.ttl.next {
		ci.ttl.putBack()
	}
	ci.ttl.mu.Unlock()
}

func (ci *connInfo) wrote(err error) {
	ci.ttl.mu.Lock()
	ci.ttl.next = false
	ci.ttl.mu.Unlock()
	if tr := ci.after.Swap(nil); tr != nil {
		ci.wroteToken(tr, err)
	}
}

// beforeClose settles a pending token response, and puts the TTL back if
// everything written has been acknowledged (else retransmissions must keep
// the low one).
func (ci *connInfo) beforeClose() {
	ci.settle(false)
	ci.ttl.mu.Lock()
	ci.ttl.putBackIfAcked()
	ci.ttl.mu.Unlock()
	ci.mu.Lock()
	if ci.expiry != nil {
		ci.expiry.Stop()
	}
	ci.mu.Unlock()
}

// settle reports a pending token response; wait says whether to wait for
// its acknowledgement.
func (ci *connInfo) settle(wait bool) {
	tr := ci.pending.Swap(nil)
	if tr == nil {
		return
	}
	delivered := tr.restore.acked()
	if !delivered && wait {
		ctx, cancel := context.WithDeadline(context.Background(), tr.deadline)
		delivered = tr.restore.waitAcked(ctx)
		cancel()
	}
	tr.done(delivered)
}

func connInfoOf(c net.Conn) *connInfo {
	switch c := c.(type) {
	case *limitedTCPConn:
		return &c.connInfo
	case *limitedConn:
		return &c.connInfo
	}
	return nil
}
