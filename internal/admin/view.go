package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// The read-only views the dashboard needs beyond the instance routes:
//
//	GET /v1/instances/{name}/metadata?path=P  one path of the instance's metadata tree, secrets masked
//	GET /v1/server                            listeners, roles, VM network, unknown requesters

// MetadataFunc resolves path (e.g. "latest/meta-data/iam/") in the metadata
// tree of inst as the instance sees it. dir is set for a directory (body is
// then its listing); binary for user-data.
type MetadataFunc func(ctx context.Context, inst *ec2.Instance, path string) (body []byte, dir, binary bool, err error)

// Masked replaces the values of secret fields in what the admin API shows.
const Masked = "********"

// secretFields are the keys of credential documents whose values are never
// shown.
func secretFields() []string { return []string{"SecretAccessKey", "Token", "SessionToken"} }

// MetadataDocument is the answer of GET /v1/instances/{name}/metadata.
type MetadataDocument struct {
	Instance string `json:"instance"`
	Path     string `json:"path"`
	Dir      bool   `json:"dir"`
	// Entries is a directory's listing, one entry each.
	Entries []string `json:"entries,omitempty"`
	// Body is a leaf's value, with secret fields masked; empty for
	// user-data, which only says its Size.
	Body string `json:"body,omitempty"`
	Size int    `json:"size"`
	// Masked is set when fields of Body were masked; Hidden when Body is
	// left out altogether (user-data, binary values).
	Masked bool `json:"masked,omitempty"`
	Hidden bool `json:"hidden,omitempty"`
}

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) error {
	if s.Metadata == nil {
		return ec2.Errorf(ec2.EUNSUPPORTED, "this server cannot show metadata trees")
	}
	name := r.PathValue("name")
	path := r.URL.Query().Get("path")
	if len(path) > 1024 {
		return ec2.Errorf(ec2.EINVALID, "path is longer than 1024 characters")
	}
	inst, err := s.Service.GetInstance(r.Context(), name)
	if err != nil {
		return err
	}
	body, dir, binary, err := s.Metadata(r.Context(), inst, path)
	if err != nil {
		return err
	}
	doc := MetadataDocument{Instance: inst.Name, Path: "/" + strings.TrimLeft(path, "/"), Dir: dir, Size: len(body)}
	switch {
	case dir:
		for _, e := range strings.Split(string(body), "\n") {
			if e != "" {
				doc.Entries = append(doc.Entries, e)
			}
		}
	case binary:
		doc.Hidden = true
	default:
		doc.Body, doc.Masked = MaskSecrets(body)
		doc.Size = len(doc.Body)
	}
	out, err := encodeJSON(doc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// MaskSecrets returns body with the values of SecretAccessKey, Token and
// SessionToken replaced by Masked when body is a JSON object, and whether
// it replaced any.
func MaskSecrets(body []byte) (string, bool) {
	t := bytes.TrimSpace(body)
	if len(t) == 0 || t[0] != '{' {
		return string(body), false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(t, &obj); err != nil {
		return string(body), false
	}
	masked := false
	for _, k := range secretFields() {
		if _, ok := obj[k]; ok {
			obj[k] = json.RawMessage(`"` + Masked + `"`)
			masked = true
		}
	}
	if !masked {
		return string(body), false
	}
	// The order of the keys is the server's, not the map's: rewrite in place.
	var b bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(t))
	if _, err := dec.Token(); err != nil {
		return Masked, true
	}
	b.WriteString("{\n")
	first := true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Masked, true
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return Masked, true
		}
		if !first {
			b.WriteString(",\n")
		}
		first = false
		k, _ := json.Marshal(key)
		b.WriteString("  ")
		b.Write(k)
		b.WriteString(" : ")
		b.Write(obj[key])
	}
	b.WriteString("\n}")
	return b.String(), true
}

// StatusDocument is the answer of GET /v1/server: what the server runs,
// never a secret.
type StatusDocument struct {
	Version     string   `json:"version,omitempty"`
	Listen      []string `json:"listen"`
	AdminSocket string   `json:"admin_socket,omitempty"`
	AdminTCP    string   `json:"admin_tcp,omitempty"`
	DataDir     string   `json:"data_dir,omitempty"`
	ConfigPath  string   `json:"config_path,omitempty"`
	Instances   int      `json:"instances"`
	// Roles are the roles of the instances and of the config, with the
	// state of their credentials.
	Roles     []RoleStatus     `json:"roles"`
	VMNetwork *VMNetworkStatus `json:"vm_network,omitempty"`
	// Store is where registered instances are kept, and for etcd whether it
	// answers.
	Store *StoreStatus `json:"store,omitempty"`
	// Unknown are the requesters no instance matched, most recent first.
	Unknown []RequesterDocument `json:"unknown_requesters"`
}

// RoleStatus is the credential state of one role.
type RoleStatus struct {
	Name string `json:"name"`
	// Source is fake (rotating fake credentials) or the kind of the
	// role's configured source.
	Source    string `json:"source"`
	Instances int    `json:"instances"`
	// State is ok, or error with Error saying why (never a secret).
	State       string    `json:"state"`
	Error       string    `json:"error,omitempty"`
	AccessKeyID string    `json:"access_key_id,omitempty"` // shortened
	LastUpdated time.Time `json:"last_updated,omitzero"`
	Expiration  time.Time `json:"expiration,omitzero"`
}

// StoreStatus describes the store of registered instances.
type StoreStatus struct {
	// Backend is bolt or etcd.
	Backend string `json:"backend"`
	// Path is the bolt file.
	Path string `json:"path,omitempty"`
	// Endpoints and Prefix say where in etcd; Online whether etcd answered
	// at the last check, and Revision the etcd revision of the last list.
	Endpoints []string `json:"endpoints,omitempty"`
	Prefix    string   `json:"prefix,omitempty"`
	Online    *bool    `json:"online,omitempty"`
	Revision  int64    `json:"revision,omitempty"`
	// LastContact is when etcd last answered this host (a change, a probe
	// or a list); Resyncs counts the full lists after an outage, a lost
	// watch or a compaction.
	LastContact time.Time `json:"last_contact,omitzero"`
	Resyncs     int64     `json:"resyncs,omitempty"`
	// Host is this host's name among the hosts sharing the store (with
	// bolt too: instances pinned to it name it), and Lease the etcd lease
	// (hexadecimal) that keeps it listed; "" while none is held.
	Host  string `json:"host,omitempty"`
	Lease string `json:"lease,omitempty"`
}

// VMNetworkStatus describes the VM network of the config.
type VMNetworkStatus struct {
	Bridge  string `json:"bridge"`
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
	Domain  string `json:"domain"`
	Managed bool   `json:"managed"`
}

// RequesterDocument is one unknown requester: a source address whose
// requests matched no instance.
type RequesterDocument struct {
	Address   string    `json:"address"`
	Requests  int       `json:"requests"`
	Last      time.Time `json:"last"`
	LastPath  string    `json:"last_path"`
	UserAgent string    `json:"user_agent"`
}

// maxUnknown bounds the unknown requesters GET /v1/server lists.
const maxUnknown = 100

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) error {
	var doc StatusDocument
	if s.Status != nil {
		var err error
		if doc, err = s.Status(r.Context()); err != nil {
			return err
		}
	}
	if doc.Listen == nil {
		doc.Listen = []string{}
	}
	if doc.Roles == nil {
		doc.Roles = []RoleStatus{}
	}
	doc.AdminSocket, doc.AdminTCP = s.SocketPath, s.TCPURL()
	doc.Unknown = []RequesterDocument{}
	if s.Requests != nil {
		recs, err := s.Requests.Requests(r.Context(), "", 0)
		if err != nil {
			return err
		}
		doc.Unknown = unknownRequesters(recs)
	}
	out, err := encodeJSON(doc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// unknownRequesters groups the records of no instance by source address.
func unknownRequesters(recs []ec2.RequestRecord) []RequesterDocument {
	by := map[string]*RequesterDocument{}
	for _, rec := range recs {
		if rec.Instance != "" {
			continue
		}
		addr := rec.Remote
		if i := strings.LastIndexByte(addr, ':'); i > 0 && !strings.HasSuffix(addr, "]") {
			addr = addr[:i] // the port says nothing about who asks
		}
		addr = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
		d := by[addr]
		if d == nil {
			d = &RequesterDocument{Address: addr}
			by[addr] = d
		}
		d.Requests++
		if !rec.Time.Before(d.Last) {
			d.Last, d.LastPath, d.UserAgent = rec.Time, rec.Path, rec.UserAgent
		}
	}
	out := make([]RequesterDocument, 0, len(by))
	for _, d := range by {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b RequesterDocument) int {
		if c := b.Last.Compare(a.Last); c != 0 {
			return c
		}
		return strings.Compare(a.Address, b.Address)
	})
	if len(out) > maxUnknown {
		out = out[:maxUnknown]
	}
	return out
}

// Metadata returns one path of the named instance's metadata tree, secrets
// masked.
func (c *Client) Metadata(ctx context.Context, name, path string) (MetadataDocument, error) {
	p, err := instancePath(name)
	if err != nil {
		return MetadataDocument{}, err
	}
	var doc MetadataDocument
	err = c.do(ctx, http.MethodGet, p+"/metadata?"+url.Values{"path": {path}}.Encode(), "", nil, &doc)
	return doc, err
}

// Status returns the server's status document.
func (c *Client) Status(ctx context.Context) (StatusDocument, error) {
	var doc StatusDocument
	err := c.do(ctx, http.MethodGet, "/v1/server", "", nil, &doc)
	return doc, err
}

// Response is an admin API response as Forward returns it.
type Response struct {
	Status      int
	ContentType string
	Body        []byte
}

// Forward sends one request (path with its query) to the admin API as it is
// and returns the response whatever its status, for a front end that shows
// the API's own messages. Only a failure to reach the server is an error.
func (c *Client) Forward(ctx context.Context, method, path, ctype string, body []byte) (Response, error) {
	if !strings.HasPrefix(path, "/v1/") {
		return Response{}, fmt.Errorf("admin API: %q is not an API path", path)
	}
	resp, data, err := c.send(ctx, method, path, ctype, "imds-dashboard", body)
	var te transportError
	if errors.As(err, &te) {
		return Response{}, ec2.Errorf(ec2.EUNAVAILABLE, c.unreachable, te.err)
	}
	if err != nil {
		return Response{}, err
	}
	return Response{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Body: data}, nil
}

// viewRoutes registers the view routes, and their 405 answers, with route.
func (s *Server) viewRoutes(route func(string, handlerFunc)) {
	route("GET /v1/instances/{name}/metadata", s.handleMetadata)
	route("GET /v1/server", s.handleStatus)
	for _, path := range []string{"/v1/instances/{name}/metadata", "/v1/server"} {
		route(path, func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", "GET, HEAD")
			return ec2.Errorf(ec2.EMETHOD, "method %s is not allowed on %s (allowed: GET, HEAD)", r.Method, r.URL.Path)
		})
	}
}
