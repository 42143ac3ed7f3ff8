package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
)

// DefaultMaxBody is the default limit of a request body: far above what a
// batch of instances with 16 KiB of user data each needs.
const DefaultMaxBody = 1 << 20

// MinTokenLength is the shortest bearer token the TCP listener accepts.
const MinTokenLength = 16

// Server serves the admin API. Set its fields, then call Open; fields must
// not change after Open.
type Server struct {
	Service ec2.InstanceService
	// Credentials rotates role credentials; nil answers EUNSUPPORTED.
	Credentials ec2.CredentialRotator
	Requests    ec2.RequestLog   // nil answers EUNSUPPORTED
	Events      ec2.EventService // nil answers EUNSUPPORTED
	Faults      ec2.FaultService // nil answers EUNSUPPORTED
	Logger      *slog.Logger
	// Metadata resolves paths of an instance's metadata tree for
	// GET /v1/instances/{name}/metadata; nil answers EUNSUPPORTED.
	Metadata MetadataFunc
	// Status fills GET /v1/server with what the admin API does not know
	// itself (listeners, roles, VM network); nil leaves those empty.
	Status func(ctx context.Context) (StatusDocument, error)
	// Dashboard, if set, is served under /dashboard/ on the TCP listener.
	// It does its own checks (browsers send Origin, which the API refuses):
	// it must authenticate its users and protect its state changes.
	Dashboard http.Handler

	// SocketPath is the Unix socket to listen on. It is created with mode
	// 0600, its directory with 0700 when missing. A socket file left by a dead
	// server is replaced; one with a live server behind it is an error.
	SocketPath string
	// SocketGroup, if set, is a group (name or number) whose members may
	// connect too: the socket is then mode 0660 with that group, and a
	// directory created for it 0750.
	SocketGroup string
	// TCPAddr is an optional host:port to listen on as well (port 0 picks
	// one). It requires Token.
	TCPAddr string
	// Token is the bearer token of requests over TCP; requests over the Unix
	// socket need none. Compared in constant time, never logged.
	Token string
	// MaxBody limits request bodies; 0 means DefaultMaxBody.
	MaxBody int64
	// Metrics, if set, serves GET /metrics (the Prometheus exposition),
	// behind the same checks as the rest of the API.
	Metrics http.Handler

	handlerOnce sync.Once
	handler     http.Handler
	hosts       atomic.Pointer[hostsBox] // see SetHosts

	http     *http.Server
	unixLn   net.Listener
	unixFile os.FileInfo // the socket file we created, to remove only ours
	tcpLn    net.Listener
	wg       sync.WaitGroup
	// shutdown is closed when Close begins: Shutdown does not cancel the
	// requests in flight, and a follow stream would otherwise hold Close
	// until its deadline.
	shutdown chan struct{}
}

// NewServer returns a Server with safe defaults; the caller sets Service and
// SocketPath (and TCPAddr with Token) before Open.
func NewServer() *Server {
	return &Server{
		Logger:  slog.New(slog.DiscardHandler),
		MaxBody: DefaultMaxBody,
	}
}

// Open listens on SocketPath and TCPAddr and starts serving in the
// background. Listen errors are returned synchronously.
func (s *Server) Open() error {
	if s.Service == nil {
		return errors.New("admin: Service is required")
	}
	if s.SocketPath == "" && s.TCPAddr == "" {
		return errors.New("admin: a socket path or a TCP address is required")
	}
	if s.TCPAddr != "" && s.Token == "" {
		return fmt.Errorf("the admin API on TCP %s needs a token: refusing to serve it without one", s.TCPAddr)
	}
	if s.TCPAddr != "" && len(s.Token) < MinTokenLength {
		return fmt.Errorf("the admin API token must be at least %d characters", MinTokenLength)
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.SocketPath != "" {
		ln, fi, err := listenUnix(s.SocketPath, s.SocketGroup)
		if err != nil {
			return err
		}
		s.unixLn, s.unixFile = ln, fi
	}
	if s.TCPAddr != "" {
		ln, err := net.Listen("tcp", s.TCPAddr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("admin API: listen %s: %w", s.TCPAddr, err)
		}
		s.tcpLn = ln
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
			s.Logger.Warn("the admin API listens on a non-loopback address over plain HTTP: its token can be read on the network", "addr", ln.Addr().String())
		}
	}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if c.LocalAddr().Network() == "unix" {
				return context.WithValue(ctx, unixKey{}, true)
			}
			return ctx
		},
	}
	s.shutdown = make(chan struct{})
	s.http.RegisterOnShutdown(func() { close(s.shutdown) })
	for _, ln := range []net.Listener{s.unixLn, s.tcpLn} {
		if ln == nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.Logger.Error("admin listener stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	return nil
}

// TCPURL returns the base URL of the TCP listener, e.g.
// http://127.0.0.1:1339, or "" without one.
func (s *Server) TCPURL() string {
	if s.tcpLn == nil {
		return ""
	}
	return "http://" + s.tcpLn.Addr().String()
}

// Close stops accepting connections, waits for requests in flight until ctx
// is done, and removes the socket file.
func (s *Server) Close(ctx context.Context) error {
	var err error
	if s.http != nil {
		err = s.http.Shutdown(ctx)
		s.wg.Wait()
		s.http = nil
	}
	s.closeListeners()
	return err
}

func (s *Server) closeListeners() {
	if s.unixLn != nil {
		s.unixLn.Close()
		s.unixLn = nil
		removeSocket(s.SocketPath, s.unixFile)
		s.unixFile = nil
	}
	if s.tcpLn != nil {
		s.tcpLn.Close()
		s.tcpLn = nil
	}
}

// unixKey marks the context of connections accepted on the Unix socket.
type unixKey struct{}

// viaUnix reports whether r came over the Unix socket; requests served
// through Handler by any other listener count as TCP and need the token.
func viaUnix(r *http.Request) bool {
	v, _ := r.Context().Value(unixKey{}).(bool)
	return v
}

// handlerFunc is a handler that returns its error for ServeHTTP to render.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handler returns the admin API as an http.Handler, for tests and
// embedding. Requests it serves that did not come through Open's Unix socket
// are treated as TCP requests and need the token.
func (s *Server) Handler() http.Handler {
	s.handlerOnce.Do(func() {
		mux := http.NewServeMux()
		route := func(pattern string, h handlerFunc) {
			mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := h(w, r); err != nil {
					s.writeError(w, r, err)
				}
			}))
		}
		route("GET /v1/hosts", s.handleHosts)
		route("GET /v1/health", s.handleHealth)
		route("GET /v1/instances", s.handleInstanceList)
		route("POST /v1/instances", s.handleInstanceCreate)
		route("GET /v1/instances/{name}", s.handleInstanceGet)
		route("PUT /v1/instances/{name}", s.handleInstanceSet)
		route("PATCH /v1/instances/{name}", s.handleInstanceUpdate)
		route("DELETE /v1/instances/{name}", s.handleInstanceDelete)
		route("GET /v1/instances/{name}/spec", s.handleInstanceSpec)
		route("POST /v1/credentials/rotate", s.handleCredentialsRotate)
		route("GET /v1/requests", s.handleRequests)
		route("GET /v1/instances/{name}/report", s.handleReport)
		route("POST /v1/instances/{name}/events", s.handleEvent)
		route("PUT /v1/instances/{name}/faults", s.handleFaultsSet)
		route("GET /v1/instances/{name}/faults", s.handleFaultsGet)
		route("DELETE /v1/instances/{name}/faults", s.handleFaultsClear)
		route("PUT /v1/faults", s.handleFaultsSet)
		route("GET /v1/faults", s.handleFaultsGet)
		route("DELETE /v1/faults", s.handleFaultsClear)
		s.viewRoutes(route)
		if s.Metrics != nil {
			mux.Handle("GET /metrics", s.Metrics)
			route("/metrics", func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Allow", "GET, HEAD")
				return ec2.Errorf(ec2.EMETHOD, "method %s is not allowed on /metrics (allowed: GET, HEAD)", r.Method)
			})
		}
		// The same paths without a method answer 405 through the error table
		// (the mux's own 405 is plain text); anything else is 404.
		for path, allow := range map[string]string{
			"/v1/health":                  "GET, HEAD",
			"/v1/instances":               "GET, HEAD, POST",
			"/v1/instances/{name}":        "DELETE, GET, HEAD, PATCH, PUT",
			"/v1/instances/{name}/spec":   "GET, HEAD",
			"/v1/credentials/rotate":      "POST",
			"/v1/requests":                "GET, HEAD",
			"/v1/instances/{name}/report": "GET, HEAD",
			"/v1/instances/{name}/events": "POST",
			"/v1/instances/{name}/faults": "DELETE, GET, HEAD, PUT",
			"/v1/faults":                  "DELETE, GET, HEAD, PUT",
		} {
			route(path, func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Allow", allow)
				return ec2.Errorf(ec2.EMETHOD, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)
			})
		}
		route("/", func(_ http.ResponseWriter, r *http.Request) error {
			return ec2.Errorf(ec2.ENOTFOUND, "no such admin API path: %s", r.URL.Path)
		})
		var dashboard http.Handler
		if s.Dashboard != nil {
			dashboard = http.StripPrefix("/dashboard", s.Dashboard)
		}
		s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if dashboard != nil && !viaUnix(r) && r.URL.Path == "/dashboard" {
				http.Redirect(w, r, "/dashboard/", http.StatusMovedPermanently)
				return
			}
			if dashboard != nil && !viaUnix(r) && strings.HasPrefix(r.URL.Path, "/dashboard/") {
				dashboard.ServeHTTP(w, r)
				return
			}
			s.serveHTTP(w, r, mux)
		})
	})
	return s.handler
}

// statusWriter remembers the status for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// serveHTTP applies the security checks, recovers panics and writes the
// access log around every request.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request, next http.Handler) {
	sw := &statusWriter{ResponseWriter: w}
	h := sw.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.writeError(sw, r, fmt.Errorf("panic: %v", p))
		}
		via := "tcp"
		if viaUnix(r) {
			via = "unix"
		}
		// Never the body: it can hold user data and other secrets.
		s.Logger.Debug("admin request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "via", via)
	}()
	if err := s.check(h, r); err != nil {
		s.writeError(sw, r, err)
		return
	}
	limit := s.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	r.Body = http.MaxBytesReader(sw, r.Body, limit)
	next.ServeHTTP(sw, r)
}

// check refuses what only a browser sends, Host names that could come from
// DNS rebinding, and TCP requests without the token.
func (s *Server) check(h http.Header, r *http.Request) error {
	for _, name := range []string{"Origin", "Referer", "Sec-Fetch-Site"} {
		if _, ok := r.Header[name]; ok {
			return ec2.Errorf(ec2.EFORBIDDEN, "requests with the %s header are refused: the admin API is not for browsers", name)
		}
	}
	if !allowedHost(r.Host) {
		return ec2.Errorf(ec2.EFORBIDDEN, "host name %q is not allowed: use localhost, imds or an address", r.Host)
	}
	if viaUnix(r) {
		return nil
	}
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || s.Token == "" || !tokenEqual(strings.TrimSpace(auth), s.Token) {
		h.Set("WWW-Authenticate", `Bearer realm="imds"`)
		if !ok {
			return ec2.Errorf(ec2.EUNAUTHORIZED, "the admin API over TCP needs an Authorization: Bearer token")
		}
		return ec2.Errorf(ec2.EUNAUTHORIZED, "invalid admin API token")
	}
	return nil
}

// tokenEqual compares in constant time, also with respect to the length.
func tokenEqual(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// allowedHost accepts an empty Host, localhost, imds and IP literals, with
// or without a port.
func allowedHost(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	switch strings.ToLower(strings.TrimSuffix(host, ".")) {
	case "localhost", "imds":
		return true
	}
	return false
}

// writeError renders err through the one status table.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := ec2.ErrorCode(err)
	status, known := codes[code]
	msg := ec2.ErrorMessage(err)
	if !known || code == ec2.EINTERNAL {
		s.Logger.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		code, status, msg = ec2.EINTERNAL, http.StatusInternalServerError, internalMessage
	}
	body, _ := encodeJSON(errorBody{Error: errorDetail{Code: code, Message: msg}})
	h := w.Header()
	for k := range h {
		switch k {
		case "Allow", "Www-Authenticate", "Cache-Control", "X-Content-Type-Options":
		default:
			delete(h, k)
		}
	}
	writeJSON(w, status, body)
}

// encodeJSON marshals v without escaping <, > and &, followed by a newline.
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	return nil
}

// Pages of GET /v1/instances.
const (
	// MaxPageSize is the largest limit a list takes.
	MaxPageSize = 10000
	// streamPage is the page the server reads the registry by when a list
	// asks for no limit and gets every instance in one streamed answer.
	streamPage = 500
)

// handleInstanceList answers a page (limit, continue) or every instance,
// streamed: written a page of the registry at a time, so that the
// server's memory stays flat whatever the number of instances.
func (s *Server) handleInstanceList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, after, err := pageQuery(q.Get("limit"), q.Get("continue"), q.Has("limit"), q.Has("continue"))
	if err != nil {
		return err
	}
	pager, ok := s.Service.(ec2.InstancePager)
	if !ok {
		pager = listPager{s.Service}
	}
	if limit > 0 {
		page, more, err := pager.ListInstancesPage(r.Context(), after, limit)
		if err != nil {
			return err
		}
		docs, err := documents(page)
		if err != nil {
			return err
		}
		body := pageBody{Instances: docs}
		if more {
			body.Continue = ContinueToken(page[len(page)-1].Name)
		}
		data, err := encodeJSON(body)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, data)
		return nil
	}
	// Every instance: the first page decides the status (an error is
	// still an error document); later ones are streamed after it.
	page, more, err := pager.ListInstancesPage(r.Context(), after, streamPage)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`{"instances":[`)
	n := 0
	for {
		for _, inst := range page {
			doc, err := document(inst)
			if err != nil {
				return s.abortList(r, err)
			}
			if n > 0 {
				bw.WriteByte(',')
			}
			bw.Write(doc)
			n++
		}
		if !more {
			break
		}
		if page, more, err = pager.ListInstancesPage(r.Context(), page[len(page)-1].Name, streamPage); err != nil {
			return s.abortList(r, err)
		}
	}
	bw.WriteString("]}\n")
	bw.Flush() // the status is sent: a client gone away can be told nothing
	return nil
}

// abortList ends a streamed list that failed after its status was sent:
// the connection is cut, so that the client sees a truncated answer
// rather than a short list.
func (s *Server) abortList(r *http.Request, err error) error {
	s.Logger.Warn("admin API: instance list cut short", "err", ec2.ErrorMessage(err), "remote", r.RemoteAddr)
	panic(http.ErrAbortHandler)
}

// listPager pages a service that only lists whole (each page lists all).
type listPager struct{ svc ec2.InstanceService }

func (p listPager) ListInstancesPage(ctx context.Context, after string, limit int) ([]*ec2.Instance, bool, error) {
	list, err := p.svc.ListInstances(ctx)
	if err != nil {
		return nil, false, err
	}
	i, _ := slices.BinarySearchFunc(list, after, func(inst *ec2.Instance, name string) int { return strings.Compare(inst.Name, name) })
	if i < len(list) && list[i].Name == after {
		i++
	}
	end := min(len(list), i+limit)
	return list[i:end], end < len(list), nil
}

// pageQuery checks the limit and continue parameters of a list: limit 0
// means every instance.
func pageQuery(limit, token string, hasLimit, hasToken bool) (int, string, error) {
	n := 0
	if hasLimit {
		v, err := strconv.Atoi(limit)
		if err != nil || v < 1 || v > MaxPageSize {
			return 0, "", ec2.Errorf(ec2.EINVALID, "limit: must be a number from 1 to %d, got %q", MaxPageSize, limit)
		}
		n = v
	}
	if !hasToken {
		return n, "", nil
	}
	if !hasLimit {
		return 0, "", ec2.Errorf(ec2.EINVALID, "continue: only with limit (the token comes from a page)")
	}
	after, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(after) == 0 || ec2.CheckName(string(after)) != nil {
		return 0, "", ec2.Errorf(ec2.EINVALID, "continue: %q is not a token of this API (use the continue value of the last page)", token)
	}
	return n, string(after), nil
}

// ContinueToken is the continue value of a page that ends with the
// instance named last: pages are in name order, and the next one starts
// after it.
func ContinueToken(last string) string { return base64.RawURLEncoding.EncodeToString([]byte(last)) }

func (s *Server) handleInstanceGet(w http.ResponseWriter, r *http.Request) error {
	inst, err := s.Service.GetInstance(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeInstance(w, http.StatusOK, inst)
}

func (s *Server) handleInstanceSpec(w http.ResponseWriter, r *http.Request) error {
	inst, err := s.Service.GetInstanceSpec(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeInstance(w, http.StatusOK, inst)
}

func (s *Server) handleInstanceCreate(w http.ResponseWriter, r *http.Request) error {
	specs, err := readInstances(r)
	if err != nil {
		return err
	}
	if b, ok := s.Service.(ec2.InstanceBatcher); ok && len(specs) > 1 {
		// All or nothing: every entry is checked, then all are written in one
		// store transaction.
		added, err := b.AddInstanceBatch(r.Context(), specs)
		if err != nil {
			return err
		}
		return writeInstances(w, added)
	}
	added := make([]*ec2.Instance, 0, len(specs))
	for n, spec := range specs {
		inst, err := s.Service.AddInstance(r.Context(), spec)
		if err != nil {
			return batchError(err, spec.Name, n, len(specs), added)
		}
		added = append(added, inst)
	}
	return writeInstances(w, added)
}

// writeInstances answers 201 with the added instances.
func writeInstances(w http.ResponseWriter, added []*ec2.Instance) error {
	docs, err := documents(added)
	if err != nil {
		return err
	}
	body, err := encodeJSON(docs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, body)
	return nil
}

// batchError names the instance of a batch that failed and what stays
// added, keeping the code of err.
func batchError(err error, name string, n, total int, added []*ec2.Instance) error {
	code := ec2.ErrorCode(err)
	if code == ec2.EINTERNAL || total == 1 {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "instance %q (%d of %d): %s", name, n+1, total, ec2.ErrorMessage(err))
	if len(added) > 0 {
		names := make([]string, len(added))
		for i, inst := range added {
			names[i] = inst.Name
		}
		fmt.Fprintf(&b, " (added before it, and kept: %s; nothing after it was added)", strings.Join(names, ", "))
	} else {
		b.WriteString(" (nothing was added)")
	}
	return &ec2.Error{Code: code, Message: b.String()}
}

func (s *Server) handleInstanceSet(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	specs, err := readInstances(r)
	if err != nil {
		return err
	}
	if len(specs) != 1 {
		return ec2.Errorf(ec2.EINVALID, "the body must hold exactly one instance, got %d", len(specs))
	}
	spec := specs[0]
	switch spec.Name {
	case "":
		spec.Name = name
	case name:
	default:
		return ec2.Errorf(ec2.EINVALID, "the name in the body (%q) differs from the name in the path (%q); instances cannot be renamed", spec.Name, name)
	}
	inst, err := s.Service.SetInstance(r.Context(), spec)
	if err != nil {
		return err
	}
	return writeInstance(w, http.StatusOK, inst)
}

// updateJSON decodes PATCH bodies.
var updateJSON = strictJSON{
	empty: "the body must be a JSON object with the fields to change",
	kind: func(field string) string {
		switch field {
		case "source_addresses":
			return "a list of addresses"
		case "public_keys", "tags":
			return "a list of objects"
		case "hop_limit":
			return "a number"
		case "user_data":
			return "base64 text"
		}
		return "a string"
	},
	fields: "id, source_addresses, mac, role, user_data, instance_type, region, availability_zone, imdsv2, hop_limit, public_keys and tags",
}

// handleInstanceUpdate applies an ec2.InstanceUpdate (a JSON object of the
// fields to change) to the instance in one step.
func (s *Server) handleInstanceUpdate(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r, jsonBody)
	if err != nil {
		return err
	}
	var u ec2.InstanceUpdate
	if err := updateJSON.decode(data, &u); err != nil {
		return err
	}
	if u.IsZero() {
		return ec2.Errorf(ec2.EINVALID, "the body changes nothing; the fields are %s", updateJSON.fields)
	}
	inst, err := s.Service.UpdateInstance(r.Context(), r.PathValue("name"), u)
	if err != nil {
		return err
	}
	return writeInstance(w, http.StatusOK, inst)
}

func (s *Server) handleInstanceDelete(w http.ResponseWriter, r *http.Request) error {
	if err := s.Service.RemoveInstance(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleCredentialsRotate replaces the credentials of the role named by the
// role query parameter, or of every role without one.
func (s *Server) handleCredentialsRotate(w http.ResponseWriter, r *http.Request) error {
	if s.Credentials == nil {
		return ec2.Errorf(ec2.EUNSUPPORTED, "this server cannot rotate credentials")
	}
	if err := s.Credentials.RotateCredentials(r.Context(), r.URL.Query().Get("role")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// pageBody is the response of GET /v1/instances (streamed whole without
// limit) and of a page of it (limit=N): Continue, when more follow, asks
// for the next page.
type pageBody struct {
	Instances []json.RawMessage `json:"instances"`
	Continue  string            `json:"continue,omitempty"`
}

// readInstances decodes the request body with config.ParseInstances.
func readInstances(r *http.Request) ([]*ec2.Instance, error) {
	data, err := readBody(r, documentBody)
	if err != nil {
		return nil, err
	}
	file := documentName(r.URL.Query().Get("file"))
	specs, err := config.ParseInstances(file, data)
	if err != nil {
		return nil, ec2.Errorf(ec2.EINVALID, "%s", problems(err, file != "", bytes.Count(bytes.TrimSpace(data), []byte("\n")) > 0))
	}
	if len(specs) == 0 {
		return nil, ec2.Errorf(ec2.EINVALID, "the body holds no instance")
	}
	return specs, nil
}

// documentName is the name of the request body in messages: the file name
// the client sent, cleaned of anything that could forge log or terminal
// output; "" when it sent none.
func documentName(file string) string {
	file = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, file)
	if len(file) > 256 {
		file = file[len(file)-256:]
	}
	return file
}

// problems renders the errors of ParseInstances one per line. Without a file
// name they read "line N: field: problem", and without the line when the
// body is a single line (a document a program generated, where the field
// says it all).
func problems(err error, named, multiline bool) string {
	if named {
		return err.Error()
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	lines := make([]string, len(errs))
	for i, e := range errs {
		var ce *config.Error
		if !errors.As(e, &ce) {
			lines[i] = e.Error()
			continue
		}
		c := *ce
		c.File = ""
		if !multiline {
			c.Line = 0
		}
		lines[i] = c.Error()
	}
	return strings.Join(lines, "\n")
}

// document renders inst in the config schema; the document carries the
// instance's origin, which ParseInstances reads past.
func document(inst *ec2.Instance) (json.RawMessage, error) {
	doc, err := config.MarshalInstance(inst)
	if err != nil {
		return nil, fmt.Errorf("marshal instance %q: %w", inst.Name, err)
	}
	return json.RawMessage(doc), nil
}

func documents(list []*ec2.Instance) ([]json.RawMessage, error) {
	docs := make([]json.RawMessage, 0, len(list))
	for _, inst := range list {
		doc, err := document(inst)
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
	return docs, nil
}

func writeInstance(w http.ResponseWriter, status int, inst *ec2.Instance) error {
	doc, err := document(inst)
	if err != nil {
		return err
	}
	writeJSON(w, status, append(doc, '\n'))
	return nil
}
