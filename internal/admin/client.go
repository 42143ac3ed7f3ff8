package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
)

// maxResponse limits what the client reads of a response.
const maxResponse = 64 << 20

// Client implements ec2.InstanceService over the admin API. Errors of the
// server come back as *ec2.Error with the server's code and message; a
// server that cannot be reached is an EUNAVAILABLE *ec2.Error saying so.
type Client struct {
	baseURL string
	token   string
	http    *http.Client
	// unreachable is the message of a connection failure, with %v for the
	// cause.
	unreachable string
}

var _ ec2.InstanceService = (*Client)(nil)

// NewClient returns a client of the admin API on the Unix socket at
// socketPath.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: time.Minute,
	}
	return &Client{
		baseURL:     "http://imds",
		http:        &http.Client{Transport: tr},
		unreachable: "cannot reach the imds admin socket " + strings.ReplaceAll(socketPath, "%", "%%") + ": is `imds serve` running? (%v)",
	}
}

// NewTCPClient returns a client of the admin API at baseURL (for example
// http://127.0.0.1:1339) that authenticates with token.
func NewTCPClient(baseURL, token string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the admin API is local; never send the token to a proxy
	tr.ResponseHeaderTimeout = time.Minute
	baseURL = strings.TrimRight(baseURL, "/")
	return &Client{
		baseURL: baseURL,
		token:   token,
		http: &http.Client{
			Transport: tr,
			// A redirect would carry the request elsewhere; the API never
			// sends one.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		unreachable: "cannot reach the imds admin API at " + strings.ReplaceAll(baseURL, "%", "%%") + ": is `imds serve` running with the admin API on TCP? (%v)",
	}
}

// ClientPage is the page size of ListInstances: each response stays far
// below the client's limit on what it reads of one (64 MiB).
const ClientPage = 1000

var _ ec2.InstancePager = (*Client)(nil)

// ListInstances implements ec2.InstanceService, a page at a time (see
// ListInstancesPage), so that no response is too large to read at any
// number of instances.
func (c *Client) ListInstances(ctx context.Context) ([]*ec2.Instance, error) {
	var all []*ec2.Instance
	after := ""
	for {
		page, more, err := c.ListInstancesPage(ctx, after, ClientPage)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if !more || len(page) == 0 {
			return all, nil
		}
		after = page[len(page)-1].Name
	}
}

// ListInstancesPage implements ec2.InstancePager with GET
// /v1/instances?limit=N&continue=TOKEN.
func (c *Client) ListInstancesPage(ctx context.Context, after string, limit int) ([]*ec2.Instance, bool, error) {
	if limit < 1 || limit > MaxPageSize {
		return nil, false, ec2.Errorf(ec2.EINVALID, "the page size must be from 1 to %d, got %d", MaxPageSize, limit)
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if after != "" {
		q.Set("continue", ContinueToken(after))
	}
	var body pageBody
	if err := c.do(ctx, http.MethodGet, "/v1/instances?"+q.Encode(), "", nil, &body); err != nil {
		return nil, false, err
	}
	list, err := parseDocuments(body.Instances)
	if err != nil {
		return nil, false, err
	}
	return list, body.Continue != "", nil
}

// GetInstance implements ec2.InstanceService.
func (c *Client) GetInstance(ctx context.Context, name string) (*ec2.Instance, error) {
	path, err := instancePath(name)
	if err != nil {
		return nil, err
	}
	return c.getOne(ctx, http.MethodGet, path, "", nil)
}

// GetInstanceSpec implements ec2.InstanceService.
func (c *Client) GetInstanceSpec(ctx context.Context, name string) (*ec2.Instance, error) {
	path, err := instancePath(name)
	if err != nil {
		return nil, err
	}
	return c.getOne(ctx, http.MethodGet, path+"/spec", "", nil)
}

// AddInstance implements ec2.InstanceService.
func (c *Client) AddInstance(ctx context.Context, spec *ec2.Instance) (*ec2.Instance, error) {
	doc, err := config.MarshalInstance(spec)
	if err != nil {
		return nil, err
	}
	list, err := c.addInstances(ctx, "", "application/json", doc)
	if err != nil {
		return nil, err
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("admin API: added %d instances for one", len(list))
	}
	return list[0], nil
}

// AddInstances sends doc, a YAML or JSON document with one instance, a list
// of them or a mapping with an instances: list, as it is, so that the lines
// in the server's messages are lines of doc. It returns the added instances,
// derived. When one fails, the ones before it stay added (the error says
// which).
func (c *Client) AddInstances(ctx context.Context, doc []byte) ([]*ec2.Instance, error) {
	return c.AddInstancesFile(ctx, "", doc)
}

// AddInstancesFile is AddInstances for the contents of a file: the server
// names file in its messages (FILE:LINE: field: problem).
func (c *Client) AddInstancesFile(ctx context.Context, file string, doc []byte) ([]*ec2.Instance, error) {
	ctype := "application/yaml"
	if t := bytes.TrimSpace(doc); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		ctype = "application/json"
	}
	return c.addInstances(ctx, file, ctype, doc)
}

func (c *Client) addInstances(ctx context.Context, file, ctype string, doc []byte) ([]*ec2.Instance, error) {
	path := "/v1/instances"
	if file != "" {
		path += "?" + url.Values{"file": {file}}.Encode()
	}
	var docs []json.RawMessage
	if err := c.do(ctx, http.MethodPost, path, ctype, doc, &docs); err != nil {
		return nil, err
	}
	return parseDocuments(docs)
}

// SetInstance implements ec2.InstanceService.
func (c *Client) SetInstance(ctx context.Context, spec *ec2.Instance) (*ec2.Instance, error) {
	return c.writeInstance(ctx, http.MethodPut, spec.Name, func() ([]byte, error) { return config.MarshalInstance(spec) })
}

// UpdateInstance implements ec2.InstanceService with PATCH: the server
// applies u to the current spec, so a writer at the same time cannot undo it.
func (c *Client) UpdateInstance(ctx context.Context, name string, u ec2.InstanceUpdate) (*ec2.Instance, error) {
	return c.writeInstance(ctx, http.MethodPatch, name, func() ([]byte, error) { return json.Marshal(u) })
}

// writeInstance sends the JSON body marshal returns to the named instance
// and returns the instance the server answers with.
func (c *Client) writeInstance(ctx context.Context, method, name string, marshal func() ([]byte, error)) (*ec2.Instance, error) {
	path, err := instancePath(name)
	if err != nil {
		return nil, err
	}
	doc, err := marshal()
	if err != nil {
		return nil, err
	}
	return c.getOne(ctx, method, path, "application/json", doc)
}

// RemoveInstance implements ec2.InstanceService.
func (c *Client) RemoveInstance(ctx context.Context, name string) error {
	path, err := instancePath(name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, path, "", nil, nil)
}

// RotateCredentials implements ec2.CredentialRotator over the admin API.
func (c *Client) RotateCredentials(ctx context.Context, role string) error {
	path := "/v1/credentials/rotate"
	if role != "" {
		path += "?role=" + url.QueryEscape(role)
	}
	return c.do(ctx, http.MethodPost, path, "", nil, nil)
}

var _ ec2.CredentialRotator = (*Client)(nil)

// Health checks that the server answers.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/health", "", nil, nil)
}

// instancePath returns the path of the named instance. A name outside the
// grammar is refused here, before it reaches a URL: an empty one would
// address the collection, and "." or ".." would be cleaned into another
// path.
func instancePath(name string) (string, error) {
	if err := ec2.CheckName(name); err != nil {
		return "", err
	}
	return "/v1/instances/" + url.PathEscape(name), nil
}

func (c *Client) getOne(ctx context.Context, method, path, ctype string, body []byte) (*ec2.Instance, error) {
	var doc json.RawMessage
	if err := c.do(ctx, method, path, ctype, body, &doc); err != nil {
		return nil, err
	}
	return parseDocument(doc)
}

// do sends one request and decodes a JSON response into out (unless nil);
// an error response becomes an *ec2.Error.
func (c *Client) do(ctx context.Context, method, path, ctype string, body []byte, out any) error {
	resp, data, err := c.send(ctx, method, path, ctype, "imds-cli", body)
	var te transportError
	if errors.As(err, &te) {
		err = te.err
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is ours and says nothing
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return ec2.Errorf(ec2.EUNAVAILABLE, c.unreachable, err)
		}
		return ec2.Errorf(ec2.EUNAVAILABLE, "admin API %s %s: %v", method, path, err)
	}
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return responseError(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin API %s %s: bad response: %w", method, path, err)
	}
	return nil
}

// transportError is a request that reached no answer (send's callers
// word it each their own way).
type transportError struct{ err error }

func (e transportError) Error() string { return e.err.Error() }

// send makes one request of the admin API and reads the whole (bounded)
// response, whatever its status. A request that got no answer is a
// transportError, unless ctx ended: then ctx's error.
func (c *Client) send(ctx context.Context, method, path, ctype, agent string, body []byte) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("admin API request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", agent)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, transportError{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, nil, ec2.Errorf(ec2.EUNAVAILABLE, "admin API %s %s: reading the response: %v", method, path, err)
	}
	return resp, data, nil
}

// responseError turns an error response back into the *ec2.Error the server
// rendered.
func responseError(resp *http.Response, data []byte) error {
	var body errorBody
	if err := json.Unmarshal(data, &body); err == nil && body.Error.Code != "" {
		return &ec2.Error{Code: body.Error.Code, Message: body.Error.Message}
	}
	return ec2.Errorf(codeOf(resp.StatusCode), "the admin API answered %s", resp.Status)
}

func parseDocuments(docs []json.RawMessage) ([]*ec2.Instance, error) {
	// On every core: the strict decoder costs about 0.2 ms a document,
	// which is most of the time of reading a page of 1,000.
	list, errs := make([]*ec2.Instance, len(docs)), make([]error, len(docs))
	workers := min(runtime.GOMAXPROCS(0), len(docs)/100+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(docs); i += workers {
				list[i], errs[i] = parseDocument(docs[i])
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first, as one by one
		}
	}
	return list, nil
}

// parseDocument decodes one instance document of a response. The strict
// decoder reads past origin (the server decides it), so it is taken here.
func parseDocument(doc json.RawMessage) (*ec2.Instance, error) {
	var meta struct {
		Origin string `json:"origin"`
	}
	if err := json.Unmarshal(doc, &meta); err != nil {
		return nil, fmt.Errorf("admin API: bad instance document: %w", err)
	}
	list, err := config.ParseInstances("admin API response", doc)
	if err != nil {
		return nil, fmt.Errorf("admin API: bad instance document: %w", err)
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("admin API: expected one instance document, got %d", len(list))
	}
	list[0].Origin = meta.Origin
	return list[0], nil
}
