package dashboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

//go:embed static
var staticFiles embed.FS

// DefaultSessionTTL is how long a session lasts without being used.
const DefaultSessionTTL = 12 * time.Hour

// maxSessions bounds the sessions kept; past it the oldest goes.
const maxSessions = 64

// maxBody limits what the browser sends (an instance with its user data).
const maxBody = 1 << 20

// csrfHeader carries the session's CSRF token on every state change.
const csrfHeader = "X-Imds-Csrf"

// contentSecurityPolicy lets the pages load nothing but their own files.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Dashboard serves the dashboard. Build it with New, set Login, and mount
// it (under a prefix with http.StripPrefix if need be); fields must not
// change once it serves.
type Dashboard struct {
	// Admin is the admin API the pages read and change the server through.
	Admin *admin.Client
	// Login decides which login tokens open a session.
	Login LoginFunc
	// Clock tells session expiry; Rand makes session and CSRF tokens.
	Clock clock.Clock
	Rand  io.Reader
	// SessionTTL is how long an unused session lasts; 0 means
	// DefaultSessionTTL.
	SessionTTL time.Duration
	Logger     *slog.Logger

	mu       sync.Mutex
	sessions map[[32]byte]*session // by the hash of the cookie's value

	once    sync.Once
	handler http.Handler
}

type session struct {
	csrf     string
	created  time.Time
	lastUsed time.Time
}

// New returns a Dashboard over client; rand is crypto/rand.Reader outside
// tests. Login accepts nothing until set.
func New(client *admin.Client, clk clock.Clock, rand io.Reader) *Dashboard {
	return &Dashboard{Admin: client, Clock: clk, Rand: rand, Logger: slog.New(slog.DiscardHandler),
		Login: func(string) bool { return false }}
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.once.Do(d.init)
	d.handler.ServeHTTP(w, r)
}

func (d *Dashboard) init() {
	if d.sessions == nil {
		d.sessions = map[[32]byte]*session{}
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	static, _ := fs.Sub(staticFiles, "static")
	files := http.FileServerFS(static)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.servePage)
	mux.Handle("GET /static/", http.StripPrefix("/static/", files))
	mux.HandleFunc("GET /login", d.serveLogin)
	mux.HandleFunc("POST /login", d.serveLogin)
	mux.Handle("POST /logout", d.authed(d.serveLogout))
	mux.Handle("GET /api/session", d.authed(d.serveSession))
	mux.Handle("GET /api/overview", d.authed(d.serveOverview))
	mux.Handle("GET /api/stream", d.authed(d.serveStream))
	mux.Handle("POST /api/instances", d.authed(d.serveAdd))
	mux.Handle("PATCH /api/instances/{name}", d.authed(d.serveEdit))
	for _, p := range forwarded() {
		mux.Handle(p, d.authed(d.forward))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, ec2.ENOTFOUND, "no such dashboard path: "+r.URL.Path)
	})
	d.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if msg := checkRequest(r); msg != "" {
			writeError(w, http.StatusForbidden, ec2.EFORBIDDEN, msg)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// forwarded are the admin API routes the pages use, under /api.
func forwarded() []string {
	return []string{
		"GET /api/v1/instances",
		"GET /api/v1/instances/{name}",
		"DELETE /api/v1/instances/{name}",
		"GET /api/v1/instances/{name}/report",
		"GET /api/v1/instances/{name}/metadata",
		"POST /api/v1/instances/{name}/events",
		"GET /api/v1/instances/{name}/faults",
		"PUT /api/v1/instances/{name}/faults",
		"DELETE /api/v1/instances/{name}/faults",
		"GET /api/v1/faults",
		"PUT /api/v1/faults",
		"DELETE /api/v1/faults",
		"GET /api/v1/requests",
		"GET /api/v1/server",
		"POST /api/v1/credentials/rotate",
	}
}

// checkRequest refuses Host names other than localhost and addresses (DNS
// rebinding), requests from other sites, and state changes whose Origin is
// not this dashboard's. It returns why, or "".
func checkRequest(r *http.Request) string {
	if !allowedHost(r.Host) {
		return "host name " + strings.TrimSpace(r.Host) + " is not allowed: open the dashboard at localhost or an address"
	}
	origin, hasOrigin := r.Header["Origin"]
	if hasOrigin && !sameOrigin(r, origin[0]) {
		return "requests from another origin are refused"
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		// A link from another site may open the page (a top-level
		// navigation), nothing else.
		if !(r.Method == http.MethodGet && r.Header.Get("Sec-Fetch-Mode") == "navigate" && !strings.HasPrefix(r.URL.Path, "/api/")) {
			return "requests from another site are refused"
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !hasOrigin {
		return "state changes must come from the dashboard's pages (no Origin header)"
	}
	return ""
}

func sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// allowedHost accepts localhost and IP literals, with or without a port.
func allowedHost(host string) bool {
	if host == "" {
		return false
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return strings.EqualFold(strings.TrimSuffix(host, "."), "localhost")
}

// cookieName is per port: cookies are shared by every port of a host, and
// two dashboards on one host must not log each other out.
func cookieName(r *http.Request) string {
	_, port, err := net.SplitHostPort(r.Host)
	if err != nil || port == "" {
		return "imds_session"
	}
	return "imds_session_" + port
}

func (d *Dashboard) ttl() time.Duration {
	if d.SessionTTL > 0 {
		return d.SessionTTL
	}
	return DefaultSessionTTL
}

// lookup returns the session of r's cookie, extending it, or nil.
func (d *Dashboard) lookup(r *http.Request) *session {
	c, err := r.Cookie(cookieName(r))
	if err != nil || c.Value == "" {
		return nil
	}
	key := sha256.Sum256([]byte(c.Value))
	now := d.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[key]
	if s == nil {
		return nil
	}
	if now.Sub(s.lastUsed) > d.ttl() {
		delete(d.sessions, key)
		return nil
	}
	s.lastUsed = now
	return s
}

// newSession stores a session and returns the cookie value that opens it.
func (d *Dashboard) newSession() (string, error) {
	id, err := randomToken(d.Rand)
	if err != nil {
		return "", err
	}
	csrf, err := randomToken(d.Rand)
	if err != nil {
		return "", err
	}
	now := d.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.sessions) >= maxSessions {
		var oldest [32]byte
		var at time.Time
		for k, s := range d.sessions {
			if at.IsZero() || s.lastUsed.Before(at) {
				oldest, at = k, s.lastUsed
			}
		}
		delete(d.sessions, oldest)
	}
	d.sessions[sha256.Sum256([]byte(id))] = &session{csrf: csrf, created: now, lastUsed: now}
	return id, nil
}

type sessionKey struct{}

// authed serves h to requests with a session, and to state changes only
// with the session's CSRF token.
func (d *Dashboard) authed(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := d.lookup(r)
		if s == nil {
			writeError(w, http.StatusUnauthorized, ec2.EUNAUTHORIZED, "no dashboard session: log in with the URL `imds dashboard` printed")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			got := r.Header.Get(csrfHeader)
			if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
				writeError(w, http.StatusForbidden, ec2.EFORBIDDEN, "missing or wrong CSRF token: reload the page")
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	})
}

func (d *Dashboard) servePage(w http.ResponseWriter, r *http.Request) {
	page := "index.html"
	if d.lookup(r) == nil {
		page = "login.html"
	}
	b, err := staticFiles.ReadFile("static/" + page)
	if err != nil {
		http.Error(w, "page missing", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b)
}

// serveLogin exchanges a login token (?token= or a form field) for a
// session cookie and sends the browser to the dashboard.
func (d *Dashboard) serveLogin(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		if err := r.ParseForm(); err == nil {
			token = r.PostForm.Get("token")
		}
	}
	if token == "" || !d.Login(token) {
		d.Logger.Warn("dashboard login refused", "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		b, _ := staticFiles.ReadFile("static/login.html")
		w.Write(bytes.Replace(b, []byte(`<p id="login-error" hidden>`), []byte(`<p id="login-error">`), 1))
		return
	}
	id, err := d.newSession()
	if err != nil {
		d.Logger.Error("dashboard session", "err", err)
		http.Error(w, "cannot open a session", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(d.ttl() / time.Second)})
	d.Logger.Info("dashboard login", "remote", r.RemoteAddr)
	// Relative: the dashboard may be mounted under a prefix. The token
	// leaves the address bar with this redirect.
	w.Header().Set("Location", "./")
	w.WriteHeader(http.StatusSeeOther)
}

func (d *Dashboard) serveLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName(r)); err == nil {
		d.mu.Lock()
		delete(d.sessions, sha256.Sum256([]byte(c.Value)))
		d.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// serveSession hands the page its CSRF token: only a page of this origin
// can read it.
func (d *Dashboard) serveSession(w http.ResponseWriter, r *http.Request) {
	s := r.Context().Value(sessionKey{}).(*session)
	writeJSONValue(w, http.StatusOK, map[string]string{"csrf": s.csrf, "header": csrfHeader})
}

// forward sends the request on to the admin API and returns its answer,
// with user-data taken out of instance documents.
func (d *Dashboard) forward(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/api")
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		if q.Has("follow") {
			writeError(w, http.StatusBadRequest, ec2.EINVALID, "use /api/stream to follow requests")
			return
		}
		path += "?" + r.URL.RawQuery
	}
	var body []byte
	ctype := ""
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodDelete {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, ec2.EINVALID, "the request body is larger than 1 MiB")
			return
		}
		if len(body) > 0 {
			ctype = "application/json"
		}
	}
	resp, err := d.Admin.Forward(r.Context(), r.Method, path, ctype, body)
	if err != nil {
		writeError(w, http.StatusBadGateway, ec2.EUNAVAILABLE, ec2.ErrorMessage(err))
		return
	}
	out := resp.Body
	if strings.HasPrefix(resp.ContentType, "application/json") && strings.HasPrefix(path, "/v1/instances") && len(out) > 0 {
		if out, err = hideUserData(out); err != nil {
			writeError(w, http.StatusBadGateway, ec2.EINTERNAL, "the admin API answered something that is not JSON")
			return
		}
	}
	h := w.Header()
	if resp.ContentType != "" {
		h.Set("Content-Type", resp.ContentType)
	}
	w.WriteHeader(resp.Status)
	w.Write(out)
}

// hideUserData replaces every "user_data" (or "user_data_base64") value of a JSON document by
// "user_data_size", its length in bytes: user-data can hold secrets.
func hideUserData(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON document")
	}
	v = walkUserData(v)
	return json.Marshal(v)
}

func walkUserData(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if k == "user_data" || k == "user_data_base64" {
				delete(t, k)
				if s, ok := x.(string); ok {
					n := len(s)
					if k == "user_data_base64" {
						n = base64Len(s)
					}
					t["user_data_size"] = n
				}
				continue
			}
			t[k] = walkUserData(x)
		}
	case []any:
		for i := range t {
			t[i] = walkUserData(t[i])
		}
	}
	return v
}

// base64Len is the decoded length of a standard base64 string.
func base64Len(s string) int {
	s = strings.TrimRight(s, "=")
	return len(s) * 6 / 8
}

// maxReports bounds the request reports the instances page fetches, one
// admin call each: past it the page lists instances without them.
const maxReports = 2000

// overviewEntry is one instance of the instances page.
type overviewEntry struct {
	Instance json.RawMessage       `json:"instance"`
	Report   *admin.ReportDocument `json:"report"`
}

// serveOverview answers the instances page: every instance with its
// request report.
func (d *Dashboard) serveOverview(w http.ResponseWriter, r *http.Request) {
	resp, err := d.Admin.Forward(r.Context(), http.MethodGet, "/v1/instances", "", nil)
	if err != nil {
		writeError(w, http.StatusBadGateway, ec2.EUNAVAILABLE, ec2.ErrorMessage(err))
		return
	}
	if resp.Status != http.StatusOK {
		w.Header().Set("Content-Type", resp.ContentType)
		w.WriteHeader(resp.Status)
		w.Write(resp.Body)
		return
	}
	clean, err := hideUserData(resp.Body)
	var list struct {
		Instances []json.RawMessage `json:"instances"`
	}
	if err == nil {
		err = json.Unmarshal(clean, &list)
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, ec2.EINTERNAL, "the admin API answered something that is not an instance list")
		return
	}
	out := struct {
		Instances []overviewEntry `json:"instances"`
		// ReportsCut says the reports stop at maxReports instances.
		ReportsCut bool `json:"reports_cut,omitempty"`
	}{Instances: make([]overviewEntry, 0, len(list.Instances)), ReportsCut: len(list.Instances) > maxReports}
	for n, doc := range list.Instances {
		var meta struct {
			Name string `json:"name"`
		}
		json.Unmarshal(doc, &meta)
		e := overviewEntry{Instance: doc}
		if n >= maxReports {
			out.Instances = append(out.Instances, e)
			continue
		}
		if rep, err := d.Admin.Report(r.Context(), meta.Name); err == nil {
			rd := admin.NewReportDocument(rep)
			e.Report = &rd
		} else if c := ec2.ErrorCode(err); c != ec2.ENOTFOUND && c != ec2.EUNSUPPORTED {
			writeError(w, http.StatusBadGateway, c, ec2.ErrorMessage(err))
			return
		}
		out.Instances = append(out.Instances, e)
	}
	writeJSONValue(w, http.StatusOK, out)
}

// serveStream relays the requests of ?instance= (every instance without
// it) as server-sent events, one JSON request document each.
func (d *Dashboard) serveStream(w http.ResponseWriter, r *http.Request) {
	instance := r.URL.Query().Get("instance")
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	recs, errc := d.Admin.FollowRequests(ctx, instance)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	// A first comment, so the browser's EventSource opens at once.
	io.WriteString(w, ": imds requests\n\n")
	if rc.Flush() != nil {
		return
	}
	for rec := range recs {
		line, err := json.Marshal(admin.NewRequestDocument(rec))
		if err != nil {
			continue
		}
		if _, err := io.WriteString(w, "data: "+string(line)+"\n\n"); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		// Retry later rather than at once against a server that is gone.
		io.WriteString(w, "event: failed\ndata: "+jsonString(ec2.ErrorMessage(err))+"\nretry: 5000\n\n")
		rc.Flush()
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// writeError answers in the admin API's error shape, so that the pages
// read one kind of error.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSONValue(w, status, map[string]map[string]string{"error": {"code": code, "message": msg}})
}

func writeJSONValue(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"EINTERNAL","message":"encoding failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
