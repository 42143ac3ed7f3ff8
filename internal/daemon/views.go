package daemon

import (
	"context"
	"crypto/rand"
	"sort"
	"sync/atomic"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/creds"
	"github.com/imdsdev/imds/internal/dashboard"
	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/imds"
	"github.com/imdsdev/imds/internal/registry"
)

// views feeds the admin API's read-only views (an instance's metadata tree,
// the server's status) and mounts the dashboard on the admin TCP listener.
type views struct {
	srv     *imds.Server
	roles   *creds.Roles
	reg     *registry.Registry
	file    atomic.Pointer[config.File] // the config in force
	vmnet   *config.VMNetwork           // as started: changing it takes a restart
	store   func() *admin.StoreStatus   // nil: not reported
	clk     clock.Clock
	dataDir string
	cfgPath string
	version string // of the build, as imds version prints it
	// listen is set once the metadata listeners are open.
	listen atomic.Pointer[[]string]
}

// attach sets the view fields of a, before it opens.
func (v *views) attach(a *admin.Server) {
	a.Metadata = v.metadata
	a.Status = v.status
	if a.TCPAddr != "" {
		// The dashboard reaches the API over the server's own socket, as
		// `imds dashboard` does; its users log in with the admin token.
		d := dashboard.New(admin.NewClient(a.SocketPath), v.clk, rand.Reader)
		d.Login = dashboard.TokenLogin(a.Token)
		a.Dashboard = d
	}
}

// opened records the metadata addresses.
func (v *views) opened(srv *imds.Server) {
	var addrs []string
	for _, a := range srv.Addrs() {
		addrs = append(addrs, a.String())
	}
	v.listen.Store(&addrs)
}

func (v *views) metadata(ctx context.Context, inst *ec2.Instance, path string) ([]byte, bool, bool, error) {
	r, err := v.srv.Resolve(ctx, inst, path)
	return r.Body, r.Dir, r.Binary, err
}

func (v *views) status(ctx context.Context) (admin.StatusDocument, error) {
	doc := admin.StatusDocument{Version: v.version, DataDir: v.dataDir, ConfigPath: v.cfgPath, Listen: []string{}}
	if l := v.listen.Load(); l != nil {
		doc.Listen = *l
	}
	doc.Instances = v.reg.Len()
	sources := map[string]string{}
	file := v.file.Load()
	for _, r := range file.Roles {
		sources[r.Name] = r.Source
	}
	// One instance per role is enough to ask for its credentials.
	byRole := map[string]*ec2.Instance{}
	count := map[string]int{}
	// Read in place: a copy of every instance per status request was
	// 70 MB at 100,000.
	v.reg.Each(func(inst *ec2.Instance) bool {
		if inst.Role != nil {
			count[inst.Role.Name]++
			if byRole[inst.Role.Name] == nil {
				byRole[inst.Role.Name] = inst
			}
		}
		return true
	})
	names := make([]string, 0, len(byRole)+len(sources))
	for n := range byRole {
		names = append(names, n)
	}
	for n := range sources {
		if byRole[n] == nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		rs := admin.RoleStatus{Name: n, Source: sources[n], Instances: count[n]}
		if rs.Source == "" {
			rs.Source = "fake"
		}
		inst := byRole[n]
		if inst == nil {
			rs.State, rs.Error = "unused", "no instance has this role"
			doc.Roles = append(doc.Roles, rs)
			continue
		}
		c, err := v.roles.Credentials(ctx, inst, n)
		if err != nil {
			rs.State, rs.Error = "error", ec2.ErrorMessage(err)
		} else {
			rs.State, rs.LastUpdated, rs.Expiration = "ok", c.LastUpdated, c.Expiration
			if id := c.AccessKeyID; len(id) > 8 {
				rs.AccessKeyID = id[:8] + "…"
			}
			if c.Expiration.Before(v.clk.Now()) {
				rs.State = "expired"
			}
		}
		doc.Roles = append(doc.Roles, rs)
	}
	if v.store != nil {
		doc.Store = v.store()
	}
	if n := v.vmnet; n != nil {
		doc.VMNetwork = &admin.VMNetworkStatus{Bridge: n.Bridge, Subnet: n.Subnet.String(), Gateway: n.Gateway.String(), Domain: n.Domain, Managed: n.Managed}
	}
	return doc, nil
}
