package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// Host route:
//
//	GET /v1/hosts  {"hosts": [HOST, ...]}, sorted by name
//
// HOST is {"name": "hv-1", "listen": ["10.0.0.1:80"], "version": "1.2.0",
// "started": RFC 3339, "lease": "694d7c1a2b3e4f50", "ttl_seconds": 9,
// "self": true, "pinned": 3}. With the host counts, the body also has
// "unpinned" (instances every host serves) and "pinned_elsewhere"
// (pinned to a host that is not live). Without a shared store
// (store.etcd) the route answers 501.

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
	Pinned     *int     `json:"pinned,omitempty"`
}

type hostsBody struct {
	Hosts           []hostDocument `json:"hosts"`
	Unpinned        *int           `json:"unpinned,omitempty"`
	PinnedElsewhere *int           `json:"pinned_elsewhere,omitempty"`
}

// HostList is GET /v1/hosts: the live hosts, and with Counted, how the
// instances spread over them.
type HostList struct {
	Hosts   []ec2.Host
	Counted bool
	// Unpinned instances are served by every host; PinnedElsewhere are
	// pinned to a host that is not live, and served by none.
	Unpinned, PinnedElsewhere int
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
	l := HostList{Hosts: hosts}
	if pc, ok := s.Service.(ec2.PinCounter); ok {
		pins := pc.CountPins()
		l.Counted, l.Unpinned = true, pins.Unpinned
		for _, n := range pins.ByHost {
			l.PinnedElsewhere += n
		}
		l.Hosts = slices.Clone(hosts)
		for i, h := range l.Hosts {
			l.Hosts[i].Pinned = pins.ByHost[h.Name]
			l.PinnedElsewhere -= pins.ByHost[h.Name]
		}
	}
	body := l.document()
	b, err := encodeJSON(body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// document is l as GET /v1/hosts writes it.
func (l HostList) document() hostsBody {
	body := hostsBody{Hosts: make([]hostDocument, 0, len(l.Hosts))}
	if l.Counted {
		body.Unpinned, body.PinnedElsewhere = ec2.Ptr(l.Unpinned), ec2.Ptr(l.PinnedElsewhere)
	}
	for _, h := range l.Hosts {
		doc := hostDocument{Name: h.Name, Listen: h.Listen, Version: h.Version, Lease: h.Lease,
			TTLSeconds: int64(h.TTL / time.Second), Self: h.Self}
		if l.Counted {
			doc.Pinned = ec2.Ptr(h.Pinned)
		}
		if !h.Started.IsZero() {
			doc.Started = h.Started.UTC().Format(time.RFC3339)
		}
		body.Hosts = append(body.Hosts, doc)
	}
	return body
}

// MarshalJSON writes l as GET /v1/hosts does, so that the CLI's -o json
// prints the admin API's document.
func (l HostList) MarshalJSON() ([]byte, error) { return json.Marshal(l.document()) }

var _ ec2.HostService = (*Client)(nil)

// ListHosts implements ec2.HostService over the admin API.
func (c *Client) ListHosts(ctx context.Context) ([]ec2.Host, error) {
	l, err := c.HostList(ctx)
	return l.Hosts, err
}

// HostList is GET /v1/hosts whole: the hosts, and the instance counts
// when the server gives them (Counted).
func (c *Client) HostList(ctx context.Context) (HostList, error) {
	var body hostsBody
	if err := c.do(ctx, http.MethodGet, "/v1/hosts", "", nil, &body); err != nil {
		return HostList{}, err
	}
	l := HostList{Hosts: make([]ec2.Host, 0, len(body.Hosts)), Counted: body.Unpinned != nil}
	if l.Counted {
		l.Unpinned = *body.Unpinned
		if body.PinnedElsewhere != nil {
			l.PinnedElsewhere = *body.PinnedElsewhere
		}
	}
	for _, d := range body.Hosts {
		h := ec2.Host{Name: d.Name, Listen: d.Listen, Version: d.Version, Lease: d.Lease,
			TTL: time.Duration(d.TTLSeconds) * time.Second, Self: d.Self}
		if d.Pinned != nil {
			h.Pinned = *d.Pinned
		}
		if d.Started != "" {
			t, err := time.Parse(time.RFC3339, d.Started)
			if err != nil {
				return HostList{}, ec2.Errorf(ec2.EINTERNAL, "the admin API sent a host with started %q: %v", d.Started, err)
			}
			h.Started = t
		}
		l.Hosts = append(l.Hosts, h)
	}
	return l, nil
}
