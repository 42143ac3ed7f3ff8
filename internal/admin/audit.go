package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// RequestDocument is one metadata request in the admin API
// (GET /v1/requests) and in `imds logs -o json`.
type RequestDocument struct {
	Time      time.Time `json:"time"` // RFC 3339 with nanoseconds
	Instance  string    `json:"instance"`
	Remote    string    `json:"remote"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Status    int       `json:"status"`
	API       string    `json:"api"`
	LatencyMS float64   `json:"latency_ms"`
	UserAgent string    `json:"user_agent"`
	Fault     string    `json:"fault,omitempty"`
}

// NewRequestDocument returns the document of r.
func NewRequestDocument(r ec2.RequestRecord) RequestDocument {
	return RequestDocument{Time: r.Time, Instance: r.Instance, Remote: r.Remote, Method: r.Method, Path: r.Path,
		Status: r.Status, API: r.API, LatencyMS: float64(r.Latency) / float64(time.Millisecond), UserAgent: r.UserAgent, Fault: r.Fault}
}

// Record returns the record d describes.
func (d RequestDocument) Record() ec2.RequestRecord {
	return ec2.RequestRecord{Time: d.Time, Instance: d.Instance, Remote: d.Remote, Method: d.Method, Path: d.Path,
		Status: d.Status, API: d.API, Latency: time.Duration(math.Round(d.LatencyMS * float64(time.Millisecond))), UserAgent: d.UserAgent, Fault: d.Fault}
}

// ReportDocument is the report of an instance in the admin API
// (GET /v1/instances/{name}/report) and in `imds report -o json`.
type ReportDocument struct {
	Instance   string          `json:"instance"`
	Requests   int             `json:"requests"`
	V1Requests int             `json:"v1_requests"`
	V2Requests int             `json:"v2_requests"`
	Errors     int             `json:"errors"`
	First      time.Time       `json:"first"`
	Last       time.Time       `json:"last"`
	Paths      []PathDocument  `json:"paths"`
	UserAgents []AgentDocument `json:"user_agents"`
}

// PathDocument is an ec2.PathUse in a ReportDocument.
type PathDocument struct {
	Path     string `json:"path"`
	Requests int    `json:"requests"`
	V1       int    `json:"v1"`
}

// AgentDocument is an ec2.AgentUse in a ReportDocument.
type AgentDocument struct {
	UserAgent string `json:"user_agent"`
	Requests  int    `json:"requests"`
	V1        int    `json:"v1"`
}

// NewReportDocument returns the document of r.
func NewReportDocument(r ec2.RequestReport) ReportDocument {
	d := ReportDocument{Instance: r.Instance, Requests: r.Requests, V1Requests: r.V1Requests, V2Requests: r.V2Requests,
		Errors: r.Errors, First: r.First, Last: r.Last,
		Paths: make([]PathDocument, len(r.Paths)), UserAgents: make([]AgentDocument, len(r.UserAgents))}
	for i, p := range r.Paths {
		d.Paths[i] = PathDocument(p)
	}
	for i, a := range r.UserAgents {
		d.UserAgents[i] = AgentDocument(a)
	}
	return d
}

// Report returns the report d describes.
func (d ReportDocument) Report() ec2.RequestReport {
	r := ec2.RequestReport{Instance: d.Instance, Requests: d.Requests, V1Requests: d.V1Requests, V2Requests: d.V2Requests,
		Errors: d.Errors, First: d.First, Last: d.Last,
		Paths: make([]ec2.PathUse, len(d.Paths)), UserAgents: make([]ec2.AgentUse, len(d.UserAgents))}
	for i, p := range d.Paths {
		r.Paths[i] = ec2.PathUse(p)
	}
	for i, a := range d.UserAgents {
		r.UserAgents[i] = ec2.AgentUse(a)
	}
	return r
}

// requestsBody is the response of GET /v1/requests.
type requestsBody struct {
	Requests []RequestDocument `json:"requests"`
}

// maxRequestLine limits one line of a follow stream the client reads.
const maxRequestLine = 1 << 20

func (s *Server) requestLog() (ec2.RequestLog, error) {
	if s.Requests == nil {
		return nil, ec2.Errorf(ec2.EUNSUPPORTED, "this server keeps no request log")
	}
	return s.Requests, nil
}

// checkRequester refuses a name that is neither an instance nor one with
// recorded requests, so that a typo is not an empty log forever.
func (s *Server) checkRequester(ctx context.Context, log ec2.RequestLog, name string) error {
	if name == "" {
		return nil
	}
	_, err := s.Service.GetInstance(ctx, name)
	if ec2.ErrorCode(err) != ec2.ENOTFOUND {
		return nil // found, or a failure that says nothing about the name
	}
	if recs, lerr := log.Requests(ctx, name, 1); lerr == nil && len(recs) > 0 {
		return nil // an instance removed since
	}
	return err
}

// handleRequests answers GET /v1/requests?instance=NAME&limit=N with the
// recent requests, or with follow=1 streams them as NDJSON until the client
// goes away or the server shuts down.
func (s *Server) handleRequests(w http.ResponseWriter, r *http.Request) error {
	log, err := s.requestLog()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	instance := q.Get("instance")
	limit := 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			return ec2.Errorf(ec2.EINVALID, "limit must be a number >= 0, got %q", v)
		}
	}
	follow := false
	if v := q.Get("follow"); v != "" {
		if follow, err = strconv.ParseBool(v); err != nil {
			return ec2.Errorf(ec2.EINVALID, "follow must be 1 or 0, got %q", v)
		}
	}
	if err := s.checkRequester(r.Context(), log, instance); err != nil {
		return err
	}
	if follow {
		return s.followRequests(w, r, log, instance)
	}
	recs, err := log.Requests(r.Context(), instance, limit)
	if err != nil {
		return err
	}
	docs := make([]RequestDocument, len(recs))
	for i, rec := range recs {
		docs[i] = NewRequestDocument(rec)
	}
	body, err := encodeJSON(requestsBody{Requests: docs})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (s *Server) followRequests(w http.ResponseWriter, r *http.Request, log ec2.RequestLog, instance string) error {
	rc := http.NewResponseController(w)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	done := s.shutdown
	recs := log.Follow(ctx, instance)
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil // nothing more can be said to this client
	}
	for {
		select {
		case <-done:
			return nil
		case rec, ok := <-recs:
			if !ok {
				return nil
			}
			line, err := encodeJSON(NewRequestDocument(rec))
			if err != nil {
				s.Logger.Error("encode request record", "err", err)
				continue
			}
			if _, err := w.Write(line); err != nil {
				return nil
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		}
	}
}

// handleReport answers GET /v1/instances/{name}/report.
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) error {
	log, err := s.requestLog()
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	rep, err := log.Report(r.Context(), name)
	if err != nil {
		if ec2.ErrorCode(err) == ec2.ENOTFOUND {
			if _, gerr := s.Service.GetInstance(r.Context(), name); ec2.ErrorCode(gerr) == ec2.ENOTFOUND {
				return gerr
			}
		}
		return err
	}
	body, err := encodeJSON(NewReportDocument(rep))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

var _ ec2.RequestLog = (*Client)(nil)

func requestsPath(instance string, limit int, follow bool) string {
	q := url.Values{}
	if instance != "" {
		q.Set("instance", instance)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if follow {
		q.Set("follow", "1")
	}
	if len(q) == 0 {
		return "/v1/requests"
	}
	return "/v1/requests?" + q.Encode()
}

// Requests implements ec2.RequestLog over the admin API.
func (c *Client) Requests(ctx context.Context, instance string, limit int) ([]ec2.RequestRecord, error) {
	var body requestsBody
	if err := c.do(ctx, http.MethodGet, requestsPath(instance, limit, false), "", nil, &body); err != nil {
		return nil, err
	}
	recs := make([]ec2.RequestRecord, len(body.Requests))
	for i, d := range body.Requests {
		recs[i] = d.Record()
	}
	return recs, nil
}

// Report implements ec2.RequestLog over the admin API.
func (c *Client) Report(ctx context.Context, instance string) (ec2.RequestReport, error) {
	path, err := instancePath(instance)
	if err != nil {
		return ec2.RequestReport{}, err
	}
	var doc ReportDocument
	if err := c.do(ctx, http.MethodGet, path+"/report", "", nil, &doc); err != nil {
		return ec2.RequestReport{}, err
	}
	return doc.Report(), nil
}

// Follow implements ec2.RequestLog over the admin API; an error ends the
// stream silently. FollowRequests says why a stream ended.
func (c *Client) Follow(ctx context.Context, instance string) <-chan ec2.RequestRecord {
	recs, _ := c.FollowRequests(ctx, instance)
	return recs
}

// FollowRequests streams the requests of instance ("" for all) recorded
// from now on. It returns once the server has subscribed (or failed to). The
// records channel is closed when ctx is done or the stream ends; then the
// error channel receives one value: nil when ctx ended the stream, else
// why it ended (an *ec2.Error for an error response, EUNAVAILABLE when the
// server went away).
func (c *Client) FollowRequests(ctx context.Context, instance string) (<-chan ec2.RequestRecord, <-chan error) {
	out := make(chan ec2.RequestRecord, 64)
	errc := make(chan error, 1)
	path := requestsPath(instance, 0, true)
	body, err := c.stream(ctx, path)
	if err != nil {
		close(out)
		errc <- err
		return out, errc
	}
	go func() {
		defer close(errc)
		defer close(out)
		defer body.Close()
		// Closing the body unblocks the scanner when ctx ends.
		stop := context.AfterFunc(ctx, func() { body.Close() })
		defer stop()
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 0, 4096), maxRequestLine)
		for sc.Scan() {
			var d RequestDocument
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				errc <- fmt.Errorf("admin API GET %s: bad record: %w", path, err)
				return
			}
			select {
			case out <- d.Record():
			case <-ctx.Done():
				errc <- nil
				return
			}
		}
		switch err := sc.Err(); {
		case ctx.Err() != nil:
			errc <- nil
		case err != nil:
			errc <- ec2.Errorf(ec2.EUNAVAILABLE, "admin API GET %s: %v", path, err)
		default:
			errc <- ec2.Errorf(ec2.EUNAVAILABLE, "the admin API ended the stream of requests (the server stopped)")
		}
	}()
	return out, errc
}

// stream sends a GET request and returns the body of its success response;
// an error response becomes an *ec2.Error as in do.
func (c *Client) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+path, nil)
	if err != nil {
		return nil, fmt.Errorf("admin API request: %w", err)
	}
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("User-Agent", "imds-cli")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, ec2.Errorf(ec2.EUNAVAILABLE, c.unreachable, err)
		}
		return nil, ec2.Errorf(ec2.EUNAVAILABLE, "admin API GET %s: %v", path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		if err != nil {
			return nil, ec2.Errorf(ec2.EUNAVAILABLE, "admin API GET %s: reading the response: %v", path, err)
		}
		return nil, responseError(resp, data)
	}
	return resp.Body, nil
}

// Unwrap lets http.ResponseController reach the connection's writer, to
// flush follow streams.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
