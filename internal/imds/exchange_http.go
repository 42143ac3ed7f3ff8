package imds

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// Handler returns the metadata API as an http.Handler without listening,
// for tests and for embedding. It serves exactly what the listeners of
// Open serve (the same code, through httpExchange).
func (s *Server) Handler() (http.Handler, error) {
	if err := s.init(); err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &httpExchange{s: s, w: w, r: r}
		s.handle(x, &x.req)
	}), nil
}

// httpExchange is an exchange on net/http.
type httpExchange struct {
	s   *Server
	w   http.ResponseWriter
	r   *http.Request
	req request
}

// smallLengths holds the Content-Length values of short bodies, so most
// responses set the header without allocating.
var smallLengths = func() [][]string {
	v := make([][]string, 4096)
	for i := range v {
		v[i] = []string{strconv.Itoa(i)}
	}
	return v
}()

func contentLength(body []byte) []string {
	if len(body) < len(smallLengths) {
		return smallLengths[len(body)]
	}
	return []string{strconv.Itoa(len(body))}
}

var (
	textPlain   = []string{"text/plain"}
	textHTML    = []string{"text/html"}
	octetStream = []string{"application/octet-stream"}
	serverName  = []string{"EC2ws"}
	rangesNone  = []string{"none"}
)

func (x *httpExchange) method() string     { return x.r.Method }
func (x *httpExchange) path() string       { return x.r.URL.Path }
func (x *httpExchange) host() string       { return x.r.Host }
func (x *httpExchange) userAgent() string  { return x.r.UserAgent() }
func (x *httpExchange) remoteAddr() string { return x.r.RemoteAddr }
func (x *httpExchange) ctx() context.Context {
	return x.r.Context()
}
func (x *httpExchange) gone() <-chan struct{} { return x.r.Context().Done() }
func (x *httpExchange) contentLength() int64 {
	if x.r.Body == nil || x.r.Body == http.NoBody {
		return 0
	}
	return x.r.ContentLength
}
func (x *httpExchange) body() io.Reader { return x.r.Body }
func (x *httpExchange) conn() net.Conn  { return nil }

func (x *httpExchange) peer() netip.Addr {
	if ap, err := netip.ParseAddrPort(x.r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (x *httpExchange) local() netip.Addr {
	if la, ok := x.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			return ap.Addr().Unmap()
		}
	}
	return netip.Addr{}
}

func (x *httpExchange) header(h reqHeader) (string, bool) {
	v, ok := x.r.Header[h.name()]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (x *httpExchange) setReadDeadline(t time.Time) {
	_ = http.NewResponseController(x.w).SetReadDeadline(t)
}

func (x *httpExchange) respond(req *request, ct contentType, body []byte, lastModified string) {
	h := x.w.Header()
	h["Server"] = serverName
	switch ct {
	case ctHTML:
		h["Content-Type"] = textHTML
	case ctOctet:
		h["Content-Type"] = octetStream
	default:
		h["Content-Type"] = textPlain
	}
	h["Content-Length"] = contentLength(body)
	if lastModified != "" {
		h["Accept-Ranges"] = rangesNone
		h["Last-Modified"] = []string{lastModified}
	}
	if req.ttl != "" && req.status == http.StatusOK {
		h[hdrTokenTTL] = []string{req.ttl}
	}
	if req.allow != "" {
		h["Allow"] = []string{req.allow}
	}
	if req.close {
		h["Connection"] = []string{"close"}
	}
	x.w.WriteHeader(req.status)
	_, _ = x.w.Write(body)
}

func (x *httpExchange) drop() {
	if hj, ok := x.w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
		}
	}
}

// finish: Handler serves without a socket of its own (conn is nil), so no
// token response has a TTL to wait for.
func (x *httpExchange) finish(req *request, start time.Time) {
	x.s.complete(fields{method: x.r.Method, path: x.r.URL.Path, ua: x.r.UserAgent(), remote: x.r.RemoteAddr, peer: x.peer()}, req, start)
}
