package imds

import (
	"context"
	"slices"
	"strings"

	"github.com/imdsdev/imds/internal/ec2"
)

// Resolved is what the metadata API answers for one path of an instance.
type Resolved struct {
	// Dir is set for a directory; Body is then its listing.
	Dir bool
	// Body is the listing or the leaf's value.
	Body []byte
	// Binary marks user-data, which is served as application/octet-stream.
	Binary bool
}

// Resolve answers GET /path for inst as the metadata API would, for the
// admin API's view of an instance: without a requester, tokens, faults or
// the request record. The tree is compiled afresh and not cached, so a
// look from the dashboard does not evict the tree requests use.
func (s *Server) Resolve(ctx context.Context, inst *ec2.Instance, path string) (Resolved, error) {
	path = strings.TrimLeft(path, "/")
	if path == "" {
		return Resolved{Dir: true, Body: []byte(strings.Join(s.Versions, "\n"))}, nil
	}
	version, rest, _ := strings.Cut(path, "/")
	// Versions, not the map init builds: the admin API may ask before the
	// metadata listeners are open.
	if !slices.Contains(s.Versions, version) {
		return Resolved{}, ec2.Errorf(ec2.ENOTFOUND, "unknown version %q", version)
	}
	if inst.Metadata.HTTPEndpoint == ec2.EndpointDisabled {
		return Resolved{}, ec2.Errorf(ec2.EFORBIDDEN, "the instance metadata endpoint of %s is disabled", inst.Name)
	}
	c, err := s.compile(inst, s.current())
	if err != nil {
		return Resolved{}, err
	}
	n := resolve(c.root, rest, version)
	switch {
	case n == nil:
		return Resolved{}, ec2.Errorf(ec2.ENOTFOUND, "no such path: /%s", path)
	case n.isDir():
		return Resolved{Dir: true, Body: n.listFor(version)}, nil
	case n.dyn != nil:
		body, err := n.dyn(ctx)
		if err != nil {
			return Resolved{}, err
		}
		return Resolved{Body: body, Binary: n.octet}, nil
	}
	return Resolved{Body: n.value, Binary: n.octet}, nil
}
