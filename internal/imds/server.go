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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/fastlog"
	"github.com/imdsdev/imds/internal/identity"
	"github.com/imdsdev/imds/internal/token"
)

const latest = "latest"

// DefaultVersions are the metadata versions listed at "/" (oldest first,
// "latest" last), as a current EC2 instance lists them.
var DefaultVersions = []string{
	"1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
	"2008-02-01", "2008-09-01", "2009-04-04", "2011-01-01", "2011-05-01", "2012-01-12",
	"2014-02-25", "2014-11-05", "2015-10-20", "2016-04-19", "2016-06-30", "2016-09-02",
	"2018-03-28", "2018-08-17", "2018-09-24", "2019-10-01", "2020-10-27", "2021-01-03",
	"2021-03-23", "2021-07-15", "2022-07-09", "2022-09-24", latest,
}

// Header names of IMDSv2.
const (
	hdrToken    = "X-Aws-Ec2-Metadata-Token"
	hdrTokenTTL = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
)

// Signer signs instance identity documents.
type Signer interface {
	Sign(doc []byte) (identity.Signatures, error)
}

// Server serves the EC2 instance metadata API over HTTP. Set its fields, then
// call Open; fields must not change after Open.
type Server struct {
	// Listen are the addresses to listen on (host:port, port 0 picks one).
	Listen []string

	Instances   ec2.InstanceLocator
	Credentials ec2.CredentialProvider
	Identity    ec2.IdentityCredentialProvider
	Signer      Signer
	Tokens      *token.Issuer

	// Versions are listed at "/" and accepted as path prefixes.
	Versions []string
	// AllowedHosts are host names (besides IP literals, localhost and
	// instance-data) accepted in the Host header; "*" accepts any. Other names
	// are refused so that a web page cannot reach the service through DNS
	// rebinding.
	AllowedHosts []string
	// HopDistances say how many hops away requesters are, by network
	// (longest prefix wins; 1 elsewhere); a token response to one further
	// than the instance's hop limit is never sent, as on EC2.
	HopDistances []HopDistance

	// Upload, if set, serves md_server's POST /instance-upload: the domain
	// XML a libvirt hook posts. Only the host itself may call it.
	Upload func(ctx context.Context, body io.Reader) error

	// UserData, if set, renders an instance's user-data (templates); nil
	// serves Instance.UserData as is.
	UserData func(*ec2.Instance) ([]byte, error)

	// Random returns numbers in [0, 1) for the fault shares; nil means
	// math/rand/v2. Tests set a deterministic one.
	Random func() float64

	// Recorder, if set, receives every request after its response; it must
	// not block.
	Recorder interface{ Record(ec2.RequestRecord) }

	// Limits bound connections and the time a client may take; zero
	// fields take the defaults (see Limits).
	Limits Limits

	Logger    *slog.Logger
	AccessLog bool
	// Now is the clock used for Last-Modified and error timestamps.
	Now func() time.Time

	versions    map[string]bool
	versionList []byte
	settings    atomic.Pointer[settings] // AllowedHosts, HopDistances, UserData as in force
	trees       sync.Map                 // instance name → *compiled
	buckets     sync.Map                 // instance name → *bucket, for the rate-limit fault
	refusals    refusalLog
	logHandler  slog.Handler
	limits      Limits // Limits with the defaults filled in
	conns       *connLimiter
	listeners   []net.Listener
	fast        *fastServer
	wg          sync.WaitGroup
}

// NewServer returns a Server with safe defaults; the caller sets the
// dependencies (Instances, Credentials, Tokens, ...) before Open.
func NewServer() *Server {
	return &Server{
		Listen:    []string{"127.0.0.1:1338"},
		Versions:  DefaultVersions,
		Logger:    slog.New(slog.DiscardHandler),
		AccessLog: true,
		Now:       time.Now,
	}
}

func (s *Server) now() time.Time { return s.Now() }

// init prepares derived lookup tables; Open and Handler call it.
func (s *Server) init() error {
	if s.Instances == nil || s.Credentials == nil || s.Tokens == nil {
		return errors.New("imds: Instances, Credentials and Tokens are required")
	}
	if len(s.Versions) == 0 || s.Versions[len(s.Versions)-1] != latest {
		return errors.New(`imds: the version list must end with "latest"`)
	}
	s.versions = make(map[string]bool, len(s.Versions))
	for _, v := range s.Versions {
		s.versions[v] = true
	}
	s.versionList = []byte(strings.Join(s.Versions, "\n"))
	s.logHandler = s.Logger.Handler()
	s.limits = s.Limits.withDefaults()
	s.settings.Store(s.fieldSettings())
	return nil
}

func (s *Server) fieldSettings() *settings {
	return newSettings(Settings{AllowedHosts: s.AllowedHosts, HopDistances: s.HopDistances, UserData: s.UserData})
}

// current returns the settings in force: the fields' until Open or
// Handler, then those of the last Reconfigure.
func (s *Server) current() *settings {
	if st := s.settings.Load(); st != nil {
		return st
	}
	return s.fieldSettings()
}

// Settings are what a config reload may change while the server runs.
type Settings struct {
	AllowedHosts []string
	HopDistances []HopDistance
	UserData     func(*ec2.Instance) ([]byte, error)
}

// settings are Settings ready for the request path.
type settings struct {
	allowedHosts map[string]bool
	hops         []HopDistance
	userData     func(*ec2.Instance) ([]byte, error)
}

func newSettings(st Settings) *settings {
	out := &settings{allowedHosts: map[string]bool{"localhost": true, "instance-data": true, "instance-data.ec2.internal": true},
		hops: slices.Clone(st.HopDistances), userData: st.UserData}
	for _, h := range st.AllowedHosts {
		out.allowedHosts[strings.ToLower(h)] = true
	}
	return out
}

// Reconfigure puts new settings in force for the requests that follow
// (after Open or Handler). Trees are compiled again, so that new user-data
// templates take effect.
func (s *Server) Reconfigure(st Settings) {
	s.settings.Store(newSettings(st))
}

// Open listens on every address of Listen and starts serving. Listen errors
// are returned synchronously.
func (s *Server) Open() error {
	if err := s.init(); err != nil {
		return err
	}
	s.conns = newConnLimiter(s.limits, s.Logger, time.Now)
	for _, addr := range s.Listen {
		ln, err := net.Listen(listenNetwork(addr, s.Listen), addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, &limitListener{Listener: ln, limits: s.conns})
	}
	s.fast = s.newFastServer()
	for _, ln := range s.listeners {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.fast.srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				s.Logger.Error("metadata listener stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	return nil
}

// listenNetwork is "tcp4" for 0.0.0.0:P and "tcp6" for [::]:P when both are
// in all, else "tcp". Go listens on either wildcard with one dual-stack
// socket, so "--listen 0.0.0.0:P --listen [::]:P", the way nginx and most
// services are told to listen on both families, would fail with "address
// already in use" in either order; as a pair, each takes its own family.
// Alone, either stays dual-stack and serves both.
func listenNetwork(addr string, all []string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp"
	}
	var pair, network string
	switch host {
	case "0.0.0.0":
		pair, network = "::", "tcp4"
	case "::":
		pair, network = "0.0.0.0", "tcp6"
	default:
		return "tcp"
	}
	for _, other := range all {
		if h, p, err := net.SplitHostPort(other); err == nil && h == pair && p == port {
			return network
		}
	}
	return "tcp"
}

func (s *Server) closeListeners() {
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.listeners = nil
}

// Addrs returns the addresses the server listens on (useful with port 0).
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, 0, len(s.listeners))
	for _, ln := range s.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

// URL returns the base URL of the first listener, e.g. http://127.0.0.1:1338.
func (s *Server) URL() string {
	if len(s.listeners) == 0 {
		return ""
	}
	return "http://" + s.listeners[0].Addr().String()
}

// Close stops accepting connections and waits for requests in flight until
// ctx is done, then closes whatever connections remain (a client may hold
// connections it never sends a request on, which a graceful shutdown would
// wait for).
func (s *Server) Close(ctx context.Context) error {
	if s.fast == nil {
		return nil
	}
	// Closed here too, since Shutdown knows only the listeners that Serve
	// has reached.
	s.closeListeners()
	err := s.fast.srv.ShutdownWithContext(ctx)
	if errors.Is(err, net.ErrClosed) { // the listeners closed above
		err = nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		s.fast.closeAll()
		err = nil
	}
	s.wg.Wait()
	s.fast.cancel()
	return err
}

// tree returns the compiled tree of inst, compiling it when inst is new or
// has changed (a changed instance is a new pointer).
func (s *Server) tree(inst *ec2.Instance) (*compiled, error) {
	cur := s.current()
	if v, ok := s.trees.Load(inst.Name); ok {
		if c := v.(*compiled); c.inst == inst && c.settings == cur {
			return c, nil
		}
	}
	c, err := s.compile(inst, cur)
	if err != nil {
		return nil, err
	}
	s.trees.Store(inst.Name, c)
	return c, nil
}

// request carries what the access log reports about one request, and the
// headers its response carries besides the fixed ones.
type request struct {
	status   int
	api      string // v1 or v2
	instance string
	fault    string // the fault injected, if any
	listing  bool   // the answer was a directory listing
	err      error

	ttl   string // X-Aws-Ec2-Metadata-Token-Ttl-Seconds of a 200
	allow string // Allow of a 405 or an OPTIONS answer
	close bool   // Connection: close (what is left of the body must not be read as a request)
	// restore, set by limitHops, is used once the token response is on
	// the wire: it puts the socket's TTL back when the peer has
	// acknowledged the response (never acknowledged: the connection is
	// dropped).
	restore ttlRestorer
}

// contentType is one of the Content-Type values the API answers with.
type contentType uint8

const (
	ctText contentType = iota
	ctHTML
	ctOctet
)

func (c contentType) String() string {
	switch c {
	case ctHTML:
		return "text/html"
	case ctOctet:
		return "application/octet-stream"
	}
	return "text/plain"
}

// reqHeader names one of the request headers the API reads.
type reqHeader uint8

const (
	hOrigin reqHeader = iota
	hSecFetchSite
	hForwardedFor
	hToken
	hTokenTTL
	hInstanceID
	hInstanceIDSig
	numReqHeaders
)

// name is the header's canonical name (as both servers present it).
func (h reqHeader) name() string {
	switch h {
	case hOrigin:
		return "Origin"
	case hSecFetchSite:
		return "Sec-Fetch-Site"
	case hForwardedFor:
		return "X-Forwarded-For"
	case hToken:
		return hdrToken
	case hTokenTTL:
		return hdrTokenTTL
	case hInstanceID:
		return "X-Instance-Id"
	case hInstanceIDSig:
		return "X-Instance-Id-Signature"
	}
	return ""
}

// exchange is one request and its response, whichever HTTP server carries
// it: the metadata logic below is written once against it, and served by
// fasthttp on the listeners (fastExchange) and by net/http through Handler
// (httpExchange).
type exchange interface {
	method() string
	// path is the request path as net/http's URL.Path has it: percent-
	// decoded, not cleaned (no "//" or ".." resolution), without the query.
	path() string
	host() string
	userAgent() string
	remoteAddr() string // host:port, for the log and the record
	// peer is the connection's remote address (unmapped); local the
	// address the request came to (invalid when unknown).
	peer() netip.Addr
	local() netip.Addr
	// header returns the first value of h and whether h was sent at all
	// (an empty value counts as sent).
	header(h reqHeader) (string, bool)
	// ctx is the request's context, for the lookups it makes.
	ctx() context.Context
	// gone is closed when the client goes away (or the server closes the
	// connection): held requests end then.
	gone() <-chan struct{}
	contentLength() int64
	body() io.Reader
	setReadDeadline(time.Time)
	// conn is the connection's socket, for the TTL of token responses;
	// nil when there is none.
	conn() net.Conn
	// respond writes the response: req.status, ct, body and the headers
	// req asks for.
	respond(req *request, ct contentType, body []byte, lastModified string)
	// drop closes the connection without a response.
	drop()
	// finish calls s.complete once the response is complete (after
	// req.restore, if any, which may turn it into a dropped one).
	finish(req *request, start time.Time)
}

// fields are what the client sent that the log and the record keep.
type fields struct {
	method, path, ua, remote string
	peer                     netip.Addr
	written                  time.Time // when the response was written, if it was not just now
}

// handle serves one request through x: the one implementation of the
// metadata API behind both servers. req is the caller's storage (reset
// here), so that a server can reuse it.
func (s *Server) handle(x exchange, req *request) {
	start := time.Now()
	*req = request{api: "v1"}
	func() {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				req.err = fmt.Errorf("panic: %v", p)
				s.writeError(x, req, req.err)
			}
		}()
		if err := s.serve(x, req); err == errNoResponse {
			req.status = 0
		} else if err != nil {
			req.err = err
			s.writeError(x, req, err)
		}
	}()
	x.finish(req, start)
}

// complete reports a request whose response is complete: why it was
// refused, if it was, the record and the access log.
func (s *Server) complete(f fields, req *request, start time.Time) {
	if req.err != nil {
		s.logRefusal(f, req)
	}
	s.record(f, req, start)
}

// record keeps one request in the request record and the access log.
func (s *Server) record(f fields, req *request, start time.Time) {
	// What the client sent is kept and logged cut to size: a client must not
	// be able to fill the record or the log with one request.
	method, path, ua := ec2.TruncateField(f.method), ec2.TruncateField(f.path), ec2.TruncateField(f.ua)
	latency := time.Since(start)
	if !f.written.IsZero() {
		latency = f.written.Sub(start)
	}
	if s.Recorder != nil {
		// The record outlives the request: it gets copies, not views of
		// the server's buffers (remote is the connection's own string).
		path, ua := clone2(path, ua)
		s.Recorder.Record(ec2.RequestRecord{Time: start, Instance: req.instance, Remote: f.remote, Method: cloneMethod(method),
			Path: path, Status: req.status, API: req.api, Latency: latency, UserAgent: ua, Fault: req.fault,
			Category: category(f.path, req.listing)})
	}
	if s.AccessLog && s.logHandler.Enabled(context.Background(), slog.LevelInfo) {
		// Built by hand rather than through Logger.LogAttrs, which would pay
		// for a stack walk (the source location) on every request; and
		// without a slog.Record for the daemon's text log (fastlog), since a
		// Record allocates for more than five attributes. The handler
		// formats the line before it returns (fastlog and the standard
		// handlers do), so the views need no copies.
		var buf [9]slog.Attr
		attrs := append(buf[:0],
			slog.String("method", method),
			slog.String("path", path),
			slog.Int("status", req.status),
			slog.String("api", req.api),
			slog.Duration("latency", latency),
			slog.String("remote", f.remote),
			slog.String("instance", req.instance),
			slog.String("ua", ua),
		)
		if req.fault != "" {
			attrs = append(attrs, slog.String("fault", req.fault))
		}
		if h, ok := s.logHandler.(*fastlog.Handler); ok {
			_ = h.HandleAttrs(start, slog.LevelInfo, "request", attrs)
			return
		}
		rec := slog.NewRecord(start, slog.LevelInfo, "request", 0)
		rec.AddAttrs(attrs...)
		_ = s.logHandler.Handle(context.Background(), rec)
	}
}

// clone2 copies a and b in one allocation.
func clone2(a, b string) (string, string) {
	ab := strings.Clone(a + b) // a + b may be a itself when b is empty
	return ab[:len(a)], ab[len(a):]
}

// cloneMethod copies a request method, without allocating for the usual
// ones.
func cloneMethod(m string) string {
	switch m {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPut:
		return http.MethodPut
	case http.MethodHead:
		return http.MethodHead
	case http.MethodPost:
		return http.MethodPost
	case http.MethodOptions:
		return http.MethodOptions
	}
	return strings.Clone(m)
}

// logRefusal says why a request was refused (400, 401, 403) and what
// allows it, at most once a minute per requester and reason (see
// refusalLog), since the access log shows only the status; internal errors
// are logged always.
// Unknown requesters (404) are logged by the locator.
func (s *Server) logRefusal(f fields, req *request) {
	code := ec2.ErrorCode(req.err)
	switch code {
	case ec2.EINTERNAL:
		s.Logger.Error("metadata request failed", "method", strings.Clone(ec2.TruncateField(f.method)), "path", strings.Clone(ec2.TruncateField(f.path)), "instance", req.instance, "err", req.err)
	case ec2.EINVALID, ec2.EUNAUTHORIZED, ec2.EFORBIDDEN:
		addr, reason := f.peer, ec2.ErrorMessage(req.err)
		if ok, suppressed := s.refusals.allow(addr, reason, s.now()); ok {
			attrs := []any{"status", req.status, "method", strings.Clone(ec2.TruncateField(f.method)), "path", strings.Clone(ec2.TruncateField(f.path)),
				"remote", addr.String(), "instance", req.instance, "reason", reason}
			if suppressed > 0 {
				attrs = append(attrs, "unlogged_refusals", suppressed)
			}
			s.Logger.Warn("metadata request refused", attrs...)
		}
	}
}

// serve handles one request; a returned error is rendered by writeError.
func (s *Server) serve(x exchange, req *request) error {
	if err := s.checkOrigin(x); err != nil {
		return err
	}
	urlPath, method := x.path(), x.method()
	if urlPath == "/instance-upload" && s.Upload != nil {
		return s.serveUpload(x, req)
	}
	if err := s.ignoreBody(x, req); err != nil {
		return err
	}
	inst, err := s.Instances.LocateInstance(x.ctx(), requester(x))
	if err != nil {
		return err
	}
	req.instance = inst.Name
	if inst.Metadata.HTTPEndpoint == ec2.EndpointDisabled {
		return ec2.Errorf(ec2.EFORBIDDEN, "the instance metadata endpoint of %s is disabled", inst.Name)
	}
	c, err := s.tree(inst)
	if err != nil {
		return err
	}

	path := strings.TrimLeft(urlPath, "/")
	version, rest, _ := strings.Cut(path, "/")
	if inst.Faults.Active() {
		if err := s.injectFault(x, req, inst.Faults, isTokenPath(rest)); err != nil {
			return err
		}
	}
	if isTokenPath(rest) {
		return s.serveToken(x, req, c, version)
	}
	if method != http.MethodGet && method != http.MethodHead {
		req.allow = "GET, HEAD"
		return ec2.Errorf(ec2.EMETHOD, "method %s is not allowed on metadata paths", method)
	}
	if err := s.checkToken(x, req, c); err != nil {
		return err
	}
	if version == "" {
		req.listing = true
		s.write(x, req, ctText, s.versionList, c)
		return nil
	}
	if !s.versions[version] {
		return ec2.Errorf(ec2.ENOTFOUND, "unknown version %q", version)
	}
	n := resolve(c.root, rest, version)
	if n == nil {
		return ec2.Errorf(ec2.ENOTFOUND, "no such path")
	}
	switch {
	case n.isDir():
		req.listing = true
		s.write(x, req, ctText, n.listFor(version), c)
	case n.dyn != nil:
		body, err := n.dyn(x.ctx())
		if err != nil {
			return err
		}
		s.write(x, req, ctText, body, c)
	case n.octet:
		s.write(x, req, ctOctet, n.value, c)
	default:
		s.write(x, req, ctText, n.value, c)
	}
	return nil
}

// serveUpload keeps md_server's upload endpoint working for existing libvirt
// hooks: POST the domain XML. Only requests from the host itself (loopback,
// or from the very address they were sent to) are accepted.
func (s *Server) serveUpload(x exchange, req *request) error {
	if x.method() != http.MethodPost {
		req.allow = "POST"
		return ec2.Errorf(ec2.EMETHOD, "instance-upload takes POST")
	}
	peer := x.peer()
	if !peer.IsLoopback() && peer != x.local() {
		return ec2.Errorf(ec2.EFORBIDDEN, "instance-upload is only accepted from the host itself, not %s", peer)
	}
	x.setReadDeadline(time.Now().Add(s.limits.UploadTimeout))
	defer x.setReadDeadline(time.Time{})
	body := &cappedReader{r: x.body(), left: MaxUploadBody}
	if err := s.Upload(x.ctx(), body); err != nil {
		if body.over {
			req.close = true
		}
		if ec2.ErrorCode(err) == ec2.EINTERNAL {
			err = ec2.Errorf(ec2.EINVALID, "%v", err)
		}
		return err
	}
	req.instance = "(upload)"
	s.write(x, req, ctText, []byte("OK"), &compiled{lastModified: []string{s.now().UTC().Format(httpTime)}})
	return nil
}

// cappedReader reads at most left bytes and fails beyond them, as
// http.MaxBytesReader does.
type cappedReader struct {
	r    io.Reader
	left int64
	over bool
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One more byte tells a body of exactly the cap from a bigger one.
		var one [1]byte
		if n, _ := c.r.Read(one[:]); n > 0 {
			c.over = true
			return 0, fmt.Errorf("request body too large (over %d bytes)", MaxUploadBody)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// ignoreBody reads the body of a metadata request, which the API never
// needs, within BodyTimeout and up to MaxIgnoredBody bytes, and refuses the
// request (closing the connection) when the body is bigger or late: a
// client that declares a body and never sends it must not hold its
// connection. Small bodies are tolerated, since some clients send one with
// a token PUT.
func (s *Server) ignoreBody(x exchange, req *request) error {
	if x.contentLength() == 0 {
		return nil
	}
	body := x.body()
	if body == nil {
		return nil
	}
	x.setReadDeadline(time.Now().Add(s.limits.BodyTimeout))
	n, err := io.Copy(io.Discard, io.LimitReader(body, MaxIgnoredBody+1))
	if err == nil && n <= MaxIgnoredBody {
		x.setReadDeadline(time.Time{})
		return nil
	}
	// What is left of the body must not be read as the next request.
	req.close = true
	if err != nil {
		return ec2.Errorf(ec2.EINVALID, "the request body did not arrive within %s: %v", s.limits.BodyTimeout, err)
	}
	return ec2.Errorf(ec2.EINVALID, "request bodies over %d bytes are refused on the metadata API", MaxIgnoredBody)
}

// category classifies a request path for metrics (see ec2.Categories);
// listing says the answer was a directory, which the path alone cannot
// tell (a refused request asked for one if its path ends with a slash).
func category(path string, listing bool) string {
	_, rest, _ := strings.Cut(strings.TrimLeft(path, "/"), "/")
	rest = strings.TrimLeft(rest, "/")
	switch {
	case isTokenPath(rest):
		return ec2.CategoryToken
	case listing, strings.HasSuffix(path, "/"):
		return ec2.CategoryListing
	case strings.HasPrefix(rest, "meta-data/iam/security-credentials/"),
		strings.HasPrefix(rest, "meta-data/identity-credentials/"):
		return ec2.CategoryCredentials
	case strings.HasPrefix(rest, "dynamic/instance-identity/"):
		return ec2.CategoryIdentity
	case rest == "user-data":
		return ec2.CategoryUserData
	}
	return ec2.CategoryOther
}

func isTokenPath(rest string) bool {
	return strings.TrimRight(rest, "/") == "api/token"
}

// serveToken implements PUT /latest/api/token.
func (s *Server) serveToken(x exchange, req *request, c *compiled, version string) error {
	req.api = "v2"
	switch method := x.method(); method {
	case http.MethodPut:
	case http.MethodOptions:
		req.allow = "OPTIONS, PUT"
		s.write(x, req, ctText, nil, c)
		return nil
	default:
		req.allow = "OPTIONS, PUT"
		return ec2.Errorf(ec2.EMETHOD, "method %s is not allowed on the token path", method)
	}
	if version != latest {
		return ec2.Errorf(ec2.EFORBIDDEN, "tokens are only issued on /latest/api/token, not under %q", version)
	}
	if _, ok := x.header(hForwardedFor); ok {
		return ec2.Errorf(ec2.EFORBIDDEN, "token requests carrying X-Forwarded-For are refused")
	}
	ttlHeader, _ := x.header(hTokenTTL)
	ttl, err := token.ParseTTL(ttlHeader)
	if err != nil {
		return ec2.Errorf(ec2.EINVALID, "%s", err)
	}
	tok, err := s.Tokens.Issue(c.scope, ttl)
	if err != nil {
		return err
	}
	req.ttl = strconv.Itoa(ttl)
	if err := s.limitHops(x, req, c.inst.Metadata.PutResponseHopLimit); err != nil {
		return err
	}
	s.write(x, req, ctText, []byte(tok), c)
	return nil
}

// checkToken enforces IMDSv2: a token, when present, must be valid (even in
// optional mode, so that SDKs refresh stale tokens), and one is required when
// the instance says so.
func (s *Server) checkToken(x exchange, req *request, c *compiled) error {
	val, present := x.header(hToken)
	if !present {
		if c.inst.Metadata.HTTPTokens == ec2.TokensRequired {
			return ec2.Errorf(ec2.EUNAUTHORIZED, "IMDSv2 is required: missing session token")
		}
		return nil
	}
	req.api = "v2"
	left, err := s.Tokens.Validate(val, c.scope)
	if err != nil {
		return ec2.Errorf(ec2.EUNAUTHORIZED, "%s", err)
	}
	req.ttl = strconv.Itoa(token.RemainingSeconds(left))
	return nil
}

// checkOrigin refuses what only a browser sends, and Host names that are
// neither addresses nor known metadata names: together they stop web pages
// from reading credentials through DNS rebinding.
func (s *Server) checkOrigin(x exchange) error {
	if _, ok := x.header(hOrigin); ok {
		return ec2.Errorf(ec2.EFORBIDDEN, "requests with an Origin header are refused: browsers send it, and imds refuses them so that web pages cannot read credentials")
	}
	if _, ok := x.header(hSecFetchSite); ok {
		return ec2.Errorf(ec2.EFORBIDDEN, "requests with a Sec-Fetch-Site header are refused: browsers send it, and imds refuses them so that web pages cannot read credentials")
	}
	allowed := s.current().allowedHosts
	host := x.host()
	if allowed["*"] || host == "" {
		return nil
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if allowed[strings.ToLower(strings.TrimSuffix(host, "."))] {
		return nil
	}
	return ec2.Errorf(ec2.EFORBIDDEN, "Host %q is not allowed: add it to allowed_hosts in the config file (IP addresses, localhost and instance-data always are)", strings.Clone(host))
}

func requester(x exchange) ec2.Requester {
	req := ec2.Requester{Addr: x.peer()}
	// Only the locator decides whether the peer may speak for an instance.
	if v, ok := x.header(hInstanceID); ok {
		req.ProxiedInstance = strings.Clone(v)
	}
	if v, ok := x.header(hInstanceIDSig); ok {
		req.ProxiedSignature = strings.Clone(v)
	}
	return req
}

func (s *Server) write(x exchange, req *request, ct contentType, body []byte, c *compiled) {
	req.status = http.StatusOK
	lm := ""
	if len(c.lastModified) > 0 {
		lm = c.lastModified[0]
	}
	x.respond(req, ct, body, lm)
}

// statusOf is the one table mapping application error codes to this
// surface's HTTP status and body.
var statusOf = map[string]struct {
	status int
	body   string
}{
	ec2.EINVALID:      {http.StatusBadRequest, badRequestBody},
	ec2.EUNAUTHORIZED: {http.StatusUnauthorized, unauthorizedBody},
	ec2.EFORBIDDEN:    {http.StatusForbidden, forbiddenBody},
	ec2.ENOTFOUND:     {http.StatusNotFound, notFoundBody},
	ec2.EMETHOD:       {http.StatusMethodNotAllowed, ""},
	ec2.ETHROTTLED:    {http.StatusTooManyRequests, tooManyRequestsBody},
	ec2.EUNAVAILABLE:  {http.StatusServiceUnavailable, unavailableBody},
	ec2.EINTERNAL:     {http.StatusInternalServerError, internalErrorBody},
}

func (s *Server) writeError(x exchange, req *request, err error) {
	e, ok := statusOf[ec2.ErrorCode(err)]
	if !ok {
		e = statusOf[ec2.EINTERNAL]
	}
	ct := ctHTML
	if e.body == "" {
		ct = ctText
	}
	req.status = e.status
	x.respond(req, ct, unsafe.Slice(unsafe.StringData(e.body), len(e.body)), "") // read-only: both servers copy or only write it
}
