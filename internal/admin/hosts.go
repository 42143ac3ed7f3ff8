package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// Host route:
//
//	GET /v1/hosts  {"hosts": [HOST, ...]}, sorted by name
//
// HOST is {"name": "hv-1", "listen": ["10.0.0.1:80"], "version": "1.2.0",
// "started": RFC 3339, "lease": "694d7c1a2b3e4f50", "ttl_seconds": 9,
// "self": true}. Without a shared store (store.etcd) the route answers 501.

// hostsBox holds the HostService, which the daemon learns only once its
// listeners are open, after the admin API.
type hostsBox struct{ svc ec2.HostService }

// SetHosts sets the service behind GET /v1/hosts; safe while serving.
func (s *Server) SetHosts(h ec2.HostService) { s.hosts.Store(&hostsBox{svc: h}) }

type hostDocument struct {
	Name       string   `json:"name"`
	Listen     []string `json:"listen,omitempty"`
	Version    string   `json:"version,omitempty"`
	Started    string   `json:"started,omitempty"`
	Lease      string   `json:"lease,omitempty"`
	TTLSeconds int64    `json:"ttl_seconds"`
	Self       bool     `json:"self,omitempty"`
}

type hostsBody struct {
	Hosts []hostDocument `json:"hosts"`
}

func (s *Server) handleHosts(w http.ResponseWriter, r *http.Request) error {
	box := s.hosts.Load()
	if box == nil || box.svc == nil {
		return ec2.Errorf(ec2.EUNSUPPORTED, "this server shares no store with other hosts (store.etcd is not set)")
	}
	hosts, err := box.svc.ListHosts(r.Context())
	if err != nil {
		return err
	}
	body := hostsBody{Hosts: []hostDocument{}}
	for _, h := range hosts {
		doc := hostDocument{Name: h.Name, Listen: h.Listen, Version: h.Version, Lease: h.Lease,
			TTLSeconds: int64(h.TTL / time.Second), Self: h.Self}
		if !h.Started.IsZero() {
			doc.Started = h.Started.UTC().Format(time.RFC3339)
		}
		body.Hosts = append(body.Hosts, doc)
	}
	b, err := encodeJSON(body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

var _ ec2.HostService = (*Client)(nil)

// ListHosts implements ec2.HostService over the admin API.
func (c *Client) ListHosts(ctx context.Context) ([]ec2.Host, error) {
	var body hostsBody
	if err := c.do(ctx, http.MethodGet, "/v1/hosts", "", nil, &body); err != nil {
		return nil, err
	}
	out := make([]ec2.Host, 0, len(body.Hosts))
	for _, d := range body.Hosts {
		h := ec2.Host{Name: d.Name, Listen: d.Listen, Version: d.Version, Lease: d.Lease,
			TTL: time.Duration(d.TTLSeconds) * time.Second, Self: d.Self}
		if d.Started != "" {
			t, err := time.Parse(time.RFC3339, d.Started)
			if err != nil {
				return nil, ec2.Errorf(ec2.EINTERNAL, "the admin API sent a host with started %q: %v", d.Started, err)
			}
			h.Started = t
		}
		out = append(out, h)
	}
	return out, nil
}
